// The built-in HTTP server front end on real sockets (127.0.0.1 and a unix socket): the request
// reaches the app through the shared translator, the response leaves through the pipeline,
// streaming both ways, keep-alive, limits, disconnects and the graceful stop. The CLI, its
// config file and the signals run as a real `node bin/cgi-bridge.js serve` process (from dist/).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { get, request, type IncomingMessage } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { GatewayApp } from '../../src/gateway/types.js';
import { serveHttp, type HttpServerHandle, type ServeHttpOptions } from '../../src/http/server.js';
import { httpRequest } from '../harness/http-client.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const APP_PATH = join(ROOT, 'test/fixtures/apps/http-app.js');
const BIN = join(ROOT, 'bin/cgi-bridge.js');

interface AppModule {
  default: GatewayApp;
  state: { runs: number; aborts: number; closes: number; lastSignalAborted: boolean };
}
let fixture: AppModule;

const tmp = mkdtempSync(join(tmpdir(), 'cgi-bridge-http-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(what: string, check: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timeout waiting for ${what}`);
    await sleep(10);
  }
}

interface Running {
  handle: HttpServerHandle;
  port: number;
  base: string;
  logs: string[];
}

const running: HttpServerHandle[] = [];
after(async () => {
  for (const h of running) await h.stop();
});

async function start(options: ServeHttpOptions = {}): Promise<Running> {
  const logs: string[] = [];
  const handle = await serveHttp(fixture.default, {
    listen: '127.0.0.1:0',
    signals: false,
    log: (line) => logs.push(line),
    ...options,
  });
  running.push(handle);
  const port = (handle.server.address() as AddressInfo).port;
  return { handle, port, base: `http://127.0.0.1:${port}`, logs };
}

/** RawResponse is one response read off a raw connection. */
interface RawResponse {
  status: number;
  reason: string;
  headers: [string, string][];
  body: Buffer;
}

const header = (r: RawResponse, name: string): string[] =>
  r.headers.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v);

// RawConnection speaks HTTP/1.1 by hand: exact bytes out, responses parsed one by one, so a test
// sees which connection answered and whether the server closed it.
class RawConnection {
  private buf = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  closed = false;

  private constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
    socket.on('error', () => undefined);
  }

  static async open(target: { port: number } | { path: string }): Promise<RawConnection> {
    const socket =
      'port' in target ? connect({ host: '127.0.0.1', port: target.port }) : connect(target);
    await once(socket, 'connect');
    return new RawConnection(socket);
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  private async more(timeoutMs: number): Promise<void> {
    if (this.closed)
      throw new Error(
        `connection closed; have ${JSON.stringify(this.buf.toString('latin1').slice(0, 200))}`,
      );
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('raw read timeout')), timeoutMs);
      this.wake = () => {
        clearTimeout(t);
        this.wake = undefined;
        resolve();
      };
    });
  }

  private async take(n: number, timeoutMs: number): Promise<Buffer> {
    while (this.buf.length < n) await this.more(timeoutMs);
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  private async line(timeoutMs: number): Promise<string> {
    for (;;) {
      const i = this.buf.indexOf('\r\n');
      if (i >= 0) return (await this.take(i + 2, timeoutMs)).toString('latin1').slice(0, -2);
      await this.more(timeoutMs);
    }
  }

  /** readResponse reads one whole response (`head`: the request was HEAD, so no body). */
  async readResponse(head = false, timeoutMs = 5000): Promise<RawResponse> {
    let status: number;
    let reason: string;
    let headers: [string, string][];
    do {
      const m = /^HTTP\/1\.[01] (\d{3}) ?(.*)$/.exec(await this.line(timeoutMs));
      assert.ok(m, 'a status line');
      status = Number(m[1]);
      reason = m[2]!;
      headers = [];
      for (let l = await this.line(timeoutMs); l !== ''; l = await this.line(timeoutMs)) {
        const c = l.indexOf(':');
        headers.push([l.slice(0, c), l.slice(c + 1).trim()]);
      }
    } while (status === 100);
    const r: RawResponse = { status, reason, headers, body: Buffer.alloc(0) };
    if (head || status === 204 || status === 304) return r;
    const cl = header(r, 'content-length')[0];
    if (cl !== undefined) {
      r.body = await this.take(Number(cl), timeoutMs);
    } else if (header(r, 'transfer-encoding')[0] === 'chunked') {
      const parts: Buffer[] = [];
      for (;;) {
        const size = parseInt(await this.line(timeoutMs), 16);
        if (size === 0) {
          await this.line(timeoutMs);
          break;
        }
        parts.push(await this.take(size, timeoutMs));
        await this.line(timeoutMs);
      }
      r.body = Buffer.concat(parts);
    } else {
      while (!this.closed) await this.more(timeoutMs).catch(() => undefined);
      r.body = this.buf;
      this.buf = Buffer.alloc(0);
    }
    return r;
  }

  /** waitClose resolves true once the server closed the connection (false after `ms`). */
  async waitClose(ms = 2000): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.closed && Date.now() < deadline) await this.more(ms).catch(() => undefined);
    return this.closed;
  }

  /** rest is what arrived and was not read as a response. */
  rest(): string {
    return this.buf.toString('latin1');
  }

  destroy(): void {
    this.socket.destroy();
  }
}

