// A FastCGI worker: the app behind the responder on one or more listening sockets, with its
// lifecycle hooks, --max-requests, --timeout and a graceful stop. Runs forked under the
// pre-fork master (runForkedWorker, speaking worker-protocol.ts) or alone (--processes 0).
import { createServer, type Server, type Socket } from 'node:net';
import { BridgeError, isBridgeError } from '../errors.js';
import type { AppHooks } from '../cgi/child.js';
import { createResponder } from '../fastcgi/responder.js';
import { errorMessage } from '../gateway/handler.js';
import type { GatewayApp } from '../gateway/types.js';
import { formatListenAddress, listen, type ListenAddress } from './address.js';
import { guardConnections, parseAllowedClients, type ClientFilter } from './allowed-clients.js';
import { loadTarget, loadTargetFactory } from './load-target.js';
import { withRequestTimeout } from './request-timeout.js';
import {
  HEARTBEAT_INTERVAL_MS,
  WORKER_EXIT,
  isMasterMessage,
  type WorkerConfig,
  type WorkerMessage,
  type WorkerResponderOptions,
} from './worker-protocol.js';

/** DEFAULT_GRACEFUL_TIMEOUT_MS is how long a graceful stop waits for in-flight requests: 10 s. */
export const DEFAULT_GRACEFUL_TIMEOUT_MS = 10_000;

/**
 * processLog writes `cgi-bridge[PID]: LINE` to stderr: master and workers share the web
 * server's error log (or the terminal), so every line says which process wrote it.
 */
export function processLog(line: string): void {
  const text = line.startsWith('cgi-bridge: ') ? line.slice('cgi-bridge: '.length) : line;
  process.stderr.write(`cgi-bridge[${process.pid}]: ${text}\n`);
}

/** WorkerServerOptions configure {@link startWorkerServer}; times are in milliseconds. */
export interface WorkerServerOptions {
  app: GatewayApp;
  /** hooks are the app module's startup()/shutdown(), run before accepting and after the last request. */
  hooks?: AppHooks;
  /** listen are the addresses to accept on; `fd:N` for an inherited listening socket. */
  listen: ListenAddress[];
  /** socketMode is a unix socket's mode when this process binds one. */
  socketMode?: number;
  /** maxRequests recycles the process after this many requests: `onRetire` runs, then it drains; 0 never. */
  maxRequests?: number;
  /** timeoutMs bounds each request's wall time (see withRequestTimeout); 0 never. */
  timeoutMs?: number;
  /** gracefulTimeoutMs bounds a graceful stop; default {@link DEFAULT_GRACEFUL_TIMEOUT_MS}. */
  gracefulTimeoutMs?: number;
  /** allowedClients filters TCP peers at accept (unix sockets are not filtered). */
  allowedClients?: ClientFilter;
  /** multiprocess is `gateway.multiprocess`. */
  multiprocess: boolean;
  /** responder are the FastCGI responder's limits. */
  responder?: WorkerResponderOptions;
  /** log receives whole lines; default {@link processLog}. */
  log?: (line: string) => void;
  /** onRetire is called once when the `maxRequests`-th request starts; the server then stops. */
  onRetire?: (requests: number) => void;
}

/** WorkerServer is a running worker from {@link startWorkerServer}. */
export interface WorkerServer {
  /** addresses say where it accepts, in ADDR notation. */
  readonly addresses: readonly string[];
  /** requests is the number of requests started so far. */
  readonly requests: number;
  /**
   * stop stops gracefully: no new connections, requests in flight finish (new ones on open
   * connections are refused), idle connections close; after `gracefulTimeoutMs` what is left
   * is cut. Then the shutdown hook runs. Calling it again returns the same promise.
   */
  stop(): Promise<void>;
  /** stopNow cuts every connection at once (a second SIGINT); a stop in progress then finishes. */
  stopNow(): void;
  /** closed settles after the shutdown hook; it rejects when the hook threw. */
  readonly closed: Promise<void>;
}

