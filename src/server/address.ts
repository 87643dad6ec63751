// Listen addresses for every front end (HTTP, FastCGI): the ADDR parser and a listen() helper
// that works with any net.Server (TCP host:port, unix socket path, inherited fd).
import { isIP } from 'node:net';
import { connect, type Server } from 'node:net';
import { chmod, lstat, unlink } from 'node:fs/promises';
import { isMainThread } from 'node:worker_threads';
import { BridgeError } from '../errors.js';

/**
 * ListenAddress is a parsed ADDR. For `tcp`, `host` is `''` when the address was `:port`
 * (every interface) and `port` may be 0 (the kernel picks one).
 */
export type ListenAddress =
  | { kind: 'tcp'; host: string; port: number }
  | { kind: 'unix'; path: string }
  | { kind: 'fd'; fd: number };

/**
 * DEFAULT_SOCKET_MODE is the mode a unix socket gets after listen: 0660, read/write for the
 * owner and the group. A web server usually reaches the socket through a shared group
 * (www-data); "other" users get nothing. `--socket-mode 666` opens it to every local user.
 */
export const DEFAULT_SOCKET_MODE = 0o660;

// sun_path holds 108 bytes on Linux and 104 on the BSDs and macOS, the terminating NUL included.
const MAX_SOCKET_PATH = process.platform === 'linux' ? 107 : 103;

const HOST_NAME = /^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?$/;

function bad(input: string, why: string): BridgeError {
  return new BridgeError(
    'CLI_ERR_BAD_ADDRESS',
    `cgi-bridge: bad listen address ${JSON.stringify(input)}: ${why} ` +
      '(want host:port, :port, [::1]:port, unix:/path, /path.sock or fd:N)',
  );
}

function parsePort(input: string, port: string): number {
  if (!/^\d{1,5}$/.test(port)) throw bad(input, `port ${JSON.stringify(port)} is not a number`);
  const n = Number(port);
  if (n > 65535) throw bad(input, `port ${n} is out of range 0-65535`);
  return n;
}

function parseSocketPath(input: string, path: string): ListenAddress {
  if (path === '') throw bad(input, 'the socket path is empty');
  if (!path.startsWith('/')) throw bad(input, 'a unix socket path must be absolute');
  if (path.includes('\0')) throw bad(input, 'the socket path contains a NUL byte');
  if (path.endsWith('/')) throw bad(input, 'the socket path names a directory');
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
    throw bad(input, `a unix socket path is limited to ${MAX_SOCKET_PATH} bytes`);
  }
  return { kind: 'unix', path };
}

/**
 * parseListenAddress parses an ADDR: `host:port`, `:port` (every interface), `[v6]:port`,
 * `unix:/abs/path`, `/abs/path.sock` (any absolute path) or `fd:N` (an inherited listening
 * socket, e.g. from systemd). Junk is a `CLI_ERR_BAD_ADDRESS` error naming what is wrong:
 * an empty string, a port outside 0-65535, a bare IPv6 address without brackets, a relative
 * socket path, a path too long for sun_path.
 */
export function parseListenAddress(input: string): ListenAddress {
  const s = input.trim();
  if (s === '') throw bad(input, 'it is empty');
  if (s.startsWith('unix:')) return parseSocketPath(input, s.slice('unix:'.length));
  if (s.startsWith('/')) return parseSocketPath(input, s);
  if (s.startsWith('fd:')) {
    const fd = s.slice(3);
    if (!/^\d{1,9}$/.test(fd)) throw bad(input, `fd ${JSON.stringify(fd)} is not a number`);
    return { kind: 'fd', fd: Number(fd) };
  }
  if (s.startsWith('[')) {
    const m = /^\[([^\]]*)\]:(.*)$/.exec(s);
    if (!m) throw bad(input, 'an IPv6 address in brackets must be followed by :port');
    if (isIP(m[1]!) !== 6) throw bad(input, `${JSON.stringify(m[1])} is not an IPv6 address`);
    return { kind: 'tcp', host: m[1]!, port: parsePort(input, m[2]!) };
  }
  const colon = s.lastIndexOf(':');
  if (colon < 0) {
    if (/^\d+$/.test(s)) throw bad(input, `no host; did you mean ":${s}"?`);
    throw bad(input, 'no port');
  }
  const host = s.slice(0, colon);
  if (host.includes(':')) throw bad(input, 'an IPv6 address must be written in brackets');
  if (host !== '' && isIP(host) !== 4 && !HOST_NAME.test(host)) {
    throw bad(input, `${JSON.stringify(host)} is not a host name or IPv4 address`);
  }
  return { kind: 'tcp', host, port: parsePort(input, s.slice(colon + 1)) };
}

/** formatListenAddress writes an address back in ADDR notation (for messages). */
export function formatListenAddress(addr: ListenAddress): string {
  switch (addr.kind) {
    case 'tcp':
      return `${addr.host.includes(':') ? `[${addr.host}]` : addr.host}:${addr.port}`;
    case 'unix':
      return `unix:${addr.path}`;
    case 'fd':
      return `fd:${addr.fd}`;
  }
}

