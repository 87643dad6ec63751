// The one response pipeline: runs an app for one request and drives a front end's ResponseWriter.
// Every front end (CGI child, FastCGI responder, HTTP server) calls runApp; none repeats these rules.
import { BridgeError } from '../errors.js';
import { kBodyLength, type SizedBody } from './file-wrapper.js';
import { findHeader, parseStatus, validateHeaders, type ParsedStatus } from './headers.js';
import { requestSignalOf, type RequestSignal } from './signal.js';
import type { Body, Environ, GatewayApp, Header, StartResponse, Write } from './types.js';

/**
 * ResponseWriter is the I/O a front end supplies. The pipeline calls `writeHead` once, then
 * `write` for each non-empty chunk (awaiting it for backpressure), then exactly one of `end`
 * (the response is complete) or `abort` (cut it off: the client must see a broken response).
 * Calls never overlap: each one is awaited before the next is made.
 */
export interface ResponseWriter {
  writeHead(code: number, reason: string, headers: Header[]): void | Promise<void>;
  write(chunk: Uint8Array): void | Promise<void>;
  end(): void | Promise<void>;
  abort(error: unknown): void;
}

/** RunResult tells a front end how a request ended (exit code, FastCGI app status, connection reuse). */
export interface RunResult {
  /** status is the code sent (0 when nothing was sent). */
  status: number;
  /** ok is true when the response was sent whole. */
  ok: boolean;
  /** aborted is true when the client or web server went away (gateway.signal or a failed write). */
  aborted: boolean;
  /** error is the app's error, when there was one. */
  error?: unknown;
  /** bytes is the number of body bytes written. */
  bytes: number;
}

const encoder = new TextEncoder();
// RFC 9110 §15.3.5, §15.4.5: 204 and 304 never carry content (HEAD is handled by method).
const NO_BODY_STATUS = new Set([204, 304]);
// Reason phrases for the error responses the pipeline renders itself (RFC 9110 §15).
const REASONS: ReadonlyMap<number, string> = new Map([
  [400, 'Bad Request'],
  [403, 'Forbidden'],
  [404, 'Not Found'],
  [405, 'Method Not Allowed'],
  [408, 'Request Timeout'],
  [411, 'Length Required'],
  [413, 'Content Too Large'],
  [414, 'URI Too Long'],
  [431, 'Request Header Fields Too Large'],
  [500, 'Internal Server Error'],
  [502, 'Bad Gateway'],
  [503, 'Service Unavailable'],
  [504, 'Gateway Timeout'],
]);

const noop = (): void => undefined;

/** toBytes encodes a chunk: strings as UTF-8, bytes as they are; anything else is an app error. */
export function toBytes(chunk: unknown): Uint8Array {
  if (typeof chunk === 'string') {
    // Node's pooled allocator, not a fresh ArrayBuffer per chunk (TextEncoder's), seen as a
    // plain Uint8Array like before.
    const b = Buffer.from(chunk, 'utf8');
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  }
  if (chunk instanceof Uint8Array) return chunk;
  throw new BridgeError(
    'GATEWAY_ERR_BAD_CHUNK',
    `gateway: body chunks must be strings or Uint8Arrays, got ${chunk === null ? 'null' : typeof chunk}`,
  );
}

// Aborted marks the end of a request because the client or web server went away. Apps see it
// (from an awaited write()) as a coded error they may catch or rethrow.
class Aborted extends BridgeError {
  constructor(options?: { cause?: unknown }) {
    super('GATEWAY_ERR_ABORTED', 'gateway: the client or web server went away', options);
  }
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return (
    (typeof v === 'object' || typeof v === 'function') &&
    v !== null &&
    typeof (v as { then?: unknown }).then === 'function'
  );
}

