// Unit tests of the CGI child (src/cgi/child.ts) run in-process: stdin, stdout and stderr are
// temp files, so every byte the script would send to the web server can be checked.
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { CGI_EXIT, formatCgiHeaders, runCgi } from '../../src/cgi/child.js';
import type { MetaVariables } from '../../src/cgi/environ.js';
import type { GatewayApp } from '../../src/gateway/types.js';

const dir = mkdtempSync(join(tmpdir(), 'cgi-child-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let seq = 0;

interface Ran {
  code: number;
  stdout: Buffer;
  stderr: string;
}

const BASE: MetaVariables = {
  GATEWAY_INTERFACE: 'CGI/1.1',
  REQUEST_METHOD: 'GET',
  SCRIPT_NAME: '/cgi-bin/t',
  SERVER_NAME: 'localhost',
  SERVER_PORT: '80',
  SERVER_PROTOCOL: 'HTTP/1.1',
};

async function run(
  app: GatewayApp,
  env: MetaVariables,
  stdin: Uint8Array = new Uint8Array(),
): Promise<Ran> {
  const n = ++seq;
  const paths = ['in', 'out', 'err'].map((s) => join(dir, `${n}.${s}`)) as [string, string, string];
  writeFileSync(paths[0], stdin);
  const fds = [openSync(paths[0], 'r'), openSync(paths[1], 'w'), openSync(paths[2], 'w')];
  try {
    const code = await runCgi(app, { env, stdinFd: fds[0], stdoutFd: fds[1], stderrFd: fds[2] });
    return { code, stdout: readFileSync(paths[1]), stderr: readFileSync(paths[2], 'utf8') };
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}

// splitResponse cuts a CGI response at the blank line (RFC 3875 §6.2).
function splitResponse(out: Buffer): { head: string; body: Buffer } {
  const at = out.indexOf('\r\n\r\n');
  assert.ok(at >= 0, `no header block in ${JSON.stringify(out.toString('latin1').slice(0, 200))}`);
  return { head: out.subarray(0, at).toString('latin1'), body: out.subarray(at + 4) };
}

const echoBody: GatewayApp = async (environ, start) => {
  const chunks: Uint8Array[] = [];
  for await (const c of environ['gateway.input']) chunks.push(c);
  start('200 OK', [['Content-Type', 'application/octet-stream']]);
  return [Buffer.concat(chunks)];
};

describe('formatCgiHeaders', () => {
  test('renders the Status line, the fields in order and the blank line', () => {
    const b = formatCgiHeaders(404, 'Not Found', [
      ['Content-Type', 'text/plain'],
      ['X-A', 'caf\xe9'],
    ]);
    assert.deepEqual(
      b,
      Buffer.from(
        'Status: 404 Not Found\r\nContent-Type: text/plain\r\nX-A: caf\xe9\r\n\r\n',
        'latin1',
      ),
    );
  });
});

describe('runCgi', () => {
  test('a GET gets a Status line, the headers with Content-Length, and the body', async () => {
    const r = await run((_e, start) => {
      start('200 OK', [['Content-Type', 'text/plain']]);
      return ['hello\n'];
    }, BASE);
    assert.equal(r.code, CGI_EXIT.OK);
    assert.equal(
      r.stdout.toString('latin1'),
      'Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nhello\n',
    );
    assert.equal(r.stderr, '');
  });

  test('the body is binary-safe: every byte value comes out as it went in', async () => {
    const bytes = new Uint8Array(256 * 3).map((_, i) => i % 256);
    const r = await run((_e, start) => {
      start('200 OK', [['Content-Type', 'application/octet-stream']]);
      return (function* () {
        yield bytes.subarray(0, 100);
        yield bytes.subarray(100);
      })();
    }, BASE);
    const { head, body } = splitResponse(r.stdout);
    assert.ok(!/content-length/i.test(head), 'a generator body has no known length');
    assert.deepEqual(new Uint8Array(body), bytes);
  });

  test('the POST body is read byte-exact and never past CONTENT_LENGTH', async () => {
    const sent = Buffer.alloc(200_000).map((_, i) => (i * 7) % 256);
    const r = await run(
      echoBody,
      { ...BASE, REQUEST_METHOD: 'POST', CONTENT_LENGTH: '150000' },
      sent,
    );
    assert.equal(r.code, 0);
    assert.deepEqual(splitResponse(r.stdout).body, sent.subarray(0, 150_000));
  });

  test('no CONTENT_LENGTH with HTTP_TRANSFER_ENCODING=chunked (mod_cgid) reads stdin to EOF', async () => {
    const sent = Buffer.alloc(300_000).map((_, i) => (i * 13) % 251);
    const r = await run(
      echoBody,
      { ...BASE, REQUEST_METHOD: 'POST', HTTP_TRANSFER_ENCODING: 'chunked' },
      sent,
    );
    assert.equal(r.code, 0);
    assert.deepEqual(splitResponse(r.stdout).body, sent);
  });

  test('no CONTENT_LENGTH and no chunked encoding means no body, whatever stdin holds', async () => {
    const r = await run(echoBody, { ...BASE, REQUEST_METHOD: 'POST' }, Buffer.from('ignored'));
    assert.equal(splitResponse(r.stdout).body.length, 0);
  });

  test('a body shorter than CONTENT_LENGTH is a 400, logged', async () => {
    const r = await run(
      echoBody,
      { ...BASE, REQUEST_METHOD: 'POST', CONTENT_LENGTH: '10' },
      Buffer.from('abc'),
    );
    assert.equal(r.code, CGI_EXIT.APP_FAILED);
    assert.match(splitResponse(r.stdout).head, /^Status: 400 /);
    assert.match(r.stderr, /GATEWAY_ERR_INPUT_TRUNCATED/);
  });

  test('a missing REQUEST_METHOD: one line on stderr, nothing on stdout, exit 2, app not run', async () => {
    let ran = false;
    const env = { ...BASE };
    delete env.REQUEST_METHOD;
    const r = await run(() => {
      ran = true;
      return [];
    }, env);
    assert.equal(r.code, CGI_EXIT.BAD_ENVIRONMENT);
    assert.equal(r.stdout.length, 0);
    assert.equal(r.stderr, 'cgi: REQUEST_METHOD is not set; this is not a CGI request\n');
    assert.equal(ran, false);
  });

  test('a broken CONTENT_LENGTH: one line on stderr, nothing on stdout, exit 2', async () => {
    const r = await run(echoBody, { ...BASE, REQUEST_METHOD: 'POST', CONTENT_LENGTH: '12abc' });
    assert.equal(r.code, CGI_EXIT.BAD_ENVIRONMENT);
    assert.equal(r.stdout.length, 0);
    assert.equal(r.stderr.split('\n').length, 2, r.stderr);
    assert.match(r.stderr, /^cgi: CONTENT_LENGTH "12abc" is not a number\n$/);
  });

  test('an app error before headers: a generic 500 out, the stack in the error log, exit 1', async () => {
    const r = await run(() => {
      throw new Error('secret detail');
    }, BASE);
    assert.equal(r.code, CGI_EXIT.APP_FAILED);
    const { head, body } = splitResponse(r.stdout);
    assert.match(head, /^Status: 500 Internal Server Error\r\n/);
    assert.ok(!body.toString().includes('secret'), 'no details to the client');
    assert.match(r.stderr, /secret detail\n\s+at /);
  });

  test('an app error after headers cuts the response off and exits 1', async () => {
    const r = await run((_e, start) => {
      start('200 OK', [['Content-Type', 'text/plain']]);
      return (function* () {
        yield 'first\n';
        throw new Error('mid-body');
      })();
    }, BASE);
    assert.equal(r.code, CGI_EXIT.APP_FAILED);
    assert.equal(splitResponse(r.stdout).body.toString(), 'first\n');
    assert.match(r.stderr, /mid-body/);
  });

  test('HEAD: headers only', async () => {
    const r = await run(
      (_e, start) => {
        start('200 OK', [['Content-Type', 'text/plain']]);
        return ['hello\n'];
      },
      { ...BASE, REQUEST_METHOD: 'HEAD' },
    );
    const { head, body } = splitResponse(r.stdout);
    assert.match(head, /Content-Length: 6/);
    assert.equal(body.length, 0);
  });

  test('an empty body still sends the header block', async () => {
    const r = await run((_e, start) => {
      start('302 Found', [['Location', 'http://example.test/']]);
      return [];
    }, BASE);
    assert.equal(
      r.stdout.toString(),
      'Status: 302 Found\r\nLocation: http://example.test/\r\nContent-Length: 0\r\n\r\n',
    );
  });

  test('the environ says CGI: run_once, multiprocess, not multithread', async () => {
    const r = await run((environ, start) => {
      start('200 OK', [['Content-Type', 'text/plain']]);
      const k = ['gateway.run_once', 'gateway.multiprocess', 'gateway.multithread'] as const;
      return [k.map((n) => `${n}=${String(environ[n])}`).join(' ')];
    }, BASE);
    assert.equal(
      splitResponse(r.stdout).body.toString(),
      'gateway.run_once=true gateway.multiprocess=true gateway.multithread=false',
    );
  });
});