function postHead(path: string, length: number, extra = ''): string {
  return `POST ${path} HTTP/1.1\r\nHost: t\r\nContent-Length: ${length}\r\n${extra}\r\n`;
}

function chunked(body: Buffer, size = 1000): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < body.length; i += size) {
    const c = body.subarray(i, i + size);
    parts.push(Buffer.from(`${c.length.toString(16)}\r\n`), c, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from('0\r\n\r\n'));
  return Buffer.concat(parts);
}

before(async () => {
  fixture = (await import(APP_PATH)) as AppModule;
});

describe('HTTP server: requests and responses', () => {
  let s: Running;
  before(async () => {
    s = await start();
  });

  test('GET: the app sees the request as CGI meta-variables and HTTP gateway flags', async () => {
    const r = await httpRequest(`${s.base}/echo?a=1&b=%20`, { headers: { 'X-Test': 'yes' } });
    assert.equal(r.status, 200);
    const { env, body } = JSON.parse(r.text()) as { env: Record<string, unknown>; body: string };
    assert.equal(body, '');
    assert.deepEqual(env, {
      REQUEST_METHOD: 'GET',
      SCRIPT_NAME: '',
      PATH_INFO: '/echo',
      QUERY_STRING: 'a=1&b=%20',
      REQUEST_URI: '/echo?a=1&b=%20',
      SERVER_NAME: '127.0.0.1',
      SERVER_PORT: String(s.port),
      SERVER_PROTOCOL: 'HTTP/1.1',
      REMOTE_ADDR: '127.0.0.1',
      HTTP_HOST: `127.0.0.1:${s.port}`,
      HTTP_X_TEST: 'yes',
      'gateway.url_scheme': 'http',
      'gateway.multithread': true,
      'gateway.multiprocess': false,
      'gateway.run_once': false,
    });
  });

  test('POST: the body reaches gateway.input byte for byte', async () => {
    const r = await httpRequest(`${s.base}/echo`, {
      method: 'POST',
      headers: { 'Content-Type': 'text/plain' },
      body: 'hé=1&x=2',
    });
    const { env, body } = JSON.parse(r.text()) as { env: Record<string, string>; body: string };
    assert.equal(body, 'hé=1&x=2');
    assert.equal(env.CONTENT_LENGTH, String(Buffer.byteLength('hé=1&x=2')));
    assert.equal(env.CONTENT_TYPE, 'text/plain');
  });

  test('POST chunked: read to the end without CONTENT_LENGTH', async () => {
    const body = Buffer.alloc(50_000, 'z');
    async function* gen(): AsyncGenerator<Buffer> {
      yield body.subarray(0, 20_000);
      await sleep(20);
      yield body.subarray(20_000);
    }
    const r = await httpRequest(`${s.base}/upload`, { method: 'POST', body: gen() });
    const j = JSON.parse(r.text()) as { bytes: number };
    assert.equal(j.bytes, 50_000);
  });

  test('a body produced over time leaves chunk by chunk, before the app finishes', async () => {
    const t0 = Date.now();
    const arrivals: number[] = [];
    let text = '';
    await new Promise<void>((resolve, reject) => {
      get(`${s.base}/stream?n=3&ms=300`, (res: IncomingMessage) => {
        assert.equal(res.headers['transfer-encoding'], 'chunked');
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          arrivals.push(Date.now() - t0);
          text += d;
        });
        res.on('end', resolve);
      }).on('error', reject);
    });
    assert.equal(text, 'chunk 0\nchunk 1\nchunk 2\n');
    assert.equal(arrivals.length, 3, `one data event per chunk, got ${arrivals.join(',')}`);
    // The app needs ~600 ms; the first chunk must not wait for it.
    assert.ok(arrivals[0]! < 250, `first chunk after ${arrivals[0]} ms`);
    assert.ok(arrivals[1]! - arrivals[0]! >= 250, `gap ${arrivals[1]! - arrivals[0]!} ms`);
    assert.ok(arrivals[2]! >= 550, `last chunk after ${arrivals[2]} ms`);
  });

  test('Set-Cookie twice survives as two fields', async () => {
    const r = await httpRequest(`${s.base}/cookies`);
    assert.deepEqual(r.headers['set-cookie'], ['a=1; Path=/', 'b=2; Path=/']);
  });

  test('HEAD: no body, but the Content-Length of the array body', async () => {
    const c = await RawConnection.open({ port: s.port });
    c.write('HEAD /array HTTP/1.1\r\nHost: t\r\n\r\nGET /array HTTP/1.1\r\nHost: t\r\n\r\n');
    const head = await c.readResponse(true);
    assert.equal(head.status, 200);
    assert.deepEqual(header(head, 'content-length'), ['12']);
    // The next bytes on the connection are the GET's response: HEAD sent no body.
    const getR = await c.readResponse();
    assert.equal(getR.body.toString(), 'hello world\n');
    c.destroy();
  });

  test('an app error before headers is a 500 with the details in the log only', async () => {
    const r = await httpRequest(`${s.base}/fail`);
    assert.equal(r.status, 500);
    assert.equal(r.text(), '500 Internal Server Error\n');
    assert.ok(s.logs.some((l) => l.includes('http-app: planned failure')));
  });
});

