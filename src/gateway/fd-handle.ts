// A minimal FileHandle-like view of a raw fd for gateway.file_wrapper (node has no public fd -> FileHandle).
import { close, fstat, read } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { promisify } from 'node:util';

const pread = promisify(read);
const pfstat = promisify(fstat);
const pclose = promisify(close);

/** fdHandle exposes the parts of FileHandle that FileBody uses over a plain fd. */
export function fdHandle(fd: number): FileHandle {
  const h = {
    fd,
    stat: () => pfstat(fd),
    // fs.read's promisified form already resolves to { bytesRead, buffer }, as FileHandle.read does.
    read: (buffer: Buffer, offset: number, length: number, position: number | null) =>
      pread(fd, buffer, offset, length, position),
    close: () => pclose(fd),
  };
  return h as unknown as FileHandle;
}
