// The FastCGI server as a whole: where it listens (an ADDR, the socket inherited on fd 0, or
// systemd's), and which process model runs the responder (a pre-fork master with workers, or
// this one process, as mod_fcgid, lighttpd `bin-path` and spawn-fcgi may prefer).
import type { AppHooks } from '../cgi/child.js';
import { BridgeError } from '../errors.js';
import type { GatewayApp } from '../gateway/types.js';
import type { ListenAddress } from './address.js';
import { allowedClientsFrom } from './allowed-clients.js';
import { inheritedListeners, inspectFd, type FdKind } from './inherited.js';
import { loadTarget, loadTargetFactory } from './load-target.js';
import { startMaster } from './master.js';
import { onStopSignals } from './signals.js';
import { processLog, startWorkerServer } from './worker.js';
import type { TargetFactory, WorkerResponderOptions } from './worker-protocol.js';

/** DEFAULT_PROCESSES is the default `--processes`: one worker under a master. */
export const DEFAULT_PROCESSES = 1;

/**
 * DEFAULT_TIMEOUT_MS is the default `--timeout`: 60 s, nginx's `fastcgi_read_timeout`, after
 * which nginx has given up on the request anyway.
 */
export const DEFAULT_TIMEOUT_MS = 60_000;

/** FastcgiServerOptions configure {@link runFastcgiServer}; times are in milliseconds. */
export interface FastcgiServerOptions {
  /** listen is the address; absent: the socket systemd passed, else fd 0 (FastCGI spec §2.2). */
  listen?: ListenAddress;
  /** socketMode is the mode of a unix socket the server binds. */
  socketMode?: number;
  /**
   * processes is the number of workers under a master (default {@link DEFAULT_PROCESSES});
   * 0 runs the responder in this process, without a master.
   */
  processes?: number;
  /** maxRequests recycles a worker (with 0 processes: ends the process) after N requests; 0 never. */
  maxRequests?: number;
  /** timeoutMs bounds a request's wall time (504 before headers); 0 never. Default {@link DEFAULT_TIMEOUT_MS}. */
  timeoutMs?: number;
  /** gracefulTimeoutMs bounds a graceful stop. */
  gracefulTimeoutMs?: number;
  /** allowedClients is `--allowed-clients`; FCGI_WEB_SERVER_ADDRS applies when it is absent. */
  allowedClients?: string | string[];
  /** responder are the FastCGI responder's limits. */
  responder?: WorkerResponderOptions;
  /** log receives whole lines; default stderr, `cgi-bridge[PID]: LINE`. */
  log?: (line: string) => void;
  /** factory builds the app instead of importing the TARGET, which then only names it. */
  factory?: TargetFactory;
}

const FD_KIND_TEXT: Record<FdKind, string> = {
  'listening-socket': 'a listening socket',
  'connected-socket': 'a connected socket',
  socket: 'a socket whose state cannot be read on this system',
  pipe: 'a pipe',
  file: 'a file',
  tty: 'a terminal',
  other: 'a device',
  closed: 'closed',
};

/**
 * resolveListeners returns where to listen: `listen` when given, else the inherited sockets
 * (systemd's, else fd 0 when it is a listening socket). With neither, `CLI_ERR_NO_LISTENER`
 * says what fd 0 is instead.
 */
export function resolveListeners(listen: ListenAddress | undefined): ListenAddress[] {
  if (listen !== undefined) return [listen];
  const inherited = inheritedListeners();
  if (inherited.length > 0) return inherited;
  throw new BridgeError(
    'CLI_ERR_NO_LISTENER',
    `cgi-bridge: no --listen given, and fd 0 is not a listening socket (it is ${FD_KIND_TEXT[inspectFd(0)]}); ` +
      'pass --listen ADDR, or let the web server start this (mod_fcgid, lighttpd bin-path, spawn-fcgi, systemd)',
  );
}

/** SingleProcessOptions configure {@link serveFastcgi}. */
export type SingleProcessOptions = Omit<FastcgiServerOptions, 'processes'> & {
  /** hooks are the app's startup()/shutdown(). */
  hooks?: AppHooks;
  /** label names the app in the start-up line; default `app`. */
  label?: string;
};

/**
 * serveFastcgi runs `app` as a FastCGI responder in this process (no master): startup hook,
 * accept on `listen` (default: the inherited socket), serve until SIGTERM/SIGINT (graceful;
 * a second one cuts) or `maxRequests` requests (then exit, for the spawner to start a fresh
 * one), then the shutdown hook. SIGHUP is ignored: reloading takes a master. Resolves once
 * stopped; rejects on a start-up failure or a failing shutdown hook.
 */
export async function serveFastcgi(
  app: GatewayApp,
  options: SingleProcessOptions = {},
): Promise<void> {
  const log = options.log ?? processLog;
  const listeners = resolveListeners(options.listen);
  const filter = allowedClientsFrom(options.allowedClients);
  const server = await startWorkerServer({
    app,
    hooks: options.hooks,
    listen: listeners,
    socketMode: options.socketMode,
    maxRequests: options.maxRequests,
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    gracefulTimeoutMs: options.gracefulTimeoutMs,
    allowedClients: filter,
    // Spawners that pass fd 0 (lighttpd max-procs, mod_fcgid) may run several of us.
    multiprocess: listeners.some((a) => a.kind === 'fd'),
    responder: options.responder,
    log,
    onRetire: (n) => log(`served ${n} requests (--max-requests): finishing and exiting`),
  });
  log(`serving ${options.label ?? 'app'} on ${server.addresses.join(', ')} (one process)`);
  const removeStop = onStopSignals(
    (signal) => {
      log(`${signal}: stopping`);
      void server.stop();
    },
    () => server.stopNow(),
  );
  const onHangup = (): void =>
    log('SIGHUP ignored: reloading needs a master (--processes 1 or more)');
  process.on('SIGHUP', onHangup);
  try {
    await server.closed;
  } finally {
    removeStop();
    process.removeListener('SIGHUP', onHangup);
  }
}

/**
 * runFastcgiServer serves a TARGET over FastCGI until it is stopped: with `processes` >= 1 a
 * pre-fork master (see startMaster) whose workers each import TARGET; with 0, this process
 * imports it and serves alone (see {@link serveFastcgi}). Resolves after a graceful stop;
 * rejects with a BridgeError when it cannot start (bad address, nothing to listen on, a
 * TARGET that cannot boot: the worker's error, e.g. `CLI_ERR_BAD_TARGET`).
 */
export async function runFastcgiServer(
  target: string,
  options: FastcgiServerOptions = {},
): Promise<void> {
  const processes = options.processes ?? DEFAULT_PROCESSES;
  if (!Number.isInteger(processes) || processes < 0) {
    throw new BridgeError(
      'CLI_ERR_BAD_PROCESSES',
      `cgi-bridge: --processes must be a whole number >= 0, got ${processes}`,
    );
  }
  if (processes === 0) {
    const loaded = options.factory
      ? await loadTargetFactory(options.factory)
      : await loadTarget(target);
    return serveFastcgi(loaded.app, { ...options, hooks: loaded, label: target });
  }
  const master = await startMaster({
    target,
    factory: options.factory,
    listen: resolveListeners(options.listen),
    socketMode: options.socketMode,
    processes,
    maxRequests: options.maxRequests,
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    gracefulTimeoutMs: options.gracefulTimeoutMs,
    allowedClients: allowedClientsFrom(options.allowedClients),
    responder: options.responder,
    log: options.log,
  });
  await master.closed;
}