describe('HTTP server: keep-alive', () => {
  let s: Running;
  before(async () => {
    s = await start({ maxBodyBytes: 2_000_000 });
  });

  test('two requests on one connection', async () => {
    const c = await RawConnection.open({ port: s.port });
    c.write('GET /array HTTP/1.1\r\nHost: t\r\n\r\n');
    assert.equal((await c.readResponse()).body.toString(), 'hello world\n');
    c.write('GET /cookies HTTP/1.1\r\nHost: t\r\n\r\n');
    assert.equal((await c.readResponse()).body.toString(), 'two cookies\n');
    assert.equal(c.closed, false);
    c.destroy();
  });

  for (const [name, path] of [
    ['a 1 MB body the app did not read', '/ignore-body'],
    ['a 1 MB body the app read 10 bytes of', '/partial?n=10'],
  ] as const) {
    test(`${name} is drained: the next request on the connection is answered`, async () => {
      const c = await RawConnection.open({ port: s.port });
      const body = Buffer.alloc(1_000_000, 'b');
      c.write(postHead(path, body.length));
      c.write(body);
      const first = await c.readResponse();
      assert.equal(first.status, 200);
      c.write('GET /array HTTP/1.1\r\nHost: t\r\n\r\n');
      const second = await c.readResponse();
      assert.equal(second.body.toString(), 'hello world\n');
      assert.equal(c.rest(), '');
      c.destroy();
    });
  }

  test('an unread chunked body is drained too', async () => {
    const c = await RawConnection.open({ port: s.port });
    c.write('POST /ignore-body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n');
    c.write(chunked(Buffer.alloc(100_000, 'c')));
    assert.equal((await c.readResponse()).status, 200);
    c.write('GET /cookies HTTP/1.1\r\nHost: t\r\n\r\n');
    assert.equal((await c.readResponse()).body.toString(), 'two cookies\n');
    c.destroy();
  });

  test('the body arrives after the response: the next request still parses', async () => {
    const c = await RawConnection.open({ port: s.port });
    c.write(postHead('/ignore-body', 30_000));
    assert.equal((await c.readResponse()).status, 200);
    c.write(Buffer.alloc(30_000, 'l'));
    c.write('GET /array HTTP/1.1\r\nHost: t\r\n\r\n');
    assert.equal((await c.readResponse()).body.toString(), 'hello world\n');
    c.destroy();
  });
});

