// Whole request streams replayed into the FastCGI responder whole, byte by byte and in odd chunk
// sizes (records and params split at every boundary) must give identical output; malformed
// streams close only their own connection while a healthy one keeps answering.
import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import { describe, test } from 'node:test';

import { FcgiConnection, handleConnection } from '../../src/fastcgi/connection.js';
import { encodeParams } from '../../src/fastcgi/params.js';
import {
  FCGI_ABORT_REQUEST,
  FCGI_AUTHORIZER,
  FCGI_BEGIN_REQUEST,
  FCGI_END_REQUEST,
  FCGI_FILTER,
  FCGI_GET_VALUES,
  FCGI_MAX_CONNS,
  FCGI_MPXS_CONNS,
  FCGI_PARAMS,
  FCGI_RESPONDER,
  FCGI_STDIN,
} from '../../src/fastcgi/protocol.js';
import {
  encodeBeginRequest,
  encodeGetValues,
  encodeRecord,
  encodeStream,
} from '../../src/fastcgi/records.js';
import { createFcgiCounters, type FcgiCounters } from '../../src/fastcgi/responder.js';
import type { Body, GatewayApp } from '../../src/gateway/types.js';
import {
  Responses,
  connectClient,
  defaultParams,
  requestStream,
  settled,
  splitHead,
  startResponder,
} from './fastcgi-responder-helpers.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const immediate = (): Promise<void> => new Promise((r) => setImmediate(r));

// A deterministic app: what it answers depends only on the request.
const events: string[] = [];
const started: string[] = [];
const app: GatewayApp = async (environ, start) => {
  started.push(environ.PATH_INFO);
  const signal = environ['gateway.signal'];
  signal.addEventListener('abort', () => events.push(`abort ${environ.PATH_INFO}`));
  if (environ.PATH_INFO === '/wait') {
    const body: Body = Object.assign(
      (async function* () {
        await environ['gateway.input'].read();
        yield 'never';
      })(),
      { close: () => void events.push(`close ${environ.PATH_INFO}`) },
    );
    start('200 OK', []);
    return body;
  }
  const parts: Uint8Array[] = [];
  for await (const chunk of environ['gateway.input']) parts.push(chunk);
  const data = environ['gateway.data'] as AsyncIterable<Uint8Array> | undefined;
  const dataParts: Uint8Array[] = [];
  if (data) for await (const chunk of data) dataParts.push(chunk);
  environ['gateway.errors'].write(`served ${environ.PATH_INFO}\n`);
  const write = start('200 OK', [
    ['Content-Type', 'text/plain'],
    ['X-Query', environ.QUERY_STRING],
    ['X-Long', String(environ.HTTP_X_LONG ?? '').length.toString()],
  ]);
  await write(`${environ.REQUEST_METHOD} ${environ.PATH_INFO}\n`);
  return [Buffer.concat(parts), Buffer.concat(dataParts)];
};

// pairConnection serves one in-process connection whose input chunks the test controls exactly.
function pairConnection(counters: FcgiCounters): {
  connection: FcgiConnection;
  feed(bytes: Buffer, sizes: number[]): Promise<void>;
  output(): Buffer;
  closed(): boolean;
} {
  const out: Buffer[] = [];
  let closed = false;
  const duplex = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      out.push(Buffer.from(chunk));
      callback();
    },
    final(callback) {
      closed = true;
      callback();
    },
  });
  duplex.on('close', () => (closed = true));
  const connection = handleConnection(duplex, app, { counters, log: () => undefined });
  return {
    connection,
    async feed(bytes, sizes) {
      let at = 0;
      let i = 0;
      while (at < bytes.length) {
        const n = sizes[i++ % sizes.length]!;
        // A fresh copy per chunk, like a socket read; one turn of the event loop between chunks
        // so that every chunk is its own 'data' event.
        duplex.push(Buffer.from(bytes.subarray(at, at + n)));
        at += n;
        await immediate();
      }
    },
    output: () => Buffer.concat(out),
    closed: () => closed,
  };
}

