// form: a form handler. GET shows the forms and the query; a urlencoded POST shows its fields;
// a multipart upload shows each file's name, size and SHA-256, read as a stream (an upload is
// never held whole); any other POST body is measured and hashed the same way. ?format=json
// answers with JSON instead of HTML, for tests.
import { createHash } from 'node:crypto';
import type { Environ, GatewayApp, InputStream } from '../src/index.js';
import { boundaryOf, readMultipart } from '../src/util/multipart.js';
import { escapeHtml, HTML_UTF8, page } from './lib/html.js';

const MAX_URLENCODED = 1024 * 1024;
const MAX_FIELD = 64 * 1024;

interface Field {
  name: string;
  value: string;
}

interface FileInfo {
  name: string;
  filename: string;
  contentType: string;
  size: number;
  sha256: string;
}

interface Result {
  method: string;
  query: Field[];
  fields: Field[];
  files: FileInfo[];
  /** body describes a POST body that is neither urlencoded nor multipart. */
  body?: { contentType: string; size: number; sha256: string };
  /** peakRssKiB is this process's peak resident memory: it stays small for any upload size. */
  peakRssKiB?: number;
}

class TooLarge extends Error {}

function pairs(params: URLSearchParams): Field[] {
  return [...params].map(([name, value]) => ({ name, value }));
}

// digest streams bytes through SHA-256, counting them; nothing is kept.
async function digest(
  chunks: AsyncIterable<Uint8Array>,
): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const c of chunks) {
    hash.update(c);
    size += c.length;
  }
  return { size, sha256: hash.digest('hex') };
}

async function readText(chunks: AsyncIterable<Uint8Array>, max: number): Promise<string> {
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const c of chunks) {
    size += c.length;
    if (size > max) throw new TooLarge(`more than ${max} bytes`);
    parts.push(c);
  }
  return Buffer.concat(parts).toString('utf8');
}

async function readPost(environ: Environ, result: Result): Promise<void> {
  const input: InputStream = environ['gateway.input'];
  const type = environ.CONTENT_TYPE ?? '';
  const boundary = boundaryOf(type);
  if (/^application\/x-www-form-urlencoded\s*(;|$)/i.test(type)) {
    result.fields = pairs(new URLSearchParams(await readText(input, MAX_URLENCODED)));
  } else if (boundary !== undefined) {
    for await (const part of readMultipart(input, boundary)) {
      if (part.filename !== undefined) {
        result.files.push({
          name: part.name ?? '',
          filename: part.filename,
          contentType: part.contentType ?? '',
          ...(await digest(part.body)),
        });
      } else {
        result.fields.push({ name: part.name ?? '', value: await readText(part.body, MAX_FIELD) });
      }
    }
  } else {
    result.body = { contentType: type, ...(await digest(input)) };
  }
  result.peakRssKiB = process.resourceUsage().maxRSS;
}

function table(head: string[], rows: string[][]): string {
  if (rows.length === 0) return '<p><em>none</em></p>';
  const th = head.map((h) => `<th>${escapeHtml(h)}</th>`).join('');
  const trs = rows.map((r) => `<tr>${r.map((c) => `<td>${escapeHtml(c)}</td>`).join('')}</tr>`);
  return `<table><tr>${th}</tr>\n${trs.join('\n')}</table>`;
}

function render(environ: Environ, r: Result): string {
  const self = escapeHtml(environ.SCRIPT_NAME);
  const fields = (list: Field[]): string[][] => list.map((f) => [f.name, f.value]);
  let html = `<h2>Query (GET)</h2>${table(['name', 'value'], fields(r.query))}`;
  if (r.method === 'POST') {
    html += `<h2>Fields (POST)</h2>${table(['name', 'value'], fields(r.fields))}`;
    html += `<h2>Files</h2>${table(
      ['field', 'file name', 'type', 'bytes', 'SHA-256'],
      r.files.map((f) => [f.name, f.filename, f.contentType, String(f.size), f.sha256]),
    )}`;
    if (r.body) {
      html += `<h2>Body</h2>${table(['type', 'bytes', 'SHA-256'], [[r.body.contentType, String(r.body.size), r.body.sha256]])}`;
    }
    html += `<p>Peak memory of this process: ${r.peakRssKiB} KiB.</p>`;
  }
  html += `
<h2>Try it</h2>
<form method="get" action="${self}"><input name="q" placeholder="query"> <button>GET</button></form>
<form method="post" action="${self}"><input name="name" placeholder="name"> <input name="comment" placeholder="comment"> <button>POST urlencoded</button></form>
<form method="post" action="${self}" enctype="multipart/form-data"><input name="title" placeholder="title"> <input type="file" name="upload" multiple> <button>Upload</button></form>`;
  return page('Form', html);
}

/** app handles GET and POST forms and uploads, answering HTML (or JSON with ?format=json). */
const app: GatewayApp = async (environ, startResponse) => {
  const query = new URLSearchParams(environ.QUERY_STRING);
  const json = query.get('format') === 'json';
  const method = environ.REQUEST_METHOD;
  if (method !== 'GET' && method !== 'HEAD' && method !== 'POST') {
    startResponse('405 Method Not Allowed', [
      ['Allow', 'GET, HEAD, POST'],
      ['Content-Type', 'text/plain; charset=utf-8'],
    ]);
    return ['405 Method Not Allowed\n'];
  }
  const result: Result = { method, query: pairs(query), fields: [], files: [] };
  if (method === 'POST') {
    try {
      await readPost(environ, result);
    } catch (e) {
      if (!(e instanceof TooLarge)) throw e;
      startResponse('413 Content Too Large', [['Content-Type', 'text/plain; charset=utf-8']]);
      return [`413 Content Too Large: ${e.message}\n`];
    }
  }
  const headers: [string, string][] = [['Cache-Control', 'no-store']];
  if (result.peakRssKiB !== undefined) headers.push(['X-Peak-RSS-KiB', String(result.peakRssKiB)]);
  if (json) {
    startResponse('200 OK', [['Content-Type', 'application/json'], ...headers]);
    return [`${JSON.stringify(result, null, 2)}\n`];
  }
  startResponse('200 OK', [HTML_UTF8, ...headers]);
  return [render(environ, result)];
};

export default app;