describe('HTTP server: limits', () => {
  let s: Running;
  before(async () => {
    s = await start({ maxBodyBytes: 1000, maxHeaderSize: 1024, headersTimeout: 300 });
  });

  test('Content-Length over --max-body: 413 without running the app, connection closed', async () => {
    const runs = fixture.state.runs;
    const c = await RawConnection.open({ port: s.port });
    c.write(postHead('/upload', 5000));
    const r = await c.readResponse();
    assert.equal(r.status, 413);
    assert.deepEqual(header(r, 'connection'), ['close']);
    assert.equal(fixture.state.runs, runs);
    assert.equal(await c.waitClose(), true);
  });

  test('Expect: 100-continue over the limit: 413 and no 100 Continue', async () => {
    const c = await RawConnection.open({ port: s.port });
    c.write(postHead('/upload', 5000, 'Expect: 100-continue\r\n'));
    await c.waitClose();
    assert.match(c.rest(), /^HTTP\/1\.1 413 /);
    assert.doesNotMatch(c.rest(), /100 Continue/);
  });

  test('Expect: 100-continue: 100 goes out when the app reads the body', async () => {
    const c = await RawConnection.open({ port: s.port });
    c.write(postHead('/upload', 500, 'Expect: 100-continue\r\n'));
    await until('100 Continue', () => c.rest().startsWith('HTTP/1.1 100 Continue\r\n\r\n'));
    c.write(Buffer.alloc(500, 'e'));
    const r = await c.readResponse();
    assert.equal((JSON.parse(r.body.toString()) as { bytes: number }).bytes, 500);
    c.destroy();
  });

  test('Expect: 100-continue and an app that never reads: no 100, connection closed', async () => {
    const c = await RawConnection.open({ port: s.port });
    c.write(postHead('/ignore-body', 500, 'Expect: 100-continue\r\n'));
    const r = await c.readResponse();
    assert.equal(r.status, 200);
    assert.deepEqual(header(r, 'connection'), ['close']);
    assert.equal(await c.waitClose(), true);
  });

  test('a chunked body passing the limit: 413 from the app that reads it, connection closed', async () => {
    const c = await RawConnection.open({ port: s.port });
    c.write('POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n');
    c.write(chunked(Buffer.alloc(5000, 'x')));
    const r = await c.readResponse();
    assert.equal(r.status, 413);
    assert.equal(r.reason, 'Content Too Large');
    assert.deepEqual(header(r, 'connection'), ['close']);
    assert.equal(await c.waitClose(), true);
  });

  test('an unread chunked body passing the limit closes the connection after the response', async () => {
    const c = await RawConnection.open({ port: s.port });
    c.write('POST /ignore-body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n');
    c.write(chunked(Buffer.alloc(5000, 'x')));
    assert.equal((await c.readResponse()).status, 200);
    assert.equal(await c.waitClose(), true);
  });

  test('headers over --max-header-size: 431', async () => {
    const c = await RawConnection.open({ port: s.port });
    c.write(`GET /array HTTP/1.1\r\nHost: t\r\nX-Big: ${'a'.repeat(2000)}\r\n\r\n`);
    const r = await c.readResponse();
    assert.equal(r.status, 431);
    assert.equal(await c.waitClose(), true);
  });

  test('a bad request line: a clean 400, and the server carries on', async () => {
    const c = await RawConnection.open({ port: s.port });
    c.write('GARBAGE\r\n\r\n');
    const r = await c.readResponse();
    assert.equal(r.status, 400);
    assert.equal(await c.waitClose(), true);
    const ok = await httpRequest(`${s.base}/array`);
    assert.equal(ok.text(), 'hello world\n');
  });

  test('headers not finished within --headers-timeout: 408', async () => {
    const c = await RawConnection.open({ port: s.port });
    c.write('GET /array HTTP/1.1\r\nHost: t\r\n');
    const r = await c.readResponse(false, 3000);
    assert.equal(r.status, 408);
    assert.equal(await c.waitClose(), true);
  });

  test('a CONTENT_LENGTH the translator refuses is answered with its status (400)', async () => {
    const t = await start({ maxBodyBytes: Infinity });
    const c = await RawConnection.open({ port: t.port });
    // 16 digits: node's parser accepts it, the translator's 15-digit rule does not.
    c.write(postHead('/upload', 1_000_000_000_000_000));
    const r = await c.readResponse();
    assert.equal(r.status, 400);
    assert.equal(await c.waitClose(), true);
  });
});