// Records in odd sizes: FCGI_PARAMS and FCGI_STDIN cut into records of `recordSize` bytes.
function cut(type: number, id: number, bytes: Uint8Array, recordSize: number): Buffer {
  const parts: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += recordSize) {
    parts.push(encodeRecord(type, id, bytes.subarray(at, at + recordSize)));
  }
  parts.push(encodeRecord(type, id));
  return Buffer.concat(parts);
}

const LONG = 'L'.repeat(300); // a 4-byte param length prefix
const BODY = Buffer.alloc(70_000);
for (let i = 0; i < BODY.length; i++) BODY[i] = (i * 31) & 0xff;

// Each fixture: a whole stream, and whether its output bytes are comparable as they are
// (a single request) or per request id (several requests whose replies may interleave).
const FIXTURES: { name: string; stream: Buffer; multiplexed: boolean }[] = [
  {
    name: 'a GET, no FCGI_KEEP_CONN',
    stream: requestStream({ params: defaultParams('GET', '/a?x=1') }),
    multiplexed: false,
  },
  {
    name: 'a 70 KB POST in 65535-byte records',
    stream: requestStream({
      params: defaultParams('POST', '/post', [['CONTENT_LENGTH', String(BODY.length)]]),
      stdin: BODY,
    }),
    multiplexed: false,
  },
  {
    name: 'params and body cut into 7- and 1000-byte records, a 4-byte length prefix',
    stream: Buffer.concat([
      encodeBeginRequest(1, FCGI_RESPONDER, 0),
      cut(
        FCGI_PARAMS,
        1,
        encodeParams(
          defaultParams('POST', '/cut', [
            ['CONTENT_LENGTH', '5000'],
            ['HTTP_X_LONG', LONG],
          ]),
        ),
        7,
      ),
      cut(FCGI_STDIN, 1, BODY.subarray(0, 5000), 1000),
    ]),
    multiplexed: false,
  },
  {
    name: 'a Filter with FCGI_DATA',
    stream: requestStream({
      role: FCGI_FILTER,
      params: defaultParams('POST', '/filter', [
        ['CONTENT_LENGTH', '3'],
        ['FCGI_DATA_LENGTH', '4'],
      ]),
      stdin: 'abc',
      data: 'data',
    }),
    multiplexed: false,
  },
  {
    name: 'an Authorizer (params only)',
    stream: Buffer.concat([
      encodeBeginRequest(1, FCGI_AUTHORIZER, 0),
      encodeStream(FCGI_PARAMS, 1, encodeParams(defaultParams('GET', '/auth')), { end: true }),
    ]),
    multiplexed: false,
  },
  {
    name: 'an aborted request',
    stream: Buffer.concat([
      encodeBeginRequest(1, FCGI_RESPONDER, 0),
      encodeStream(
        FCGI_PARAMS,
        1,
        encodeParams(defaultParams('POST', '/wait', [['CONTENT_LENGTH', '10']])),
        { end: true },
      ),
      encodeRecord(FCGI_STDIN, 1, Buffer.from('12345')),
      encodeRecord(FCGI_ABORT_REQUEST, 1),
    ]),
    multiplexed: false,
  },
  {
    name: 'management records and three multiplexed requests, the last one closing',
    stream: Buffer.concat([
      encodeGetValues([FCGI_MPXS_CONNS, FCGI_MAX_CONNS, 'NOPE']),
      encodeRecord(42, 0, Buffer.alloc(3)),
      requestStream({ id: 1, keepConn: true, params: defaultParams('GET', '/one') }),
      requestStream({ id: 2, keepConn: true, stdin: BODY.subarray(0, 20_000) }),
      encodeGetValues([FCGI_MPXS_CONNS]),
      requestStream({ id: 3, keepConn: false, params: defaultParams('GET', '/three?q') }),
    ]),
    multiplexed: true,
  },
];

const SPLITS: { name: string; sizes: (length: number) => number[] }[] = [
  { name: 'whole', sizes: (n) => [n] },
  { name: 'byte by byte', sizes: () => [1] },
  { name: 'odd sizes', sizes: () => [3, 1, 7, 2, 13, 5, 64, 11, 1000, 9] },
  { name: 'split inside every header', sizes: () => [5, 4, 9, 6] },
];

