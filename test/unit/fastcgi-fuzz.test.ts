// Fuzz test of the FastCGI responder: random valid request streams and mutations of them, fed in
// random splits, against one set of responder limits and counters, while a healthy kept-alive
// connection keeps getting correct answers. FUZZ_CASES, FUZZ_SECONDS and FUZZ_SEED tune it
// (`npm run fuzz` runs far more cases); the seed is printed so a failure reproduces.
import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import { after, before, test } from 'node:test';

import { handleConnection } from '../../src/fastcgi/connection.js';
import { encodeParams } from '../../src/fastcgi/params.js';
import {
  FCGI_ABORT_REQUEST,
  FCGI_AUTHORIZER,
  FCGI_BEGIN_REQUEST,
  FCGI_DATA,
  FCGI_END_REQUEST,
  FCGI_FILTER,
  FCGI_GET_VALUES,
  FCGI_KEEP_CONN,
  FCGI_MAX_CONNS,
  FCGI_MAX_REQS,
  FCGI_MPXS_CONNS,
  FCGI_PARAMS,
  FCGI_RESPONDER,
  FCGI_STDIN,
} from '../../src/fastcgi/protocol.js';
import { RecordDecoder, encodeBeginRequestBody, encodeRecord } from '../../src/fastcgi/records.js';
import type { ResponderOptions } from '../../src/fastcgi/responder.js';
import type { GatewayApp } from '../../src/gateway/types.js';
import {
  Responses,
  connectClient,
  defaultParams,
  requestStream,
  settled,
  splitHead,
  startResponder,
  type TestClient,
  type TestResponder,
} from './fastcgi-responder-helpers.js';

const CASES = Number(process.env.FUZZ_CASES ?? 2000);
const SECONDS = Number(process.env.FUZZ_SECONDS ?? 0);
// In `npm test` (neither variable set) a loaded machine must not stretch the run: stop after
// this many seconds even if fewer cases ran. The printed seeds still reproduce every case.
const CAP_SECONDS =
  process.env.FUZZ_CASES === undefined && process.env.FUZZ_SECONDS === undefined ? 15 : Infinity;
const SEED = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const PARALLEL = 8;
const HEALTH_EVERY = 50;

