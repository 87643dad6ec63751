// The one response pipeline: runs an app for one request and drives a front end's ResponseWriter.
// Every front end (CGI child, FastCGI responder, HTTP server) calls runApp; none repeats these rules.
import { BridgeError } from '../errors.js';
import { kBodyLength, type SizedBody } from './file-wrapper.js';
import { findHeader, parseStatus, validateHeaders, type ParsedStatus } from './headers.js';
import type { Body, Chunk, Environ, GatewayApp, Header, StartResponse, Write } from './types.js';

/**
 * ResponseWriter is the I/O a front end supplies. The pipeline calls `writeHead` once, then
 * `write` for each non-empty chunk (awaiting it for backpressure), then exactly one of `end`
 * (the response is complete) or `abort` (cut it off: the client must see a broken response).
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
const NO_BODY_STATUS = new Set([204, 304]);

/** toBytes encodes a chunk: strings as UTF-8, bytes as they are; anything else is an app error. */
export function toBytes(chunk: unknown): Uint8Array {
  if (typeof chunk === 'string') return encoder.encode(chunk);
  if (chunk instanceof Uint8Array) return chunk;
  throw new BridgeError(
    'GATEWAY_ERR_BAD_CHUNK',
    `gateway: body chunks must be strings or Uint8Arrays, got ${chunk === null ? 'null' : typeof chunk}`,
  );
}

class Aborted extends Error {}

function byteLength(chunk: Chunk): number {
  return typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.byteLength;
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
  return new Exchange(environ, writer).run(app);
}

class Exchange {
  private status: ParsedStatus | undefined;
  private headers: Header[] = [];
  private headersSent = false;
  private sentStatus = 0;
  private declaredLength: number | undefined;
  private bytes = 0;
  private finished = false;
  private writerFailed = false;
  private readonly noBody: boolean;
  private readonly signal: AbortSignal | undefined;
  private abortWait: Promise<never> | undefined;

  constructor(
    private readonly environ: Environ,
    private readonly writer: ResponseWriter,
  ) {
    this.noBody = environ.REQUEST_METHOD === 'HEAD';
    this.signal = environ['gateway.signal'];
  }

  private log(message: string): void {
    try {
      this.environ['gateway.errors'].write(message.endsWith('\n') ? message : `${message}\n`);
    } catch {
      // a broken log never breaks the request
    }
  }

  // raceAbort settles with `p`, or rejects with Aborted as soon as gateway.signal fires.
  private raceAbort<T>(p: T | Promise<T>): Promise<T> {
    const signal = this.signal;
    if (!signal) return Promise.resolve(p);
    if (signal.aborted) return Promise.reject(new Aborted());
    this.abortWait ??= new Promise<never>((_, reject) => {
      signal.addEventListener('abort', () => reject(new Aborted()), { once: true });
    });
    this.abortWait.catch(() => undefined);
    return Promise.race([p, this.abortWait]);
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
    return this.legacyWrite;
  };

  private readonly legacyWrite: Write = (chunk) => {
    if (this.finished) {
      throw new BridgeError(
        'GATEWAY_ERR_WRITE_AFTER_END',
        'gateway: write() called after the response ended',
      );
    }
    return this.send(toBytes(chunk), undefined);
  };

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
      if (!(e instanceof Aborted)) this.writerFailed = true;
      throw e instanceof Aborted ? e : new Aborted('write failed', { cause: e });
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

