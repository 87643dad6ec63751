// stream: a body produced over time (5 chunks 500 ms apart by default; ?n=N&ms=M), to show that
// each chunk reaches the client as it is produced, through CGI, FastCGI or HTTP.
import type { GatewayApp } from '../src/index.js';

const MAX_CHUNKS = 100;
const MAX_DELAY_MS = 5000;

function intParam(query: URLSearchParams, name: string, fallback: number, max: number): number {
  const v = Number(query.get(name) ?? fallback);
  return Number.isInteger(v) && v >= 0 ? Math.min(v, max) : fallback;
}

// sleep ends early when the client goes away, so the script does not linger.
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/** app sends `n` numbered lines `ms` milliseconds apart. */
const app: GatewayApp = (environ, startResponse) => {
  const query = new URLSearchParams(environ.QUERY_STRING);
  const n = intParam(query, 'n', 5, MAX_CHUNKS);
  const ms = intParam(query, 'ms', 500, MAX_DELAY_MS);
  const signal = environ['gateway.signal'];
  startResponse('200 OK', [
    ['Content-Type', 'text/plain; charset=utf-8'],
    ['Cache-Control', 'no-store'],
    // nginx buffers FastCGI/proxied responses unless told not to.
    ['X-Accel-Buffering', 'no'],
  ]);
  return (async function* () {
    const t0 = Date.now();
    for (let i = 1; i <= n && !signal.aborted; i++) {
      yield `chunk ${i} of ${n} at ${Date.now() - t0} ms\n`;
      if (i < n) await sleep(ms, signal);
    }
  })();
};

export default app;
