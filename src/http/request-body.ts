// The HTTP front end's request body source: the IncomingMessage as gateway.input's bytes, with
// the body size limit, a lazy `100 Continue`, and draining of what the app left unread.
import type { IncomingMessage } from 'node:http';
import { BridgeError } from '../errors.js';
import type { ByteSource } from '../gateway/input.js';

/**
 * RequestBody is the byte source behind `gateway.input` for one HTTP request. It fails with
 * `HTTP_ERR_BODY_TOO_LARGE` (status 413) once more than `maxBytes` arrived, which is how a
 * chunked body (no Content-Length to check up front) meets the limit.
 */
export class RequestBody implements ByteSource {
  /** started is true once anyone asked for body bytes. */
  started = false;
  /** ended is true once the whole body was received. */
  ended = false;
  /** tooLarge is true once the body passed the limit: the connection cannot be reused. */
  tooLarge = false;
  /** failed is true when receiving the body failed (client gone, limit, timeout). */
  failed = false;
  /** bytes counts body bytes received so far. */
  bytes = 0;
  private readonly chunks: AsyncGenerator<Uint8Array>;
  private draining: Promise<void> | undefined;

  /**
   * `onFirstRead` runs when the body is first asked for: the server sends `100 Continue` then
   * (RFC 9110 §10.1.1), so a client that waits for it never uploads a body the app does not read.
   */
  constructor(
    private readonly req: IncomingMessage,
    private readonly maxBytes: number,
    private readonly onFirstRead?: () => void,
  ) {
    this.chunks = this.receive();
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return this.chunks;
  }

  private async *receive(): AsyncGenerator<Uint8Array> {
    this.started = true;
    this.onFirstRead?.();
    try {
      // destroyOnReturn: false keeps the socket when we stop early, so a 413 can still be sent.
      for await (const chunk of this.req.iterator({ destroyOnReturn: false })) {
        const bytes = chunk as Buffer;
        this.bytes += bytes.length;
        if (this.bytes > this.maxBytes) {
          this.tooLarge = true;
          throw new BridgeError(
            'HTTP_ERR_BODY_TOO_LARGE',
            `http: the request body is larger than the limit of ${this.maxBytes} bytes`,
            { status: 413 },
          );
        }
        yield bytes;
      }
    } catch (e) {
      this.failed = true;
      throw e;
    }
    this.ended = true;
  }

  /**
   * drain reads and drops the rest of the body, so the next request on a keep-alive connection
   * starts at the right byte. It starts reading synchronously: node's own unbounded drain
   * (`req._dump()` on response finish) then never runs, and the size limit still applies.
   * Resolves true when the body ended cleanly, false when the connection must not be reused.
   */
  drain(): Promise<boolean> {
    if (this.ended) return Promise.resolve(true);
    if (this.failed) return Promise.resolve(false);
    // A client that sent `Expect: 100-continue` and got no 100 does not send the body; inviting
    // it now only to drop it wastes the upload, so the connection closes instead.
    if (!this.started && this.onFirstRead !== undefined) return Promise.resolve(false);
    if (this.draining === undefined) {
      const first = this.chunks.next(); // runs the generator up to its first read, right now
      this.draining = (async () => {
        let r = await first;
        while (!r.done) r = await this.chunks.next();
      })();
    }
    return this.draining.then(
      () => true,
      () => false,
    );
  }
}
