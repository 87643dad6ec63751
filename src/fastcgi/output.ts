// The responder's output side of one connection (FastCGI spec §3.3): stream records encoded with
// as few copies as possible, queued, and written in as few socket writes as possible.
import type { Duplex } from 'node:stream';
import {
  FCGI_END_REQUEST,
  FCGI_HEADER_LEN,
  FCGI_REQUEST_COMPLETE,
  FCGI_STDERR,
  FCGI_STDOUT,
} from './protocol.js';
import { writeHeader } from './records.js';

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
// Small records are encoded in place into a slab shared by every connection of the process: each
// byte of it is written once and sent from (a write may still hold a view), never reused, so a
// response costs no buffer of its own. A full slab is left to the garbage collector.
const SLAB_SIZE = 64 * 1024;
const shared = { slab: Buffer.allocUnsafeSlow(0), pos: 0 };
const EMPTY = Buffer.alloc(0);

function latin1(text: string): Buffer {
  return Buffer.from(text, 'latin1');
}

// put copies bytes, or a latin-1 string (one char per byte), to target at `at`.
function put(target: Buffer, at: number, bytes: Uint8Array | string): void {
  if (typeof bytes === 'string') target.write(bytes, at, bytes.length, 'latin1');
  else target.set(bytes, at);
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
  // The slab small records are encoded into; bytes [#slabStart, #slabPos) are queued after
  // #pieces and not yet sealed into a piece of their own.
  #slab: Buffer | null = null;
  #slabStart = 0;
  #slabPos = 0;
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
    this.#seal();
    this.#pieces.push(bytes);
    this.#queued(bytes.length);
  }

  // queued accounts for n more queued bytes and schedules (or makes) the write.
  #queued(n: number): void {
    this.#bytes += n;
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

  // reserve makes room for n bytes in the shared slab and returns where they go; the open
  // region grows when nothing else took slab bytes since, else it is sealed and a new one begun.
  #reserve(n: number): number {
    if (shared.pos + n > shared.slab.length) {
      shared.slab = Buffer.allocUnsafeSlow(Math.max(SLAB_SIZE, n));
      shared.pos = 0;
    }
    if (this.#slab !== shared.slab || this.#slabPos !== shared.pos) {
      this.#seal();
      this.#slab = shared.slab;
      this.#slabStart = this.#slabPos = shared.pos;
    }
    const at = shared.pos;
    shared.pos = this.#slabPos = at + n;
    return at;
  }

  // seal turns the open slab region into a piece, so what is pushed next goes after it.
  #seal(): void {
    if (this.#slabPos > this.#slabStart) {
      this.#pieces.push(this.#slab!.subarray(this.#slabStart, this.#slabPos));
      this.#slabStart = this.#slabPos;
    }
  }

  /**
   * pushRequestEnd queues the end of a response (FastCGI spec §6.2, §5.5, Appendix B), encoded
   * in place: the last `stdout` bytes, the empty FCGI_STDOUT, the empty FCGI_STDERR when
   * `endStderr`, then FCGI_END_REQUEST with `appStatus` and FCGI_REQUEST_COMPLETE.
   */
  pushRequestEnd(
    requestId: number,
    stdout: Uint8Array | string | null,
    endStderr: boolean,
    appStatus: number,
  ): void {
    if (this.#closed) return;
    const length = stdout === null ? 0 : stdout.length;
    if (length > COPY_LIMIT) {
      this.pushStream(FCGI_STDOUT, requestId, stdout, EMPTY);
      this.pushRequestEnd(requestId, null, endStderr, appStatus);
      return;
    }
    const pad = -length & 7;
    const size =
      (length > 0 ? FCGI_HEADER_LEN + length + pad : 0) +
      FCGI_HEADER_LEN +
      (endStderr ? FCGI_HEADER_LEN : 0) +
      2 * FCGI_HEADER_LEN;
    let at = this.#reserve(size);
    const out = this.#slab!;
    if (length > 0) {
      writeHeader(out, at, FCGI_STDOUT, requestId, length, pad);
      put(out, at + FCGI_HEADER_LEN, stdout!);
      at += FCGI_HEADER_LEN + length;
      out.fill(0, at, at + pad);
      at += pad;
    }
    writeHeader(out, at, FCGI_STDOUT, requestId, 0, 0);
    at += FCGI_HEADER_LEN;
    if (endStderr) {
      writeHeader(out, at, FCGI_STDERR, requestId, 0, 0);
      at += FCGI_HEADER_LEN;
    }
    writeHeader(out, at, FCGI_END_REQUEST, requestId, 8, 0);
    at += FCGI_HEADER_LEN;
    // FastCGI spec §5.5: appStatus (uint32, a negative status as its two's complement), protocolStatus, reserved.
    out.writeUInt32BE(appStatus >>> 0, at);
    out[at + 4] = FCGI_REQUEST_COMPLETE;
    out[at + 5] = 0;
    out[at + 6] = 0;
    out[at + 7] = 0;
    this.#queued(size);
  }

  /**
   * pushStream queues `prefix` then `data` as stream records of `type` for `requestId` (at
   * most {@link STREAM_RECORD_CONTENT} bytes each; the last padded to 8). Small content is
   * copied into one buffer with its header; large content is queued as views, not copied,
   * so the caller must not change those bytes afterwards.
   */
  pushStream(
    type: number,
    requestId: number,
    prefix: Uint8Array | string | null,
    data: Uint8Array,
  ): void {
    const small = (prefix === null ? 0 : prefix.length) + data.length <= COPY_LIMIT;
    // A latin-1 string prefix (a header block) is written in place; as a view it needs bytes.
    const a =
      prefix === null ? EMPTY : typeof prefix === 'string' && !small ? latin1(prefix) : prefix;
    const total = a.length + data.length;
    if (total === 0 || this.#closed) return;
    const pad = -total & 7;
    if (total <= COPY_LIMIT) {
      const size = FCGI_HEADER_LEN + total + pad;
      const at = this.#reserve(size);
      const out = this.#slab!;
      writeHeader(out, at, type, requestId, total, pad);
      put(out, at + FCGI_HEADER_LEN, a);
      out.set(data, at + FCGI_HEADER_LEN + a.length);
      out.fill(0, at + FCGI_HEADER_LEN + total, at + size);
      this.#queued(size);
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
      writeHeader(glue, i * FCGI_HEADER_LEN, type, requestId, length, last ? pad : 0);
      this.push(glue.subarray(i * FCGI_HEADER_LEN, (i + 1) * FCGI_HEADER_LEN));
      const end = offset + length;
      if (offset < a.length) this.push((a as Uint8Array).subarray(offset, Math.min(end, a.length)));
      if (end > a.length) this.push(data.subarray(Math.max(offset - a.length, 0), end - a.length));
      offset = end;
    }
    if (pad > 0) this.push(glue.subarray(records * FCGI_HEADER_LEN));
  }

  /** flush writes everything queued now; normally it runs by itself on the next tick. */
  flush(): void {
    this.#seal();
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
    this.#slab = null;
    this.#slabStart = 0;
    this.#slabPos = 0;
    this.#wake();
  }

  #wake(): void {
    const resolve = this.#resolveDrain;
    this.#drain = null;
    this.#resolveDrain = null;
    resolve?.();
  }
}