/** errorMessage renders an error with its stack and causes for gateway.errors. */
export function errorMessage(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  let s = error.stack ?? `${error.name}: ${error.message}`;
  const code = (error as { code?: unknown }).code;
  if (code !== undefined && !s.includes(String(code))) s = `[${String(code)}] ${s}`;
  if (error.cause !== undefined) s += `\ncaused by: ${errorMessage(error.cause)}`;
  return s;
}

/**
 * runApp runs `app` for one request and sends its response through `writer`: headers held until
 * the first non-empty chunk, Content-Length added when the length is known, no body for HEAD,
 * 204 and 304, a generic 500 for an error before headers and a cut-off response after them,
 * and the body's `close()` called exactly once. It never throws; the result says how it ended.
 */
export async function runApp(
  app: GatewayApp,
  environ: Environ,
  writer: ResponseWriter,
): Promise<RunResult> {
  return new Exchange(environ, writer).start(app);
}

/**
 * startApp is {@link runApp} for front ends on a hot path: when the app returns an array body
 * synchronously and every writer call completes synchronously (the common small response),
 * the request is done when it returns and the result comes without a promise.
 */
export function startApp(
  app: GatewayApp,
  environ: Environ,
  writer: ResponseWriter,
): RunResult | Promise<RunResult> {
  try {
    return new Exchange(environ, writer).start(app);
  } catch (e) {
    return Promise.reject(e instanceof Error ? e : new Error(String(e)));
  }
}

type AnyIterator = Iterator<unknown> | AsyncIterator<unknown>;

class Exchange {
  private status: ParsedStatus | undefined;
  private headers: Header[] = [];
  private headersSent = false;
  private sentStatus = 0;
  private declaredLength: number | undefined;
  private bytes = 0;
  private finished = false;
  private writerFailed = false;
  // Writer calls run one after the other through this queue: write() need not be awaited
  // (PEP 3333's write is synchronous) and its bytes still go out in call order.
  private tail: Promise<void> | null = null;
  // The first failure of a queued send; later sends fail with it and run() reports it.
  private failure: unknown;
  private readonly noBody: boolean;
  // The front end's abort state: its RequestSignal (read without making an AbortController),
  // else the environ's signal. Never the app's view, which a --timeout also fires.
  private readonly requestSignal: RequestSignal | undefined;
  private readonly plainSignal: AbortSignal | undefined;
  // Pending raceAbort rejecters; one signal listener serves them all (no listener per chunk).
  private waiters: Set<(e: unknown) => void> | null = null;
  private listeningTo: AbortSignal | undefined;
  // The abort listener and the legacy write() are made on first use: most requests need neither.
  private abortListener: (() => void) | null = null;
  private writeFn: Write | null = null;
  private get onAbort(): () => void {
    return (this.abortListener ??= (): void => {
      const waiters = this.waiters;
      this.waiters = null;
      if (waiters !== null) for (const reject of waiters) reject(new Aborted());
    });
  }

  constructor(
    private readonly environ: Environ,
    private readonly writer: ResponseWriter,
  ) {
    this.noBody = environ.REQUEST_METHOD === 'HEAD';
    this.requestSignal = requestSignalOf(environ);
    if (this.requestSignal === undefined) {
      const signal: unknown = environ['gateway.signal'];
      this.plainSignal = signal instanceof AbortSignal ? signal : undefined;
    }
  }

  private get aborted(): boolean {
    return this.requestSignal !== undefined
      ? this.requestSignal.aborted
      : (this.plainSignal?.aborted ?? false);
  }

  private log(message: string): void {
    try {
      this.environ['gateway.errors'].write(message.endsWith('\n') ? message : `${message}\n`);
    } catch {
      // a broken log never breaks the request
    }
  }

