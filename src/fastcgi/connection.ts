// The application side of one FastCGI transport connection (FastCGI spec §3–§5): records in,
// requests multiplexed by id, management records answered, limits and flow control enforced.
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { BridgeError } from '../errors.js';
import type { GatewayApp } from '../gateway/types.js';
import {
  resolveResponderOptions,
  type ResolvedResponderOptions,
  type ResponderOptions,
} from './options.js';
import { OutputQueue } from './output.js';
import {
  FCGI_ABORT_REQUEST,
  FCGI_BEGIN_REQUEST,
  FCGI_CANT_MPX_CONN,
  FCGI_DATA,
  FCGI_FILTER,
  FCGI_GET_VALUES,
  FCGI_MAX_CONNS,
  FCGI_MAX_REQS,
  FCGI_MPXS_CONNS,
  FCGI_OVERLOADED,
  FCGI_PARAMS,
  FCGI_RESPONDER,
  FCGI_STDIN,
  FCGI_UNKNOWN_ROLE,
  recordTypeName,
} from './protocol.js';
import {
  RecordDecoder,
  decodeBeginRequestBody,
  decodeGetValues,
  encodeEndRequest,
  encodeGetValuesResult,
  encodeUnknownType,
  type FcgiRecord,
} from './records.js';
import { FcgiRequest, type RequestHost } from './request.js';
import { RequestTable } from './request-table.js';

function protocolError(message: string): BridgeError {
  return new BridgeError('FCGI_ERR_PROTOCOL', `fcgi: ${message}`);
}

// Errors that only say the peer went away: not worth a log line.
const QUIET_ERRORS = new Set(['ECONNRESET', 'EPIPE', 'ERR_STREAM_DESTROYED', 'ECONNABORTED']);

/**
 * FcgiConnection serves the records of one transport connection (a web server's socket) with
 * one gateway app; {@link handleConnection} makes one.
 *
 * - Requests: FCGI_BEGIN_REQUEST makes a request id active, FCGI_END_REQUEST (sent by the
 *   request) makes it inactive; records for an inactive id that was active before are ignored
 *   (FastCGI spec §3.3), records for an id never begun on the connection are a protocol error.
 * - Limits: a second concurrent request when multiplexing is off gets FCGI_CANT_MPX_CONN; past
 *   `maxRequestsPerConnection` or the process-wide `maxConcurrentRequests`, FCGI_OVERLOADED; an
 *   unknown role FCGI_UNKNOWN_ROLE (FastCGI spec §5.5).
 * - Management records (id 0): FCGI_GET_VALUES is answered with the names asked that the
 *   responder knows, with the limits it enforces; any other type gets FCGI_UNKNOWN_TYPE (§4).
 * - FCGI_KEEP_CONN (§5.1): without it, the connection is closed once that request's
 *   FCGI_END_REQUEST is written (and no other request is active).
 * - Flow control: when the connection carries a single request whose unread body exceeds
 *   `stdinHighWaterMark`, the socket is paused until the app reads; a multiplexed connection is
 *   never paused (that would stall its other requests): see `maxStdinBuffer`.
 * - Malformed input (bad version, truncated or impossible records, a record out of order)
 *   closes this connection only, with one log line; its active requests are aborted.
 * - Idle: no request and nothing received for `idleTimeoutMs` closes the connection.
 */
export class FcgiConnection implements RequestHost {
  /** app is the gateway app every request runs. */
  readonly app: GatewayApp;
  /** options are the resolved responder options. */
  readonly options: ResolvedResponderOptions;
  /** output is the connection's record output queue. */
  readonly output: OutputQueue;
  /** closed resolves once the socket is closed and every request of it has settled. */
  readonly closed: Promise<void>;
  /** onInputConsumed re-checks flow control after an app read input (RequestHost). */
  readonly onInputConsumed = (): void => this.flowChanged();
  readonly #socket: Duplex;
  // Request bodies are passed on as they arrive: a record cut across socket reads is never copied.
  readonly #decoder = new RecordDecoder({ streamTypes: [FCGI_STDIN, FCGI_DATA] });
  readonly #requests = new RequestTable<FcgiRequest>();
  // Ids begun on this connection: a record for one of them after its end is ignored, a record
  // for any other id means the peer lost track of the protocol.
  readonly #seen = new Set<number>();
  readonly #peer: string;
  #live = 0; // requests not yet settled
  #paused = false;
  #closing = false; // no more records are read
  #socketClosed = false;
  #closeWhenIdle = false;
  #draining = false;
  #closeTimer: NodeJS.Timeout | null = null;
  #drainTimer: NodeJS.Timeout | null = null;
  #resolveClosed: () => void = () => undefined;
  // Requests whose params ended in the records being dispatched: their apps start once the
  // rest of those records is in (see FcgiRequest.onParams).
  #starting: FcgiRequest[] = [];