// messageOf is an error's message, first line only: log lines and boot errors are one line.
function messageOf(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0] ?? '';
}

function delay(ms: number): Promise<'timeout'> {
  return new Promise((resolve) => setTimeout(() => resolve('timeout'), ms).unref());
}

/**
 * startWorkerServer runs the startup hook, then accepts FastCGI connections on every address
 * of `options.listen` (a TCP peer outside `allowedClients` is closed at once). A startup hook
 * that throws rejects with `SERVER_ERR_STARTUP`; a listen failure (after which the shutdown
 * hook runs) with the listen error.
 */
export async function startWorkerServer(options: WorkerServerOptions): Promise<WorkerServer> {
  const log = options.log ?? processLog;
  const hooks = options.hooks ?? {};
  const maxRequests = options.maxRequests ?? 0;
  const gracefulTimeoutMs = options.gracefulTimeoutMs ?? DEFAULT_GRACEFUL_TIMEOUT_MS;
  try {
    await hooks.startup?.();
  } catch (e) {
    throw new BridgeError(
      'SERVER_ERR_STARTUP',
      `cgi-bridge: the app's startup hook failed: ${messageOf(e)}`,
      { cause: e },
    );
  }

  let requests = 0;
  let stopPromise: Promise<void> | undefined;
  const counted: GatewayApp = (environ, startResponse) => {
    requests++;
    if (requests === maxRequests) {
      options.onRetire?.(requests);
      void stop();
    }
    return options.app(environ, startResponse);
  };
  const responder = createResponder(withRequestTimeout(counted, options.timeoutMs ?? 0, log), {
    ...options.responder,
    multiprocess: options.multiprocess,
    log,
  });

  const servers: Server[] = [];
  const addresses: string[] = [];
  try {
    for (const addr of options.listen) {
      // allowHalfOpen: a web server that shuts down its sending side after the request still
      // reads the response (the responder ends the socket itself once the request is done).
      const server = createServer({ allowHalfOpen: true });
      let accept: (socket: Socket) => void = (socket) => void responder(socket);
      server.on('connection', (socket: Socket) => accept(socket));
      servers.push(server);
      await listen(server, addr, { socketMode: options.socketMode });
      const bound = server.address();
      if (options.allowedClients && bound !== null && typeof bound === 'object') {
        accept = guardConnections(accept, options.allowedClients, log);
      }
      const tcp =
        bound !== null && typeof bound === 'object'
          ? formatListenAddress({ kind: 'tcp', host: bound.address, port: bound.port })
          : undefined;
      // An inherited socket is named by its fd, with the address it turned out to have.
      if (addr.kind === 'fd') addresses.push(tcp ? `fd:${addr.fd} (${tcp})` : `fd:${addr.fd}`);
      else addresses.push(tcp ?? formatListenAddress(addr));
    }
  } catch (e) {
    for (const server of servers) server.close();
    await hooks.shutdown?.();
    throw e;
  }

  const stopNow = (): void => {
    for (const connection of responder.connections) connection.destroy();
  };
  let settle: { resolve: () => void; reject: (e: unknown) => void } | undefined;
  const closed = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  closed.catch(() => undefined); // whoever awaits `closed` sees a failure; nobody awaiting is no crash
  const stop = (): Promise<void> => {
    if (stopPromise) return stopPromise;
    stopPromise = (async () => {
      for (const server of servers) server.close();
      const outcome = await Promise.race([responder.shutdown(), delay(gracefulTimeoutMs)]);
      if (outcome === 'timeout') {
        const cut = responder.connections.size;
        log(`graceful timeout (${gracefulTimeoutMs / 1000} s): ${cut} connection(s) cut off`);
        stopNow();
      }
      try {
        await hooks.shutdown?.();
      } catch (e) {
        log(`the app's shutdown hook failed: ${errorMessage(e)}`);
        throw e;
      }
    })();
    stopPromise.then(settle?.resolve, settle?.reject);
    return stopPromise;
  };
  return {
    addresses,
    get requests() {
      return requests;
    },
    stop,
    stopNow,
    closed,
  };
}