  // raceAbort settles with `value`, or rejects with Aborted as soon as gateway.signal fires.
  private raceAbort<T>(value: T | PromiseLike<T>): Promise<T> {
    if (this.aborted) {
      if (isThenable(value)) Promise.resolve(value).catch(noop);
      return Promise.reject(new Aborted());
    }
    if (!isThenable(value)) return Promise.resolve(value);
    if (this.listeningTo === undefined) {
      const signal = this.requestSignal?.own ?? this.plainSignal;
      if (signal === undefined) return Promise.resolve(value);
      signal.addEventListener('abort', this.onAbort, { once: true });
      this.listeningTo = signal;
    }
    const waiters = (this.waiters ??= new Set());
    return new Promise<T>((resolve, reject) => {
      waiters.add(reject);
      Promise.resolve(value).then(
        (v) => {
          waiters.delete(reject);
          resolve(v);
        },
        (e: unknown) => {
          waiters.delete(reject);
          reject(e);
        },
      );
    });
  }

  // enqueue runs `task` after every earlier writer task; once one failed, the rest fail alike.
  private enqueue(task: () => Promise<void>): Promise<void> {
    const p = (this.tail ?? Promise.resolve()).then(() => {
      if (this.failure !== undefined) throw this.failure;
      return task();
    });
    this.tail = p.catch((e: unknown) => {
      this.failure ??= e;
    });
    return p;
  }

  private readonly startResponse: StartResponse = (status, headers, excInfo) => {
    if (excInfo !== undefined) {
      // PEP 3333: with exc_info after headers went out, re-raise the original error.
      if (this.headersSent) throw excInfo;
    } else if (this.status !== undefined) {
      throw new BridgeError(
        'GATEWAY_ERR_START_RESPONSE_TWICE',
        'gateway: startResponse called a second time without excInfo',
      );
    }
    if (this.finished) {
      throw new BridgeError(
        'GATEWAY_ERR_WRITE_AFTER_END',
        'gateway: startResponse called after the response ended',
      );
    }
    const parsed = parseStatus(status);
    const list = validateHeaders(headers);
    const cl = findHeader(list, 'content-length');
    this.status = parsed;
    this.headers = list;
    this.declaredLength = cl === undefined ? undefined : Number(cl);
    return (this.writeFn ??= (chunk) => this.legacyWrite(chunk));
  };

  private legacyWrite(chunk: unknown): Promise<void> {
    if (this.finished) {
      throw new BridgeError(
        'GATEWAY_ERR_WRITE_AFTER_END',
        'gateway: write() called after the response ended',
      );
    }
    const bytes = toBytes(chunk);
    const p = this.enqueue(() => this.send(bytes, undefined));
    // An app that does not await write() must not crash the process with an unhandled
    // rejection; the failure is kept in `failure` and ends the request in run().
    p.catch(noop);
    return p;
  }

  private async sendHeaders(knownLength: number | undefined): Promise<void> {
    const status = this.status;
    if (!status) {
      throw new BridgeError(
        'GATEWAY_ERR_NO_START_RESPONSE',
        'gateway: the app produced a body without calling startResponse first',
      );
    }
    const headers = this.headers;
    const bodyless = NO_BODY_STATUS.has(status.code);
    if (knownLength !== undefined && this.declaredLength === undefined && !bodyless) {
      headers.push(['Content-Length', String(knownLength)]);
      this.declaredLength = knownLength;
    }
    this.headersSent = true;
    this.sentStatus = status.code;
    await this.out(() => this.writer.writeHead(status.code, status.reason, headers));
  }

  // out calls the writer; a writer failure means the client or web server is gone.
  private async out(fn: () => void | Promise<void>): Promise<void> {
    try {
      await this.raceAbort(fn());
    } catch (e) {
      if (e instanceof Aborted) throw e;
      this.writerFailed = true;
      throw new Aborted({ cause: e });
    }
  }

  private get dropBody(): boolean {
    return this.noBody || (this.status !== undefined && NO_BODY_STATUS.has(this.status.code));
  }

