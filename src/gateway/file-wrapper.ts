// gateway.file_wrapper: a file as a response body whose length is known before it is sent.
import type { FileHandle } from 'node:fs/promises';
import { BridgeError } from '../errors.js';

/** kBodyLength marks a body that can tell its byte length before it is iterated. */
export const kBodyLength = Symbol.for('cgi-bridge.bodyLength');

/**
 * SizedBody is a body that may know its byte length up front (so Content-Length can be sent);
 * `undefined` means the length is not known after all.
 */
export interface SizedBody {
  [kBodyLength](): Promise<number | undefined>;
}

const DEFAULT_BLOCK_SIZE = 64 * 1024;

/**
 * FileBody streams a file in blocks. Given a path, it opens the file, reports a regular file's
 * size as its length and sends exactly that many bytes from the start (a file that grows while
 * it is sent cannot overrun the Content-Length). Given an open fd, it sends from the fd's
 * current position to its end with no known length (PEP 3333: "transmission should begin at
 * the current position"), and takes ownership: `close()` closes the fd as it closes an
 * opened path. Iterating after `close()` yields nothing.
 */
export class FileBody implements AsyncIterable<Uint8Array>, SizedBody {
  private handle: FileHandle | null = null;
  private opening: Promise<FileHandle> | null = null;
  private closed = false;
  private limit: number | undefined; // bytes to send, once the size is known (paths only)

  constructor(
    private readonly file: string | number,
    private readonly blockSize = DEFAULT_BLOCK_SIZE,
  ) {
    if (typeof file !== 'string' && !(Number.isInteger(file) && file >= 0)) {
      throw new BridgeError(
        'GATEWAY_ERR_BAD_ARGUMENT',
        'gateway: file_wrapper takes a path or an open file descriptor',
      );
    }
    if (!Number.isInteger(blockSize) || blockSize <= 0) {
      throw new BridgeError(
        'GATEWAY_ERR_BAD_ARGUMENT',
        `gateway: file_wrapper block size must be a positive integer, got ${blockSize}`,
      );
    }
  }

  private async fh(): Promise<FileHandle> {
    if (this.handle) return this.handle;
    if (typeof this.file === 'number') {
      // Loaded only when an app passes an fd: most requests never need it.
      const { fdHandle } = await import('./fd-handle.js');
      this.handle = fdHandle(this.file);
      return this.handle;
    }
    // Loaded on first use: node:fs/promises adds ~2 ms to every CGI start-up that never sends a file.
    const path = this.file;
    this.opening ??= import('node:fs/promises').then((fs) => fs.open(path, 'r'));
    this.handle = await this.opening;
    return this.handle;
  }

  async [kBodyLength](): Promise<number | undefined> {
    if (typeof this.file === 'number' || this.closed) return undefined;
    const st = await (await this.fh()).stat();
    // A pipe or device has no size worth announcing.
    if (!st.isFile()) return undefined;
    this.limit = st.size;
    return st.size;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    if (this.closed) return;
    const fh = await this.fh();
    // Paths are read at explicit offsets from 0; an fd from where the app left it.
    let position: number | null = typeof this.file === 'number' ? null : 0;
    for (;;) {
      if (this.closed) return;
      const left = this.limit === undefined ? this.blockSize : this.limit - (position ?? 0);
      const want = Math.min(this.blockSize, left);
      if (want <= 0) return;
      const buf = Buffer.allocUnsafe(want);
      const { bytesRead } = await fh.read(buf, 0, want, position);
      if (bytesRead === 0) return;
      if (position !== null) position += bytesRead;
      yield buf.subarray(0, bytesRead);
    }
  }

  /** close closes the file (the opened path or the fd it was given); later calls do nothing. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (typeof this.file === 'number' && !this.handle) {
      // Never iterated: the fd is still ours to close.
      const { fdHandle } = await import('./fd-handle.js');
      this.handle = fdHandle(this.file);
    }
    const h = this.handle ?? (this.opening ? await this.opening.catch(() => null) : null);
    await h?.close();
  }
}

/** fileWrapper is the `gateway.file_wrapper` every front end offers. */
export function fileWrapper(file: string | number, blockSize?: number): FileBody {
  return new FileBody(file, blockSize);
}
