// Inherited listening sockets, the FastCGI side of process start-up: fd 0 as a listening socket
// (FastCGI spec §2.2: how mod_fcgid, lighttpd `bin-path` and spawn-fcgi start an app) and
// systemd socket activation (sd_listen_fds(3): LISTEN_PID, LISTEN_FDS, fds from 3 on).
import { fstatSync, readFileSync, readlinkSync } from 'node:fs';
import { isatty } from 'node:tty';
import type { ListenAddress } from './address.js';

/**
 * FdKind is what an open file descriptor is, as far as start-up cares:
 * - `listening-socket`: a stream socket in the LISTEN state (a FastCGI server socket);
 * - `connected-socket`: any other socket (Apache mod_cgid hands CGI scripts a connected
 *   socket as stdin, and that must still run as CGI);
 * - `socket`: a socket whose state cannot be read (not Linux, or no /proc);
 * - `pipe`, `file`, `tty`, `other`, and `closed` when the fd is not open.
 */
export type FdKind =
  'listening-socket' | 'connected-socket' | 'socket' | 'pipe' | 'file' | 'tty' | 'other' | 'closed';

// /proc/net/tcp "st" column: TCP_LISTEN (include/net/tcp_states.h).
const TCP_LISTEN = '0A';
// /proc/net/unix "Flags" column: __SO_ACCEPTCON, set once listen(2) was called on the socket.
const SO_ACCEPTCON = 0x10000;
// /proc/net/unix "Type" column: SOCK_STREAM. FastCGI runs over stream sockets only.
const SOCK_STREAM = 1;

// socketInode reads the inode of a socket fd from its /proc link `socket:[INODE]`.
function socketInode(fd: number): string | undefined {
  try {
    return /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`))?.[1];
  } catch {
    return undefined;
  }
}

function readTable(name: string): string[] {
  try {
    return readFileSync(`/proc/self/net/${name}`, 'latin1').split('\n').slice(1);
  } catch {
    return [];
  }
}

// socketListens looks the inode up in the kernel's socket tables (proc(5): /proc/net/tcp,
// /proc/net/tcp6, /proc/net/unix). undefined: the socket is in none of them.
function socketListens(inode: string): boolean | undefined {
  for (const table of ['tcp', 'tcp6']) {
    for (const line of readTable(table)) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
      const f = line.trim().split(/\s+/);
      if (f[9] === inode) return f[3] === TCP_LISTEN;
    }
  }
  for (const line of readTable('unix')) {
    // Num RefCount Protocol Flags Type St Inode [Path]
    const f = line.trim().split(/\s+/);
    if (f[6] === inode) {
      return (
        (parseInt(f[3] ?? '0', 16) & SO_ACCEPTCON) !== 0 &&
        parseInt(f[4] ?? '0', 16) === SOCK_STREAM
      );
    }
  }
  return undefined;
}

/**
 * inspectFd tells what `fd` is (see {@link FdKind}). Telling a listening socket from a
 * connected one needs the socket's state, which Node cannot ask for (no getpeername(2) or
 * SO_ACCEPTCONN binding), so it is read from /proc: Linux only. Elsewhere a socket is `socket`.
 */
export function inspectFd(fd: number): FdKind {
  let st;
  try {
    st = fstatSync(fd);
  } catch {
    return 'closed';
  }
  if (st.isFIFO()) return 'pipe';
  if (st.isFile()) return 'file';
  if (st.isCharacterDevice()) return isatty(fd) ? 'tty' : 'other';
  if (!st.isSocket()) return 'other';
  const inode = socketInode(fd);
  const listens = inode === undefined ? undefined : socketListens(inode);
  if (listens === undefined) return 'socket';
  return listens ? 'listening-socket' : 'connected-socket';
}

/**
 * isFastcgiListener tells whether `fd` (default 0) is a listening socket, the FastCGI way of
 * starting an app (FastCGI spec §2.2: "the Web server leaves a single file descriptor,
 * FCGI_LISTENSOCK_FILENO, open when the application begins execution ... a socket in the
 * listening state"; libfcgi tests getpeername() for ENOTCONN). A connected socket is not:
 * Apache mod_cgid gives CGI scripts one as stdin. Linux only (see {@link inspectFd}): on other
 * systems it is false, and `--listen fd:0` says it explicitly.
 */
export function isFastcgiListener(fd = 0): boolean {
  return inspectFd(fd) === 'listening-socket';
}

/** SD_LISTEN_FDS_START is the first fd systemd passes (sd_listen_fds(3)). */
export const SD_LISTEN_FDS_START = 3;

/**
 * systemdListenFds returns the fds systemd socket activation passed to this process:
 * `LISTEN_FDS` of them from fd 3 on, when `LISTEN_PID` names this process (sd_listen_fds(3)),
 * else []. Like `sd_listen_fds(1)` it removes LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES from
 * `env` (by default process.env), so children never mistake them for their own.
 */
export function systemdListenFds(
  env: NodeJS.ProcessEnv = process.env,
  pid: number = process.pid,
): number[] {
  const listenPid = env.LISTEN_PID;
  const listenFds = env.LISTEN_FDS;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  if (listenPid === undefined || listenFds === undefined) return [];
  if (!/^\d+$/.test(listenPid) || Number(listenPid) !== pid) return [];
  if (!/^\d{1,4}$/.test(listenFds)) return [];
  return Array.from({ length: Number(listenFds) }, (_, i) => SD_LISTEN_FDS_START + i);
}

/**
 * inheritedListeners returns the listening sockets this process was started with, as `fd:N`
 * addresses: systemd's when it activated this process, else fd 0 when it is a listening socket
 * (FastCGI spec §2.2), else []. It consumes the systemd variables (see {@link systemdListenFds}).
 */
export function inheritedListeners(env: NodeJS.ProcessEnv = process.env): ListenAddress[] {
  const fds = systemdListenFds(env);
  if (fds.length > 0) return fds.map((fd) => ({ kind: 'fd', fd }));
  return isFastcgiListener(0) ? [{ kind: 'fd', fd: 0 }] : [];
}
