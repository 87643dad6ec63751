// gateway.file_wrapper: a file as a response body whose length is known before it is sent.
import { open, type FileHandle } from 'node:fs/promises';

/** kBodyLength marks a body that can tell its byte length before it is iterated. */
export const kBodyLength = Symbol.for('cgi-bridge.bodyLength');

/** SizedBody is a body that knows its byte length up front (so Content-Length can be sent). */
export interface SizedBody {
  [kBodyLength](): Promise<number>;
}

/** FileBody streams a file (by path or open fd) in blocks; `close()` closes what it opened. */
export class FileBody implements AsyncIterable<Uint8Array>, SizedBody {
  private handle: FileHandle | null = null;
  private opening: Promise<FileHandle> | null = null;
  private closed = false;

  constructor(
    private readonly file: string | number,
    private readonly blockSize = 64 * 1024,
  ) {}

  private async fh(): Promise<FileHandle> {
    if (this.handle) return this.handle;
    if (typeof this.file === 'number') {
      // An fd given by the app: wrap it without taking ownership of a path.
      const { fdHandle } = await import('./fd-handle.js');
      this.handle = fdHandle(this.file);
      return this.handle;
    }
    this.opening ??= open(this.file, 'r');
    this.handle = await this.opening;
    return this.handle;
  }

  async [kBodyLength](): Promise<number> {
    const st = await (await this.fh()).stat();
    return st.size;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    const fh = await this.fh();
    for (;;) {
      if (this.closed) return;
      const buf = Buffer.allocUnsafe(this.blockSize);
      const { bytesRead } = await fh.read(buf, 0, this.blockSize, null);
      if (bytesRead === 0) return;
      yield buf.subarray(0, bytesRead);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const h = this.handle ?? (this.opening ? await this.opening.catch(() => null) : null);
    await h?.close();
  }
}

/** fileWrapper is the `gateway.file_wrapper` every front end offers. */
export function fileWrapper(file: string | number, blockSize?: number): FileBody {
  return new FileBody(file, blockSize);
}
