// Byte-level tests of the FastCGI responder (FastCGI spec §3–§6) over real 127.0.0.1 sockets:
// every record type, roles, management records, FCGI_KEEP_CONN, multiplexing, limits, errors.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { encodeParams } from '../../src/fastcgi/params.js';
import {
  FCGI_ABORT_REQUEST,
  FCGI_AUTHORIZER,
  FCGI_CANT_MPX_CONN,
  FCGI_END_REQUEST,
  FCGI_FILTER,
  FCGI_GET_VALUES_RESULT,
  FCGI_KEEP_CONN,
  FCGI_MAX_CONNS,
  FCGI_MAX_REQS,
  FCGI_MPXS_CONNS,
  FCGI_OVERLOADED,
  FCGI_PARAMS,
  FCGI_REQUEST_COMPLETE,
  FCGI_RESPONDER,
  FCGI_STDERR,
  FCGI_STDIN,
  FCGI_STDOUT,
  FCGI_UNKNOWN_ROLE,
  FCGI_UNKNOWN_TYPE,
} from '../../src/fastcgi/protocol.js';
import {
  decodeGetValuesResult,
  decodeUnknownTypeBody,
  encodeBeginRequest,
  encodeGetValues,
  encodeRecord,
  encodeStream,
} from '../../src/fastcgi/records.js';
import { FCGI_APP_STATUS, createFcgiCounters } from '../../src/fastcgi/responder.js';
import type { Body, Environ, GatewayApp, InputStream } from '../../src/gateway/types.js';
import {
  connectClient,
  defaultParams,
  requestStream,
  settled,
  splitHead,
  startResponder,
  type TestResponder,
  withClient,
} from './fastcgi-responder-helpers.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// What the test app saw, by request path, for assertions on the app side.
const seen = {
  closed: [] as string[],
  aborted: [] as string[],
  environ: undefined as Environ | undefined,
};

async function readAll(input: InputStream): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const chunk of input) parts.push(chunk);
  return Buffer.concat(parts);
}

// One app for most tests, routed by PATH_INFO.
const app: GatewayApp = async (environ, start) => {
  const path = environ.PATH_INFO;
  const signal = environ['gateway.signal'];
  signal.addEventListener('abort', () => seen.aborted.push(path));
  switch (path) {
    case '/hello':
      start('200 OK', [['Content-Type', 'text/plain']]);
      return ['hello'];
    case '/echo': {
      const body = await readAll(environ['gateway.input']);
      start('200 OK', [['Content-Type', 'application/octet-stream']]);
      return [`${environ.QUERY_STRING}:`, body];
    }
    case '/env':
      seen.environ = environ;
      start('200 OK', []);
      return [''];
    case '/stderr':
      environ['gateway.errors'].write('first line\n');
      environ['gateway.errors'].write('second line\n');
      start('200 OK', []);
      return ['logged'];
    case '/fail-after-headers': {
      start('200 OK', [['Content-Type', 'text/plain']]);
      const body = (async function* () {
        yield 'partial ';
        throw new Error('boom after headers');
      })();
      return body;
    }
    case '/fail-before':
      throw new Error('boom before headers');
    case '/wait': {
      // Waits for the body forever (until the request is aborted).
      const body: Body = Object.assign(
        (async function* () {
          await environ['gateway.input'].read();
          yield 'never';
        })(),
        { close: () => void seen.closed.push(path) },
      );
      start('200 OK', []);
      return body;
    }
    case '/hang-after-headers': {
      const write = start('200 OK', []);
      await write('started ');
      await new Promise((resolve) => signal.addEventListener('abort', resolve));
      return [];
    }
    case '/ignore-body':
      start('200 OK', [['Content-Type', 'text/plain']]);
      return ['ignored'];
    case '/filter': {
      const stdin = await readAll(environ['gateway.input']);
      const data = await readAll(environ['gateway.data'] as InputStream);
      start('200 OK', []);
      return [`stdin=${stdin.toString()} data=${data.toString()} len=${environ.FCGI_DATA_LENGTH}`];
    }
    case '/authorize': {
      const input = await environ['gateway.input'].read();
      if (environ.HTTP_AUTHORIZATION === 'Bearer good') {
        start('200 OK', [
          ['Variable-REMOTE_USER', 'alice'],
          ['Variable-AUTH_LEVEL', 'admin'],
        ]);
        return [`input=${input.length}`];
      }
      start('403 Forbidden', [['Content-Type', 'text/plain']]);
      return ['go away\n'];
    }
    default:
      start('404 Not Found', []);
      return ['not found'];
  }
};