// normalize turns an output into what must not depend on the split: the bytes as they are, or
// per request id the replies plus the management records in order.
function normalize(output: Buffer, multiplexed: boolean): unknown {
  if (!multiplexed) return output.toString('hex');
  const responses = new Responses();
  responses.push(output);
  const perId = [...responses.byId.entries()]
    .sort(([a], [b]) => a - b)
    .map(([id, r]) => [id, r.stdout.toString('hex'), r.stderr, r.end, r.after]);
  const management = responses.records
    .filter((r) => r.requestId === 0)
    .map((r) => [r.type, r.content.toString('hex')]);
  return { perId, management };
}

describe('FastCGI responder: whole request streams replayed at every split', () => {
  for (const fixture of FIXTURES) {
    test(fixture.name, async () => {
      const counters = createFcgiCounters();
      const outputs: { split: string; value: unknown }[] = [];
      for (const split of SPLITS) {
        const pair = pairConnection(counters);
        await pair.feed(fixture.stream, split.sizes(fixture.stream.length));
        const deadline = Date.now() + 3000;
        while (!pair.closed()) {
          assert.ok(Date.now() < deadline, `${split.name}: the connection did not close`);
          await sleep(2);
        }
        await settled(counters);
        outputs.push({ split: split.name, value: normalize(pair.output(), fixture.multiplexed) });
      }
      const [first, ...rest] = outputs;
      // The reference output is itself sane: every request got its END_REQUEST last.
      const responses = new Responses();
      responses.push(Buffer.from(fixture.multiplexed ? '' : (first!.value as string), 'hex'));
      for (const o of rest)
        assert.deepEqual(o.value, first!.value, `${o.split} differs from whole`);
      if (!fixture.multiplexed) {
        const reply = responses.byId.get(1)!;
        assert.ok(reply.end, 'END_REQUEST sent');
        assert.deepEqual(reply.after, []);
        assert.equal(responses.records.at(-1)!.type, FCGI_END_REQUEST);
      } else {
        const { perId } = first!.value as { perId: unknown[][] };
        assert.deepEqual(
          perId.map((p) => p[0]),
          [1, 2, 3],
        );
      }
    });
  }

  test('the replayed Responder output is the expected response', async () => {
    const counters = createFcgiCounters();
    const pair = pairConnection(counters);
    await pair.feed(FIXTURES[1]!.stream, [1]);
    while (!pair.closed()) await sleep(2);
    const responses = new Responses();
    responses.push(pair.output());
    const reply = responses.byId.get(1)!;
    const { status, headers, body } = splitHead(reply.stdout);
    assert.equal(status, 200);
    assert.equal(headers.get('x-query'), '');
    assert.ok(body.equals(Buffer.concat([Buffer.from('POST /post\n'), BODY])));
    assert.equal(reply.stderr, 'served /post\n');
    assert.deepEqual(reply.end, { appStatus: 0, protocolStatus: 0 });
  });
});