describe('HTTP server: disconnects', () => {
  test('gateway.signal fires and close() runs when the client leaves mid-response', async () => {
    const s = await start();
    const { aborts, closes } = fixture.state;
    await new Promise<void>((resolve, reject) => {
      const req = get(`${s.base}/forever`, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => undefined);
      setTimeout(() => reject(new Error('no data')), 3000).unref();
    });
    await until('abort seen by the app', () => fixture.state.aborts === aborts + 1);
    await until('close() called', () => fixture.state.closes === closes + 1);
    assert.equal(fixture.state.lastSignalAborted, true);
    assert.ok(s.logs.some((l) => l.includes('forever: client went away')));
  });

  test('an error after headers cuts the response: the client sees it broken', async () => {
    const broken: GatewayApp = (_env, start) => {
      start('200 OK', [['Content-Type', 'text/plain']]);
      return (async function* () {
        yield 'partial';
        await sleep(20);
        throw new Error('after headers');
      })();
    };
    const logs: string[] = [];
    const h = await serveHttp(broken, {
      listen: '127.0.0.1:0',
      signals: false,
      log: (l) => logs.push(l),
    });
    running.push(h);
    const port = (h.server.address() as AddressInfo).port;
    const c = await RawConnection.open({ port });
    c.write('GET / HTTP/1.1\r\nHost: t\r\n\r\n');
    assert.equal(await c.waitClose(), true);
    // The chunk went out, the chunked body's last-chunk (0 CRLF CRLF) never did.
    assert.match(c.rest(), /^HTTP\/1\.1 200 OK\r\n[^]*\r\n7\r\npartial\r\n$/);
    assert.ok(logs.some((l) => l.includes('after headers')));
  });
});

describe('HTTP server: unix socket', () => {
  test('serves on unix:/path with mode 0660 and removes the socket when stopped', async () => {
    const path = join(tmp, 'http.sock');
    const s = await start({ listen: `unix:${path}` });
    assert.equal(s.handle.url, `unix:${path}`);
    assert.equal(statSync(path).mode & 0o777, 0o660);
    assert.ok(s.logs.includes(`serving app on unix:${path}`));
    const body = await new Promise<string>((resolve, reject) => {
      request({ socketPath: path, path: '/echo?x=1', headers: { Host: 'sock' } }, (res) => {
        let t = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (t += d));
        res.on('end', () => resolve(t));
      })
        .on('error', reject)
        .end();
    });
    const env = (JSON.parse(body) as { env: Record<string, string> }).env;
    assert.equal(env.QUERY_STRING, 'x=1');
    assert.equal(env.SERVER_NAME, 'sock');
    await s.handle.stop();
    assert.equal(existsSync(path), false);
  });
});

describe('HTTP server: IPv6 and backpressure', () => {
  test('serves on [::1]:0 and reports the URL with brackets', async (t) => {
    let s: Running;
    try {
      s = await start({ listen: '[::1]:0' });
    } catch (e) {
      t.skip(`no IPv6 loopback here: ${(e as Error).message}`);
      return;
    }
    assert.equal(s.handle.url, `http://[::1]:${s.port}/`);
    const r = await httpRequest(`http://[::1]:${s.port}/echo`);
    const env = (JSON.parse(r.text()) as { env: Record<string, string> }).env;
    assert.equal(env.REMOTE_ADDR, '::1');
    assert.equal(env.SERVER_NAME, '[::1]'); // RFC 3875 §4.1.14 keeps an IPv6 literal bracketed
  });

  test('a client that does not read holds the app back (write waits for drain)', async () => {
    let produced = 0;
    const block = Buffer.alloc(256 * 1024, 'p');
    const big: GatewayApp = (_env, start) => {
      start('200 OK', [['Content-Type', 'application/octet-stream']]);
      return (function* () {
        for (; produced < 200; produced++) yield block; // 50 MiB if nothing held it back
      })();
    };
    const h = await serveHttp(big, { listen: '127.0.0.1:0', signals: false, log: () => undefined });
    running.push(h);
    const port = (h.server.address() as AddressInfo).port;
    const c = await RawConnection.open({ port });
    c.socket.pause();
    c.write('GET / HTTP/1.1\r\nHost: t\r\n\r\n');
    await sleep(300);
    const held = produced;
    // Socket buffers on both sides hold a few MiB at most; the app must be waiting, not done.
    assert.ok(
      held > 0 && held < 100,
      `the app produced ${held} blocks while the client read nothing`,
    );
    await sleep(200);
    assert.equal(produced, held, 'the app stays suspended while the client does not read');
    // Read on without keeping anything: the app runs to its end.
    c.socket.removeAllListeners('data');
    c.socket.on('data', () => undefined);
    c.socket.resume();
    await until('the whole body', () => produced === 200, 10_000);
    c.destroy();
  });
});