function get(path: string, extra: [string, string][] = []): [string, string][] {
  return defaultParams('GET', path, extra);
}

describe('FastCGI responder: the Responder role', () => {
  let r: TestResponder;
  before(async () => {
    r = await startResponder(app, { multiprocess: true });
  });
  after(() => r.close());

  test('a GET: headers and body in one FCGI_STDOUT record, then the stdout end and END_REQUEST, in one write', async () => {
    const c = await connectClient(r.port);
    c.send(requestStream({ params: get('/hello') }));
    const reply = await c.ended(1);
    await c.waitClosed(); // no FCGI_KEEP_CONN: the responder closes
    const types = c.responses.records.map((rec) => [rec.type, rec.content.length]);
    const expectedBody =
      'Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello';
    assert.deepEqual(types, [
      [FCGI_STDOUT, expectedBody.length],
      [FCGI_STDOUT, 0],
      [FCGI_END_REQUEST, 8],
    ]);
    assert.equal(reply.stdout.toString(), expectedBody);
    assert.deepEqual(reply.end, { appStatus: 0, protocolStatus: FCGI_REQUEST_COMPLETE });
    assert.equal(c.raw.length, 1, 'the whole response arrives in one segment');
    // Every record is padded to a multiple of 8 (FastCGI spec §3.3).
    assert.equal(c.output.length % 8, 0);
    await settled(r.counters);
  });

  test('the environ: params as meta-variables, the gateway keys of a FastCGI responder', async () => {
    const c = await connectClient(r.port);
    c.send(
      requestStream({
        params: get('/env', [
          ['HTTP_X_DUP', 'one'],
          ['SCRIPT_FILENAME', '/first'],
          ['SCRIPT_FILENAME', '/second'],
          ['HTTP_HOST', 'example.org'],
        ]),
      }),
    );
    await c.ended(1);
    const env = seen.environ!;
    assert.equal(env.REQUEST_METHOD, 'GET');
    assert.equal(env.PATH_INFO, '/env');
    assert.equal(env.SCRIPT_FILENAME, '/second', 'a repeated param: the last one wins');
    assert.equal(env.HTTP_HOST, 'example.org');
    assert.equal(env['gateway.multithread'], true);
    assert.equal(env['gateway.multiprocess'], true);
    assert.equal(env['gateway.run_once'], false);
    assert.ok(env['gateway.signal'] instanceof AbortSignal);
    assert.equal((await env['gateway.input'].read()).length, 0);
    c.close();
  });

  test('a POST body streams to the app (FCGI_STDIN split over many records)', async () => {
    const c = await connectClient(r.port);
    const body = Buffer.alloc(300_000, 'x');
    body.write('start', 0);
    body.write('end', body.length - 3);
    c.send(
      requestStream({
        params: defaultParams('POST', '/echo?q=1', [['CONTENT_LENGTH', String(body.length)]]),
        stdin: body,
      }),
    );
    const reply = await c.ended(1);
    const { status, body: got } = splitHead(reply.stdout);
    assert.equal(status, 200);
    assert.ok(got.equals(Buffer.concat([Buffer.from('q=1:'), body])));
    // Large output goes in records of at most 65535 bytes each (FastCGI spec §3.3).
    for (const rec of c.responses.records) assert.ok(rec.content.length <= 65535);
    c.close();
  });

  test('gateway.errors goes out as FCGI_STDERR of the request, its stream ended before END_REQUEST', async () => {
    const c = await connectClient(r.port);
    c.send(requestStream({ params: get('/stderr') }));
    const reply = await c.ended(1);
    assert.equal(reply.stderr, 'first line\nsecond line\n');
    assert.equal(reply.stderrEnded, true);
    assert.equal(splitHead(reply.stdout).body.toString(), 'logged');
    const types = c.responses.records.map((rec) => rec.type);
    assert.equal(types.at(-1), FCGI_END_REQUEST);
    assert.ok(types.indexOf(FCGI_STDERR) < types.indexOf(FCGI_END_REQUEST));
    c.close();
  });

  test('an app error before headers: a generic 500, app status 0, details on FCGI_STDERR only', async () => {
    const c = await connectClient(r.port);
    c.send(requestStream({ params: get('/fail-before') }));
    const reply = await c.ended(1);
    const { status, body } = splitHead(reply.stdout);
    assert.equal(status, 500);
    assert.ok(!body.toString().includes('boom'));
    assert.match(reply.stderr, /boom before headers/);
    assert.equal(reply.end!.appStatus, 0);
    c.close();
  });

  test('an app error after headers: the response is cut, END_REQUEST has a non-zero app status, the connection carries on', async () => {
    const c = await connectClient(r.port);
    c.send(requestStream({ keepConn: true, params: get('/fail-after-headers') }));
    const reply = await c.ended(1);
    assert.equal(reply.end!.appStatus, FCGI_APP_STATUS.FAILED);
    assert.equal(reply.end!.protocolStatus, FCGI_REQUEST_COMPLETE);
    assert.equal(splitHead(reply.stdout).body.toString(), 'partial ');
    assert.match(reply.stderr, /boom after headers/);
    assert.deepEqual(reply.after, []);
    c.responses.forget(1);
    c.send(requestStream({ keepConn: true, params: get('/hello') }));
    const next = await c.ended(1);
    assert.equal(splitHead(next.stdout).body.toString(), 'hello');
    assert.equal(c.closed, false);
    c.close();
    await settled(r.counters);
  });

  test('FCGI_KEEP_CONN set: the connection stays open for the next request; unset: it is closed', async () => {
    const c = await connectClient(r.port);
    for (let i = 0; i < 3; i++) {
      c.send(requestStream({ keepConn: true, params: get('/hello') }));
      await c.ended(1);
      c.responses.forget(1);
    }
    await sleep(50);
    assert.equal(c.closed, false);
    c.send(requestStream({ keepConn: false, params: get('/hello') }));
    await c.ended(1);
    await c.waitClosed();
  });
});

