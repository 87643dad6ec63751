// Graceful stop for the HTTP front end: track connections and their in-flight requests, stop
// accepting, let in-flight responses finish, close idle keep-alive connections.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/** ConnectionTracker follows a server's connections; see {@link trackConnections}. */
export interface ConnectionTracker {
  /** stopping is true once stop() or stopNow() was called. */
  readonly stopping: boolean;
  /** active is the number of requests whose response has not finished. */
  readonly active: number;
  /**
   * stop closes the listener, closes idle connections at once and busy ones as soon as their
   * responses finish, and after `timeoutMs` destroys what is left. It resolves with the number
   * of requests that were cut off (0 when everything finished in time). Calling it again
   * returns the same promise.
   */
  stop(timeoutMs: number): Promise<number>;
  /** stopNow destroys every connection at once (a second SIGINT). */
  stopNow(): void;
}

/**
 * trackConnections attaches to `server` (before it accepts anything, after its 'request' and
 * 'checkContinue' handlers are set) and returns a tracker for a graceful stop. Responses that
 * have not sent their headers when the stop begins go out with `Connection: close`.
 */
export function trackConnections(server: Server): ConnectionTracker {
  const busy = new Map<Socket, Set<ServerResponse>>();
  let stopping = false;
  let active = 0;
  let allClosed: (() => void) | undefined;
  let listenerClosed = false;
  let stopped: Promise<number> | undefined;

  const checkDone = (): void => {
    if (stopping && listenerClosed && busy.size === 0) allClosed?.();
  };

  // closeIfIdle runs after the current I/O callbacks, so a pipelined request that node is about
  // to emit on this socket counts as busy before the socket is judged idle.
  const closeIfIdle = (socket: Socket): void => {
    setImmediate(() => {
      if (busy.get(socket)?.size === 0) socket.destroy();
    });
  };

  server.on('connection', (socket: Socket) => {
    busy.set(socket, new Set());
    socket.once('close', () => {
      // Requests cut with their connection; each is counted down once (here or in `done`).
      const open = busy.get(socket);
      if (open) {
        active -= open.size;
        open.clear();
      }
      busy.delete(socket);
      checkDone();
    });
    if (stopping) socket.destroy();
  });

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const socket = req.socket;
    const open = busy.get(socket);
    if (!open) return;
    open.add(res);
    active++;
    if (stopping) res.shouldKeepAlive = false;
    const done = (): void => {
      if (!open.delete(res)) return;
      active--;
      if (stopping) closeIfIdle(socket);
    };
    res.once('finish', done);
    res.once('close', done);
  };
  server.prependListener('request', onRequest);
  // With a 'checkContinue' listener, node emits it instead of 'request' for `Expect:
  // 100-continue`; adding one where there was none would change how the server answers those.
  if (server.listenerCount('checkContinue') > 0) server.prependListener('checkContinue', onRequest);

  const stopNow = (): void => {
    stopping = true;
    for (const socket of busy.keys()) socket.destroy();
  };

  return {
    get stopping() {
      return stopping;
    },
    get active() {
      return active;
    },
    stopNow,
    stop(timeoutMs: number): Promise<number> {
      stopping = true;
      return (stopped ??= new Promise<number>((resolve) => {
        let cut = 0;
        const timer = setTimeout(() => {
          cut = active;
          stopNow();
        }, timeoutMs);
        allClosed = () => {
          clearTimeout(timer);
          allClosed = undefined;
          resolve(cut);
        };
        server.close(() => {
          listenerClosed = true;
          checkDone();
        });
        for (const [socket, open] of busy) {
          if (open.size === 0) socket.destroy();
          for (const res of open) if (!res.headersSent) res.shouldKeepAlive = false;
        }
        checkDone();
      }));
    },
  };
}