  private async send(bytes: Uint8Array, knownLength: number | undefined): Promise<void> {
    if (bytes.length === 0) return;
    if (!this.headersSent) await this.sendHeaders(knownLength);
    if (this.dropBody) return;
    if (this.declaredLength !== undefined && this.bytes + bytes.length > this.declaredLength) {
      throw new BridgeError(
        'GATEWAY_ERR_CONTENT_LENGTH_MISMATCH',
        `gateway: the app sent more than its Content-Length of ${this.declaredLength} bytes`,
      );
    }
    this.bytes += bytes.length;
    await this.out(() => this.writer.write(bytes));
  }

  private abortWriter(error: unknown): void {
    try {
      this.writer.abort(error);
    } catch (e) {
      this.log(`gateway: writer abort() failed: ${errorMessage(e)}`);
    }
  }

  // closeBody calls the body's close(), if any; it returns the error close() threw.
  private async closeBody(body: unknown): Promise<unknown> {
    if (body === null || (typeof body !== 'object' && typeof body !== 'function')) return undefined;
    const close = (body as { close?: unknown }).close;
    if (typeof close !== 'function') return undefined;
    try {
      await (close as () => unknown).call(body);
    } catch (e) {
      this.log(`gateway: body close() failed: ${errorMessage(e)}`);
      return e ?? new Error(String(e));
    }
    return undefined;
  }

  /** start calls the app and sends its response (see {@link startApp}). */
  start(app: GatewayApp): RunResult | Promise<RunResult> {
    let returned: unknown;
    try {
      returned = app(this.environ, this.startResponse);
    } catch (e) {
      return this.run(e, true);
    }
    if (Array.isArray(returned)) {
      const result = this.tryArrayNow(returned);
      if (result !== undefined) return result;
    }
    return this.run(returned, false);
  }

  private async run(returned: unknown, threw: boolean): Promise<RunResult> {
    try {
      return await this.runInner(returned, threw);
    } finally {
      this.stopListening();
    }
  }

  // stopListening removes the abort listener raceAbort added, if any.
  private stopListening(): void {
    if (this.abortListener !== null) {
      this.listeningTo?.removeEventListener('abort', this.abortListener);
    }
    this.listeningTo = undefined;
  }

  // tryArrayNow sends an array body returned synchronously without promises, when nothing
  // needs the general path: a status is set, no write() was queued, no close() to call, every
  // chunk a string or bytes, and a declared Content-Length that matches. Otherwise undefined.
  private tryArrayNow(body: unknown[]): RunResult | Promise<RunResult> | undefined {
    const status = this.status;
    if (status === undefined || this.tail !== null || this.aborted) return undefined;
    if (typeof (body as { close?: unknown }).close === 'function') return undefined;
    const chunks: Uint8Array[] = [];
    let known = 0;
    for (const c of body) {
      if (typeof c !== 'string' && !(c instanceof Uint8Array)) return undefined;
      const bytes = toBytes(c);
      known += bytes.length;
      chunks.push(bytes);
    }
    const bodyless = NO_BODY_STATUS.has(status.code);
    const drop = this.noBody || bodyless;
    if (!drop && this.declaredLength !== undefined && this.declaredLength !== known) {
      return undefined;
    }
    this.finished = true;
    if (this.declaredLength === undefined && !bodyless) {
      this.headers.push(['Content-Length', String(known)]);
      this.declaredLength = known;
    }
    this.headersSent = true;
    this.sentStatus = status.code;
    return this.stepsNow(-1, drop ? [] : chunks);
  }

  // stepsNow makes the writer calls from step `from` (-1 the head, then the chunks, then the
  // end) while they complete synchronously; the first that returns a promise continues async.
  private stepsNow(from: number, chunks: Uint8Array[]): RunResult | Promise<RunResult> {
    const writer = this.writer;
    const status = this.status!;
    try {
      for (let i = from; i <= chunks.length; i++) {
        let r: void | Promise<void>;
        if (i < 0) {
          r = writer.writeHead(status.code, status.reason, this.headers);
        } else if (i < chunks.length) {
          const chunk = chunks[i]!;
          if (chunk.length === 0) continue;
          this.bytes += chunk.length;
          r = writer.write(chunk);
        } else {
          r = writer.end();
        }
        if (isThenable(r)) return this.stepsLater(r, i + 1, chunks);
      }
    } catch (e) {
      return this.writerGone(e);
    }
    return { status: this.sentStatus, ok: true, aborted: false, bytes: this.bytes };
  }

