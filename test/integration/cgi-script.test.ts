// The cgi-bin examples bundled into single CGI scripts (bundleApp, as `npm run build` does) and
// run directly as a web server runs them: a CGI environment and stdin in, the response on stdout.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { bundleApp } from '../../src/bundle/bundle.js';

const CGI_BIN = fileURLToPath(new URL('../../cgi-bin/', import.meta.url));
const NAMES = ['hello', 'env', 'form', 'stream', 'fail', 'download', 'redirect', 'status'];
const dir = mkdtempSync(join(tmpdir(), 'cgi-script-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const script = (name: string): string => join(dir, name);

interface Response {
  code: number | null;
  signal: NodeJS.Signals | null;
  status: number;
  headers: Map<string, string>;
  body: Buffer;
  raw: Buffer;
  stderr: string;
  /** arrivals are the times (ms since spawn) at which stdout chunks arrived. */
  arrivals: number[];
}

interface RunOptions {
  query?: string;
  method?: string;
  pathInfo?: string;
  env?: Record<string, string>;
  /** body is written to stdin: bytes at once, or a generator of chunks (streamed). */
  body?: Buffer | (() => Iterable<Buffer>);
  /** onSpawn can act on the running child (kill it, close its stdout). */
  onSpawn?: (child: ReturnType<typeof spawn>) => void;
}

function cgiEnv(name: string, o: RunOptions): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    GATEWAY_INTERFACE: 'CGI/1.1',
    SERVER_SOFTWARE: 'cgi-script-test',
    SERVER_NAME: 'localhost',
    SERVER_PORT: '8080',
    SERVER_PROTOCOL: 'HTTP/1.1',
    REMOTE_ADDR: '127.0.0.1',
    HTTP_HOST: 'localhost:8080',
    REQUEST_METHOD: o.method ?? 'GET',
    SCRIPT_NAME: `/cgi-bin/${name}`,
    PATH_INFO: o.pathInfo ?? '',
    QUERY_STRING: o.query ?? '',
    ...o.env,
  };
}

// parseCgi splits a CGI response (RFC 3875 §6.2): header lines, a blank line, the body.
function parseCgi(raw: Buffer): { status: number; headers: Map<string, string>; body: Buffer } {
  const at = raw.indexOf('\r\n\r\n');
  if (at < 0) return { status: 0, headers: new Map(), body: raw };
  const headers = new Map<string, string>();
  for (const line of raw.subarray(0, at).toString('latin1').split('\r\n')) {
    const colon = line.indexOf(':');
    headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
  }
  const status = Number(/^(\d{3})/.exec(headers.get('status') ?? '')?.[1] ?? 0);
  return { status, headers, body: raw.subarray(at + 4) };
}

