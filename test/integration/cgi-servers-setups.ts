// The four web-server setups cgi-servers.test.ts runs the bundled CGI scripts under, what each
// was measured to do where servers differ (docs/deploy-cgi.md states the same), and the bundling
// of the test apps into a cgi-bin the servers' www-data workers can read.
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleApp } from '../../src/bundle/bundle.js';
import {
  startApache,
  startLighttpd,
  startNginx,
  type RunningServer,
  type World,
} from '../harness/servers.js';
import { mkdir0755 } from '../harness/world.js';

const ROOT = resolve(fileURLToPath(import.meta.url), '..', '..', '..');

/**
 * CGI_SCRIPTS maps each script name in the test cgi-bin to the gateway app bundled into it
 * (paths relative to the repository root).
 */
export const CGI_SCRIPTS: Readonly<Record<string, string>> = {
  hello: 'cgi-bin/hello.ts',
  'cgi-echo': 'test/fixtures/apps/cgi-echo.ts',
  'cgi-status': 'test/fixtures/apps/cgi-status.ts',
  'cgi-binary': 'test/fixtures/apps/cgi-binary.ts',
  'cgi-throw': 'test/fixtures/apps/cgi-throw.ts',
  'cgi-stream': 'test/fixtures/apps/cgi-stream.ts',
};

/**
 * bundleCgiScripts bundles every app of {@link CGI_SCRIPTS} with `bundleApp` (the code behind
 * `cgi-bridge bundle`) into `WORLD/cgi-bin/NAME`, mode 0755 under a 0755 world, so the servers'
 * www-data workers can run them. It returns the directory.
 */
export async function bundleCgiScripts(world: World): Promise<string> {
  const dir = await mkdir0755(join(world.dir, 'cgi-bin'));
  await Promise.all(
    Object.entries(CGI_SCRIPTS).map(([name, app]) =>
      bundleApp({ app, outFile: join(dir, name), cwd: ROOT }),
    ),
  );
  return dir;
}

/**
 * How a server relays a response body produced over time: `chunks` passes each write on at
 * once; `blocks` only in blocks of about 8 KiB (fcgiwrap's libfcgi output buffer), so smaller
 * writes wait for the next ones or the end; `whole` holds the response until the script exits.
 */
export type Streaming = 'chunks' | 'blocks' | 'whole';

/** Observed is what a server was measured to do where the four differ. */
export interface Observed {
  /** streaming is how a body written over time reaches the client. */
  streaming: Streaming;
  /** chunkedBodyLength: does a chunked request reach the script with a CONTENT_LENGTH? */
  chunkedBodyLength: boolean;
  /** HTTP_TRANSFER_ENCODING the script sees for a chunked request (null: none). */
  chunkedTransferEncoding: string | null;
  /** encodedSlash is what `/%2F` in the path gives: decoded into PATH_INFO, or a 404. */
  encodedSlash: 'decoded' | 404;
  /** invalidUtf8 is what `/%FF` gives: the byte reaches the script (U+FFFD in PATH_INFO), or a 400. */
  invalidUtf8: 'replaced' | 400;
  /** keepsReason: is the script's own reason phrase sent (else the server's table; '' if unknown). */
  keepsReason: boolean;
  /**
   * contentLength: `kept` sends the script's Content-Length; `recomputed` (Apache) drops it and
   * sends one of its own only when the script's whole output had arrived before the headers
   * went out, else the body goes chunked, so either may happen to the same request.
   */
  contentLength: 'kept' | 'recomputed';
}

/** CgiSetup is one web server configuration that runs the bundled scripts from a cgi-bin. */
export interface CgiSetup {
  /** name is the test title. */
  name: string;
  /** tools are what requireTool checks. */
  tools: string[];
  /** harness names the file and function that generate the configuration. */
  harness: string;
  /** start starts the server with `cgiDir` mapped at /cgi-bin/. */
  start(world: World, cgiDir: string): Promise<RunningServer>;
  observed: Observed;
}

/** CGI_SETUPS are the four setups, in the order the test runs them. */
export const CGI_SETUPS: readonly CgiSetup[] = [
  {
    name: 'apache event MPM + mod_cgid',
    tools: ['apache2'], // mod_cgid and the MPMs ship in apache2-bin
    harness: 'test/harness/apache.ts startApache({ mpm: "event" })',
    start: (world, cgiDir) => startApache(world, { mpm: 'event', cgiDir }),
    observed: {
      streaming: 'chunks',
      chunkedBodyLength: false,
      chunkedTransferEncoding: 'chunked',
      encodedSlash: 404,
      invalidUtf8: 'replaced',
      keepsReason: true,
      contentLength: 'recomputed',
    },
  },
  {
    name: 'apache prefork MPM + mod_cgi',
    tools: ['apache2'],
    harness: 'test/harness/apache.ts startApache({ mpm: "prefork" })',
    start: (world, cgiDir) => startApache(world, { mpm: 'prefork', cgiDir }),
    observed: {
      streaming: 'chunks',
      chunkedBodyLength: false,
      chunkedTransferEncoding: 'chunked',
      encodedSlash: 404,
      invalidUtf8: 'replaced',
      keepsReason: true,
      contentLength: 'recomputed',
    },
  },
  {
    name: 'lighttpd mod_cgi',
    tools: ['lighttpd'],
    harness: 'test/harness/lighttpd.ts startLighttpd()',
    start: (world, cgiDir) => startLighttpd(world, { cgiDir }),
    observed: {
      streaming: 'whole',
      chunkedBodyLength: true,
      chunkedTransferEncoding: null,
      encodedSlash: 'decoded',
      invalidUtf8: 400,
      keepsReason: false,
      contentLength: 'kept',
    },
  },
  {
    name: 'nginx + fcgiwrap',
    tools: ['nginx', 'fcgiwrap', 'spawn-fcgi'],
    harness: 'test/harness/nginx.ts startNginx()',
    // nginx refuses bodies over 1 MiB by default (413); the uploads need more. Four fcgiwrap
    // processes (the default): each runs one script at a time, and some cases send three at once.
    start: (world, cgiDir) =>
      startNginx(world, { cgiDir, extraConfig: 'client_max_body_size 64m;' }),
    observed: {
      streaming: 'blocks',
      chunkedBodyLength: true,
      chunkedTransferEncoding: 'chunked',
      encodedSlash: 'decoded',
      invalidUtf8: 'replaced',
      keepsReason: true,
      contentLength: 'kept',
    },
  },
];