describe('HTTP server: graceful stop', () => {
  test('stop(): in-flight requests finish, idle keep-alive connections close, new ones are refused', async () => {
    const order: string[] = [];
    const s = await start({
      hooks: {
        startup: () => void order.push('startup'),
        shutdown: () => void order.push('shutdown'),
      },
    });
    assert.deepEqual(order, ['startup']);
    const idle = await RawConnection.open({ port: s.port });
    idle.write('GET /array HTTP/1.1\r\nHost: t\r\n\r\n');
    await idle.readResponse();
    const busy = await RawConnection.open({ port: s.port });
    busy.write('GET /slow?ms=400 HTTP/1.1\r\nHost: t\r\n\r\n');
    await sleep(100);
    const stopped = s.handle.stop().then(() => order.push('stopped'));
    assert.equal(await idle.waitClose(500), true, 'the idle connection is closed at once');
    const r = await busy.readResponse();
    assert.equal(r.body.toString(), 'slow done\n');
    assert.deepEqual(header(r, 'connection'), ['close']);
    await stopped;
    assert.deepEqual(order, ['startup', 'shutdown', 'stopped']);
    await assert.rejects(RawConnection.open({ port: s.port }), /ECONNREFUSED/);
  });

  test('the graceful timeout cuts requests that take longer', async () => {
    const s = await start({ gracefulTimeout: 200 });
    const c = await RawConnection.open({ port: s.port });
    c.write('GET /slow?ms=3000 HTTP/1.1\r\nHost: t\r\n\r\n');
    await sleep(50);
    const t0 = Date.now();
    await s.handle.stop();
    const took = Date.now() - t0;
    assert.ok(took >= 150 && took < 1500, `stop took ${took} ms`);
    assert.equal(await c.waitClose(500), true);
    assert.ok(s.logs.includes('graceful timeout: 1 request(s) cut off'));
  });
});

// The CLI as a real process: `node bin/cgi-bridge.js serve`, run from the compiled dist/.
interface ServeProcess {
  child: ChildProcess;
  port: number;
  stderr: () => string;
  exited: Promise<[number | null, NodeJS.Signals | null]>;
}

