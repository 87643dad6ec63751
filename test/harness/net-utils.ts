// Network helpers for the test harness: free ports, listen targets, waiting for a listener.
import { connect, createServer } from 'node:net';
import { sleep } from './process-utils.js';

/** ListenTarget is `tcp:HOST:PORT` or `unix:/abs/path.sock` (the lab scripts' notation). */
export type ListenTarget = `tcp:${string}` | `unix:/${string}`;

/** ParsedTarget is a {@link ListenTarget} taken apart. */
export type ParsedTarget =
  | { kind: 'tcp'; host: string; port: number }
  | { kind: 'unix'; path: string };

/** parseTarget splits a `tcp:HOST:PORT` / `unix:/abs/path` target; it throws on anything else. */
export function parseTarget(target: string): ParsedTarget {
  if (target.startsWith('unix:/')) return { kind: 'unix', path: target.slice('unix:'.length) };
  const m = /^tcp:\[?([^\]]+?)\]?:(\d{1,5})$/.exec(target);
  if (m !== null) {
    const port = Number(m[2]);
    if (port > 0 && port < 65536) return { kind: 'tcp', host: m[1] as string, port };
  }
  throw new Error(`bad listen target ${JSON.stringify(target)} (want tcp:HOST:PORT or unix:/abs/path)`);
}

/**
 * freePort asks the kernel for a free TCP port on 127.0.0.1 (bind port 0, read it, close).
 * Another process may take it before it is used; the server start functions retry on
 * "address in use".
 */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen({ host, port: 0, exclusive: true }, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => (port > 0 ? resolve(port) : reject(new Error('freePort: no port'))));
    });
  });
}

/** canConnect tells whether a connection to `target` succeeds right now (it is closed at once). */
export function canConnect(target: string, timeoutMs = 1000): Promise<boolean> {
  const t = parseTarget(target);
  return new Promise((resolve) => {
    const sock =
      t.kind === 'tcp' ? connect({ host: t.host, port: t.port }) : connect({ path: t.path });
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/** WaitOptions tunes {@link waitForListen}. */
export interface WaitOptions {
  /** Give up after this long (default 10000 ms). */
  timeoutMs?: number;
  /** Checked between attempts; when it returns false the wait stops early (the server died). */
  alive?: () => boolean;
}

/** waitForListen polls until `target` accepts connections; resolves false on timeout or death. */
export async function waitForListen(target: string, opts: WaitOptions = {}): Promise<boolean> {
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  for (;;) {
    if (await canConnect(target, 500)) return true;
    if (opts.alive !== undefined && !opts.alive()) return false;
    if (Date.now() >= deadline) return false;
    await sleep(50);
  }
}