  private async stepsLater(
    pending: PromiseLike<void>,
    next: number,
    chunks: Uint8Array[],
  ): Promise<RunResult> {
    try {
      await this.out(() => pending as Promise<void>);
    } catch (e) {
      return this.writerGone(e);
    } finally {
      this.stopListening();
    }
    return this.stepsNow(next, chunks);
  }

  // writerGone ends a request whose writer failed (or whose client went away) mid-response.
  private writerGone(e: unknown): RunResult {
    this.writerFailed = true;
    this.abortWriter(e instanceof Aborted ? e : new Aborted({ cause: e }));
    return { status: this.sentStatus, ok: false, aborted: true, bytes: this.bytes };
  }

  private async runInner(returned: unknown, threw: boolean): Promise<RunResult> {
    let body: Body | undefined;
    let gotBody = false;
    let iterator: AnyIterator | undefined;
    let error: unknown;
    let aborted = false;
    try {
      if (threw) throw returned;
      body = await this.raceAbort(returned as Body | Promise<Body>);
      gotBody = true;
      await this.iterate(body, (it) => (iterator = it));
    } catch (e) {
      if (e instanceof Aborted || this.aborted) aborted = true;
      else error = e;
    }
    this.finished = true;
    // Writes the app queued and did not await still go out (or fail) before the end.
    if (this.tail !== null) await this.tail;
    if (this.failure !== undefined && error === undefined && !aborted) {
      if (this.failure instanceof Aborted) aborted = true;
      else error = this.failure;
    }
    if (iterator && (aborted || error !== undefined)) {
      // Stop a generator where it is, so its finally blocks run; do not wait for a pending await.
      try {
        const r = iterator.return?.();
        if (isThenable(r)) Promise.resolve(r).catch(noop);
      } catch {
        // a generator throwing from finally is reported by close() below if it matters
      }
    }
    if (gotBody) {
      const closeError = await this.closeBody(body);
      if (closeError !== undefined && error === undefined && !aborted) error = closeError;
    } else if (!threw && isThenable(returned)) {
      // The client went away while the app was still working: close its body when it arrives.
      Promise.resolve(returned).then((b) => this.closeBody(b), noop);
    }
    if (aborted || this.writerFailed) {
      this.abortWriter(error ?? new Aborted());
      return { status: this.sentStatus, ok: false, aborted: true, error, bytes: this.bytes };
    }
    if (error !== undefined) return this.fail(error);
    return this.finish();
  }

  // finish completes a response whose body was produced without error.
  private async finish(): Promise<RunResult> {
    const short = (): BridgeError =>
      new BridgeError(
        'GATEWAY_ERR_CONTENT_LENGTH_MISMATCH',
        `gateway: the app sent ${this.bytes} of its Content-Length of ${this.declaredLength} bytes`,
      );
    const checkLength = !this.dropBody && this.declaredLength !== undefined;
    try {
      if (!this.headersSent) {
        // Nothing went out yet: a declared length the body never filled is still a clean 500.
        if (checkLength && this.declaredLength! > 0) return await this.fail(short());
        await this.sendHeaders(0);
      }
      if (checkLength && this.bytes < this.declaredLength!) return await this.fail(short());
      await this.out(() => this.writer.end());
    } catch (e) {
      if (e instanceof Aborted) {
        this.abortWriter(e);
        return { status: this.sentStatus, ok: false, aborted: true, bytes: this.bytes };
      }
      return this.fail(e);
    }
    return { status: this.sentStatus, ok: true, aborted: false, bytes: this.bytes };
  }