// Each malformed stream, and whether it carries an active request that must be aborted.
const MALFORMED: {
  name: string;
  stream: Buffer;
  halfClose?: boolean;
  log: RegExp;
  active?: boolean;
  /** then is sent once the app of `stream`'s request has started. */
  then?: Buffer;
}[] = [
  {
    name: 'a bad version',
    stream: Buffer.from([2, 1, 0, 1, 0, 8, 0, 0]),
    log: /unsupported record version 2/,
  },
  {
    name: 'an HTTP request on the FastCGI socket',
    stream: Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
    log: /version 71.*HTTP client/,
  },
  {
    name: 'a truncated record, then EOF',
    stream: encodeBeginRequest(1, FCGI_RESPONDER, 0).subarray(0, 11),
    halfClose: true,
    log: /stream ended inside a record/,
  },
  {
    name: 'an absurd record length, then EOF',
    stream: Buffer.from([1, FCGI_PARAMS, 0, 1, 0xff, 0xff, 0xff, 0, 1, 2, 3]),
    halfClose: true,
    log: /stream ended inside a record/,
  },
  {
    // Bodies are passed on as they arrive (8 KiB at least), so the first part already tells it
    // is not a request.
    name: 'the start of a long FCGI_STDIN record for a request never begun',
    stream: Buffer.concat([
      Buffer.from([1, FCGI_STDIN, 0, 1, 0xff, 0xff, 0xff, 0]),
      Buffer.alloc(9000, 0x78),
    ]),
    log: /FCGI_STDIN for request 1, which was never begun/,
  },
  {
    name: 'params never ended (FCGI_STDIN while FCGI_PARAMS is open)',
    stream: Buffer.concat([
      encodeBeginRequest(1, FCGI_RESPONDER, 0),
      encodeRecord(FCGI_PARAMS, 1, encodeParams(defaultParams('GET', '/wait'))),
      encodeRecord(FCGI_STDIN, 1),
    ]),
    log: /FCGI_STDIN for request 1 before the end of its FCGI_PARAMS/,
  },
  {
    name: 'garbage that looks like a record of an unknown type',
    stream: Buffer.from([1, 0xee, 0x12, 0x34, 0, 3, 5, 0, 9, 9, 9, 0, 0, 0, 0, 0]),
    log: /type 238 for request 4660, which was never begun/,
  },
  {
    name: 'FCGI_STDIN before FCGI_BEGIN_REQUEST',
    stream: encodeRecord(FCGI_STDIN, 1, Buffer.from('body')),
    log: /FCGI_STDIN for request 1, which was never begun/,
  },
  {
    name: 'FCGI_BEGIN_REQUEST with a short body',
    stream: encodeRecord(FCGI_BEGIN_REQUEST, 1, Buffer.from([0, 1, 0])),
    log: /FCGI_BEGIN_REQUEST body must be 8 bytes, got 3/,
  },
  {
    name: 'FCGI_GET_VALUES with a broken name-value pair',
    stream: encodeRecord(FCGI_GET_VALUES, 0, Buffer.from([100, 0, 65, 66])),
    log: /FCGI_PARAMS stream ended inside/,
  },
  {
    name: 'FCGI_END_REQUEST from the web server, with a request active',
    stream: requestStream({
      keepConn: true,
      params: defaultParams('GET', '/wait'),
      stdinEnd: false,
    }),
    then: encodeRecord(FCGI_END_REQUEST, 1, Buffer.alloc(8)),
    log: /unexpected FCGI_END_REQUEST for request 1; closing the connection \(1 active request aborted\)/,
    active: true,
  },
];

describe('FastCGI responder: malformed streams close only their own connection', () => {
  test('every malformed stream: one log line, its connection closed, its requests aborted; a healthy connection keeps answering', async () => {
    const r = await startResponder(app, {}, { allowHalfOpen: true });
    try {
      const healthy = await connectClient(r.port);
      for (const m of MALFORMED) {
        events.length = 0;
        started.length = 0;
        const logsBefore = r.logs.length;
        const bad = await connectClient(r.port);
        bad.send(m.stream);
        if (m.then) {
          while (!started.includes('/wait')) await immediate();
          bad.send(m.then);
        }
        if (m.halfClose) bad.socket.end();
        await bad.waitClosed();
        assert.equal(
          r.logs.length,
          logsBefore + 1,
          `${m.name}: one log line (${r.logs.slice(logsBefore).join(' | ')})`,
        );
        assert.match(r.logs.at(-1)!, m.log, m.name);
        assert.match(r.logs.at(-1)!, /^fcgi: 127\.0\.0\.1:\d+: /);
        await settled(r.counters);
        if (m.active) assert.deepEqual(events.sort(), ['abort /wait', 'close /wait'], m.name);
        healthy.responses.forget(1);
        healthy.send(requestStream({ keepConn: true, stdin: m.name }));
        const reply = await healthy.ended(1);
        assert.ok(splitHead(reply.stdout).body.toString().endsWith(m.name), m.name);
      }
      assert.equal(healthy.closed, false);
      assert.equal(r.counters.connections, 1);
    } finally {
      await r.close();
    }
  });
});