describe('FastCGI responder: management records (FastCGI spec §4)', () => {
  test('FCGI_GET_VALUES is answered on id 0 with only the names asked that are known', async () => {
    await withClient(app, { maxConnections: 7, maxConcurrentRequests: 42 }, async (c) => {
      c.send(encodeGetValues([FCGI_MPXS_CONNS, 'FCGI_SOMETHING_ELSE']));
      await c.until(() => c.responses.records.length === 1);
      const [rec] = c.responses.records;
      assert.equal(rec!.type, FCGI_GET_VALUES_RESULT);
      assert.equal(rec!.requestId, 0);
      assert.deepEqual([...decodeGetValuesResult(rec!.content)], [[FCGI_MPXS_CONNS, '1']]);

      c.send(encodeGetValues([FCGI_MAX_CONNS, FCGI_MAX_REQS, FCGI_MPXS_CONNS]));
      await c.until(() => c.responses.records.length === 2);
      assert.deepEqual(
        [...decodeGetValuesResult(c.responses.records[1]!.content)],
        [
          [FCGI_MAX_CONNS, '7'],
          [FCGI_MAX_REQS, '42'],
          [FCGI_MPXS_CONNS, '1'],
        ],
      );
      c.send(encodeGetValues([]));
      await c.until(() => c.responses.records.length === 3);
      assert.equal(c.responses.records[2]!.content.length, 0);
    });
  });

  test('FCGI_MPXS_CONNS is 0 when multiplexing is off', async () => {
    await withClient(app, { multiplex: false }, async (c) => {
      c.send(encodeGetValues([FCGI_MPXS_CONNS]));
      await c.until(() => c.responses.records.length === 1);
      assert.equal(
        decodeGetValuesResult(c.responses.records[0]!.content).get(FCGI_MPXS_CONNS),
        '0',
      );
    });
  });

  test('an unknown management record gets FCGI_UNKNOWN_TYPE and the connection carries on', async () => {
    await withClient(app, async (c, r) => {
      c.send(encodeRecord(99, 0, Buffer.from('whatever')));
      c.send(encodeRecord(FCGI_STDIN, 0, Buffer.from('a stream record on id 0')));
      await c.until(() => c.responses.records.length === 2);
      const [a, b] = c.responses.records;
      assert.equal(a!.type, FCGI_UNKNOWN_TYPE);
      assert.equal(a!.requestId, 0);
      assert.equal(decodeUnknownTypeBody(a!.content), 99);
      assert.equal(decodeUnknownTypeBody(b!.content), FCGI_STDIN);
      c.send(requestStream({ params: get('/hello') }));
      const reply = await c.ended(1);
      assert.equal(splitHead(reply.stdout).body.toString(), 'hello');
      assert.deepEqual(r.logs, []);
    });
  });
});

