// gateway.input: the request body as an async, byte-exact stream bounded by CONTENT_LENGTH.
import { BridgeError } from '../errors.js';
import type { InputStream } from './types.js';

/** ByteSource is where a front end's body bytes come from: any async iterable of byte chunks. */
export type ByteSource = AsyncIterable<Uint8Array>;

const EMPTY = new Uint8Array(0);

/**
 * BodyInput is the `gateway.input` implementation. `length` is the number of body bytes
 * (CONTENT_LENGTH), or `null` to read until the source ends (a chunked body under mod_cgid).
 * Bytes past `length` are never returned. A source that ends before `length` bytes is an error
 * (`GATEWAY_ERR_INPUT_TRUNCATED`): the client went away mid-body.
 */
export class BodyInput implements InputStream {
  private readonly iterator: AsyncIterator<Uint8Array> | null;
  private remaining: number; // bytes still allowed from the source (Infinity when length is null)
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  private ended: boolean;
  private lock: Promise<unknown> = Promise.resolve();
  /** consumed counts the bytes handed to the app so far. */
  consumed = 0;

  constructor(source: ByteSource | null, length: number | null) {
    this.remaining = length === null ? Infinity : length;
    this.ended = source === null || this.remaining === 0;
    this.iterator = this.ended || source === null ? null : source[Symbol.asyncIterator]();
  }

  /** done tells whether the whole body has been received from the source. */
  get done(): boolean {
    return this.ended;
  }

  read(size?: number): Promise<Uint8Array> {
    return this.serial(async () => {
      if (size === undefined || size < 0) {
        while (await this.pull());
        return this.take(this.buffered);
      }
      while (this.buffered < size && (await this.pull()));
      return this.take(Math.min(size, this.buffered));
    });
  }

  readline(limit?: number): Promise<Uint8Array> {
    const max = limit === undefined || limit < 0 ? Infinity : limit;
    return this.serial(async () => {
      let scanned = 0; // bytes of the buffer already searched for '\n'
      for (;;) {
        const at = this.indexOfNewline(scanned);
        if (at >= 0) return this.take(Math.min(at + 1, max));
        scanned = this.buffered;
        if (this.buffered >= max) return this.take(max);
        if (!(await this.pull())) return this.take(Math.min(this.buffered, max));
      }
    });
  }

  async readlines(hint?: number): Promise<Uint8Array[]> {
    const lines: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      const line = await this.readline();
      if (line.length === 0) return lines;
      lines.push(line);
      total += line.length;
      if (hint !== undefined && hint > 0 && total >= hint) return lines;
    }
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    for (;;) {
      const chunk = await this.serial(async () => {
        if (this.buffered === 0 && !(await this.pull())) return EMPTY;
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

  private async pull(): Promise<boolean> {
    if (this.ended || this.iterator === null) return false;
    let r: IteratorResult<Uint8Array>;
    try {
      r = await this.iterator.next();
    } catch (cause) {
      this.ended = true;
      throw new BridgeError(
        'GATEWAY_ERR_INPUT_FAILED',
        'gateway: reading the request body failed',
        {
          cause,
          status: 400,
        },
      );
    }
    if (r.done) {
      this.ended = true;
      if (this.remaining !== Infinity && this.remaining > 0) {
        throw new BridgeError(
          'GATEWAY_ERR_INPUT_TRUNCATED',
          `gateway: request body ended ${this.remaining} bytes short of CONTENT_LENGTH`,
          { status: 400 },
        );
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
