// Flow-control tests of the FastCGI responder: a body streamed with a bounded buffer (the socket
// paused for a lone request, a per-request bound when multiplexed), an app answering without
// reading its body, output backpressure, and the hold policy's effect on early answers.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';

import { encodeParams } from '../../src/fastcgi/params.js';
import {
  FCGI_ABORT_REQUEST,
  FCGI_BEGIN_REQUEST,
  FCGI_FILTER,
  FCGI_KEEP_CONN,
  FCGI_PARAMS,
  FCGI_RESPONDER,
  FCGI_STDIN,
} from '../../src/fastcgi/protocol.js';
import { encodeBeginRequest, encodeRecord, encodeStream } from '../../src/fastcgi/records.js';
import { FCGI_APP_STATUS } from '../../src/fastcgi/responder.js';
import type { GatewayApp, InputStream } from '../../src/gateway/types.js';
import {
  defaultParams,
  requestStream,
  settled,
  splitHead,
  type TestClient,
  withClient,
} from './fastcgi-responder-helpers.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function post(path: string, length: number): [string, string][] {
  return defaultParams('POST', path, [['CONTENT_LENGTH', String(length)]]);
}

// head sends FCGI_BEGIN_REQUEST and the whole FCGI_PARAMS stream of request `id`.
function head(c: TestClient, id: number, params: [string, string][], keepConn = true): void {
  c.send(encodeBeginRequest(id, FCGI_RESPONDER, keepConn ? FCGI_KEEP_CONN : 0));
  c.send(encodeStream(FCGI_PARAMS, id, encodeParams(params), { end: true }));
}

async function readAll(input: InputStream): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const chunk of input) parts.push(chunk);
  return Buffer.concat(parts);
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

const appDone: string[] = [];
const app: GatewayApp = async (environ, start) => {
  const path = environ.PATH_INFO;
  if (path === '/ignore-body') {
    start('200 OK', [['Content-Type', 'text/plain']]);
    appDone.push(path);
    return ['answered early'];
  }
  if (path === '/slow-reader') {
    // QUERY_STRING: how long to wait before reading, or 'gate' to wait for the test.
    if (environ.QUERY_STRING === 'gate') await gate.promise;
    else await sleep(Number(environ.QUERY_STRING || '300'));
    const body = await readAll(environ['gateway.input']);
    start('200 OK', []);
    return [`${body.length} ${sha(body)}`];
  }
  if (path === '/big-response') {
    const write = start('200 OK', [['Content-Type', 'application/octet-stream']]);
    const chunk = Buffer.alloc(64 * 1024, 7);
    for (let i = 0; i < 256; i++) {
      await write(chunk);
      progress.written += chunk.length;
    }
    return [];
  }
  if (path === '/data-first') {
    // A Filter that reads its data stream before its stdin.
    const data = await readAll(environ['gateway.data'] as InputStream);
    const stdin = await readAll(environ['gateway.input']);
    start('200 OK', []);
    return [`${data.length} ${stdin.length}`];
  }
  if (path === '/fail-while-held') {
    start('200 OK', []);
    return (async function* () {
      yield 'partial';
      throw new Error('late failure');
    })();
  }
  start('200 OK', []);
  return ['hello'];
};
const progress = { written: 0 };
const gate = { open: (): void => undefined, promise: Promise.resolve() };
function closeGate(): void {
  gate.promise = new Promise((resolve) => (gate.open = resolve));
}

