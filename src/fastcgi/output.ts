// The responder's output side of one connection (FastCGI spec §3.3): stream records encoded with
// as few copies as possible, queued, and written in as few socket writes as possible.
import type { Duplex } from 'node:stream';
import { FCGI_HEADER_LEN, FCGI_VERSION_1 } from './protocol.js';

/**
 * STREAM_RECORD_CONTENT is the content size of a full stream record the responder sends: the
 * largest multiple of 8 a record can carry (FastCGI spec §3.3 allows 65535), so full records
 * need no padding and a large chunk goes out as header + view, header + view … without a copy.
 */
export const STREAM_RECORD_CONTENT = 65528;

// Below this, a record's content is copied next to its header (one small buffer beats a
// vectored write); above it, the content is sent as views of the caller's bytes.
const COPY_LIMIT = 16 * 1024;
// Queued pieces up to this total are joined into one buffer for one write(2).
const JOIN_LIMIT = 64 * 1024;
// The congestion threshold: bytes queued or in the socket before writers wait for 'drain'.
const HIGH_WATER_MARK = 64 * 1024;
const ZEROS = Buffer.alloc(8);

function header(target: Buffer, at: number, type: number, id: number, length: number, pad: number) {
  // FastCGI spec §3.3: version, type, requestId B1 B0, contentLength B1 B0, paddingLength, reserved.
  target[at] = FCGI_VERSION_1;
  target[at + 1] = type;
  target[at + 2] = id >>> 8;
  target[at + 3] = id & 0xff;
  target[at + 4] = length >>> 8;
  target[at + 5] = length & 0xff;
  target[at + 6] = pad;
  target[at + 7] = 0;
}

/**
 * OutputQueue holds the records a connection sends, in order, and writes them to the socket
 * once the current burst of work is done (process.nextTick, after the promise jobs): a
 * response's header block, body and FCGI_END_REQUEST produced in one go leave in one write(2),
 * however many calls produced them. Once 64 KiB are queued they are written at once (bulk data
 * gains nothing from waiting). `congested` and `drained()` give writers the socket's
 * backpressure.
 */
export class OutputQueue {
  #pieces: Uint8Array[] = [];
  #bytes = 0;
  #scheduled = false;
  #closed = false;
  #drain: Promise<void> | null = null;
  #resolveDrain: (() => void) | null = null;
  readonly #flushTick = (): void => {
    this.#scheduled = false;
    this.flush();
  };

  /** constructor binds the queue to the socket it writes to. */
  constructor(private readonly socket: Duplex) {
    socket.on('drain', () => this.#wake());
  }

  /** closed tells whether the queue stopped writing (the connection is closing or gone). */
  get closed(): boolean {
    return this.#closed;
  }

  /** congested tells whether writers should wait for `drained()` before producing more. */
  get congested(): boolean {
    return this.#bytes + this.socket.writableLength > HIGH_WATER_MARK;
  }

  /** drained resolves once the socket takes more (at once when not congested) or the queue closes. */
  drained(): Promise<void> {
    if (this.#closed || !this.congested) return Promise.resolve();
    this.#drain ??= new Promise((resolve) => (this.#resolveDrain = resolve));
    return this.#drain;
  }

  /** push queues bytes that are already encoded records. */
  push(bytes: Uint8Array): void {
    if (this.#closed || bytes.length === 0) return;
    this.#pieces.push(bytes);
    this.#bytes += bytes.length;
    // Bulk data gains nothing from waiting for more: write it now (the writer may then go on
    // without waiting at all, when the kernel takes it whole).
    if (this.#bytes >= JOIN_LIMIT) {
      this.flush();
      return;
    }
    if (!this.#scheduled) {
      this.#scheduled = true;
      process.nextTick(this.#flushTick);
    }
  }

  /**
   * pushStream queues `prefix` then `data` as stream records of `type` for `requestId` (at
   * most {@link STREAM_RECORD_CONTENT} bytes each; the last padded to 8). Small content is
   * copied into one buffer with its header; large content is queued as views, not copied,
   * so the caller must not change those bytes afterwards.
   */
  pushStream(type: number, requestId: number, prefix: Uint8Array | null, data: Uint8Array): void {
    const a = prefix ?? ZEROS.subarray(0, 0);
    const total = a.length + data.length;
    if (total === 0 || this.#closed) return;
    const pad = -total & 7;
    if (total <= COPY_LIMIT) {
      const out = Buffer.allocUnsafe(FCGI_HEADER_LEN + total + pad);
      header(out, 0, type, requestId, total, pad);
      out.set(a, FCGI_HEADER_LEN);
      out.set(data, FCGI_HEADER_LEN + a.length);
      out.fill(0, FCGI_HEADER_LEN + total);
      this.push(out);
      return;
    }
    // One buffer holds every record header plus the final padding; the content goes as views.
    const records = Math.ceil(total / STREAM_RECORD_CONTENT);
    const glue = Buffer.allocUnsafe(records * FCGI_HEADER_LEN + pad);
    glue.fill(0, records * FCGI_HEADER_LEN);
    let offset = 0; // position in the virtual concatenation a + data
    for (let i = 0; i < records; i++) {
      const length = Math.min(STREAM_RECORD_CONTENT, total - offset);
      const last = i === records - 1;
      header(glue, i * FCGI_HEADER_LEN, type, requestId, length, last ? pad : 0);
      this.push(glue.subarray(i * FCGI_HEADER_LEN, (i + 1) * FCGI_HEADER_LEN));
      const end = offset + length;
      if (offset < a.length) this.push(a.subarray(offset, Math.min(end, a.length)));
      if (end > a.length) this.push(data.subarray(Math.max(offset - a.length, 0), end - a.length));
      offset = end;
    }
    if (pad > 0) this.push(glue.subarray(records * FCGI_HEADER_LEN));
  }

  /** flush writes everything queued now; normally it runs by itself on the next tick. */
  flush(): void {
    const pieces = this.#pieces;
    const bytes = this.#bytes;
    if (pieces.length === 0) return;
    this.#pieces = [];
    this.#bytes = 0;
    const socket = this.socket;
    if (this.#closed || socket.destroyed || !socket.writable) return;
    if (pieces.length === 1) socket.write(pieces[0]!);
    else if (bytes <= JOIN_LIMIT) socket.write(Buffer.concat(pieces, bytes));
    else {
      // cork + uncork turns the writes into one writev(2).
      socket.cork();
      for (const piece of pieces) socket.write(piece);
      socket.uncork();
    }
    // What the kernel took at once is gone from writableLength already; 'drain' comes a tick
    // later, so waiting writers are released here when the socket is below the mark.
    if (socket.writableLength <= HIGH_WATER_MARK) this.#wake();
  }

  /** close stops all writing: what is queued is dropped and waiting writers are released. */
  close(): void {
    this.#closed = true;
    this.#pieces = [];
    this.#bytes = 0;
    this.#wake();
  }

  #wake(): void {
    const resolve = this.#resolveDrain;
    this.#drain = null;
    this.#resolveDrain = null;
    resolve?.();
  }
}