  async run(app: GatewayApp): Promise<RunResult> {
    let body: Body | undefined;
    let iterator: Iterator<unknown> | AsyncIterator<unknown> | undefined;
    let error: unknown;
    let aborted = false;
    try {
      body = await this.raceAbort(app(this.environ, this.startResponse));
      await this.iterate(body, (it) => (iterator = it));
    } catch (e) {
      if (e instanceof Aborted) aborted = true;
      else error = e;
    }
    this.finished = true;
    if (iterator && (aborted || error !== undefined)) {
      // Stop a generator where it is, so its finally blocks run; do not wait for a pending await.
      try {
        const r = iterator.return?.();
        if (r instanceof Promise) r.catch(() => undefined);
      } catch {
        // a generator throwing from finally is reported by close() below if it matters
      }
    }
    if (
      body !== undefined &&
      body !== null &&
      typeof (body as { close?: unknown }).close === 'function'
    ) {
      try {
        await (body as { close(): void | Promise<void> }).close();
      } catch (e) {
        this.log(`gateway: body close() failed: ${errorMessage(e)}`);
        if (error === undefined && !aborted) error = e;
      }
    }
    if (aborted || this.writerFailed) {
      this.writer.abort(error ?? new Aborted('client went away'));
      return { status: this.sentStatus, ok: false, aborted: true, error, bytes: this.bytes };
    }
    if (error !== undefined) return this.fail(error);
    try {
      if (!this.headersSent) await this.sendHeaders(0);
      if (!this.dropBody && this.declaredLength !== undefined && this.bytes < this.declaredLength) {
        return this.fail(
          new BridgeError(
            'GATEWAY_ERR_CONTENT_LENGTH_MISMATCH',
            `gateway: the app sent ${this.bytes} of its Content-Length of ${this.declaredLength} bytes`,
          ),
        );
      }
      await this.out(() => this.writer.end());
    } catch (e) {
      if (e instanceof Aborted) {
        this.writer.abort(e);
        return { status: this.sentStatus, ok: false, aborted: true, bytes: this.bytes };
      }
      return this.fail(e);
    }
    return { status: this.sentStatus, ok: true, aborted: false, bytes: this.bytes };
  }

  private async iterate(
    body: Body,
    track: (it: Iterator<unknown> | AsyncIterator<unknown>) => void,
  ): Promise<void> {
    if (typeof body === 'string' || body instanceof Uint8Array) {
      const bytes = toBytes(body);
      if (!this.headersSent && this.status) await this.sendHeaders(bytes.length);
      return this.send(bytes, bytes.length);
    }
    if (body === null || typeof body !== 'object') {
      throw new BridgeError(
        'GATEWAY_ERR_BAD_BODY',
        `gateway: the app returned ${String(body)}, not an iterable body`,
      );
    }
    let known: number | undefined;
    if (Array.isArray(body)) {
      known = 0;
      for (const c of body as unknown[]) known += byteLength(toBytes(c));
    } else if (kBodyLength in body) {
      known = await this.raceAbort((body as unknown as SizedBody)[kBodyLength]());
    }
    if (this.dropBody && this.status) {
      // HEAD, 204, 304: the body is not produced at all; close() still runs.
      await this.sendHeaders(known);
      return;
    }
    const asyncIt = (body as Partial<AsyncIterable<unknown>>)[Symbol.asyncIterator];
    const syncIt = (body as Partial<Iterable<unknown>>)[Symbol.iterator];
    const it = asyncIt ? asyncIt.call(body) : syncIt ? syncIt.call(body) : undefined;
    if (!it)
      throw new BridgeError(
        'GATEWAY_ERR_BAD_BODY',
        'gateway: the app returned a body that is not iterable',
      );
    track(it);
    for (;;) {
      const r = await this.raceAbort(it.next());
      if (r.done) break;
      await this.send(toBytes(r.value), known);
    }
    if (!this.headersSent && known !== undefined && this.status) await this.sendHeaders(known);
  }

  // fail renders an app error: a generic 500 before headers, a cut-off response after them.
  private async fail(error: unknown): Promise<RunResult> {
    const where = `${this.environ.REQUEST_METHOD} ${this.environ.SCRIPT_NAME}${this.environ.PATH_INFO}`;
    this.log(`gateway: error in app (${where}): ${errorMessage(error)}`);
    if (this.headersSent) {
      this.writer.abort(error);
      return { status: this.sentStatus, ok: false, aborted: false, error, bytes: this.bytes };
    }
    const code =
      error instanceof BridgeError && error.status >= 400 && error.status < 500
        ? error.status
        : 500;
    const text = code === 500 ? 'Internal Server Error' : 'Bad Request';
    const body = encoder.encode(`${code} ${text}\n`);
    try {
      this.headersSent = true;
      this.sentStatus = code;
      await this.writer.writeHead(code, text, [
        ['Content-Type', 'text/plain; charset=utf-8'],
        ['Content-Length', String(body.length)],
      ]);
      if (!this.noBody) await this.writer.write(body);
      await this.writer.end();
    } catch (e) {
      this.writer.abort(e);
      return { status: code, ok: false, aborted: true, error, bytes: 0 };
    }
    return { status: code, ok: false, aborted: false, error, bytes: 0 };
  }
}
