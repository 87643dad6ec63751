// Test helpers for the FastCGI responder: a responder on a real 127.0.0.1 socket, a byte-level
// client, request streams built with the codec, and responses decoded back into per-id parts.
import { once } from 'node:events';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { encodeParams } from '../../src/fastcgi/params.js';
import {
  FCGI_DATA,
  FCGI_END_REQUEST,
  FCGI_KEEP_CONN,
  FCGI_PARAMS,
  FCGI_RESPONDER,
  FCGI_STDERR,
  FCGI_STDIN,
  FCGI_STDOUT,
} from '../../src/fastcgi/protocol.js';
import {
  RecordDecoder,
  decodeEndRequestBody,
  encodeBeginRequest,
  encodeStream,
  type FcgiRecord,
} from '../../src/fastcgi/records.js';
import {
  createFcgiCounters,
  createResponder,
  type FcgiCounters,
  type Responder,
  type ResponderOptions,
} from '../../src/fastcgi/responder.js';
import type { GatewayApp } from '../../src/gateway/types.js';

/** TestResponder is a responder listening on 127.0.0.1 with its log lines captured. */
export interface TestResponder {
  server: Server;
  port: number;
  responder: Responder;
  counters: FcgiCounters;
  logs: string[];
  /** close shuts the responder down and the server with it. */
  close(): Promise<void>;
}