// mulberry32: a small seeded PRNG, so a failing run can be replayed with FUZZ_SEED.
class Rng {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  u32(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  next(): number {
    return this.u32() / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  bool(p = 0.5): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    let i = 0;
    for (; i + 4 <= n; i += 4) b.writeUInt32LE(this.u32(), i);
    for (; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

const MODES = [
  '/echo',
  '/ignore',
  '/stream',
  '/throw-before',
  '/throw-after',
  '/stderr',
  '/big',
  '/wait-abort',
];

// The fuzz app: what it does is chosen by PATH_INFO, so a stream decides it.
const app: GatewayApp = async (environ, start) => {
  const input = environ['gateway.input'];
  switch (environ.PATH_INFO) {
    case '/echo': {
      const parts: Uint8Array[] = [];
      for await (const c of input) parts.push(c);
      start('200 OK', [['Content-Type', 'application/octet-stream']]);
      return parts;
    }
    case '/stream': {
      const write = start('200 OK', []);
      for await (const c of input) await write(c);
      return [];
    }
    case '/throw-before':
      throw new Error('fuzz: before headers');
    case '/throw-after':
      start('200 OK', []);
      return (async function* () {
        yield 'x';
        throw new Error('fuzz: after headers');
      })();
    case '/stderr':
      environ['gateway.errors'].write('fuzz log line\n');
      start('204 No Content', []);
      return [];
    case '/big':
      start('200 OK', []);
      return [Buffer.alloc(100_000, 0x61)];
    case '/wait-abort':
      await new Promise((resolve) => {
        environ['gateway.signal'].addEventListener('abort', resolve);
        setTimeout(resolve, 5);
      });
      start('200 OK', []);
      return ['done'];
    default:
      start('200 OK', []);
      return ['ignored the body'];
  }
};

// records encodes `content` as records of `type` cut at random sizes with random padding,
// ending with the empty record when `end`.
function records(g: Rng, type: number, id: number, content: Buffer, end: boolean): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (at < content.length) {
    const n = Math.min(content.length - at, g.bool(0.3) ? 1 + g.int(16) : 1 + g.int(65535));
    out.push(
      encodeRecord(type, id, content.subarray(at, at + n), g.bool(0.3) ? g.int(256) : -n & 7),
    );
    at += n;
  }
  if (end) out.push(encodeRecord(type, id));
  return out;
}

function randomValue(g: Rng): Buffer | string {
  const n = g.pick([0, 1, 5, 40, 127, 128, 300]);
  return g.bool(0.3) ? g.bytes(n) : 'v'.repeat(n);
}

// request builds one request's records in order: BEGIN_REQUEST, PARAMS, STDIN (DATA), maybe ABORT.
function request(g: Rng, id: number, keepConn: boolean): Buffer[][] {
  const role = g.bool(0.85) ? FCGI_RESPONDER : g.pick([FCGI_AUTHORIZER, FCGI_FILTER, 0, 4, 0xffff]);
  const body = g.bytes(g.pick([0, 0, 0, 1, 100, 5000, 5000, 70_000]));
  const pairs: [string | Buffer, string | Buffer][] = defaultParams(
    body.length > 0 ? 'POST' : 'GET',
    g.pick(MODES),
  );
  const lengthKind = g.int(10);
  if (lengthKind < 7) pairs.push(['CONTENT_LENGTH', String(body.length)]);
  else if (lengthKind === 7) pairs.push(['HTTP_TRANSFER_ENCODING', 'chunked']);
  else if (lengthKind === 8) pairs.push(['CONTENT_LENGTH', String(body.length + g.int(50))]);
  else pairs.push(['CONTENT_LENGTH', g.pick(['x', '-1', '', '99999999999999999'])]);
  for (let i = g.int(6); i > 0; i--) {
    pairs.push([g.bool(0.8) ? `HTTP_X_${g.int(5)}` : g.bytes(1 + g.int(200)), randomValue(g)]);
  }
  const data = role === FCGI_FILTER ? g.bytes(g.int(3000)) : null;
  if (data) pairs.push(['FCGI_DATA_LENGTH', String(data.length)]);
  const parts: Buffer[][] = [
    [
      encodeRecord(
        FCGI_BEGIN_REQUEST,
        id,
        encodeBeginRequestBody(role, keepConn ? FCGI_KEEP_CONN : 0),
      ),
    ],
    records(g, FCGI_PARAMS, id, encodeParams(pairs), true),
    role === FCGI_AUTHORIZER && g.bool(0.5) ? [] : records(g, FCGI_STDIN, id, body, true),
  ];
  if (data) parts.push(records(g, FCGI_DATA, id, data, true));
  if (g.bool(0.05)) parts.push([encodeRecord(FCGI_ABORT_REQUEST, id)]);
  return parts;
}

function management(g: Rng): Buffer {
  if (g.bool(0.6)) {
    const names = [FCGI_MAX_CONNS, FCGI_MAX_REQS, FCGI_MPXS_CONNS, 'FCGI_OTHER'].filter(() =>
      g.bool(),
    );
    const body = encodeParams(names.map((n) => [n, ''] as [string, string]));
    return encodeRecord(FCGI_GET_VALUES, 0, body);
  }
  return encodeRecord(12 + g.int(200), 0, g.bytes(g.int(16)));
}

// validStream interleaves 1-4 requests (each in its order) and a few management records.
function validStream(g: Rng): Buffer {
  const count = 1 + g.int(4);
  const queues: Buffer[][] = [];
  const usedIds = new Set<number>();
  for (let i = 0; i < count; i++) {
    let id = g.bool(0.7) ? 1 + i : 1 + g.int(65535);
    while (usedIds.has(id)) id = (id % 65535) + 1;
    usedIds.add(id);
    queues.push(request(g, id, i < count - 1 || g.bool(0.5)).flat());
  }
  for (let i = g.int(3); i > 0; i--) queues.push([management(g)]);
  const out: Buffer[] = [];
  while (queues.some((q) => q.length > 0)) {
    const q = g.pick(queues.filter((x) => x.length > 0));
    out.push(q.shift()!);
  }
  return Buffer.concat(out);
}

// mutate damages a valid stream the ways a broken peer or a bad network would.
function mutate(g: Rng, stream: Buffer): Buffer {
  const b = Buffer.from(stream);
  switch (g.int(8)) {
    case 0: // flip bytes
      for (let i = 1 + g.int(4); i > 0; i--) b[g.int(b.length)] = g.int(256);
      return b;
    case 1: // truncate
      return b.subarray(0, g.int(b.length));
    case 2: {
      // insert garbage
      const at = g.int(b.length);
      return Buffer.concat([b.subarray(0, at), g.bytes(1 + g.int(40)), b.subarray(at)]);
    }
    case 3: {
      // cut out a range
      const at = g.int(b.length);
      return Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + g.int(200))]);
    }
    case 4: {
      // repeat a range
      const at = g.int(b.length);
      const piece = b.subarray(at, at + 1 + g.int(300));
      return Buffer.concat([b.subarray(0, at), piece, piece, b.subarray(at + piece.length)]);
    }
    case 5: // a header byte at a record boundary-ish position (type, id, length, padding)
      for (let i = 1 + g.int(3); i > 0; i--) {
        const at = g.int(Math.max(1, b.length >> 3)) << 3;
        if (at + 7 < b.length) b[at + 1 + g.int(6)] = g.int(256);
      }
      return b;
    case 6: // pure garbage
      return g.bytes(g.int(200));
    default: // an unrelated record type for an active id
      return Buffer.concat([b, encodeRecord(g.pick([3, 6, 7, 10, 11, 99]), 1, g.bytes(g.int(9)))]);
  }
}