describe('FastCGI responder: multiplexing and its limits', () => {
  test('three interleaved requests with interleaved FCGI_STDIN each get their own answer', async () => {
    await withClient(app, async (c, r) => {
      const bodies = new Map([
        [1, Buffer.from('one-'.repeat(5000))],
        [2, Buffer.from('two-'.repeat(3000))],
        [3, Buffer.from('three-'.repeat(7000))],
      ]);
      for (const [id, body] of bodies) {
        c.send(encodeBeginRequest(id, FCGI_RESPONDER, FCGI_KEEP_CONN));
        const params = encodeParams(
          defaultParams('POST', `/echo?id=${id}`, [['CONTENT_LENGTH', String(body.length)]]),
        );
        c.send(encodeStream(FCGI_PARAMS, id, params, { end: true }));
      }
      // Interleave the bodies in 1000-byte records, round robin.
      for (let at = 0; at < 42_000; at += 1000) {
        for (const [id, body] of bodies) {
          if (at < body.length) c.send(encodeRecord(FCGI_STDIN, id, body.subarray(at, at + 1000)));
          if (at < body.length && at + 1000 >= body.length) c.send(encodeRecord(FCGI_STDIN, id));
        }
      }
      for (const [id, body] of bodies) {
        const reply = await c.ended(id);
        assert.deepEqual(reply.end, { appStatus: 0, protocolStatus: 0 });
        assert.ok(
          splitHead(reply.stdout).body.equals(Buffer.concat([Buffer.from(`id=${id}:`), body])),
        );
      }
      assert.equal(c.closed, false);
      c.close();
      await settled(r.counters);
    });
  });

  test('a second request without multiplexing: FCGI_CANT_MPX_CONN; the first completes', async () => {
    await withClient(app, { multiplex: false }, async (c, r) => {
      c.send(requestStream({ id: 1, keepConn: true, params: get('/wait'), stdinEnd: false }));
      c.send(requestStream({ id: 2, keepConn: true, params: get('/hello') }));
      const second = await c.ended(2);
      assert.deepEqual(second.end, { appStatus: 0, protocolStatus: FCGI_CANT_MPX_CONN });
      assert.equal(second.stdout.length, 0);
      // Records for the rejected id are ignored; request 1 still runs.
      c.send(encodeRecord(FCGI_STDIN, 2, Buffer.from('ignored')));
      c.send(encodeRecord(FCGI_ABORT_REQUEST, 1));
      const first = await c.ended(1);
      assert.equal(first.end!.appStatus, FCGI_APP_STATUS.ABORTED);
      assert.equal(c.closed, false);
      assert.deepEqual(r.logs, []);
      c.close();
      await settled(r.counters);
    });
  });

  test('past maxRequestsPerConnection: FCGI_OVERLOADED', async () => {
    await withClient(app, { maxRequestsPerConnection: 2 }, async (c, r) => {
      for (const id of [1, 2, 3]) {
        c.send(requestStream({ id, keepConn: true, params: get('/wait'), stdinEnd: false }));
      }
      const third = await c.ended(3);
      assert.equal(third.end!.protocolStatus, FCGI_OVERLOADED);
      assert.equal(c.reply(1)?.end, undefined);
      assert.equal(r.counters.requests, 2);
      c.close();
      await settled(r.counters);
    });
  });

  test('past the process-wide maxConcurrentRequests, shared by all connections: FCGI_OVERLOADED', async () => {
    const counters = createFcgiCounters();
    const r = await startResponder(app, { maxConcurrentRequests: 1, counters });
    try {
      const a = await connectClient(r.port);
      const b = await connectClient(r.port);
      a.send(requestStream({ keepConn: true, params: get('/wait'), stdinEnd: false }));
      await a.until(() => counters.requests === 1);
      b.send(requestStream({ keepConn: true, params: get('/hello') }));
      const reply = await b.ended(1);
      assert.equal(reply.end!.protocolStatus, FCGI_OVERLOADED);
      a.close();
      await settled(counters);
      b.responses.forget(1);
      b.send(requestStream({ keepConn: true, params: get('/hello') }));
      assert.equal((await b.ended(1)).end!.protocolStatus, FCGI_REQUEST_COMPLETE);
      b.close();
    } finally {
      await r.close();
    }
  });

  test('maxConnections: a connection past the limit is closed at once, with a log line', async () => {
    const r = await startResponder(app, { maxConnections: 1 });
    try {
      const a = await connectClient(r.port);
      await a.until(() => r.counters.connections === 1);
      const b = await connectClient(r.port);
      await b.waitClosed();
      assert.equal(r.logs.length, 1);
      assert.match(r.logs[0]!, /maxConnections 1/);
      a.send(requestStream({ params: get('/hello') }));
      assert.equal(splitHead((await a.ended(1)).stdout).status, 200);
    } finally {
      await r.close();
    }
  });
});