/** startResponder serves `app` on an ephemeral 127.0.0.1 port. */
export async function startResponder(
  app: GatewayApp,
  options: ResponderOptions = {},
  serverOptions: { allowHalfOpen?: boolean } = {},
): Promise<TestResponder> {
  const logs: string[] = [];
  const counters = options.counters ?? createFcgiCounters();
  const responder = createResponder(app, {
    log: (line) => logs.push(line),
    ...options,
    counters,
  });
  const server = createServer({ allowHalfOpen: serverOptions.allowHalfOpen ?? false }, (s) => {
    responder(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return {
    server,
    port: address.port,
    responder,
    counters,
    logs,
    async close() {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([responder.shutdown(), new Promise((r) => (timer = setTimeout(r, 2000)))]);
      clearTimeout(timer);
      for (const c of responder.connections) c.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * withClient serves `app` (with `options`, if given), connects one client, and runs `test` with
 * it; the client and the responder are closed afterwards, whether the test passed or threw.
 */
export async function withClient(
  app: GatewayApp,
  ...rest:
    | [test: (c: TestClient, r: TestResponder) => Promise<void>]
    | [options: ResponderOptions, test: (c: TestClient, r: TestResponder) => Promise<void>]
): Promise<void> {
  const [options, test] = rest.length === 1 ? [{}, rest[0]] : rest;
  const r = await startResponder(app, options);
  let c: TestClient | undefined;
  try {
    c = await connectClient(r.port);
    await test(c, r);
  } finally {
    c?.close();
    await r.close();
  }
}

/** RequestSpec describes one request stream. */
export interface RequestSpec {
  id?: number;
  role?: number;
  keepConn?: boolean;
  params?: [string, string][];
  stdin?: Uint8Array | string;
  /** stdinEnd sends the empty FCGI_STDIN record (default true). */
  stdinEnd?: boolean;
  data?: Uint8Array | string;
}

/** defaultParams are what nginx sends for a simple request. */
export function defaultParams(
  method = 'GET',
  path = '/',
  extra: [string, string][] = [],
): [string, string][] {
  const [p, q = ''] = path.split('?');
  return [
    ['REQUEST_METHOD', method],
    ['SCRIPT_NAME', ''],
    ['PATH_INFO', p!],
    ['QUERY_STRING', q],
    ['REQUEST_URI', path],
    ['SERVER_NAME', 'localhost'],
    ['SERVER_PORT', '80'],
    ['SERVER_PROTOCOL', 'HTTP/1.1'],
    ['GATEWAY_INTERFACE', 'CGI/1.1'],
    ...extra,
  ];
}

function bytes(b: Uint8Array | string | undefined): Buffer {
  if (b === undefined) return Buffer.alloc(0);
  return typeof b === 'string' ? Buffer.from(b) : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/** requestStream encodes a whole request: BEGIN_REQUEST, PARAMS, STDIN (and DATA). */
export function requestStream(spec: RequestSpec = {}): Buffer {
  const id = spec.id ?? 1;
  const body = bytes(spec.stdin);
  const params =
    spec.params ??
    defaultParams(
      body.length > 0 ? 'POST' : 'GET',
      '/',
      body.length > 0 ? [['CONTENT_LENGTH', String(body.length)]] : [],
    );
  const parts = [
    encodeBeginRequest(id, spec.role ?? FCGI_RESPONDER, spec.keepConn ? FCGI_KEEP_CONN : 0),
    encodeStream(FCGI_PARAMS, id, encodeParams(params), { end: true }),
    encodeStream(FCGI_STDIN, id, body, { end: spec.stdinEnd ?? true }),
  ];
  if (spec.data !== undefined) {
    parts.push(encodeStream(FCGI_DATA, id, bytes(spec.data), { end: true }));
  }
  return Buffer.concat(parts);
}

/** Reply is what one request id got back. */
export class Reply {
  readonly #stdout: Buffer[] = [];
  #stdoutBytes = 0;
  stderr = '';
  stdoutEnded = false;
  stderrEnded = false;
  end?: { appStatus: number; protocolStatus: number };
  /** after lists record types that arrived after FCGI_END_REQUEST (must stay empty). */
  readonly after: number[] = [];

  /** stdout is every FCGI_STDOUT byte, concatenated. */
  get stdout(): Buffer {
    if (this.#stdout.length > 1) this.#stdout.splice(0, Infinity, Buffer.concat(this.#stdout));
    return this.#stdout[0] ?? Buffer.alloc(0);
  }

  /** stdoutBytes is how many FCGI_STDOUT bytes arrived. */
  get stdoutBytes(): number {
    return this.#stdoutBytes;
  }

  /** add records one record of the request. */
  add(record: FcgiRecord): void {
    if (this.end) {
      this.after.push(record.type);
      return;
    }
    if (record.type === FCGI_STDOUT) {
      if (record.content.length === 0) this.stdoutEnded = true;
      this.#stdout.push(Buffer.from(record.content));
      this.#stdoutBytes += record.content.length;
    } else if (record.type === FCGI_STDERR) {
      if (record.content.length === 0) this.stderrEnded = true;
      else this.stderr += record.content.toString();
    } else if (record.type === FCGI_END_REQUEST) {
      this.end = decodeEndRequestBody(record.content);
    }
  }
}

/** Responses groups a decoded byte stream by request id. */
export class Responses {
  /** records are the decoded records, in order, with their content copied. */
  readonly records: FcgiRecord[] = [];
  readonly byId = new Map<number, Reply>();
  /** keepRecords keeps every record in `records` (off for bulk transfers). */
  keepRecords = true;
  readonly #decoder = new RecordDecoder();

  /** push decodes more bytes of the responder's output. */
  push(chunk: Uint8Array): void {
    this.#decoder.push(chunk);
    for (const r of this.#decoder) {
      if (this.keepRecords || r.requestId === 0) {
        this.records.push({ ...r, content: Buffer.from(r.content) });
      }
      if (r.requestId === 0) continue;
      let reply = this.byId.get(r.requestId);
      if (reply === undefined) {
        reply = new Reply();
        this.byId.set(r.requestId, reply);
      }
      reply.add(r);
    }
  }

  /** forget drops the reply of `id`, before that id is begun again on a kept-alive connection. */
  forget(id: number): void {
    this.byId.delete(id);
  }
}

/** TestClient is a web server's side of one connection, at the byte level. */
export class TestClient {
  readonly socket: Socket;
  readonly responses = new Responses();
  readonly raw: Buffer[] = [];
  /** keepRaw keeps every received chunk in `raw` (off for bulk transfers). */
  keepRaw = true;
  closed = false;
  readonly #waiters = new Set<() => void>();

  constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      if (this.keepRaw) this.raw.push(chunk);
      this.responses.push(chunk);
      this.#wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.#wake();
    });
    socket.on('error', () => undefined);
  }

  /** send writes bytes to the responder. */
  send(data: Uint8Array): void {
    this.socket.write(data);
  }

  /** output is every byte received so far. */
  get output(): Buffer {
    return Buffer.concat(this.raw);
  }

  /** reply is what request `id` got so far. */
  reply(id = 1): Reply | undefined {
    return this.responses.byId.get(id);
  }

  /** until waits for `predicate` to hold, failing after `ms`. */
  async until(predicate: () => boolean, ms = 3000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + ms;
    while (!predicate()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
      // Woken by the socket, or after a few ms for conditions on the responder's side.
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, Math.min(left, 5));
        function done(): void {
          clearTimeout(t);
          resolve();
        }
        this.#waiters.add(done);
      });
    }
  }

  /** ended waits for FCGI_END_REQUEST of request `id`. */
  async ended(id = 1, ms = 3000): Promise<Reply> {
    await this.until(() => this.reply(id)?.end !== undefined, ms, `END_REQUEST of ${id}`);
    return this.reply(id)!;
  }

  /** waitClosed waits until the responder closed the connection. */
  async waitClosed(ms = 3000): Promise<void> {
    await this.until(() => this.closed, ms, 'the connection to close');
  }

  /** close destroys the client socket. */
  close(): void {
    this.socket.destroy();
  }

  #wake(): void {
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const w of waiters) w();
  }
}

/** connectClient opens a connection to the responder. */
export async function connectClient(port: number): Promise<TestClient> {
  const socket = connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  await once(socket, 'connect');
  return new TestClient(socket);
}

/** splitHead splits a CGI response into its header block and body. */
export function splitHead(stdout: Buffer): {
  status: number;
  headers: Map<string, string>;
  body: Buffer;
} {
  const at = stdout.indexOf('\r\n\r\n');
  if (at < 0)
    throw new Error(`no header block in ${JSON.stringify(stdout.toString().slice(0, 200))}`);
  const lines = stdout.subarray(0, at).toString('latin1').split('\r\n');
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
  }
  const status = Number((headers.get('status') ?? '200').slice(0, 3));
  return { status, headers, body: stdout.subarray(at + 4) };
}

/** settled waits until the counters show no request in progress. */
export async function settled(counters: FcgiCounters, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (counters.requests !== 0) {
    if (Date.now() > deadline) throw new Error(`requests counter stuck at ${counters.requests}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