async function startCli(
  args: string[],
  nodeArgs: string[] = [],
  listenAt = '127.0.0.1:0',
): Promise<ServeProcess> {
  assert.ok(
    existsSync(join(ROOT, 'dist/src/cli/main.js')),
    'dist/ is missing: run `npm run build` (or npx tsc -p tsconfig.build.json) first',
  );
  const child = spawn(
    process.execPath,
    [...nodeArgs, BIN, 'serve', APP_PATH, '--listen', listenAt, ...args],
    {
      cwd: ROOT,
      env: { PATH: process.env.PATH },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  let port = 0;
  await until(
    'the serving line',
    () => {
      const m = /cgi-bridge: serving \S+ on (?:http:\/\/127\.0\.0\.1:(\d+)\/|unix:)/.exec(err);
      if (m) port = Number(m[1] ?? -1);
      if (child.exitCode !== null) throw new Error(`serve exited: ${err}`);
      return port !== 0;
    },
    10_000,
  );
  return { child, port, stderr: () => err, exited };
}

describe('cgi-bridge serve (CLI process)', () => {
  const children: ChildProcess[] = [];
  after(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });

  test('SIGTERM during an in-flight request: it finishes, then exit 0 after shutdown()', async () => {
    const p = await startCli([]);
    children.push(p.child);
    const c = await RawConnection.open({ port: p.port });
    c.write('GET /slow?ms=700 HTTP/1.1\r\nHost: t\r\n\r\n');
    await sleep(150);
    p.child.kill('SIGTERM');
    const r = await c.readResponse();
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'slow done\n');
    const [code, signal] = await p.exited;
    assert.deepEqual([code, signal], [0, null]);
    const lines = p.stderr().trim().split('\n');
    assert.equal(lines[0], 'http-app: startup');
    assert.match(lines[1]!, /^cgi-bridge: serving .*http-app\.js on http:\/\/127\.0\.0\.1:\d+\/$/);
    assert.match(lines[2]!, /^cgi-bridge: SIGTERM: stopping \(in-flight requests: 1\)$/);
    assert.equal(lines[3], 'http-app: shutdown');
  });

  test('a second signal cuts in-flight requests at once', async () => {
    const p = await startCli([]);
    children.push(p.child);
    const c = await RawConnection.open({ port: p.port });
    c.write('GET /slow?ms=5000 HTTP/1.1\r\nHost: t\r\n\r\n');
    await sleep(150);
    const t0 = Date.now();
    p.child.kill('SIGTERM');
    await sleep(100);
    p.child.kill('SIGINT');
    assert.deepEqual(await p.exited, [0, null]);
    assert.ok(Date.now() - t0 < 2000, `exit took ${Date.now() - t0} ms`);
    assert.equal(await c.waitClose(), true);
    assert.doesNotMatch(c.rest(), /slow done/);
  });

  test('--listen unix:/path --socket-mode 600', async () => {
    const path = join(tmp, 'cli.sock');
    const p = await startCli(['--socket-mode', '600'], [], `unix:${path}`);
    children.push(p.child);
    assert.match(p.stderr(), new RegExp(`serving \\S+ on unix:${path}\\n`));
    assert.equal(statSync(path).mode & 0o777, 0o600);
    const c = await RawConnection.open({ path });
    c.write('GET /array HTTP/1.1\r\nHost: t\r\n\r\n');
    assert.equal((await c.readResponse()).body.toString(), 'hello world\n');
    c.destroy();
    p.child.kill('SIGTERM');
    assert.deepEqual(await p.exited, [0, null]);
    assert.equal(existsSync(path), false);
  });

  test('a 10 MB POST is streamed: the server RSS does not grow by the body size', async () => {
    // --expose-gc: the app collects garbage before each RSS sample, so RSS shows live memory.
    const p = await startCli([], ['--expose-gc']);
    children.push(p.child);
    const base = `http://127.0.0.1:${p.port}`;
    const rss0 = (JSON.parse((await httpRequest(`${base}/rss`)).text()) as { rss: number }).rss;
    const total = 10 * 1024 * 1024;
    const block = Buffer.alloc(64 * 1024, 'r');
    async function* body(): AsyncGenerator<Buffer> {
      for (let sent = 0; sent < total; sent += block.length) yield block;
    }
    const r = await httpRequest(`${base}/upload`, {
      method: 'POST',
      headers: { 'Content-Length': String(total) },
      body: body(),
      timeoutMs: 30_000,
    });
    const j = JSON.parse(r.text()) as {
      bytes: number;
      chunks: number;
      rssStart: number;
      rssPeak: number;
    };
    const rss1 = (JSON.parse((await httpRequest(`${base}/rss`)).text()) as { rss: number }).rss;
    assert.equal(j.bytes, total);
    assert.ok(j.chunks > 10, `the body arrived in ${j.chunks} chunks`);
    const growth = Math.max(j.rssPeak, rss1) - rss0;
    console.log(
      `10 MB POST: rss before ${(rss0 / 2 ** 20).toFixed(1)} MiB, peak growth ${(growth / 2 ** 20).toFixed(1)} MiB`,
    );
    assert.ok(growth < total / 2, `RSS grew by ${growth} bytes for a ${total}-byte body`);
    p.child.kill('SIGTERM');
    assert.deepEqual(await p.exited, [0, null]);
  });

  test('--config (.ini) and --env reach the server and the app', async () => {
    const ini = join(tmp, 'serve.ini');
    writeFileSync(ini, '[cgi-bridge]\nmax-body = 100\nenv = GREETING=hello\nenv = OTHER=x\n');
    const p = await startCli(['--config', ini]);
    children.push(p.child);
    const base = `http://127.0.0.1:${p.port}`;
    assert.equal((await httpRequest(`${base}/process-env?name=GREETING`)).text(), 'hello\n');
    const big = await httpRequest(`${base}/upload`, { method: 'POST', body: 'x'.repeat(200) });
    assert.equal(big.status, 413);
    p.child.kill('SIGINT');
    assert.deepEqual(await p.exited, [0, null]);
    assert.match(p.stderr(), /SIGINT: stopping/);
  });
});