describe('FastCGI responder: request body flow control', () => {
  test('a lone request whose app does not read yet: the socket is paused, the body is not slurped', async () => {
    await withClient(app, async (c, r) => {
      const body = Buffer.alloc(16 * 1024 * 1024);
      for (let i = 0; i < body.length; i += 4096) body.writeUInt32BE(i, i);
      head(
        c,
        1,
        post('/slow-reader', body.length).map(([k, v]) => [k, k === 'QUERY_STRING' ? '400' : v]),
      );
      c.send(encodeStream(FCGI_STDIN, 1, body, { end: true }));
      const [connection] = r.responder.connections;
      await c.until(() => connection!.paused, 3000, 'the socket to be paused');
      await sleep(250);
      // Paused: the unread body stays bounded (the high-water mark plus at most one socket
      // read), the rest waits in the kernel and in the client.
      assert.equal(connection!.paused, true);
      assert.ok(
        connection!.unreadInput <= 256 * 1024 + 128 * 1024,
        `${connection!.unreadInput} unread bytes buffered`,
      );
      assert.ok(c.socket.writableLength > 4 * 1024 * 1024, 'the client is held back');
      const reply = await c.ended(1, 10_000);
      assert.equal(splitHead(reply.stdout).body.toString(), `${body.length} ${sha(body)}`);
    });
  });

  test('multiplexed: an app that does not keep up loses its input past maxStdinBuffer (413); the others carry on', async () => {
    await withClient(app, { maxStdinBuffer: 256 * 1024 }, async (c, r) => {
      const big = Buffer.alloc(3 * 1024 * 1024, 1);
      closeGate();
      head(
        c,
        1,
        post('/slow-reader', big.length).map(([k, v]) => [k, k === 'QUERY_STRING' ? 'gate' : v]),
      );
      head(
        c,
        2,
        post('/slow-reader', 10).map(([k, v]) => [k, k === 'QUERY_STRING' ? '0' : v]),
      );
      c.send(encodeStream(FCGI_STDIN, 1, big, { end: true }));
      c.send(encodeStream(FCGI_STDIN, 2, Buffer.from('0123456789'), { end: true }));
      // Request 2 is answered while request 1's app still waits: the connection is not paused.
      const second = await c.ended(2, 5000);
      assert.equal(c.reply(1)?.end, undefined);
      gate.open();
      assert.match(splitHead(second.stdout).body.toString(), /^10 /);
      const first = await c.ended(1, 5000);
      assert.equal(splitHead(first.stdout).status, 413);
      assert.match(first.stderr, /maxStdinBuffer/);
      c.close();
      await settled(r.counters);
    });
  });
});

describe('FastCGI responder: flow control and the Filter role', () => {
  test('a Filter reading FCGI_DATA before FCGI_STDIN: the socket is not paused for the stdin it does not read yet', async () => {
    await withClient(app, { stdinHighWaterMark: 64 * 1024 }, async (c) => {
      const stdin = Buffer.alloc(600 * 1024, 1);
      const data = Buffer.alloc(100 * 1024, 2);
      c.send(
        requestStream({
          role: FCGI_FILTER,
          params: defaultParams('POST', '/data-first', [
            ['CONTENT_LENGTH', String(stdin.length)],
            ['FCGI_DATA_LENGTH', String(data.length)],
          ]),
          stdin,
          data,
        }),
      );
      const reply = await c.ended(1, 5000);
      assert.equal(splitHead(reply.stdout).body.toString(), `${data.length} ${stdin.length}`);
    });
  });
});