describe('FastCGI responder: FCGI_ABORT_REQUEST and lost connections', () => {
  test('FCGI_ABORT_REQUEST fires gateway.signal, closes the body, ends the request with a non-zero app status', async () => {
    seen.closed.length = 0;
    seen.aborted.length = 0;
    await withClient(app, async (c, r) => {
      c.send(
        requestStream({
          keepConn: true,
          params: defaultParams('POST', '/wait', [['CONTENT_LENGTH', '100']]),
          stdin: 'only part',
          stdinEnd: false,
        }),
      );
      await c.until(() => r.counters.requests === 1);
      await sleep(20);
      c.send(encodeRecord(FCGI_ABORT_REQUEST, 1));
      const reply = await c.ended(1);
      assert.deepEqual(reply.end, { appStatus: FCGI_APP_STATUS.ABORTED, protocolStatus: 0 });
      assert.equal(reply.stdout.length, 0);
      await settled(r.counters);
      assert.deepEqual(seen.aborted, ['/wait']);
      assert.deepEqual(seen.closed, ['/wait']);
      // The rest of the body for the aborted id is ignored; the connection is reusable.
      c.send(encodeRecord(FCGI_STDIN, 1, Buffer.from('late')));
      c.send(encodeRecord(FCGI_STDIN, 1));
      c.responses.forget(1);
      c.send(requestStream({ keepConn: true, params: get('/hello') }));
      assert.equal(splitHead((await c.ended(1)).stdout).body.toString(), 'hello');
      assert.deepEqual(c.reply(1)!.after, []);
      assert.deepEqual(r.logs, []);
    });
  });

  test('the web server closing the connection aborts its requests', async () => {
    seen.closed.length = 0;
    seen.aborted.length = 0;
    await withClient(app, async (c, r) => {
      c.send(requestStream({ id: 1, keepConn: true, params: get('/wait'), stdinEnd: false }));
      c.send(requestStream({ id: 2, keepConn: true, params: get('/wait'), stdinEnd: false }));
      await c.until(() => r.counters.requests === 2);
      await sleep(20);
      c.close();
      await settled(r.counters);
      assert.deepEqual(seen.aborted.sort(), ['/wait', '/wait']);
      assert.deepEqual(seen.closed, ['/wait', '/wait']);
      await c.until(() => r.counters.connections === 0);
      assert.deepEqual(r.logs, []);
    });
  });
});

