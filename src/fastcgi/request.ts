// One request on a FastCGI responder connection (FastCGI spec §5, §6): its FCGI_PARAMS stream, its
// input streams, the app run through the gateway pipeline, and its response sent as records.
import { cgiHeaderText, formatCgiHeaders } from '../cgi/child.js';
import {
  addMetaVariable,
  bodyLength,
  completeEnviron,
  type MetaVariables,
} from '../cgi/environ.js';
import { BridgeError } from '../errors.js';
import { createErrorStream } from '../gateway/error-stream.js';
import { errorMessage, startApp, type ResponseWriter } from '../gateway/handler.js';
import { BodyInput } from '../gateway/input.js';
import { RequestSignal } from '../gateway/signal.js';
import type { Environ, GatewayApp, Header } from '../gateway/types.js';
import { ByteQueue } from './byte-queue.js';
import { HoldBuffer } from './hold-buffer.js';
import type { ResolvedResponderOptions } from './options.js';
import type { OutputQueue } from './output.js';
import { ParamsDecoder } from './params.js';
import { FCGI_AUTHORIZER, FCGI_FILTER, FCGI_STDERR, FCGI_STDOUT } from './protocol.js';
import { encodeEndRequest } from './records.js';

/**
 * FCGI_APP_STATUS lists the `appStatus` values the responder puts in FCGI_END_REQUEST (FastCGI
 * spec §5.5 leaves them to the application, like a CGI exit status).
 */
export const FCGI_APP_STATUS = Object.freeze({
  /** OK: the response was sent whole (an error status the app chose, or a refusal, included). */
  OK: 0,
  /** FAILED: the app failed after its headers were produced (the response is cut off), or timed out. */
  FAILED: 1,
  /** ABORTED: the web server aborted the request (FCGI_ABORT_REQUEST). */
  ABORTED: 2,
});

/** RequestHost is what a request needs from its connection. */
export interface RequestHost {
  readonly app: GatewayApp;
  readonly options: ResolvedResponderOptions;
  readonly output: OutputQueue;
  /** isShared tells whether the connection carries other requests too (flow control). */
  isShared(): boolean;
  /** flowChanged asks the connection to re-check whether its socket should be paused. */
  flowChanged(): void;
  /** onInputConsumed is `flowChanged` as one function made per connection (an input queue's callback). */
  readonly onInputConsumed: () => void;
  /** requestEnded: FCGI_END_REQUEST is queued, or the connection is gone; the id is inactive now. */
  requestEnded(request: FcgiRequest): void;
  /** requestSettled: the request is wholly done (ended, and the app has returned). */
  requestSettled(request: FcgiRequest): void;
}

// Reasons for the statuses a request is refused with before the app runs (RFC 9110 §15).
const REFUSAL_REASONS: ReadonlyMap<number, string> = new Map([
  [400, 'Bad Request'],
  [413, 'Content Too Large'],
  [431, 'Request Header Fields Too Large'],
  [500, 'Internal Server Error'],
  [504, 'Gateway Timeout'],
]);

const noop = (): void => undefined;

// The params sink: pairs go straight into what becomes the environ, with the duplicate rule.
const addParam = (target: object, name: string, value: string): void =>
  addMetaVariable(target as MetaVariables, name, value);

function protocolError(message: string): BridgeError {
  return new BridgeError('FCGI_ERR_PROTOCOL', `fcgi: ${message}`);
}

function gone(): BridgeError {
  return new BridgeError('FCGI_ERR_REQUEST_ENDED', 'fcgi: the request has ended');
}

/**
 * FcgiRequest is one active request id on a connection. The connection feeds it the records
 * of its id (`onParams`, `onStdin`, `onData`, `onAbort`); it starts the app as soon as the
 * params are complete, while the body still arrives, and is the app's {@link ResponseWriter}.
 *
 * Response policy (see docs and issue 3): with `holdResponseUntilBodyRead`, nothing of the
 * response leaves before the request's input streams are complete; until then it is held in a
 * {@link HoldBuffer} (memory, then an unlinked temp file), and the app's writes never wait on
 * the web server. When the app finishes first, the rest of the body is discarded as it
 * arrives, then the response and FCGI_END_REQUEST go out. Without the hold, the response
 * streams at once and, when the app finishes first, FCGI_END_REQUEST goes out at once too;
 * records still arriving for the id are then ignored (FastCGI spec §3.3).
 */