// send posts a message to the master and resolves once it is handed to the OS (or the channel
// is gone): a boot error must reach the master before the worker exits.
function send(message: WorkerMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.connected || process.send === undefined) {
      resolve();
      return;
    }
    try {
      process.send(message, undefined, {}, () => resolve());
    } catch {
      resolve();
    }
  });
}

function waitForConfig(onStop: () => void): Promise<WorkerConfig | undefined> {
  return new Promise((resolve) => {
    process.once('disconnect', () => resolve(undefined));
    process.on('message', (message: unknown) => {
      if (!isMasterMessage(message)) return;
      if (message.type === 'cgi-bridge:start') resolve(message.config);
      else if (message.type === 'cgi-bridge:stop') onStop();
    });
  });
}

/**
 * runForkedWorker is the life of a worker process forked by the master (worker-entry.ts): wait
 * for the `start` message, load the TARGET afresh, run the startup hook, accept on the
 * inherited fds, send `ready`, then heartbeats every second until a `stop` message, SIGTERM,
 * SIGINT or the master's death (the IPC channel closing) stops it gracefully. It resolves
 * with the exit code: {@link WORKER_EXIT}.BOOT_ERROR, after a `boot-error` message, when the
 * worker cannot serve at all.
 */
export async function runForkedWorker(): Promise<number> {
  if (process.send === undefined) {
    process.stderr.write('cgi-bridge: a worker must be started by the cgi-bridge master\n');
    return WORKER_EXIT.NO_MASTER;
  }
  let server: WorkerServer | undefined;
  let stopRequested = false;
  let stops = 0;
  const requestStop = (): void => {
    stopRequested = true;
    // A second request to stop (a second Ctrl-C reaches the whole process group) cuts now.
    if (++stops > 1) server?.stopNow();
    void server?.stop();
  };
  process.on('SIGTERM', requestStop);
  process.on('SIGINT', requestStop);
  // A terminal hangup reaches every process of the group; reloading is the master's business.
  process.on('SIGHUP', () => undefined);
  // The master died (even by SIGKILL): nobody will ever stop this worker but itself.
  process.on('disconnect', requestStop);

  const config = await waitForConfig(requestStop);
  if (config === undefined) return WORKER_EXIT.OK;
  const heartbeat = setInterval(
    () => void send({ type: 'cgi-bridge:heartbeat' }),
    HEARTBEAT_INTERVAL_MS,
  );
  heartbeat.unref();
  try {
    const target = config.factory
      ? await loadTargetFactory(config.factory)
      : await loadTarget(config.target);
    server = await startWorkerServer({
      app: target.app,
      hooks: target,
      listen: config.fds.map((fd) => ({ kind: 'fd', fd })),
      maxRequests: config.maxRequests,
      timeoutMs: config.timeoutMs,
      gracefulTimeoutMs: config.gracefulTimeoutMs,
      allowedClients: config.allowedClients
        ? parseAllowedClients(config.allowedClients.rules, config.allowedClients.source)
        : undefined,
      multiprocess: config.multiprocess,
      responder: config.responder,
      onRetire: (requests) => void send({ type: 'cgi-bridge:retiring', requests }),
    });
  } catch (e) {
    clearInterval(heartbeat);
    await send({
      type: 'cgi-bridge:boot-error',
      code: isBridgeError(e) ? e.code : 'SERVER_ERR_WORKER_BOOT',
      message: messageOf(e),
    });
    return WORKER_EXIT.BOOT_ERROR;
  }
  await send({ type: 'cgi-bridge:ready' });
  if (stopRequested) void server.stop();
  try {
    await server.closed;
    return WORKER_EXIT.OK;
  } catch {
    return 1;
  } finally {
    clearInterval(heartbeat);
  }
}
