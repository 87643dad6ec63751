// Network helpers for the test harness: free ports, listen targets, waiting for a listener.
import { readFile, readdir, readlink } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { descendantsOf, sleep } from './process-utils.js';

/** ListenTarget is `tcp:HOST:PORT` or `unix:/abs/path.sock` (the lab scripts' notation). */
export type ListenTarget = `tcp:${string}` | `unix:/${string}`;

/** ParsedTarget is a {@link ListenTarget} taken apart. */
export type ParsedTarget =
  { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

/** parseTarget splits a `tcp:HOST:PORT` / `unix:/abs/path` target; it throws on anything else. */
export function parseTarget(target: string): ParsedTarget {
  if (target.startsWith('unix:/')) return { kind: 'unix', path: target.slice('unix:'.length) };
  const m = /^tcp:\[?([^\]]+?)\]?:(\d{1,5})$/.exec(target);
  if (m !== null) {
    const port = Number(m[2]);
    if (port > 0 && port < 65536) return { kind: 'tcp', host: m[1] as string, port };
  }
  throw new Error(
    `bad listen target ${JSON.stringify(target)} (want tcp:HOST:PORT or unix:/abs/path)`,
  );
}

const handedOut = new Set<number>();

/**
 * freePort asks the kernel for a free TCP port on 127.0.0.1 (bind port 0, read it, close).
 * It never returns the same port twice in one process (the kernel may offer a just-closed
 * port again). Another process may still take it before it is used; the server start
 * functions retry on "address in use".
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = await kernelPort(host);
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('freePort: the kernel keeps offering ports already handed out');
}

function kernelPort(host: string): Promise<number> {
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

async function listeningInodes(port: number): Promise<Set<string> | undefined> {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  const out = new Set<string>();
  let any = false;
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch {
      continue;
    }
    any = true;
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // f[1] local address HEXIP:HEXPORT, f[3] state (0A = LISTEN), f[9] inode
      if (f.length > 9 && f[3] === '0A' && f[1]?.endsWith(`:${hex}`)) out.add(f[9] as string);
    }
  }
  return any ? out : undefined;
}

/**
 * ownsListener tells whether the TCP port's listening socket is held by `pid` or one of its
 * descendants (via /proc/net/tcp inodes and /proc/PID/fd), so a server is not taken as ready
 * when another process grabbed the port first. Where /proc cannot tell, it answers true.
 */
export async function ownsListener(pid: number, port: number): Promise<boolean> {
  const inodes = await listeningInodes(port);
  if (inodes === undefined) return true;
  if (inodes.size === 0) return false;
  const pids = [pid, ...(await descendantsOf(pid)).map((d) => d.pid)];
  for (const p of pids) {
    let fds: string[];
    try {
      fds = await readdir(`/proc/${p}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      const link = await readlink(`/proc/${p}/fd/${fd}`).catch(() => '');
      const m = /^socket:\[(\d+)\]$/.exec(link);
      if (m !== null && inodes.has(m[1] as string)) return true;
    }
  }
  return false;
}