export class FcgiRequest implements ResponseWriter {
  /** id is the request id (FastCGI spec §3.3). */
  readonly id: number;
  /** role is FCGI_RESPONDER, FCGI_AUTHORIZER or FCGI_FILTER. */
  readonly role: number;
  /** keepConn is the FCGI_KEEP_CONN flag of the request's FCGI_BEGIN_REQUEST. */
  readonly keepConn: boolean;
  /** stdin is the FCGI_STDIN stream. */
  readonly stdin: ByteQueue;
  /** data is the FCGI_DATA stream of a Filter, or null. */
  readonly data: ByteQueue | null;
  readonly #host: RequestHost;
  readonly #opts: ResolvedResponderOptions;
  readonly #signal = new RequestSignal();
  #params: ParamsDecoder | null;
  // The params, decoded straight into what becomes the environ.
  #vars: MetaVariables | null = {};
  #paramsEnded = false;
  #refused = false;
  #inputDone: boolean;
  #inputWait: { promise: Promise<void>; resolve: () => void } | null = null;
  #hold: HoldBuffer | null = null;
  #releasing: Promise<void> | null = null;
  // The header block (a latin-1 string) or a whole error response, until it leaves.
  #head: Buffer | string | null = null;
  #stdoutSent = false;
  #stderrUsed = false;
  #ending = false; // end() or abort() was called: the response is complete or cut
  #failing = false; // the response is being cut off
  #ended = false; // FCGI_END_REQUEST queued, or the connection is gone
  #appRunning = false;
  #settled = false;
  #timer: NodeJS.Timeout | null = null;

  /** constructor makes the request for FCGI_BEGIN_REQUEST's id, role and flag. */
  constructor(host: RequestHost, id: number, role: number, keepConn: boolean) {
    this.#host = host;
    this.#opts = host.options;
    this.id = id;
    this.role = role;
    this.keepConn = keepConn;
    this.stdin = new ByteQueue(host.onInputConsumed);
    this.data = role === FCGI_FILTER ? new ByteQueue(host.onInputConsumed) : null;
    // gateway.signal first, then the params as they come: see RequestSignal.install.
    this.#signal.install(this.#vars!);
    this.#params = new ParamsDecoder(
      { maxBytes: this.#opts.maxParamsBytes, maxParams: this.#opts.maxParams },
      addParam,
      this.#vars!,
    );
    // FastCGI spec §6.3: an Authorizer gets params only; its input is complete from the start.
    this.#inputDone = role === FCGI_AUTHORIZER;
    const timeout = this.#opts.requestTimeoutMs;
    if (timeout > 0 && Number.isFinite(timeout)) {
      this.#timer = setTimeout(() => this.#timeout(), timeout);
      this.#timer.unref();
    }
  }

  /** paramsComplete tells whether the FCGI_PARAMS stream has ended. */
  get paramsComplete(): boolean {
    return this.#paramsEnded;
  }

  /** inputComplete tells whether every input stream of the request has ended. */
  get inputComplete(): boolean {
    return this.#inputDone;
  }

  /** unreadInput is how many received input bytes the app has not read yet. */
  get unreadInput(): number {
    return this.stdin.buffered + (this.data?.buffered ?? 0);
  }

  /** inputWanted tells whether the app waits for more of one of its input streams. */
  get inputWanted(): boolean {
    return this.stdin.waiting || (this.data?.waiting ?? false);
  }

  /** ended tells whether FCGI_END_REQUEST was queued (or the connection went away). */
  get ended(): boolean {
    return this.#ended;
  }