describe('FastCGI responder: graceful shutdown', () => {
  test('an idle kept-alive connection serves one last request within drainGraceMs, then closes', async () => {
    await withClient(app, { drainGraceMs: 2000 }, async (c, r) => {
      await c.until(() => r.responder.connections.size === 1);
      const done = r.responder.shutdown();
      // The web server had already picked this connection for its next request.
      c.send(requestStream({ keepConn: true, params: get('/hello') }));
      const reply = await c.ended(1);
      assert.equal(splitHead(reply.stdout).body.toString(), 'hello');
      await c.waitClosed(); // closed after that request, FCGI_KEEP_CONN notwithstanding
      await done;
      assert.deepEqual(r.logs, []);
    });
  });

  test('an idle connection that gets no request closes when the grace ends; a busy one after its request', async () => {
    const r = await startResponder(app, { drainGraceMs: 200 });
    try {
      const idle = await connectClient(r.port);
      const busy = await connectClient(r.port);
      busy.send(requestStream({ id: 1, keepConn: true, params: get('/wait'), stdinEnd: false }));
      await busy.until(() => r.counters.requests === 1);
      const t0 = Date.now();
      const done = r.responder.shutdown();
      await sleep(100);
      assert.equal(idle.closed, false, 'not before the grace ends');
      await idle.waitClosed();
      assert.ok(Date.now() - t0 >= 190);
      // The busy connection refuses a second (multiplexed) request, finishes the first, closes.
      busy.send(requestStream({ id: 2, keepConn: true, params: get('/hello') }));
      assert.equal((await busy.ended(2)).end!.protocolStatus, FCGI_OVERLOADED);
      assert.equal(busy.closed, false);
      busy.send(encodeRecord(FCGI_STDIN, 1));
      await busy.ended(1);
      await busy.waitClosed();
      await done;
      assert.equal(r.counters.connections, 0);
    } finally {
      await r.close();
    }
  });
});