describe('FastCGI responder: an app answering without reading its body', () => {
  test('hold on: the answer waits for the end of the body (discarded as it arrives), then the next request works', async () => {
    await withClient(app, async (c, r) => {
      const body = Buffer.alloc(8 * 1024 * 1024, 3);
      head(c, 1, post('/ignore-body', body.length));
      appDone.length = 0;
      c.send(encodeStream(FCGI_STDIN, 1, body.subarray(0, 100_000)));
      // The app runs (and answers) while the body is still arriving.
      await c.until(() => appDone.includes('/ignore-body'));
      await sleep(50);
      assert.equal(c.reply(1), undefined, 'nothing leaves before the body is complete');
      c.send(encodeStream(FCGI_STDIN, 1, body.subarray(100_000), { end: true }));
      const reply = await c.ended(1, 5000);
      assert.equal(splitHead(reply.stdout).body.toString(), 'answered early');
      assert.deepEqual(reply.end, { appStatus: 0, protocolStatus: 0 });
      c.responses.forget(1);
      c.send(requestStream({ keepConn: true, params: defaultParams('GET', '/') }));
      assert.equal(splitHead((await c.ended(1)).stdout).body.toString(), 'hello');
      assert.deepEqual(r.logs, []);
      c.close();
      await settled(r.counters);
    });
  });

  test('hold off: the answer and END_REQUEST leave at once; the rest of the body is ignored; the next request works', async () => {
    await withClient(app, { holdResponseUntilBodyRead: false }, async (c, r) => {
      const body = Buffer.alloc(4 * 1024 * 1024, 3);
      head(c, 1, post('/ignore-body', body.length));
      c.send(encodeStream(FCGI_STDIN, 1, body.subarray(0, 100_000)));
      const reply = await c.ended(1);
      assert.equal(splitHead(reply.stdout).body.toString(), 'answered early');
      // A web server that keeps sending the body: those records are ignored (FastCGI spec §3.3).
      c.send(encodeStream(FCGI_STDIN, 1, body.subarray(100_000), { end: true }));
      c.responses.forget(1);
      c.send(requestStream({ keepConn: true, params: defaultParams('GET', '/') }));
      const next = await c.ended(1, 5000);
      assert.equal(splitHead(next.stdout).body.toString(), 'hello');
      assert.deepEqual(r.logs, []);
      c.close();
      await settled(r.counters);
    });
  });

  test('hold on: a lone request paused for its unread body is resumed when the app answers', async () => {
    await withClient(app, { stdinHighWaterMark: 64 * 1024 }, async (c) => {
      const body = Buffer.alloc(24 * 1024 * 1024, 5);
      head(c, 1, post('/ignore-body', body.length));
      c.send(encodeStream(FCGI_STDIN, 1, body, { end: true }));
      const reply = await c.ended(1, 10_000);
      assert.equal(splitHead(reply.stdout).body.toString(), 'answered early');
    });
  });

  test('hold on: an app failing after headers while its response is held gives a clean 500 (app status FAILED)', async () => {
    await withClient(app, async (c) => {
      head(c, 1, post('/fail-while-held', 10));
      c.send(encodeRecord(FCGI_STDIN, 1, Buffer.from('01234')));
      // The error log is not held; the response is.
      await c.until(() => /late failure/.test(c.reply(1)?.stderr ?? ''));
      assert.equal(c.reply(1)!.stdoutBytes, 0);
      c.send(encodeRecord(FCGI_STDIN, 1, Buffer.from('56789')));
      c.send(encodeRecord(FCGI_STDIN, 1));
      const reply = await c.ended(1);
      assert.equal(splitHead(reply.stdout).status, 500);
      assert.ok(!reply.stdout.toString().includes('partial'));
      assert.equal(reply.end!.appStatus, FCGI_APP_STATUS.FAILED);
      assert.match(reply.stderr, /late failure/);
    });
  });

  test('hold on: FCGI_ABORT_REQUEST drops the held response and ends the request at once', async () => {
    await withClient(app, async (c, r) => {
      appDone.length = 0;
      head(c, 1, post('/ignore-body', 100));
      c.send(encodeRecord(FCGI_STDIN, 1, Buffer.from('partial')));
      await c.until(() => appDone.length > 0);
      await sleep(20);
      c.send(encodeRecord(FCGI_ABORT_REQUEST, 1));
      const reply = await c.ended(1);
      assert.equal(reply.stdout.length, 0);
      assert.equal(reply.end!.appStatus, FCGI_APP_STATUS.ABORTED);
      await settled(r.counters);
    });
  });
});

describe('FastCGI responder: output backpressure', () => {
  test('a slow web server holds the app back (write() waits for drain); everything arrives', async () => {
    await withClient(app, async (c) => {
      progress.written = 0;
      c.socket.pause();
      c.send(requestStream({ params: defaultParams('GET', '/big-response') }));
      await sleep(300);
      const total = 256 * 64 * 1024;
      assert.ok(
        progress.written < total,
        `the app wrote ${progress.written} of ${total} bytes while nobody read`,
      );
      c.socket.resume();
      const reply = await c.ended(1, 10_000);
      const { body } = splitHead(reply.stdout);
      assert.equal(body.length, total);
      assert.ok(body.every((b) => b === 7));
      await c.waitClosed();
    });
  });

  test('a BEGIN_REQUEST for an id that is already active is a protocol error: the connection closes, with a log line', async () => {
    await withClient(app, async (c, r) => {
      head(c, 1, post('/slow-reader', 10));
      c.send(encodeRecord(FCGI_BEGIN_REQUEST, 1, Buffer.from([0, 1, 0, 0, 0, 0, 0, 0])));
      await c.waitClosed();
      assert.equal(r.logs.length, 1);
      assert.match(
        r.logs[0]!,
        /FCGI_BEGIN_REQUEST for request 1, which is already active; closing the connection \(1 active request aborted\)/,
      );
      await settled(r.counters);
    });
  });
});