function splits(g: Rng, length: number): number[] {
  switch (g.int(4)) {
    case 0:
      return [length || 1];
    case 1:
      // Byte-level splits cost a 'data' event each: kept for streams of a reasonable size.
      return length <= 20_000 ? [1, 2, 3, 5, 8, 13] : [1, 100, 3, 1000, 7];
    case 2:
      return [1 + g.int(64)];
    default:
      return [1 + g.int(4096), 1 + g.int(7), 65536];
  }
}

interface CaseResult {
  output: Buffer;
  logs: string[];
}

// runCase feeds a stream to a fresh in-process connection, half-closes it, and waits for the
// responder to close its side.
async function runCase(
  g: Rng,
  stream: Buffer,
  options: ResponderOptions,
  label: string,
): Promise<CaseResult> {
  const out: Buffer[] = [];
  const logs: string[] = [];
  let closed = false;
  const duplex = new Duplex({
    read() {},
    write(chunk: Buffer, _e, cb) {
      out.push(Buffer.from(chunk));
      cb();
    },
  });
  let timer: NodeJS.Timeout | undefined;
  const whenClosed = new Promise<void>((resolve, reject) => {
    duplex.on('close', () => {
      closed = true;
      clearTimeout(timer);
      resolve();
    });
    timer = setTimeout(() => reject(new Error(`${label}: the connection never closed`)), 5000);
  });
  handleConnection(duplex, app, { ...options, log: (l) => logs.push(l) });
  const sizes = splits(g, stream.length);
  let at = 0;
  for (let i = 0; at < stream.length; i++) {
    const n = sizes[i % sizes.length]!;
    if (closed) break;
    duplex.push(Buffer.from(stream.subarray(at, at + n)));
    at += n;
    if (i % 16 === 15 || g.bool(0.1)) await new Promise((r) => setImmediate(r));
  }
  if (!closed) duplex.push(null);
  await whenClosed;
  return { output: Buffer.concat(out), logs };
}