function run(name: string, o: RunOptions = {}): Promise<Response> {
  const t0 = Date.now();
  const child = spawn(script(name), [], { env: cgiEnv(name, o), cwd: dir });
  const out: Buffer[] = [];
  const arrivals: number[] = [];
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    out.push(d);
    arrivals.push(Date.now() - t0);
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  child.stdin.on('error', () => undefined); // the script may exit without reading everything
  o.onSpawn?.(child);
  void (async () => {
    if (typeof o.body === 'function') {
      for (const chunk of o.body()) {
        if (!child.stdin.write(chunk)) await new Promise((r) => child.stdin.once('drain', r));
      }
      child.stdin.end();
    } else {
      child.stdin.end(o.body ?? Buffer.alloc(0));
    }
  })();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} did not finish in time; stderr: ${stderr}`));
    }, 30_000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const raw = Buffer.concat(out);
      resolve({ code, signal, ...parseCgi(raw), raw, stderr, arrivals });
    });
  });
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const pattern = (n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => i % 256));

describe('bundled cgi-bin scripts run directly', { timeout: 120_000 }, () => {
  before(async () => {
    await Promise.all(
      NAMES.map((n) => bundleApp({ app: join(CGI_BIN, `${n}.ts`), outFile: script(n) })),
    );
  });

  test('each script is one executable file without yargs, esbuild or server code', () => {
    for (const n of NAMES) {
      const text = readFileSync(script(n), 'utf8');
      assert.ok(text.startsWith('#!/usr/bin/env node\n'), n);
      assert.equal(statSync(script(n)).mode & 0o777, 0o755, n);
      assert.ok(!/yargs|esbuild/.test(text), `${n}: no CLI code`);
      for (const mod of ['http', 'https', 'net', 'child_process', 'cluster']) {
        assert.ok(!new RegExp(`require\\("(node:)?${mod}"\\)`).test(text), `${n}: requires ${mod}`);
      }
    }
  });

  test('hello: Status line, headers with Content-Length, body; nothing on stderr', async () => {
    const r = await run('hello');
    assert.equal(r.code, 0);
    assert.equal(
      r.raw.toString(),
      'Status: 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 14\r\n\r\nHello, world!\n',
    );
    assert.equal(r.stderr, '');
  });

  test('hello with HEAD: the headers only', async () => {
    const r = await run('hello', { method: 'HEAD' });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-length'), '14');
    assert.equal(r.body.length, 0);
  });

  test('env: PATH_INFO with UTF-8 and the query are shown, HTML-escaped', async () => {
    const r = await run('env', { pathInfo: '/caf\u00e9/a b', query: 'x=<script>&y=%C3%A9' });
    assert.equal(r.status, 200);
    const html = r.body.toString('utf8');
    assert.match(html, /<tr><th>PATH_INFO<\/th><td>\/café\/a b<\/td><\/tr>/);
    assert.match(html, /<th>QUERY_STRING<\/th><td>x=&#60;script&#62;&#38;y=%C3%A9<\/td>/);
    assert.ok(!html.includes('<script>'));
    assert.match(html, /<th>gateway\.run_once<\/th><td>true<\/td>/);
    assert.match(html, /<th>gateway\.input<\/th><td>input stream: read\(\)/);
  });

  test('a broken CGI environment: one line on stderr, nothing on stdout, exit 2', async () => {
    const r = await run('hello', { env: { REQUEST_METHOD: '' } });
    assert.equal(r.code, 2);
    assert.equal(r.raw.length, 0);
    assert.equal(r.stderr, 'cgi: REQUEST_METHOD is not set; this is not a CGI request\n');
  });

  describe('form', () => {
    test('GET with a query', async () => {
      const r = await run('form', { query: 'q=hello+world&format=json' });
      const json = JSON.parse(r.body.toString());
      assert.deepEqual(json.query, [
        { name: 'q', value: 'hello world' },
        { name: 'format', value: 'json' },
      ]);
    });

    test('GET renders the forms as HTML', async () => {
      const r = await run('form', { query: 'q=%3Cb%3E' });
      assert.equal(r.headers.get('content-type'), 'text/html; charset=utf-8');
      assert.match(r.body.toString(), /<td>q<\/td><td>&#60;b&#62;<\/td>/);
      assert.match(r.body.toString(), /enctype="multipart\/form-data"/);
    });

    test('urlencoded POST', async () => {
      const body = Buffer.from('name=Ada+Lovelace&comment=caf%C3%A9+%26+more');
      const r = await run('form', {
        method: 'POST',
        query: 'format=json',
        body,
        env: {
          CONTENT_TYPE: 'application/x-www-form-urlencoded',
          CONTENT_LENGTH: String(body.length),
        },
      });
      assert.equal(r.status, 200, r.stderr);
      assert.deepEqual(JSON.parse(r.body.toString()).fields, [
        { name: 'name', value: 'Ada Lovelace' },
        { name: 'comment', value: 'café & more' },
      ]);
    });

    test('multipart upload: each file name, size and SHA-256', async () => {
      const b = 'XyZzy0123';
      const f1 = pattern(300_000);
      const f2 = Buffer.from(`--${b}\r\nnot a boundary, almost\r\n`);
      const body = Buffer.concat([
        Buffer.from(`--${b}\r\nContent-Disposition: form-data; name="title"\r\n\r\nMy files\r\n`),
        Buffer.from(
          `--${b}\r\nContent-Disposition: form-data; name="upload"; filename="bytes.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`,
        ),
        f1,
        Buffer.from(
          `\r\n--${b}\r\nContent-Disposition: form-data; name="upload"; filename="caf\u00e9.txt"\r\nContent-Type: text/plain\r\n\r\n`,
        ),
        f2,
        Buffer.from(`\r\n--${b}--\r\n`),
      ]);
      const r = await run('form', {
        method: 'POST',
        query: 'format=json',
        body,
        env: {
          CONTENT_TYPE: `multipart/form-data; boundary=${b}`,
          CONTENT_LENGTH: String(body.length),
        },
      });
      assert.equal(r.status, 200, r.stderr);
      const json = JSON.parse(r.body.toString());
      assert.deepEqual(json.fields, [{ name: 'title', value: 'My files' }]);
      assert.deepEqual(json.files, [
        {
          name: 'upload',
          filename: 'bytes.bin',
          contentType: 'application/octet-stream',
          size: f1.length,
          sha256: sha256(f1),
        },
        {
          name: 'upload',
          filename: 'café.txt',
          contentType: 'text/plain',
          size: f2.length,
          sha256: sha256(f2),
        },
      ]);
    });

    test('a malformed multipart body is a 400', async () => {
      const body = Buffer.from('--B\r\nContent-Disposition: form-data; name="a"\r\n\r\nno end');
      const r = await run('form', {
        method: 'POST',
        body,
        env: {
          CONTENT_TYPE: 'multipart/form-data; boundary=B',
          CONTENT_LENGTH: String(body.length),
        },
      });
      assert.equal(r.status, 400);
      assert.match(r.stderr, /MULTIPART_ERR_MALFORMED/);
    });

    // Big POSTs streamed into the script in 64 KiB writes; the script hashes the body as it
    // arrives. Its peak RSS (reported by the form app) grows by read buffers not yet collected
    // (V8 frees them in batches), never by the body: 100 MB costs no more than 10 MB.
    function* megabytes(n: number): Iterable<Buffer> {
      const block = pattern(64 * 1024);
      for (let sent = 0; sent < n * 1024 * 1024; sent += block.length) yield block;
    }
    const hashOf = (n: number): string => {
      const h = createHash('sha256');
      for (const b of megabytes(n)) h.update(b);
      return h.digest('hex');
    };
    const peakRss = async (mb: number, env: Record<string, string>): Promise<number> => {
      const r = await run('form', {
        method: 'POST',
        query: 'format=json',
        body: () => megabytes(mb),
        env: { CONTENT_TYPE: 'application/octet-stream', ...env },
      });
      assert.equal(r.status, 200, r.stderr);
      const json = JSON.parse(r.body.toString());
      assert.equal(json.body.size, mb * 1024 * 1024);
      assert.equal(json.body.sha256, hashOf(mb));
      return json.peakRssKiB as number;
    };

    for (const [label, lengthEnv] of [
      ['with CONTENT_LENGTH', (mb: number) => ({ CONTENT_LENGTH: String(mb * 1024 * 1024) })],
      ['chunked, no CONTENT_LENGTH (mod_cgid)', () => ({ HTTP_TRANSFER_ENCODING: 'chunked' })],
    ] as const) {
      test(`10 MB and 100 MB POSTs ${label} are read as streams: RSS stays bounded`, async (t) => {
        const base = await peakRss(0, lengthEnv(0));
        const ten = (await peakRss(10, lengthEnv(10))) - base;
        const hundred = (await peakRss(100, lengthEnv(100))) - base;
        t.diagnostic(
          `peak RSS ${base} KiB at rest; +${ten} KiB for 10 MB; +${hundred} KiB for 100 MB`,
        );
        // Holding the body would add at least the body's size. At 10 MB the read buffers V8 has
        // not collected yet come close to that (+11.5 MB seen in one CI run), so the bound is
        // tested where the two differ by far: 100 MB must cost no more than 10 MB plus slack.
        assert.ok(hundred < 40 * 1024, `100 MB POST: peak RSS grew by ${hundred} KiB`);
        assert.ok(hundred - ten < 30 * 1024, `100 MB grew ${hundred} KiB, 10 MB ${ten} KiB`);
      });
    }
  });

  test('stream: chunks leave the script as they are produced', async () => {
    const r = await run('stream', { query: 'n=4&ms=300' });
    assert.equal(r.code, 0);
    assert.equal(
      r.body.toString().replace(/ at \d+ ms/g, ''),
      'chunk 1 of 4\nchunk 2 of 4\nchunk 3 of 4\nchunk 4 of 4\n',
    );
    assert.ok(!r.headers.has('content-length'));
    // Buffered until the end, everything would arrive at once; streamed, it spans ~900 ms.
    const spread = r.arrivals[r.arrivals.length - 1]! - r.arrivals[0]!;
    assert.ok(r.arrivals.length >= 4, `${r.arrivals.length} reads`);
    assert.ok(spread >= 700, `chunks arrived within ${spread} ms`);
  });

  test('stream: SIGTERM from the web server ends the script at once', async () => {
    const t0 = Date.now();
    const r = await run('stream', {
      query: 'n=50&ms=200',
      onSpawn: (child) => {
        child.stdout!.once('data', () => setTimeout(() => child.kill('SIGTERM'), 100));
      },
    });
    assert.equal(r.signal, 'SIGTERM');
    assert.ok(Date.now() - t0 < 5000);
    assert.equal(r.stderr, '');
  });

  test('fail: a generic 500 to the client, the stack in the error log, exit 1', async () => {
    const r = await run('fail');
    assert.equal(r.code, 1);
    assert.equal(r.status, 500);
    assert.equal(r.body.toString(), '500 Internal Server Error\n');
    assert.match(r.stderr, /Error: fail\.ts: this app fails on purpose \(before headers\)\n\s+at /);
  });

  test('fail?after=1: the response is cut off after the first chunk, exit 1', async () => {
    const r = await run('fail', { query: 'after=1' });
    assert.equal(r.code, 1);
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'the first chunk arrives, then the app fails\n');
    assert.match(r.stderr, /after headers/);
  });

  test('download: 1 MiB byte-exact by default; ?size=N; a bad size is a 400', async () => {
    const r = await run('download');
    assert.equal(r.headers.get('content-length'), String(1024 * 1024));
    assert.equal(sha256(r.body), sha256(pattern(1024 * 1024)));
    const odd = await run('download', { query: 'size=70001' });
    assert.deepEqual(odd.body, pattern(70001));
    const zero = await run('download', { query: 'size=0' });
    assert.equal(zero.body.length, 0);
    assert.equal(zero.headers.get('content-length'), '0');
    assert.equal((await run('download', { query: 'size=-1' })).status, 400);
  });

  test('download: a reader that goes away (EPIPE) ends the script quietly with exit 0', async () => {
    const r = await run('download', {
      query: `size=${512 * 1024 * 1024}`,
      onSpawn: (child) => child.stdout!.once('data', () => child.stdout!.destroy()),
    });
    assert.equal(r.code, 0);
    assert.equal(r.signal, null);
    assert.equal(r.stderr, '');
  });

  test('redirect: 302 with an absolute Location; only local paths are followed', async () => {
    const r = await run('redirect');
    assert.equal(r.status, 302);
    assert.equal(r.headers.get('location'), 'http://localhost:8080/cgi-bin/hello');
    const to = await run('redirect', { query: 'to=/cgi-bin/env/x' });
    assert.equal(to.headers.get('location'), 'http://localhost:8080/cgi-bin/env/x');
    const evil = await run('redirect', { query: 'to=//evil.example/' });
    assert.equal(evil.headers.get('location'), 'http://localhost:8080/cgi-bin/hello');
  });

  test('status: ?code=NNN, no body for 204 and 304, 400 for a bad code', async () => {
    const teapot = await run('status', { query: 'code=418' });
    assert.equal(teapot.raw.toString().split('\r\n')[0], "Status: 418 I'm a teapot");
    assert.equal(teapot.body.toString(), "418 I'm a teapot\n");
    for (const code of [204, 304]) {
      const r = await run('status', { query: `code=${code}` });
      assert.equal(r.status, code);
      assert.equal(r.body.length, 0);
    }
    assert.equal((await run('status', { query: 'code=99' })).status, 400);
    assert.equal((await run('status', { query: 'code=503' })).status, 503);
  });
});
