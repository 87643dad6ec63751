// The listening sockets a pre-fork master holds for its workers: bound by the master, never
// accepted on by it, handed to every worker it forks as an inherited fd.
import { lookup } from 'node:dns/promises';
import { chmod } from 'node:fs/promises';
import * as net from 'node:net';
import { constants } from 'node:os';
import { getSystemErrorName } from 'node:util';
import { BridgeError } from '../errors.js';
import {
  clearSocketPath,
  DEFAULT_SOCKET_MODE,
  formatListenAddress,
  type ListenAddress,
} from './address.js';

/** HeldSocket is a listening socket the master keeps open for the workers it forks. */
export interface HeldSocket {
  /** fd is the master's descriptor of the socket; a worker gets a duplicate of it. */
  readonly fd: number;
  /** label says where it listens, in ADDR notation (`127.0.0.1:9000`, `unix:/run/app.sock`, `fd:0`). */
  readonly label: string;
  /** close releases the socket and removes a unix socket's path; inherited fds are left alone. */
  close(): void;
}

// The part of a libuv TCP/Pipe handle this module uses.
interface RawServerHandle {
  readonly fd: number;
  close(): void;
  getsockname?(out: { address?: string; port?: number; family?: string }): number;
}

type CreateServerHandle = (
  address: string | null,
  port: number,
  addressType: number,
) => RawServerHandle | number;

// Why a Node internal: the master must hold a bound socket *without accepting on it*, so that
// only the workers accept (every worker on the same socket; the kernel spreads connections).
// Any public net.Server that listens also accepts in the master's event loop. node:cluster
// solves this exact problem with this same function (lib/internal/cluster/shared_handle.js),
// but cluster cannot take a socket inherited on fd 0 through a respawn, so the master binds
// with it directly. Present in every Node release since 0.x; checked at run time anyway.
const createServerHandle = (net as unknown as { _createServerHandle?: CreateServerHandle })
  ._createServerHandle;

function failure(where: string, errno: number): BridgeError {
  const name = getSystemErrorName(errno);
  if (name === 'EADDRINUSE') {
    return new BridgeError(
      'SERVER_ERR_ADDRESS_IN_USE',
      `cgi-bridge: cannot listen on ${where}: the address is already in use`,
    );
  }
  return new BridgeError('SERVER_ERR_LISTEN', `cgi-bridge: cannot listen on ${where}: ${name}`);
}

function bind(where: string, address: string | null, port: number, type: number): RawServerHandle {
  if (createServerHandle === undefined) {
    throw new BridgeError(
      'SERVER_ERR_LISTEN',
      `cgi-bridge: cannot listen on ${where}: this Node.js has no net._createServerHandle; use --processes 0`,
    );
  }
  const handle = createServerHandle(address, port, type);
  if (typeof handle === 'number') throw failure(where, handle);
  return handle;
}

async function bindTcp(addr: { host: string; port: number }): Promise<HeldSocket> {
  const where = formatListenAddress({ kind: 'tcp', ...addr });
  let ip: string | null = null;
  let family = 4;
  if (addr.host !== '') {
    // Host names resolve once, at start-up, as net.Server.listen() does.
    const found = net.isIP(addr.host)
      ? { address: addr.host, family: net.isIP(addr.host) }
      : await lookup(addr.host).catch((e: NodeJS.ErrnoException) => {
          throw new BridgeError(
            'SERVER_ERR_LISTEN',
            `cgi-bridge: cannot listen on ${where}: ${e.code ?? e.message}`,
            { cause: e },
          );
        });
    ip = found.address;
    family = found.family;
  }
  // No host: '::' with IPv4 mapped in, or 0.0.0.0 where IPv6 is off (node's own fallback).
  const handle = bind(where, ip, addr.port, family);
  const out: { address?: string; port?: number; family?: string } = {};
  const err = handle.getsockname?.(out) ?? 0;
  // libuv reports a TCP bind's EADDRINUSE only at listen(2), which the master never calls: an
  // unbound socket (port 0) is that failure. Left alone, a worker's listen(2) would bind it to
  // a random port.
  if (err !== 0 || !out.port) {
    handle.close();
    throw failure(where, err !== 0 ? err : -constants.errno.EADDRINUSE);
  }
  const label = formatListenAddress({ kind: 'tcp', host: out.address ?? '', port: out.port });
  return { fd: handle.fd, label, close: () => handle.close() };
}

async function bindUnix(path: string, socketMode: number): Promise<HeldSocket> {
  const where = `unix:${path}`;
  await clearSocketPath(path);
  // The socket file is created by bind(2), synchronously inside createServerHandle: a 0177
  // umask keeps it at most 0600 until the chmod below sets the requested mode (as address.ts).
  const oldMask = process.umask(0o177);
  let handle: RawServerHandle;
  try {
    handle = bind(where, path, -1, -1);
  } finally {
    process.umask(oldMask);
  }
  try {
    await chmod(path, socketMode);
  } catch (e) {
    handle.close();
    throw new BridgeError(
      'SERVER_ERR_LISTEN',
      `cgi-bridge: cannot listen on ${where}: chmod: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
      { cause: e },
    );
  }
  // libuv removes a bound unix socket's path when the handle is closed.
  return { fd: handle.fd, label: where, close: () => handle.close() };
}

/**
 * holdSocket opens the listening socket for `addr` in the master: a TCP address is bound, a
 * unix socket path is cleared of a stale socket (a live one or a non-socket file is refused),
 * bound under a 0177 umask and given `socketMode`; an `fd:N` address is taken as inherited,
 * already listening. The socket is bound but the master never accepts on it: each worker
 * calls listen(2) on its duplicate and accepts there. Errors are `SERVER_ERR_*` BridgeErrors.
 */
export async function holdSocket(
  addr: ListenAddress,
  options: { socketMode?: number } = {},
): Promise<HeldSocket> {
  switch (addr.kind) {
    case 'fd':
      return { fd: addr.fd, label: `fd:${addr.fd}`, close: () => undefined };
    case 'tcp':
      return bindTcp(addr);
    case 'unix':
      return bindUnix(addr.path, options.socketMode ?? DEFAULT_SOCKET_MODE);
  }
}
