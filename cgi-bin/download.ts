// download: a deterministic binary body (byte i is i % 256), 1 MiB by default or ?size=N bytes,
// for byte-exact tests of every front end.
import type { GatewayApp } from '../src/index.js';

const DEFAULT_SIZE = 1024 * 1024;
const MAX_SIZE = 1024 * 1024 * 1024;
const BLOCK = 64 * 1024; // a multiple of 256, so every block starts at byte value 0

/** app streams `size` bytes with a Content-Length, as application/octet-stream. */
const app: GatewayApp = (environ, startResponse) => {
  const raw = new URLSearchParams(environ.QUERY_STRING).get('size');
  const size = raw === null ? DEFAULT_SIZE : Number(raw);
  if (
    !Number.isSafeInteger(size) ||
    size < 0 ||
    size > MAX_SIZE ||
    (raw !== null && !/^\d+$/.test(raw))
  ) {
    startResponse('400 Bad Request', [['Content-Type', 'text/plain; charset=utf-8']]);
    return [`size must be an integer from 0 to ${MAX_SIZE}\n`];
  }
  startResponse('200 OK', [
    ['Content-Type', 'application/octet-stream'],
    ['Content-Length', String(size)],
    ['Content-Disposition', `attachment; filename="bytes-${size}.bin"`],
  ]);
  const block = new Uint8Array(BLOCK).map((_, i) => i % 256);
  return (function* () {
    for (let sent = 0; sent < size; sent += BLOCK)
      yield block.subarray(0, Math.min(BLOCK, size - sent));
  })();
};

export default app;
