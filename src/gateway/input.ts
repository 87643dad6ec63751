// gateway.input: the request body as an async, byte-exact stream bounded by CONTENT_LENGTH.
import { BridgeError } from '../errors.js';
import type { InputStream } from './types.js';

/**
 * ByteSource is where a front end's body bytes come from: any async iterable of byte chunks.
 * Each chunk must be a fresh buffer: the input hands out views of it without copying.
 */
export type ByteSource = AsyncIterable<Uint8Array>;

const EMPTY = new Uint8Array(0);

// size/limit/hint: undefined or null (Python's None) or a negative number means "no limit";
// anything but an integer would corrupt the byte accounting, so it is refused.
function checkCount(value: unknown, what: string): number {
  if (value === undefined || value === null) return Infinity;
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new BridgeError(
      'GATEWAY_ERR_BAD_ARGUMENT',
      `gateway: input ${what} must be an integer or undefined, got ${typeof value === 'number' ? value : typeof value}`,
    );
  }
  return value < 0 ? Infinity : value;
}

/**
 * BodyInput is the `gateway.input` implementation. `length` is the number of body bytes
 * (CONTENT_LENGTH), or `null` to read until the source ends (a chunked body under mod_cgid).
 * Bytes past `length` are never returned. A source that ends before `length` bytes is an error
 * (`GATEWAY_ERR_INPUT_TRUNCATED`, status 400): the client went away mid-body; so is a null
 * source with a non-zero `length`. Reads run one after another in call order, even when the
 * app starts several without awaiting them.
 */
export class BodyInput implements InputStream {
  private readonly iterator: AsyncIterator<Uint8Array> | null;
  private remaining: number; // bytes still allowed from the source (Infinity when length is null)
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  private ended: boolean;
  private failure: BridgeError | undefined; // sticky: a truncated body stays truncated
  private lock: Promise<unknown> = Promise.resolve();
  /** consumed counts the bytes handed to the app so far. */
  consumed = 0;

  constructor(source: ByteSource | null, length: number | null) {
    this.remaining = length === null ? Infinity : length;
    this.iterator = source === null || this.remaining === 0 ? null : source[Symbol.asyncIterator]();
    this.ended = this.iterator === null;
    if (source === null && this.remaining > 0 && this.remaining !== Infinity) {
      this.failure = this.truncated();
    }
  }

  /** done tells whether the source has nothing more to give: the body was received whole, or it failed. */
  get done(): boolean {
    return this.ended;
  }

  /** read returns `size` bytes, fewer only at the end of the body; all that is left when `size` is omitted. */
  read(size?: number): Promise<Uint8Array> {
    let n: number;
    try {
      n = checkCount(size, 'read() size');
    } catch (e) {
      return Promise.reject(e);
    }
    return this.serial(async () => {
      while (this.buffered < n && (await this.pull()));
      return this.take(Math.min(n, this.buffered));
    });
  }

  /** readline returns one line including its `\n` (at most `limit` bytes); empty at the end. */
  readline(limit?: number): Promise<Uint8Array> {
    let max: number;
    try {
      max = checkCount(limit, 'readline() limit');
    } catch (e) {
      return Promise.reject(e);
    }
    return this.serial(() => this.line(max));
  }

  /** readlines returns the remaining lines, stopping after the line that brings the total to `hint` bytes. */
  readlines(hint?: number): Promise<Uint8Array[]> {
    let max: number;
    try {
      max = checkCount(hint, 'readlines() hint');
    } catch (e) {
      return Promise.reject(e);
    }
    if (max === 0) max = Infinity; // Python: hint <= 0 means no limit
    return this.serial(async () => {
      const lines: Uint8Array[] = [];
      let total = 0;
      while (total < max) {
        const line = await this.line(Infinity);
        if (line.length === 0) break;
        lines.push(line);
        total += line.length;
      }
      return lines;
    });
  }

  /** Symbol.asyncIterator yields the body's chunks as they arrive from the source. */
  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    for (;;) {
      const chunk = await this.serial(async () => {
        while (this.buffered === 0) if (!(await this.pull())) return EMPTY;
        return this.take(this.chunks[0]!.length);
      });
      if (chunk.length === 0) return;
      yield chunk;
    }
  }

  /** discard reads the rest of the body from the source and drops it, so the transport can be reused. */
  discard(): Promise<void> {
    return this.serial(async () => {
      this.chunks = [];
      this.buffered = 0;
      while (await this.pull()) {
        this.chunks = [];
        this.buffered = 0;
      }
    });
  }

  // serial runs reads one after the other: a second read() waits for the first instead of interleaving.
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.lock.then(fn);
    this.lock = p.catch(() => undefined);
    return p;
  }

  private truncated(): BridgeError {
    return new BridgeError(
      'GATEWAY_ERR_INPUT_TRUNCATED',
      `gateway: request body ended ${this.remaining} bytes short of CONTENT_LENGTH`,
      { status: 400 },
    );
  }

  // pull gets one more chunk from the source into the buffer; false at the end of the body.
  private async pull(): Promise<boolean> {
    if (this.failure) throw this.failure;
    if (this.ended || this.iterator === null) return false;
    let r: IteratorResult<Uint8Array>;
    try {
      r = await this.iterator.next();
    } catch (cause) {
      this.ended = true;
      this.failure = new BridgeError(
        'GATEWAY_ERR_INPUT_FAILED',
        'gateway: reading the request body failed',
        // A front end's own refusal keeps its status (the HTTP body limit: 413).
        { cause, status: cause instanceof BridgeError ? cause.status : 400 },
      );
      throw this.failure;
    }
    if (r.done) {
      this.ended = true;
      if (this.remaining !== Infinity && this.remaining > 0) {
        this.failure = this.truncated();
        throw this.failure;
      }
      return false;
    }
    let chunk = r.value;
    if (chunk.length > this.remaining) chunk = chunk.subarray(0, this.remaining);
    this.remaining -= chunk.length;
    // What follows CONTENT_LENGTH is not ours to read; the front end decides what to do with it.
    if (this.remaining === 0) this.ended = true;
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    return true;
  }

  private async line(max: number): Promise<Uint8Array> {
    let scanned = 0; // bytes of the buffer already searched for '\n'
    for (;;) {
      const at = this.indexOfNewline(scanned);
      if (at >= 0) return this.take(Math.min(at + 1, max));
      scanned = this.buffered;
      if (this.buffered >= max) return this.take(max);
      if (!(await this.pull())) return this.take(Math.min(this.buffered, max));
    }
  }

  private indexOfNewline(from: number): number {
    let offset = 0;
    for (const c of this.chunks) {
      if (offset + c.length > from) {
        const i = c.indexOf(10, Math.max(0, from - offset));
        if (i >= 0) return offset + i;
      }
      offset += c.length;
    }
    return -1;
  }

  private take(n: number): Uint8Array {
    if (n <= 0) return EMPTY;
    let out: Uint8Array;
    const first = this.chunks[0]!;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = new Uint8Array(n);
      let o = 0;
      while (o < n) {
        const c = this.chunks[0]!;
        const k = Math.min(c.length, n - o);
        out.set(c.subarray(0, k), o);
        o += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.buffered -= n;
    this.consumed += n;
    return out;
  }
}

/** emptyInput is a `gateway.input` with no body. */
export function emptyInput(): BodyInput {
  return new BodyInput(null, 0);
}