describe('FastCGI responder: the Authorizer and Filter roles (FastCGI spec §6.3, §6.4)', () => {
  let r: TestResponder;
  before(async () => {
    r = await startResponder(app);
  });
  after(() => r.close());

  test('an Authorizer 200 authorizes; its Variable-* headers are passed on', async () => {
    const c = await connectClient(r.port);
    // FastCGI spec §6.3: params only (no CONTENT_LENGTH, no stdin stream).
    c.send(encodeBeginRequest(1, FCGI_AUTHORIZER));
    c.send(
      encodeStream(
        FCGI_PARAMS,
        1,
        encodeParams(get('/authorize', [['HTTP_AUTHORIZATION', 'Bearer good']])),
        { end: true },
      ),
    );
    const reply = await c.ended(1);
    const { status, headers, body } = splitHead(reply.stdout);
    assert.equal(status, 200);
    assert.equal(headers.get('variable-remote_user'), 'alice');
    assert.equal(headers.get('variable-auth_level'), 'admin');
    assert.equal(body.toString(), 'input=0');
    assert.equal(reply.end!.appStatus, 0);
    await c.waitClosed();
  });

  test('an Authorizer answering anything else: the denial response is sent as it is', async () => {
    const c = await connectClient(r.port);
    // Some servers send an empty FCGI_STDIN anyway: it is ignored.
    c.send(
      requestStream({
        role: FCGI_AUTHORIZER,
        keepConn: true,
        params: get('/authorize', [['HTTP_AUTHORIZATION', 'Bearer bad']]),
      }),
    );
    const reply = await c.ended(1);
    const { status, headers, body } = splitHead(reply.stdout);
    assert.equal(status, 403);
    assert.equal(headers.get('content-type'), 'text/plain');
    assert.equal(body.toString(), 'go away\n');
    assert.deepEqual(r.logs, []);
    c.close();
  });

  test('an Authorizer whose params never end: at the web server FIN it is dropped and the connection closes', async () => {
    // An Authorizer's input is complete from the start; its params are not (a fuzz case hung here).
    const half = await startResponder(app, {}, { allowHalfOpen: true });
    try {
      const c = await connectClient(half.port);
      c.send(encodeBeginRequest(1, FCGI_AUTHORIZER, FCGI_KEEP_CONN));
      c.send(encodeStream(FCGI_PARAMS, 1, encodeParams(get('/authorize')), { end: false }));
      c.socket.end();
      await c.waitClosed();
      await settled(half.counters);
      assert.equal(half.counters.requests, 0);
    } finally {
      await half.close();
    }
  });

  test('a Filter reads FCGI_DATA as gateway.data, FCGI_DATA_LENGTH bytes', async () => {
    const c = await connectClient(r.port);
    c.send(
      requestStream({
        role: FCGI_FILTER,
        params: defaultParams('POST', '/filter', [
          ['CONTENT_LENGTH', '5'],
          ['FCGI_DATA_LENGTH', '11'],
          ['FCGI_DATA_LAST_MOD', '0'],
        ]),
        stdin: 'input',
        data: 'hello world',
      }),
    );
    const reply = await c.ended(1);
    assert.equal(splitHead(reply.stdout).body.toString(), 'stdin=input data=hello world len=11');
    c.close();
  });

  test('an unknown role: FCGI_UNKNOWN_ROLE, and without FCGI_KEEP_CONN the connection closes', async () => {
    const c = await connectClient(r.port);
    c.send(encodeBeginRequest(1, 7, FCGI_KEEP_CONN));
    c.send(encodeStream(FCGI_PARAMS, 1, encodeParams(get('/hello')), { end: true }));
    const reply = await c.ended(1);
    assert.deepEqual(reply.end, { appStatus: 0, protocolStatus: FCGI_UNKNOWN_ROLE });
    c.responses.forget(1);
    c.send(requestStream({ params: get('/hello') }));
    assert.equal(splitHead((await c.ended(1)).stdout).status, 200);
    await c.waitClosed();

    const d = await connectClient(r.port);
    d.send(encodeBeginRequest(5, 0));
    assert.equal((await d.ended(5)).end!.protocolStatus, FCGI_UNKNOWN_ROLE);
    await d.waitClosed();
    await settled(r.counters);
  });
});