/**
 * parseSocketMode parses `--socket-mode`: an octal permission string such as `660` or `0o600`
 * (only the permission bits, 0-0777). Anything else is `CLI_ERR_BAD_SOCKET_MODE`.
 */
export function parseSocketMode(input: string | number): number {
  const s = String(input).trim();
  const m = /^(?:0o?)?([0-7]{1,4})$/i.exec(s);
  const mode = m ? parseInt(m[1]!, 8) : NaN;
  if (!(mode >= 0 && mode <= 0o777)) {
    throw new BridgeError(
      'CLI_ERR_BAD_SOCKET_MODE',
      `cgi-bridge: bad socket mode ${JSON.stringify(s)} (want octal permission bits such as 660)`,
    );
  }
  return mode;
}

/** ListenOptions tune {@link listen}. */
export interface ListenOptions {
  /** socketMode is applied to a unix socket after it is bound (default {@link DEFAULT_SOCKET_MODE}). */
  socketMode?: number;
  /** backlog is the listen(2) backlog (node's default when absent). */
  backlog?: number;
}

// probeSocket tells whether something accepts connections on a unix socket path right now.
function probeSocket(path: string): Promise<'live' | 'stale'> {
  return new Promise((resolve, reject) => {
    const sock = connect({ path });
    sock.once('connect', () => {
      sock.destroy();
      resolve('live');
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      sock.destroy();
      // ECONNREFUSED: the file is a socket nobody listens on any more (a crashed server).
      if (err.code === 'ECONNREFUSED') resolve('stale');
      else reject(err);
    });
  });
}

/**
 * clearSocketPath makes room for a new socket: removes a stale one, refuses a live one or a
 * file that is not a socket (deleting a user's regular file because of a typo would be worse).
 * Exported for the pre-fork master, which binds its sockets itself (src/server/master-sockets.ts).
 */
export async function clearSocketPath(path: string): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw listenError(`unix:${path}`, e);
  }
  if (!st.isSocket()) {
    throw new BridgeError(
      'SERVER_ERR_NOT_A_SOCKET',
      `cgi-bridge: cannot listen on unix:${path}: the path exists and is not a socket`,
    );
  }
  let state: 'live' | 'stale';
  try {
    state = await probeSocket(path);
  } catch (e) {
    throw listenError(`unix:${path}`, e);
  }
  if (state === 'live') {
    throw new BridgeError(
      'SERVER_ERR_ADDRESS_IN_USE',
      `cgi-bridge: cannot listen on unix:${path}: another server is accepting connections there`,
    );
  }
  await unlink(path).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw listenError(`unix:${path}`, e);
  });
}

function listenError(where: string, cause: unknown): BridgeError {
  const err = cause as NodeJS.ErrnoException;
  if (err.code === 'EADDRINUSE') {
    return new BridgeError(
      'SERVER_ERR_ADDRESS_IN_USE',
      `cgi-bridge: cannot listen on ${where}: the address is already in use`,
      { cause },
    );
  }
  return new BridgeError(
    'SERVER_ERR_LISTEN',
    `cgi-bridge: cannot listen on ${where}: ${err.code ?? err.message ?? String(cause)}`,
    { cause },
  );
}

function listenOnce(server: Server, args: Parameters<Server['listen']>[0]): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      server.removeListener('listening', onListening);
      reject(err);
    };
    const onListening = (): void => {
      server.removeListener('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(args);
  });
}

/**
 * listen makes `server` (any net.Server: HTTP or FastCGI) listen on `addr`. A unix socket path
 * that holds a stale socket (connect gives ECONNREFUSED) is replaced; a live socket
 * (`SERVER_ERR_ADDRESS_IN_USE`) or a file that is not a socket (`SERVER_ERR_NOT_A_SOCKET`) is
 * refused. The socket is created under a 0177 umask, so it is never more open than 0600 before
 * `socketMode` is applied with chmod. Other failures are `SERVER_ERR_LISTEN`.
 */
export async function listen(
  server: Server,
  addr: ListenAddress,
  options: ListenOptions = {},
): Promise<void> {
  const where = formatListenAddress(addr);
  const backlog = options.backlog;
  if (addr.kind === 'tcp') {
    await listenOnce(server, {
      host: addr.host === '' ? undefined : addr.host,
      port: addr.port,
      backlog,
    }).catch((e) => {
      throw listenError(where, e);
    });
    return;
  }
  if (addr.kind === 'fd') {
    await listenOnce(server, { fd: addr.fd, backlog }).catch((e) => {
      throw listenError(where, e);
    });
    return;
  }
  await clearSocketPath(addr.path);
  // bind(2) runs synchronously inside server.listen() (outside cluster workers), so the umask
  // covers exactly the socket's creation. process.umask() cannot be set in worker threads.
  const oldMask = isMainThread ? process.umask(0o177) : undefined;
  let listening: Promise<void>;
  try {
    listening = listenOnce(server, { path: addr.path, backlog });
  } finally {
    if (oldMask !== undefined) process.umask(oldMask);
  }
  await listening.catch((e) => {
    throw listenError(where, e);
  });
  try {
    await chmod(addr.path, options.socketMode ?? DEFAULT_SOCKET_MODE);
  } catch (e) {
    server.close();
    throw listenError(where, e);
  }
}