// check asserts what holds for any stream: the output is whole, well-formed records; at most
// one log line; and for a valid stream no log line and no record of an id after its END_REQUEST.
function check(result: CaseResult, valid: boolean, label: string): void {
  const decoder = new RecordDecoder();
  decoder.push(result.output);
  decoder.end();
  const recs = [...decoder];
  assert.ok(
    result.logs.length <= 1,
    `${label}: ${result.logs.length} log lines: ${result.logs.join(' | ')}`,
  );
  for (const line of result.logs) assert.match(line, /^fcgi: /, label);
  if (!valid) return;
  assert.deepEqual(result.logs, [], `${label}: a valid stream was refused`);
  const responses = new Responses();
  responses.push(result.output);
  for (const [id, reply] of responses.byId) {
    assert.deepEqual(reply.after, [], `${label}: records for request ${id} after its END_REQUEST`);
    assert.ok(reply.end, `${label}: request ${id} got no END_REQUEST`);
  }
  assert.equal(recs.filter((r) => r.type === FCGI_END_REQUEST).length, responses.byId.size);
}

let healthyServer: TestResponder;
let healthy: TestClient;
const unhandled: unknown[] = [];
const onUnhandled = (e: unknown): void => void unhandled.push(e);

before(async () => {
  process.on('unhandledRejection', onUnhandled);
  process.on('uncaughtException', onUnhandled);
  healthyServer = await startResponder(app, {
    maxStdinBuffer: 256 * 1024,
    maxHoldBytes: 64 * 1024,
  });
  healthy = await connectClient(healthyServer.port);
});

after(async () => {
  healthy.close();
  await healthyServer.close();
  process.off('unhandledRejection', onUnhandled);
  process.off('uncaughtException', onUnhandled);
});

async function checkHealthy(g: Rng, label: string): Promise<void> {
  const body = g.bytes(g.int(20_000));
  healthy.responses.forget(7);
  healthy.send(
    requestStream({
      id: 7,
      keepConn: true,
      params: defaultParams('POST', '/echo', [['CONTENT_LENGTH', String(body.length)]]),
      stdin: body,
    }),
  );
  const reply = await healthy.ended(7, 5000);
  const { status, body: got } = splitHead(reply.stdout);
  assert.equal(status, 200, label);
  assert.ok(got.equals(body), `${label}: the healthy connection got a wrong answer`);
}

const BUDGET =
  SECONDS > 0
    ? `${SECONDS} s`
    : `${CASES} cases${CAP_SECONDS < Infinity ? ` (at most ${CAP_SECONDS} s)` : ''}`;

test(`fuzz: ${BUDGET} of random and mutated streams (FUZZ_SEED=${SEED})`, async () => {
  console.log(`fastcgi fuzz: FUZZ_SEED=${SEED}`);
  // The responder instance's limits and counters, shared by every fuzz connection.
  const options: ResponderOptions = {
    ...healthyServer.responder.options,
    log: undefined,
  };
  const counters = healthyServer.counters;
  const master = new Rng(SEED);
  const started = Date.now();
  let done = 0;
  let mutated = 0;
  const more = (): boolean =>
    SECONDS > 0
      ? Date.now() - started < SECONDS * 1000
      : done < CASES && Date.now() - started < CAP_SECONDS * 1000;
  while (more()) {
    const batch: Promise<void>[] = [];
    for (let i = 0; i < PARALLEL && more(); i++) {
      const index = done++;
      const caseSeed = master.int(2 ** 31);
      const g = new Rng(caseSeed);
      const valid = g.bool(0.4);
      const stream = valid ? validStream(g) : mutate(g, validStream(g));
      if (!valid) mutated++;
      const label = `case ${index} (FUZZ_SEED=${SEED}, case seed ${caseSeed}, ${valid ? 'valid' : 'mutated'})`;
      batch.push(runCase(g, stream, options, label).then((r) => check(r, valid, label)));
    }
    await Promise.all(batch);
    if (Math.floor(done / HEALTH_EVERY) !== Math.floor((done - batch.length) / HEALTH_EVERY)) {
      await checkHealthy(master, `after case ${done}`);
    }
  }
  await checkHealthy(master, 'at the end');
  // Every fuzz connection is closed and every request settled: only the healthy one is left.
  await settled(counters, 5000);
  assert.equal(counters.connections, 1, 'leaked connections');
  assert.deepEqual(unhandled, [], 'unhandled rejections or exceptions');
  console.log(
    `fastcgi fuzz: ${done} cases (${mutated} mutated) in ${Date.now() - started} ms, FUZZ_SEED=${SEED}`,
  );
});
