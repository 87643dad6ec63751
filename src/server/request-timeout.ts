// `--timeout`: a bound on a request's wall time, as a wrapper around the app, so it works the
// same under every front end: the app's gateway.signal fires, and the one response pipeline
// answers 504 before headers or cuts the response off after them (DESIGN.md, Settled details).
import { BridgeError } from '../errors.js';
import { kBodyLength } from '../gateway/file-wrapper.js';
import { replaceSignal, requestSignalOf } from '../gateway/signal.js';
import type { Body, Chunk, GatewayApp } from '../gateway/types.js';

const noop = (): void => undefined;

type AsyncBody = AsyncIterable<Chunk> & { close?(): void | Promise<void> };

function isAsyncBody(body: Body): body is AsyncBody {
  return (
    typeof body === 'object' &&
    body !== null &&
    !Array.isArray(body) &&
    !(body instanceof Uint8Array) &&
    !(kBodyLength in body) &&
    typeof (body as Partial<AsyncIterable<Chunk>>)[Symbol.asyncIterator] === 'function'
  );
}

// guardBody makes every step of an async body race the timeout. Arrays, single chunks, sync
// iterables and files cannot wait on anything, so the timer stops once the app returns them.
function guardBody(body: Body, timedOut: Promise<never>, done: () => void): Body {
  if (!isAsyncBody(body)) {
    done();
    return body;
  }
  const guarded: AsyncBody = {
    [Symbol.asyncIterator](): AsyncIterator<Chunk> {
      const it = body[Symbol.asyncIterator]();
      return {
        async next(): Promise<IteratorResult<Chunk>> {
          const r = await Promise.race([it.next(), timedOut]);
          if (r.done) done();
          return r;
        },
        async return(value?: unknown): Promise<IteratorResult<Chunk>> {
          done();
          return (await it.return?.(value)) ?? { done: true, value: undefined };
        },
      };
    },
  };
  if (typeof body.close === 'function') {
    guarded.close = () => {
      done();
      return body.close!();
    };
  }
  return guarded;
}

/**
 * withRequestTimeout bounds each request of `app` to `timeoutMs` of wall time (0 or less: the
 * app is returned as is). When the time is up, the signal the app sees as `gateway.signal`
 * fires (with a `SERVER_ERR_REQUEST_TIMEOUT` reason), `log` gets one line, and whatever the
 * pipeline is waiting for (the app's promise, the next chunk of an async body) fails with that
 * error (status 504): the pipeline answers 504 Gateway Timeout when headers were not sent yet,
 * else cuts the response off. A request whose client went away is no longer timed.
 */
export function withRequestTimeout(
  app: GatewayApp,
  timeoutMs: number,
  log: (line: string) => void,
): GatewayApp {
  if (!(timeoutMs > 0)) return app;
  return (environ, startResponse) => {
    const started = performance.now();
    // The timeout's own signal is made only when the app reads gateway.signal or the time is up.
    let controller: AbortController | null = null;
    const own = (): AbortSignal => (controller ??= new AbortController()).signal;
    // The front end's signal fires when the client goes away (the request is no longer timed).
    const source = requestSignalOf(environ);
    let outer: AbortSignal | null = null;
    if (source !== undefined) {
      // A RequestSignal takes the timeout as one more source of the app's signal: no property
      // to redefine, and no signal made unless someone reads it.
      source.link(own);
    } else {
      const plain = (outer = environ['gateway.signal']);
      // The combined signal costs two AbortSignals and a listener on `plain`: it is made only
      // when the app reads gateway.signal (or the time is up), not on every request. The
      // environ is this request's own (each front end builds a fresh one), so the signal is
      // swapped in place: copying its forty-odd keys per request cost more than the rest here.
      let signal: AbortSignal | null = null;
      Object.defineProperty(environ, 'gateway.signal', {
        configurable: true,
        enumerable: true,
        get: (): AbortSignal => (signal ??= AbortSignal.any([plain, own()])),
        set: (value: unknown): void => replaceSignal(environ, value),
      });
    }
    const returned = app(environ, startResponse);
    // A body returned synchronously that is not an async iterable cannot wait on anything: the
    // time cannot run out for it, so no timer is started (the common, fast case).
    if (!isThenable(returned) && !isAsyncBody(returned as Body)) return returned;
    let fail: (e: unknown) => void = noop;
    const timedOut = new Promise<never>((_resolve, reject) => (fail = reject));
    timedOut.catch(noop); // raced, never awaited alone
    // The bound counts from the call of the app, as if the timer had started before it.
    const remaining = Math.max(0, timeoutMs - (performance.now() - started));
    const timer = setTimeout(() => {
      const where = `${environ.REQUEST_METHOD} ${environ.SCRIPT_NAME}${environ.PATH_INFO}`;
      const error = new BridgeError(
        'SERVER_ERR_REQUEST_TIMEOUT',
        `cgi-bridge: request timed out after ${timeoutMs / 1000} s (--timeout): ${where}`,
        { status: 504 },
      );
      log(error.message);
      (controller ??= new AbortController()).abort(error);
      fail(error);
    }, remaining);
    const front = outer ?? source!.own;
    const done = (): void => {
      clearTimeout(timer);
      front.removeEventListener('abort', done);
    };
    front.addEventListener('abort', done, { once: true });
    return Promise.race([Promise.resolve(returned), timedOut]).then(
      (body) => guardBody(body, timedOut, done),
      (e: unknown) => {
        done();
        throw e;
      },
    );
  };
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    (typeof value === 'object' || typeof value === 'function') &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}