  private async iterate(body: Body, track: (it: AnyIterator | undefined) => void): Promise<void> {
    if (typeof body === 'string' || body instanceof Uint8Array) {
      // A single chunk: its length is known (DESIGN.md, Settled details).
      const bytes = toBytes(body);
      return this.enqueue(() => this.send(bytes, bytes.length));
    }
    if (body === null || typeof body !== 'object') {
      throw new BridgeError(
        'GATEWAY_ERR_BAD_BODY',
        `gateway: the app returned ${String(body)}, not an iterable body`,
      );
    }
    if (Array.isArray(body)) {
      // Encode once up front: a bad chunk fails before anything is sent, and the sum of the
      // chunks' bytes is the Content-Length.
      const chunks = (body as unknown[]).map(toBytes);
      let known = 0;
      for (const c of chunks) known += c.length;
      if (this.dropBody && this.status) return this.headersOnly(known);
      for (const c of chunks) await this.enqueue(() => this.send(c, known));
      return;
    }
    let known: number | undefined;
    if (kBodyLength in body) {
      known = await this.raceAbort((body as unknown as SizedBody)[kBodyLength]());
    }
    // HEAD, 204, 304 with the status already known: the body is not produced at all; close() still runs.
    if (this.dropBody && this.status) return this.headersOnly(known);
    const asyncIt = (body as Partial<AsyncIterable<unknown>>)[Symbol.asyncIterator];
    const syncIt = (body as Partial<Iterable<unknown>>)[Symbol.iterator];
    const it: AnyIterator | undefined = asyncIt
      ? asyncIt.call(body)
      : syncIt
        ? syncIt.call(body)
        : undefined;
    if (!it || typeof it.next !== 'function') {
      throw new BridgeError(
        'GATEWAY_ERR_BAD_BODY',
        'gateway: the app returned a body that is not iterable',
      );
    }
    track(it);
    for (;;) {
      const r = await this.raceAbort(it.next());
      if (r.done) break;
      const bytes = toBytes(r.value);
      await this.enqueue(() => this.send(bytes, known));
      if (this.dropBody && this.headersSent) {
        // The status came with the first chunk and says no body: stop producing it.
        track(undefined);
        await this.raceAbort(it.return?.());
        return;
      }
    }
  }

  private headersOnly(known: number | undefined): Promise<void> {
    return this.enqueue(() => (this.headersSent ? Promise.resolve() : this.sendHeaders(known)));
  }

  // fail renders an app error: a generic 500 before headers, a cut-off response after them.
  private async fail(error: unknown): Promise<RunResult> {
    const where = `${this.environ.REQUEST_METHOD} ${this.environ.SCRIPT_NAME}${this.environ.PATH_INFO}`;
    this.log(`gateway: error in app (${where}): ${errorMessage(error)}`);
    if (this.headersSent) {
      this.abortWriter(error);
      return { status: this.sentStatus, ok: false, aborted: false, error, bytes: this.bytes };
    }
    // A coded error may ask for a 4xx or another 5xx (a truncated body is the client's fault);
    // the client gets the status line only, never the message or stack.
    const code = error instanceof BridgeError && REASONS.has(error.status) ? error.status : 500;
    const text = REASONS.get(code)!;
    const body = encoder.encode(`${code} ${text}\n`);
    try {
      this.headersSent = true;
      this.sentStatus = code;
      await this.out(() =>
        this.writer.writeHead(code, text, [
          ['Content-Type', 'text/plain; charset=utf-8'],
          ['Content-Length', String(body.length)],
        ]),
      );
      if (!this.noBody) await this.out(() => this.writer.write(body));
      await this.out(() => this.writer.end());
    } catch (e) {
      this.abortWriter(e);
      return { status: code, ok: false, aborted: true, error, bytes: 0 };
    }
    return { status: code, ok: false, aborted: false, error, bytes: 0 };
  }
}
