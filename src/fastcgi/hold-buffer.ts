// A held response (the responder's hold policy, issue 3: nginx stops sending a request body once
// the reply starts): bytes kept in order, in memory up to a bound, then in an unlinked temp file.
import { randomBytes } from 'node:crypto';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { BridgeError } from '../errors.js';

/** HoldBufferOptions bound a {@link HoldBuffer}. */
export interface HoldBufferOptions {
  /** maxMemoryBytes is how many bytes stay in memory; later ones go to the temp file. */
  maxMemoryBytes: number;
  /** tmpDir is the directory of the temp file. */
  tmpDir: string;
  /** blockSize is the size of the pieces `drain()` reads from the file; default 64 KiB. */
  blockSize?: number;
}

/** HoldSink receives held bytes in order; a returned promise is awaited (backpressure). */
export type HoldSink = (bytes: Buffer) => void | Promise<void>;

const DEFAULT_BLOCK_SIZE = 64 * 1024;

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes)
    ? bytes
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * HoldBuffer keeps bytes until `drain()` hands them out, in the order they came. The first
 * `maxMemoryBytes` stay in memory (as the caller's chunks, not copied); past that everything
 * goes to a temp file opened in `tmpDir` and unlinked at once, so nothing is left behind even
 * if the process dies, and memory stays bounded whatever the response size. `append()` is
 * synchronous while in memory and returns a promise while writing to the file (disk
 * backpressure). Operations run one after another in call order. A file error is sticky:
 * later operations fail with FCGI_ERR_HOLD_FAILED.
 */
export class HoldBuffer {
  readonly #maxMemory: number;
  readonly #tmpDir: string;
  readonly #blockSize: number;
  #chunks: Buffer[] = [];
  #memoryBytes = 0;
  #file: FileHandle | null = null;
  #opening: Promise<FileHandle> | null = null;
  #written = 0; // bytes appended to the file
  #read = 0; // bytes of the file already handed out
  #tail: Promise<void> | null = null;
  #pending = 0; // operations queued behind #tail
  #error: BridgeError | null = null;
  #disposed = false;

  /** constructor takes the memory bound and the temp directory. */
  constructor(options: HoldBufferOptions) {
    this.#maxMemory = options.maxMemoryBytes;
    this.#tmpDir = options.tmpDir;
    this.#blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE;
  }

  /** size is how many bytes are held (in memory and in the file). */
  get size(): number {
    return this.#memoryBytes + this.#written - this.#read;
  }

  /** memoryBytes is how many held bytes are in memory. */
  get memoryBytes(): number {
    return this.#memoryBytes;
  }

  /** spilled tells whether a temp file is in use. */
  get spilled(): boolean {
    return this.#file !== null || this.#opening !== null;
  }

  /** append adds bytes at the end; the caller must not change them afterwards. */
  append(bytes: Uint8Array): void | Promise<void> {
    if (this.#disposed) throw this.#gone();
    if (bytes.length === 0) return;
    if (this.#error) throw this.#error;
    if (
      !this.spilled &&
      this.#pending === 0 &&
      this.#memoryBytes + bytes.length <= this.#maxMemory
    ) {
      this.#chunks.push(toBuffer(bytes));
      this.#memoryBytes += bytes.length;
      return;
    }
    const chunk = toBuffer(bytes);
    return this.#serial(() => this.#writeFile(chunk));
  }

  /**
   * drain hands every held byte to `sink`, in order: the chunks held in memory as they were
   * appended (so a held response leaves in the same records as an unheld one), then the
   * file in blocks of `blockSize` bytes. The buffer is empty and its file closed when the
   * promise resolves, unless more was appended meanwhile (check `size`).
   */
  drain(sink: HoldSink): Promise<void> {
    return this.#serial(async () => {
      while (this.#chunks.length > 0) {
        const chunk = this.#chunks.shift()!;
        this.#memoryBytes -= chunk.length;
        await sink(chunk);
        if (this.#disposed) return;
      }
      while (this.#read < this.#written) {
        const block = await this.#readBlock();
        await sink(block);
        if (this.#disposed) return;
      }
      await this.#closeFile();
    });
  }

  /** dispose drops everything held and closes the temp file; later appends throw. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#chunks = [];
    this.#memoryBytes = 0;
    this.#written = 0;
    this.#read = 0;
    void this.#closeFile().catch(() => undefined);
  }

  #gone(): BridgeError {
    return new BridgeError('FCGI_ERR_HOLD_FAILED', 'fcgi: the held response was dropped');
  }

  #serial(task: () => Promise<void>): Promise<void> {
    this.#pending += 1;
    const run = async (): Promise<void> => {
      try {
        if (this.#error) throw this.#error;
        if (this.#disposed) throw this.#gone();
        await task();
      } finally {
        this.#pending -= 1;
      }
    };
    const p = this.#tail === null ? run() : this.#tail.then(run);
    this.#tail = p.catch(() => undefined);
    return p;
  }

  async #openFile(): Promise<FileHandle> {
    // O_EXCL with a random name: never another process's file; unlinked at once, so only our
    // descriptor keeps it alive (mode 0600: response bytes are private).
    const path = join(
      this.#tmpDir,
      `cgi-bridge-hold-${process.pid}-${randomBytes(8).toString('hex')}`,
    );
    const handle = await open(path, 'wx+', 0o600);
    await unlink(path).catch(() => undefined);
    return handle;
  }

  async #writeFile(chunk: Buffer): Promise<void> {
    try {
      if (this.#file === null) {
        this.#opening ??= this.#openFile();
        this.#file = await this.#opening;
        this.#opening = null;
        if (this.#disposed) {
          await this.#closeFile();
          throw this.#gone();
        }
      }
      let done = 0;
      while (done < chunk.length) {
        const { bytesWritten } = await this.#file.write(
          chunk,
          done,
          chunk.length - done,
          this.#written + done,
        );
        done += bytesWritten;
      }
      this.#written += chunk.length;
    } catch (cause) {
      if (cause instanceof BridgeError && cause.code === 'FCGI_ERR_HOLD_FAILED') throw cause;
      this.#error = new BridgeError(
        'FCGI_ERR_HOLD_FAILED',
        `fcgi: cannot hold the response in a temp file in ${this.#tmpDir}`,
        { cause },
      );
      throw this.#error;
    }
  }

  async #readBlock(): Promise<Buffer> {
    const size = Math.min(this.#blockSize, this.#written - this.#read);
    const block = Buffer.allocUnsafe(size);
    let got = 0;
    while (got < size) {
      const { bytesRead } = await this.#file!.read(block, got, size - got, this.#read + got);
      if (bytesRead === 0) {
        this.#error = new BridgeError(
          'FCGI_ERR_HOLD_FAILED',
          'fcgi: the held response temp file is shorter than what was written',
        );
        throw this.#error;
      }
      got += bytesRead;
    }
    this.#read += size;
    return block;
  }

  async #closeFile(): Promise<void> {
    const file = this.#file ?? (this.#opening ? await this.#opening.catch(() => null) : null);
    this.#file = null;
    this.#opening = null;
    this.#written = 0;
    this.#read = 0;
    await file?.close();
  }
}