  /** constructor starts serving `socket`; prefer {@link handleConnection}. */
  constructor(socket: Duplex, app: GatewayApp, options: ResolvedResponderOptions) {
    this.app = app;
    this.options = options;
    this.#socket = socket;
    this.output = new OutputQueue(socket);
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    this.#peer = describePeer(socket);
    const counters = options.counters;
    socket.on('error', (error: Error) => this.#onError(error));
    socket.on('close', () => this.#onClose());
    if (socket.destroyed) {
      this.#closing = true;
      this.#socketClosed = true;
      this.#resolveClosed();
      return;
    }
    if (counters.connections >= options.maxConnections) {
      // FCGI_MAX_CONNS is advertised, so it is enforced (FastCGI spec §4.1).
      this.#closing = true;
      this.#socketClosed = true;
      options.log(
        `fcgi: ${this.#peer}: connection refused: ${counters.connections} connections open (maxConnections ${options.maxConnections})`,
      );
      socket.destroy();
      this.#resolveClosed();
      return;
    }
    counters.connections += 1;
    if (socket instanceof Socket) {
      // Records are small and latency matters: no Nagle delay (FastCGI over TCP, as nginx does).
      socket.setNoDelay(true);
      const idle = options.idleTimeoutMs;
      if (idle > 0 && Number.isFinite(idle)) {
        socket.setTimeout(idle);
        socket.on('timeout', () => this.#onIdle());
      }
    }
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('end', () => this.#onEnd());
  }

  /** activeRequests is the number of active request ids on the connection. */
  get activeRequests(): number {
    return this.#requests.size;
  }

  /** paused tells whether reading is paused for flow control (a request's unread body). */
  get paused(): boolean {
    return this.#paused;
  }

  /** unreadInput is how many received body bytes (FCGI_STDIN, FCGI_DATA) its apps have not read yet. */
  get unreadInput(): number {
    let total = 0;
    for (const request of this.#requests.values()) total += request.unreadInput;
    return total;
  }

  /**
   * shutdown stops the connection gracefully. Requests keep being served as they come (a web
   * server reuses its kept-alive connections and may be sending one right now: closing after a
   * response races with that reuse, and nginx answers 502 to what it had sent), and the
   * connection is closed once it has stayed idle for `drainGraceMs`, when the web server is
   * least likely to pick it. A busy multiplexed connection refuses new requests with
   * FCGI_OVERLOADED. The process's graceful timeout bounds how long this may take.
   */
  shutdown(): Promise<void> {
    if (this.#draining || this.#closing) return this.closed;
    this.#draining = true;
    const grace = this.options.drainGraceMs;
    if (!(grace > 0 && Number.isFinite(grace))) {
      this.#closeWhenIdle = true;
      if (this.#requests.size === 0) this.#endSocket();
      return this.closed;
    }
    let idleSince = this.#requests.size === 0 ? Date.now() : 0;
    this.#drainTimer = setInterval(
      () => {
        if (this.#requests.size > 0) {
          idleSince = 0;
        } else if (idleSince === 0) {
          idleSince = Date.now();
        } else if (Date.now() - idleSince >= grace) {
          this.#endSocket();
        }
      },
      Math.max(10, Math.min(250, grace / 4)),
    );
    this.#drainTimer.unref();
    return this.closed;
  }

  /** destroy closes the connection at once; its active requests are aborted. */
  destroy(): void {
    this.#closing = true;
    this.output.close();
    this.#abortAll();
    this.#socket.destroy();
  }

  // RequestHost

  /** isShared tells whether more than one request is active (the connection is multiplexed). */
  isShared(): boolean {
    return this.#requests.size > 1;
  }

  /**
   * flowChanged re-checks the flow-control state: the socket is paused while the only active
   * request has more than `stdinHighWaterMark` unread input bytes, and resumed once it is
   * down to half of that. It is not paused while one of that request's streams has a reader
   * waiting (a Filter reading FCGI_DATA before the rest of FCGI_STDIN): that would deadlock.
   */
  flowChanged(): void {
    if (this.#closing) return;
    let pause = false;
    if (this.#requests.size === 1) {
      const request = this.#requests.first()!;
      const limit = this.#paused
        ? this.options.stdinHighWaterMark / 2
        : this.options.stdinHighWaterMark;
      pause = request.unreadInput > limit && !request.inputWanted;
      request.stdin.notify = pause;
      if (request.data) request.data.notify = pause;
    }
    if (pause === this.#paused) return;
    this.#paused = pause;
    if (pause) this.#socket.pause();
    else this.#socket.resume();
  }

  /** requestEnded makes the request's id inactive; without FCGI_KEEP_CONN the connection closes. */
  requestEnded(request: FcgiRequest): void {
    this.#requests.deleteIf(request.id, request);
    if (!request.keepConn) this.#closeWhenIdle = true;
    if (this.#requests.size === 0 && this.#closeWhenIdle) this.#endSocket();
    else this.flowChanged();
  }

  /** requestSettled releases the request's place in the process-wide count. */
  requestSettled(_request: FcgiRequest): void {
    this.options.counters.requests -= 1;
    this.#live -= 1;
    this.#checkClosed();
  }

  // Input

  #onData(chunk: Buffer): void {
    if (this.#closing) return;
    this.#decoder.push(chunk);
    try {
      for (let record = this.#decoder.read(); record !== null; record = this.#decoder.read()) {
        this.#dispatch(record);
        if (this.#closing) break;
      }
    } catch (error) {
      this.#protocolError(error);
    }
    this.#startApps();
    if (!this.#closing) this.flowChanged();
  }

  // startApps starts the apps whose params ended in the records just dispatched; a request
  // aborted or refused meanwhile does not start.
  #startApps(): void {
    const starting = this.#starting;
    if (starting.length === 0) return;
    this.#starting = [];
    for (const request of starting) request.start();
  }

  #dispatch(record: FcgiRecord): void {
    const { type, requestId, content } = record;
    if (requestId === 0) {
      this.#management(type, content);
      return;
    }
    if (type === FCGI_BEGIN_REQUEST) {
      this.#begin(requestId, content);
      return;
    }
    const request = this.#requests.get(requestId);
    if (request === undefined) {
      // FastCGI spec §3.3: while an id is inactive its records are ignored — typically the
      // rest of a body after an early answer, or an abort that crossed our FCGI_END_REQUEST.
      if (this.#seen.has(requestId)) return;
      throw protocolError(
        `${recordTypeName(type)} for request ${requestId}, which was never begun on this connection`,
      );
    }
    switch (type) {
      case FCGI_PARAMS:
        if (request.onParams(content)) this.#starting.push(request);
        return;
      case FCGI_STDIN:
        request.onStdin(content);
        return;
      case FCGI_DATA:
        request.onData(content);
        return;
      case FCGI_ABORT_REQUEST:
        request.onAbort();
        return;
      default:
        throw protocolError(`unexpected ${recordTypeName(type)} for request ${requestId}`);
    }
  }

  #begin(id: number, content: Buffer): void {
    if (this.#requests.has(id)) {
      throw protocolError(`FCGI_BEGIN_REQUEST for request ${id}, which is already active`);
    }
    const { role, keepConn } = decodeBeginRequestBody(content);
    this.#seen.add(id);
    const options = this.options;
    let refusal = -1;
    if (role < FCGI_RESPONDER || role > FCGI_FILTER) refusal = FCGI_UNKNOWN_ROLE;
    else if (this.#requests.size > 0 && !options.multiplex) refusal = FCGI_CANT_MPX_CONN;
    else if (
      (this.#draining && this.#requests.size > 0) ||
      this.#requests.size >= options.maxRequestsPerConnection ||
      options.counters.requests >= options.maxConcurrentRequests
    ) {
      refusal = FCGI_OVERLOADED;
    }
    if (refusal >= 0) {
      // FastCGI spec §5.5: the request is rejected with FCGI_END_REQUEST at once; its later
      // records are ignored like those of any inactive id.
      this.output.push(encodeEndRequest(id, 0, refusal));
      if (!keepConn) {
        this.#closeWhenIdle = true;
        if (this.#requests.size === 0) this.#endSocket();
      }
      return;
    }
    options.counters.requests += 1;
    this.#live += 1;
    this.#requests.set(id, new FcgiRequest(this, id, role, keepConn));
  }

  #management(type: number, content: Buffer): void {
    if (type !== FCGI_GET_VALUES) {
      // FastCGI spec §4.2: a management record we do not understand is answered, not fatal.
      this.output.push(encodeUnknownType(type));
      return;
    }
    // FastCGI spec §4.1: answer only the names asked that we know; the values are the limits
    // this responder enforces (an unlimited one is not a value we can state, so it is left out).
    const options = this.options;
    const answered = new Map<string, string>();
    for (const name of decodeGetValues(content)) {
      let value: number | undefined;
      if (name === FCGI_MAX_CONNS) value = options.maxConnections;
      else if (name === FCGI_MAX_REQS) value = options.maxConcurrentRequests;
      else if (name === FCGI_MPXS_CONNS) value = options.multiplex ? 1 : 0;
      if (value !== undefined && Number.isFinite(value)) answered.set(name, String(value));
    }
    this.output.push(encodeGetValuesResult(answered));
  }

  #onEnd(): void {
    // The web server half-closed: it sends nothing more.
    if (this.#closing) {
      this.#socket.destroy();
      return;
    }
    this.#decoder.end();
    try {
      for (let record = this.#decoder.read(); record !== null; record = this.#decoder.read()) {
        this.#dispatch(record);
      }
    } catch (error) {
      this.#protocolError(error);
      this.#startApps();
      return;
    }
    this.#startApps();
    // A request whose params or input are incomplete can never complete now (an Authorizer's
    // input is complete from the start, its params need not be); one that has them all can
    // still answer if the socket stays writable (allowHalfOpen).
    for (const request of this.#requests.values()) {
      if (!request.paramsComplete || !request.inputComplete) request.connectionLost();
    }
    this.#closeWhenIdle = true;
    if (this.#requests.size === 0) this.#endSocket();
  }

  #onIdle(): void {
    if (this.#closing || this.#requests.size > 0) return;
    this.#endSocket();
  }

  #onError(error: Error): void {
    const code = (error as NodeJS.ErrnoException).code;
    if (!this.#closing && (code === undefined || !QUIET_ERRORS.has(code))) {
      this.options.log(`fcgi: ${this.#peer}: connection error: ${error.message}`);
    }
    // 'close' follows and aborts the requests.
  }

  #onClose(): void {
    if (this.#socketClosed) return;
    this.#socketClosed = true;
    this.#closing = true;
    this.options.counters.connections -= 1;
    if (this.#closeTimer !== null) clearTimeout(this.#closeTimer);
    if (this.#drainTimer !== null) clearInterval(this.#drainTimer);
    this.output.close();
    this.#abortAll();
    this.#checkClosed();
  }

  #checkClosed(): void {
    if (this.#socketClosed && this.#live === 0) this.#resolveClosed();
  }

  #abortAll(): void {
    for (const request of this.#requests.values()) request.connectionLost();
    this.#requests.clear();
  }

  #protocolError(error: unknown): void {
    if (this.#closing) return;
    const message = error instanceof Error ? error.message : String(error);
    const active = this.#requests.size;
    this.options.log(
      `fcgi: ${this.#peer}: ${message}; closing the connection${active > 0 ? ` (${active} active request${active > 1 ? 's' : ''} aborted)` : ''}`,
    );
    this.destroy();
  }

  // endSocket closes gracefully: what is queued is written, then FIN; the socket is destroyed
  // when the peer closes too, or after closeTimeoutMs.
  #endSocket(): void {
    if (this.#closing) return;
    this.#closing = true;
    const socket = this.#socket;
    this.output.flush();
    this.output.close();
    this.#abortAll();
    socket.end();
    // Keep reading (and dropping) so the peer's FIN is seen even if the socket was paused.
    if (this.#paused) socket.resume();
    if (!this.#socketClosed) {
      this.#closeTimer = setTimeout(() => socket.destroy(), this.options.closeTimeoutMs);
      this.#closeTimer.unref();
    }
  }
}

function describePeer(socket: Duplex): string {
  if (socket instanceof Socket) {
    const address = socket.remoteAddress;
    if (address !== undefined) {
      return address.includes(':')
        ? `[${address}]:${socket.remotePort}`
        : `${address}:${socket.remotePort}`;
    }
    return 'unix socket peer';
  }
  return 'peer';
}

/**
 * handleConnection serves one accepted connection (a `net.Socket`, or any Duplex carrying
 * FastCGI records) with `app` until it closes; see {@link FcgiConnection} for the policies.
 * Pass the same resolved `options` (or at least the same `counters`) to every connection of a
 * process so the process-wide limits hold.
 */
export function handleConnection(
  socket: Duplex,
  app: GatewayApp,
  options: ResponderOptions = {},
): FcgiConnection {
  return new FcgiConnection(socket, app, resolveResponderOptions(options));
}