describe('FastCGI responder: request limits', () => {
  test('params larger than maxParamsBytes: 431, the connection stays usable', async () => {
    await withClient(app, { maxParamsBytes: 1000 }, async (c) => {
      c.send(
        requestStream({ keepConn: true, params: get('/hello', [['HTTP_BIG', 'x'.repeat(2000)]]) }),
      );
      const reply = await c.ended(1);
      assert.equal(splitHead(reply.stdout).status, 431);
      assert.match(reply.stderr, /FCGI_PARAMS stream .* exceeds the 1000-byte limit/);
      c.responses.forget(1);
      c.send(requestStream({ keepConn: true, params: get('/hello') }));
      assert.equal(splitHead((await c.ended(1)).stdout).status, 200);
    });
  });

  test('more params than maxParams: 431', async () => {
    await withClient(app, { maxParams: 12 }, async (c) => {
      const extra: [string, string][] = [];
      for (let i = 0; i < 10; i++) extra.push([`HTTP_X_${i}`, 'v']);
      c.send(requestStream({ params: get('/hello', extra) }));
      assert.equal(splitHead((await c.ended(1)).stdout).status, 431);
    });
  });

  test('a CONTENT_LENGTH above maxBodyBytes: 413 without running the app, the body discarded', async () => {
    await withClient(app, { maxBodyBytes: 1000 }, async (c) => {
      c.send(
        requestStream({
          keepConn: true,
          params: defaultParams('POST', '/echo', [['CONTENT_LENGTH', '5000']]),
          stdin: Buffer.alloc(5000, 1),
        }),
      );
      const reply = await c.ended(1);
      assert.equal(splitHead(reply.stdout).status, 413);
      assert.match(reply.stderr, /maxBodyBytes/);
      c.responses.forget(1);
      c.send(requestStream({ keepConn: true, params: get('/hello') }));
      assert.equal(splitHead((await c.ended(1)).stdout).status, 200);
    });
  });

  test('a streamed body (no CONTENT_LENGTH) growing past maxBodyBytes: the read fails, 413', async () => {
    await withClient(app, { maxBodyBytes: 1000 }, async (c) => {
      c.send(
        requestStream({
          keepConn: true,
          params: defaultParams('POST', '/echo', [['HTTP_TRANSFER_ENCODING', 'chunked']]),
          stdin: Buffer.alloc(5000, 1),
        }),
      );
      const reply = await c.ended(1);
      assert.equal(splitHead(reply.stdout).status, 413);
      assert.match(reply.stderr, /FCGI_ERR_BODY_TOO_LARGE|maxBodyBytes/);
    });
  });

  test('a bad CONTENT_LENGTH or a missing REQUEST_METHOD: 400 from the translator', async () => {
    await withClient(app, async (c) => {
      c.send(
        requestStream({
          id: 1,
          keepConn: true,
          params: get('/hello', [['CONTENT_LENGTH', 'abc']]),
        }),
      );
      assert.equal(splitHead((await c.ended(1)).stdout).status, 400);
      c.send(requestStream({ id: 2, keepConn: true, params: [['PATH_INFO', '/x']] }));
      const reply = await c.ended(2);
      assert.equal(splitHead(reply.stdout).status, 400);
      assert.match(reply.stderr, /REQUEST_METHOD/);
    });
  });

  test('past requestTimeoutMs: gateway.signal fires, the body is closed, a 504 goes out (app status FAILED)', async () => {
    seen.closed.length = 0;
    seen.aborted.length = 0;
    await withClient(app, { requestTimeoutMs: 100 }, async (c, r) => {
      const t0 = Date.now();
      c.send(requestStream({ keepConn: true, params: get('/wait'), stdinEnd: false }));
      const reply = await c.ended(1);
      assert.ok(Date.now() - t0 >= 90);
      assert.equal(splitHead(reply.stdout).status, 504);
      assert.equal(reply.end!.appStatus, FCGI_APP_STATUS.FAILED);
      assert.match(reply.stderr, /timed out after 100 ms/);
      assert.match(r.logs[0]!, /request 1 timed out after 100 ms/);
      await settled(r.counters);
      assert.deepEqual(seen.aborted, ['/wait']);
      assert.deepEqual(seen.closed, ['/wait']);
      // After headers, the response is cut off instead.
      c.responses.forget(1);
      c.send(requestStream({ keepConn: true, params: get('/hang-after-headers') }));
      const cut = await c.ended(1);
      assert.equal(splitHead(cut.stdout).body.toString(), 'started ');
      assert.equal(cut.end!.appStatus, FCGI_APP_STATUS.FAILED);
      assert.deepEqual(cut.after, []);
      await settled(r.counters);
    });
  });

  test('an idle connection is closed after idleTimeoutMs; one with an active request is not', async () => {
    const r = await startResponder(app, { idleTimeoutMs: 150 });
    try {
      const idle = await connectClient(r.port);
      const busy = await connectClient(r.port);
      busy.send(requestStream({ keepConn: true, params: get('/wait'), stdinEnd: false }));
      const t0 = Date.now();
      await idle.waitClosed(2000);
      assert.ok(Date.now() - t0 >= 100);
      await sleep(300);
      assert.equal(busy.closed, false);
      busy.send(encodeRecord(FCGI_ABORT_REQUEST, 1));
      await busy.ended(1);
      await busy.waitClosed(2000);
      assert.deepEqual(r.logs, []);
    } finally {
      await r.close();
    }
  });
});