  /**
   * onParams takes one FCGI_PARAMS record's content. The empty one ends the stream: then it
   * returns true, and the connection calls {@link start} once it has fed in the records that
   * arrived together with it (for a GET that is the empty FCGI_STDIN, so the app starts with
   * its input complete and its response need not be held).
   */
  onParams(content: Buffer): boolean {
    if (this.#paramsEnded) throw protocolError(`FCGI_PARAMS for request ${this.id} after its end`);
    if (content.length === 0) {
      this.#paramsEnded = true;
      if (this.#refused) return false;
      try {
        this.#params!.end();
      } catch (e) {
        this.#refuse(e);
        return false;
      }
      return true;
    }
    if (this.#refused) return false;
    try {
      this.#params!.push(content);
    } catch (e) {
      // Too large or too many: the request is refused (431); the stream keeps being read.
      this.#refuse(e);
    }
    return false;
  }

  /** start runs the app once its params are complete (see {@link onParams}); at most once. */
  start(): void {
    if (this.#vars === null || this.#ended || this.#refused) return;
    this.#start();
  }

  /** onStdin takes one FCGI_STDIN record's content; the empty one ends the body (FastCGI spec §5.3). */
  onStdin(content: Buffer): void {
    this.#onInput(this.stdin, content, 'FCGI_STDIN');
  }

  /** onData takes one FCGI_DATA record's content, the Filter's second input (FastCGI spec §6.4). */
  onData(content: Buffer): void {
    // Only a Filter has a data stream; a stray one for another role carries nothing we use.
    if (this.data !== null) this.#onInput(this.data, content, 'FCGI_DATA');
    else if (!this.#paramsEnded)
      throw protocolError(`FCGI_DATA for request ${this.id} before the end of its FCGI_PARAMS`);
  }

  /**
   * onAbort handles FCGI_ABORT_REQUEST (FastCGI spec §5.4): `gateway.signal` fires, pending
   * reads fail, the app's body is closed by the pipeline, and FCGI_END_REQUEST goes out now.
   */
  onAbort(): void {
    if (this.#ended) return;
    this.#cancel(
      new BridgeError(
        'FCGI_ERR_ABORTED',
        'fcgi: the web server aborted the request (FCGI_ABORT_REQUEST)',
        { status: 400 },
      ),
    );
    this.#host.output.push(encodeEndRequest(this.id, FCGI_APP_STATUS.ABORTED));
    this.#markEnded();
  }

  /** connectionLost ends the request because its connection closed: the app's signal fires. */
  connectionLost(): void {
    if (this.#signal.aborted) return;
    this.#cancel(
      new BridgeError('FCGI_ERR_CONNECTION_LOST', 'fcgi: the web server closed the connection', {
        status: 400,
      }),
    );
    this.#markEnded();
  }

  // timeout ends a request that outlived requestTimeoutMs: gateway.signal fires, and the web
  // server gets a 504 when nothing was sent yet, else the response is cut off.
  #timeout(): void {
    this.#timer = null;
    if (this.#ended) return;
    const error = new BridgeError(
      'FCGI_ERR_TIMEOUT',
      `fcgi: request ${this.id} timed out after ${this.#opts.requestTimeoutMs} ms (requestTimeoutMs)`,
      { status: 504 },
    );
    this.#writeStderr(`${error.message}\n`);
    this.#opts.log(error.message);
    const sent = this.#stdoutSent;
    this.#cancel(error);
    this.#hold?.dispose();
    this.#hold = null;
    this.#ending = true;
    if (!sent) this.#head = errorResponse(504);
    this.#finish(FCGI_APP_STATUS.FAILED);
  }

  // ResponseWriter: called by the gateway pipeline (runApp), one call at a time.

  /** writeHead renders the CGI header block (RFC 3875 §6.2); it leaves with the first body bytes. */
  writeHead(code: number, reason: string, headers: Header[]): void {
    if (this.#ended) throw gone();
    this.#head = cgiHeaderText(code, reason, headers);
  }

  /** write sends body bytes as FCGI_STDOUT records, or holds them (see the class comment). */
  write(chunk: Uint8Array): void | Promise<void> {
    if (this.#ended) throw gone();
    const head = this.#head;
    this.#head = null;
    if (this.#holding()) return this.#holdBytes(head, chunk);
    const releasing = this.#releasing;
    if (releasing !== null) return releasing.then(() => this.#send(head, chunk));
    return this.#send(head, chunk);
  }

  /** end completes the response: the last records, the empty FCGI_STDOUT and FCGI_END_REQUEST in one write. */
  end(): void | Promise<void> {
    if (this.#ended) throw gone();
    this.#ending = true;
    // The common case (input complete, nothing held) finishes synchronously.
    if (this.#inputDone && this.#hold === null && this.#releasing === null) {
      this.#finish(FCGI_APP_STATUS.OK);
      return;
    }
    return this.#endLater(FCGI_APP_STATUS.OK);
  }

  /**
   * abort cuts the response off after an app error (or a failed write): FCGI_END_REQUEST with
   * FCGI_APP_STATUS.FAILED. When nothing has left yet (it was all held), a generic 500 goes
   * out instead of the partial response.
   */
  abort(_error: unknown): void {
    // The pipeline has logged the error to gateway.errors (FCGI_STDERR) already.
    if (this.#ended || this.#failing) return;
    this.#failing = true;
    this.#ending = true;
    this.#failLater().catch(noop);
  }

  // Internals.

  #onInput(queue: ByteQueue, content: Buffer, what: string): void {
    if (!this.#paramsEnded) {
      throw protocolError(`${what} for request ${this.id} before the end of its FCGI_PARAMS`);
    }
    // FastCGI spec §6.3: an Authorizer has no body; what a server sends anyway is dropped.
    if (this.role === FCGI_AUTHORIZER) return;
    if (queue.ended) throw protocolError(`${what} for request ${this.id} after its end`);
    if (content.length === 0) {
      queue.end();
      this.#checkInputDone();
      return;
    }
    queue.push(content);
    if (queue.failed) return;
    if (queue.received > this.#opts.maxBodyBytes) {
      queue.fail(
        new BridgeError(
          'FCGI_ERR_BODY_TOO_LARGE',
          `fcgi: ${what} of request ${this.id} exceeds the ${this.#opts.maxBodyBytes}-byte limit (maxBodyBytes)`,
          { status: 413 },
        ),
      );
    } else if (
      queue.buffered > this.#opts.maxStdinBuffer &&
      (this.#host.isShared() || this.inputWanted)
    ) {
      // Pausing the socket would stall every other request on the connection (or the stream
      // the app waits for), so an app that does not keep up loses its own input instead.
      queue.fail(
        new BridgeError(
          'FCGI_ERR_STDIN_OVERFLOW',
          `fcgi: request ${this.id} left more than ${this.#opts.maxStdinBuffer} bytes of ${what} unread while its connection could not be paused (maxStdinBuffer)`,
          { status: 413 },
        ),
      );
    }
  }

  #checkInputDone(): void {
    if (this.#inputDone || !this.stdin.ended || (this.data !== null && !this.data.ended)) return;
    this.#inputDone = true;
    const wait = this.#inputWait;
    this.#inputWait = null;
    wait?.resolve();
    // The app is still writing: send what it held; its next writes wait for that.
    if (!this.#ending && this.#hold !== null) this.#startRelease();
  }

  #waitInput(): Promise<void> {
    if (this.#inputDone || this.#ended) return Promise.resolve();
    if (this.#inputWait === null) {
      let resolve = noop;
      const promise = new Promise<void>((r) => (resolve = r));
      this.#inputWait = { promise, resolve };
    }
    return this.#inputWait.promise;
  }

  #discardInput(): void {
    this.stdin.discard();
    this.data?.discard();
    this.#host.flowChanged();
  }

  #holding(): boolean {
    return this.#opts.holdResponseUntilBodyRead && !this.#inputDone;
  }

  #holdBytes(head: Buffer | string | null, chunk: Uint8Array): void | Promise<void> {
    const hold = (this.#hold ??= new HoldBuffer({
      maxMemoryBytes: this.#opts.maxHoldBytes,
      tmpDir: this.#opts.tmpDir,
    }));
    // Held as one piece, the header block and first chunk leave in one record, as unheld.
    if (head === null) return hold.append(chunk);
    const bytes = typeof head === 'string' ? Buffer.from(head, 'latin1') : head;
    return hold.append(Buffer.concat([bytes, chunk]));
  }

  #startRelease(): void {
    const releasing = this.#release();
    this.#releasing = releasing;
    // A failure reaches the next write or end(); none may come, so it must not go unhandled.
    releasing.catch(noop);
  }

  async #release(): Promise<void> {
    const hold = this.#hold;
    if (hold === null) return;
    try {
      await hold.drain((block) => this.#send(null, block));
    } finally {
      hold.dispose();
      if (this.#hold === hold) this.#hold = null;
      this.#releasing = null;
    }
  }

  #send(head: Buffer | string | null, chunk: Uint8Array): void | Promise<void> {
    if (this.#ended) throw gone();
    const output = this.#host.output;
    output.pushStream(FCGI_STDOUT, this.id, head, chunk);
    this.#stdoutSent = true;
    if (output.congested) return output.drained();
  }

  #finish(appStatus: number): void {
    const head = this.#head;
    this.#head = null;
    if (head !== null) this.#stdoutSent = true;
    // FastCGI spec §6.2, Appendix B: the last stdout bytes, the stream ends, then END_REQUEST.
    this.#host.output.pushRequestEnd(this.id, head, this.#stderrUsed, appStatus);
    this.#markEnded();
  }

  async #endLater(appStatus: number): Promise<void> {
    try {
      await this.#completeLater(appStatus);
    } catch (e) {
      // A held response that cannot be released (its temp file failed) is cut off like an app error.
      if (!this.#ended && !this.#failing) {
        this.#failing = true;
        this.#failLater().catch(noop);
      }
      throw e;
    }
  }

  async #completeLater(appStatus: number): Promise<void> {
    if (!this.#inputDone) {
      // The app is done with the body: drop what is left of it as it arrives. With the hold,
      // the response waits for the end of the input; without it, it does not (FastCGI spec
      // §3.3 lets later records for the id be ignored).
      this.#discardInput();
      if (this.#opts.holdResponseUntilBodyRead) await this.#waitInput();
    }
    if (this.#ended) throw gone();
    if (this.#releasing !== null) await this.#releasing;
    else if (this.#hold !== null) await this.#release();
    if (this.#ended) throw gone();
    this.#finish(appStatus);
  }

  async #failLater(): Promise<void> {
    this.#head = null;
    if (!this.#inputDone) {
      this.#discardInput();
      if (this.#opts.holdResponseUntilBodyRead) await this.#waitInput();
    }
    if (this.#releasing !== null) await this.#releasing.catch(noop);
    if (this.#ended) return;
    this.#hold?.dispose();
    this.#hold = null;
    if (!this.#stdoutSent) {
      // Nothing reached the web server: a clean 500 is still possible (as before headers).
      this.#head = errorResponse(500);
    }
    this.#finish(FCGI_APP_STATUS.FAILED);
  }

  #cancel(reason: BridgeError): void {
    this.#signal.abort(reason);
    this.stdin.fail(reason);
    this.data?.fail(reason);
    this.#head = null;
  }

  #markEnded(): void {
    if (this.#ended) return;
    this.#ended = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#hold?.dispose();
    this.#hold = null;
    // The id is inactive now (FastCGI spec §3.3): no more input will be fed in.
    this.stdin.discard();
    this.data?.discard();
    const wait = this.#inputWait;
    this.#inputWait = null;
    wait?.resolve();
    this.#host.requestEnded(this);
    this.#trySettle();
  }

  #trySettle(): void {
    if (this.#settled || !this.#ended || this.#appRunning) return;
    this.#settled = true;
    this.#host.requestSettled(this);
  }

  #writeStderr(text: string): void {
    if (this.#ended) {
      // FCGI_STDERR of an ended request would break the web server's framing (issue 3: the
      // stray record node-fastcgi sends after END_REQUEST); the process log gets it instead.
      this.#opts.log(`fcgi: request ${this.id}: ${text.trimEnd()}`);
      return;
    }
    const bytes = Buffer.from(text, 'utf8');
    if (bytes.length === 0) return;
    this.#stderrUsed = true;
    this.#host.output.pushStream(FCGI_STDERR, this.id, null, bytes);
  }

  #start(): void {
    const vars = this.#vars!;
    this.#vars = null;
    this.#params = null;
    let environ: Environ;
    try {
      environ = completeEnviron(vars, {
        input: this.role === FCGI_AUTHORIZER ? null : this.stdin,
        errors: createErrorStream((s) => this.#writeStderr(s)),
        signal: this.#signal,
        multithread: true,
        multiprocess: this.#opts.multiprocess,
        runOnce: false,
      });
      const length = bodyLength(vars);
      if (length !== null && length > this.#opts.maxBodyBytes) {
        throw new BridgeError(
          'FCGI_ERR_BODY_TOO_LARGE',
          `fcgi: CONTENT_LENGTH ${length} of request ${this.id} exceeds the ${this.#opts.maxBodyBytes}-byte limit (maxBodyBytes)`,
          { status: 413 },
        );
      }
      if (this.role === FCGI_AUTHORIZER) environ['gateway.input'] = new BodyInput(null, 0);
      if (this.data !== null) {
        environ['gateway.data'] = new BodyInput(this.data, dataLength(vars.FCGI_DATA_LENGTH));
      }
    } catch (e) {
      this.#refuse(e);
      return;
    }
    this.#appRunning = true;
    // A small synchronous response is complete when startApp returns: no promise to wait on.
    const result = startApp(this.#host.app, environ, this);
    if (result instanceof Promise) {
      const done = (): void => this.#appReturned();
      result.then(done, done);
    } else {
      this.#appReturned();
    }
  }

  #appReturned(): void {
    this.#appRunning = false;
    this.#trySettle();
  }

  // refuse answers the request without running the app: a coded status, the reason to
  // FCGI_STDERR (the web server's error log), the body discarded.
  #refuse(error: unknown): void {
    if (this.#refused) return;
    this.#refused = true;
    const status =
      error instanceof BridgeError && REFUSAL_REASONS.has(error.status) ? error.status : 500;
    this.#writeStderr(`${error instanceof BridgeError ? error.message : errorMessage(error)}\n`);
    this.#ending = true;
    this.#head = errorResponse(status);
    if (this.#inputDone) this.#finish(FCGI_APP_STATUS.OK);
    else this.#endLater(FCGI_APP_STATUS.OK).catch(noop);
  }
}

// errorResponse renders a complete plain-text error response: header block and body.
function errorResponse(status: number): Buffer {
  const reason = REFUSAL_REASONS.get(status) ?? 'Error';
  const body = `${status} ${reason}\n`;
  const head = formatCgiHeaders(status, reason, [
    ['Content-Type', 'text/plain; charset=utf-8'],
    ['Content-Length', String(Buffer.byteLength(body))],
  ]);
  return Buffer.concat([head, Buffer.from(body)]);
}

// dataLength reads FCGI_DATA_LENGTH, the Filter's data size (FastCGI spec §6.4); absent means
// "read to the end of the stream".
function dataLength(value: string | undefined): number | null {
  if (value === undefined || value === '') return null;
  if (!/^\d{1,15}$/.test(value.trim())) {
    throw new BridgeError(
      'FCGI_ERR_BAD_DATA_LENGTH',
      `fcgi: FCGI_DATA_LENGTH ${JSON.stringify(value)} is not a number`,
      { status: 400 },
    );
  }
  return Number(value.trim());
}
