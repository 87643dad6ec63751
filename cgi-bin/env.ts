// env: the environ viewer. Every CGI meta-variable and gateway key the app received, as an
// HTML table (values escaped), so each web server's parameters can be compared side by side.
import type { GatewayApp } from '../src/index.js';
import { escapeHtml, HTML_UTF8, page } from './lib/html.js';

// What the gateway keys hold, in words: their classes are an implementation detail (and a
// bundled script's class names are minified anyway).
const KINDS: Record<string, string> = {
  'gateway.input': 'input stream: read(), readline(), readlines(), for await',
  'gateway.errors': 'error stream: write(), writelines(), flush()',
  'gateway.file_wrapper': 'function (file, blockSize?) -> body',
};

// describe renders a value: strings as they are, the gateway keys by what they are.
function describe(name: string, value: unknown): string {
  if (typeof value === 'string') return value;
  if (KINDS[name] !== undefined) return KINDS[name];
  if (typeof value === 'boolean' || typeof value === 'number') return String(value);
  if (Array.isArray(value)) return JSON.stringify(value);
  if (value instanceof AbortSignal) return `AbortSignal (aborted: ${value.aborted})`;
  return typeof value;
}

/** app answers with a table of its environ, sorted by name: meta-variables, then gateway keys. */
const app: GatewayApp = (environ, startResponse) => {
  const names = Object.keys(environ).sort((a, b) => {
    const ga = a.startsWith('gateway.') ? 1 : 0;
    const gb = b.startsWith('gateway.') ? 1 : 0;
    return ga - gb || (a < b ? -1 : a > b ? 1 : 0);
  });
  const rows = names
    .map((n) => `<tr><th>${escapeHtml(n)}</th><td>${escapeHtml(describe(n, environ[n]))}</td></tr>`)
    .join('\n');
  startResponse('200 OK', [HTML_UTF8, ['Cache-Control', 'no-store']]);
  return [page('Environ', `<table>\n${rows}\n</table>`)];
};

export default app;
