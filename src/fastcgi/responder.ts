// The FastCGI responder (application side, FastCGI spec §6): a gateway app served on accepted
// connections; the entry point the process model and `serve()` use.
import type { Duplex } from 'node:stream';
import type { GatewayApp } from '../gateway/types.js';
import { FcgiConnection } from './connection.js';
import {
  resolveResponderOptions,
  type ResolvedResponderOptions,
  type ResponderOptions,
} from './options.js';

export { FcgiConnection, handleConnection } from './connection.js';
export { FCGI_APP_STATUS } from './request.js';
export {
  createFcgiCounters,
  resolveResponderOptions,
  type FcgiCounters,
  type ResolvedResponderOptions,
  type ResponderOptions,
} from './options.js';

/**
 * Responder is a `net.Server` 'connection' listener that serves each connection with one app,
 * plus what a process needs around it: the open connections and a graceful shutdown.
 */
export interface Responder {
  /** Serves one accepted connection (use as `server.on('connection', responder)`). */
  (socket: Duplex): FcgiConnection;
  /** options are the resolved options every connection shares (its `counters` included). */
  readonly options: ResolvedResponderOptions;
  /** connections are the connections open now. */
  readonly connections: ReadonlySet<FcgiConnection>;
  /**
   * shutdown stops every open connection gracefully (requests keep being served; a connection
   * closes once it has been idle for `drainGraceMs`, see
   * {@link FcgiConnection.shutdown}); resolves when all are closed and their requests settled.
   */
  shutdown(): Promise<void>;
}

/**
 * createResponder returns the 'connection' listener serving `app` over FastCGI. Options are
 * resolved once, so every connection of the responder shares the same limits and counters
 * (pass `counters` to share them with other responders of the process too).
 */
export function createResponder(app: GatewayApp, options: ResponderOptions = {}): Responder {
  const resolved = resolveResponderOptions(options);
  const connections = new Set<FcgiConnection>();
  const responder = (socket: Duplex): FcgiConnection => {
    const connection = new FcgiConnection(socket, app, resolved);
    connections.add(connection);
    void connection.closed.then(() => connections.delete(connection));
    return connection;
  };
  return Object.assign(responder, {
    options: resolved,
    connections: connections as ReadonlySet<FcgiConnection>,
    shutdown: async (): Promise<void> => {
      await Promise.all([...connections].map((c) => c.shutdown()));
    },
  });
}
