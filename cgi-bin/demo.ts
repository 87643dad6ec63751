// demo: every cgi-bin example in one gateway app, each mounted at /NAME (SCRIPT_NAME grows by
// the mount point, PATH_INFO keeps the rest, as a web server splits a CGI URL), with an index
// page at /. It is what `npm start` serves on the built-in HTTP server.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { fromCgi, type Environ, type GatewayApp } from '../src/index.js';
import download from './download.js';
import env from './env.js';
import fail from './fail.js';
import form from './form.js';
import hello from './hello.js';
import redirect from './redirect.js';
import status from './status.js';
import stream from './stream.js';
import { escapeHtml, HTML_UTF8, page } from './lib/html.js';

/**
 * LEGACY_DIR holds the legacy CGI programs (sh, Perl) served at /legacy/ by fromCgi: next to
 * demo.ts, or in the source tree when this runs as dist/cgi-bin/demo.js.
 */
export const LEGACY_DIR = ['legacy', '../../cgi-bin/legacy']
  .map((p) => fileURLToPath(new URL(p, import.meta.url)))
  .find((p) => existsSync(p));

/** EXAMPLES are the mounted apps, each with a link that shows it off. */
export const EXAMPLES: { name: string; app: GatewayApp; link: string; about: string }[] = [
  { name: 'hello', app: hello, link: '', about: 'the smallest app' },
  { name: 'env', app: env, link: '/extra/path?a=1&b=%C3%A9', about: 'the environ as a table' },
  { name: 'form', app: form, link: '?q=hello', about: 'forms and a streamed upload with SHA-256' },
  { name: 'stream', app: stream, link: '', about: '5 chunks, 500 ms apart' },
  { name: 'fail', app: fail, link: '', about: 'an app that throws: a 500, the stack in the log' },
  { name: 'download', app: download, link: '?size=1048576', about: '1 MiB of bytes 0..255' },
  { name: 'redirect', app: redirect, link: '', about: 'a 302 to hello' },
  { name: 'status', app: status, link: '?code=418', about: 'any status code' },
  ...(LEGACY_DIR === undefined
    ? []
    : [
        {
          name: 'legacy',
          app: fromCgi({ dir: LEGACY_DIR }, { timeoutMs: 30_000 }),
          link: '/index.sh',
          about: 'legacy CGI programs (shell, Perl) run by fromCgi',
        },
      ]),
];

/**
 * mount runs `app` below `prefix`: SCRIPT_NAME gains the prefix and PATH_INFO loses it
 * (the SCRIPT_NAME shift of PEP 3333's `shift_path_info`).
 */
export function mount(prefix: string, app: GatewayApp): GatewayApp {
  return (environ, startResponse) => {
    const shifted: Environ = {
      ...environ,
      SCRIPT_NAME: environ.SCRIPT_NAME + prefix,
      PATH_INFO: environ.PATH_INFO.slice(prefix.length),
    };
    return app(shifted, startResponse);
  };
}

const routes = new Map(EXAMPLES.map((e) => [e.name, mount(`/${e.name}`, e.app)]));

function index(environ: Environ): string {
  const base = escapeHtml(environ.SCRIPT_NAME);
  const items = EXAMPLES.map(
    (e) =>
      `<li><a href="${base}/${e.name}${escapeHtml(e.link)}">${e.name}</a> — ${escapeHtml(e.about)}</li>`,
  );
  return page('cgi-bridge examples', `<ul>\n${items.join('\n')}\n</ul>`);
}

/** app routes /NAME[/...] to the example NAME and / to the index page; anything else is a 404. */
const app: GatewayApp = (environ, startResponse) => {
  const path = environ.PATH_INFO;
  if (path === '' || path === '/') {
    startResponse('200 OK', [HTML_UTF8]);
    return [index(environ)];
  }
  const name = /^\/([^/]+)/.exec(path)?.[1];
  const route = name === undefined ? undefined : routes.get(name);
  if (!route) {
    startResponse('404 Not Found', [['Content-Type', 'text/plain; charset=utf-8']]);
    return ['404 Not Found\n'];
  }
  return route(environ, startResponse);
};

export default app;
