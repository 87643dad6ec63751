// The master <-> worker protocol of the pre-fork process model: the worker's configuration, the
// IPC messages both ways, the worker's exit codes and the timing constants both sides share.
import type { ResponderOptions } from '../fastcgi/options.js';

/**
 * WORKER_EXIT lists a worker's exit codes. BOOT_ERROR is gunicorn's WORKER_BOOT_ERROR idea
 * (gunicorn/arbiter.py): a worker that cannot load the app or run its startup hook exits with
 * it, and the master stops with that error instead of respawning the same failure forever.
 */
export const WORKER_EXIT = Object.freeze({
  /** OK: the worker stopped gracefully (asked to, or recycled after --max-requests). */
  OK: 0,
  /** BOOT_ERROR: the app could not be loaded, its startup hook threw, or listening failed. */
  BOOT_ERROR: 3,
  /** NO_MASTER: the worker was started without an IPC channel to a master. */
  NO_MASTER: 4,
});

/** HEARTBEAT_INTERVAL_MS is how often a worker tells the master its event loop still turns. */
export const HEARTBEAT_INTERVAL_MS = 1000;

/**
 * HEARTBEAT_GRACE_MS is how much longer than `--timeout` a worker may stay silent before the
 * master decides its event loop is blocked (synchronous code that never yields) and kills it.
 */
export const HEARTBEAT_GRACE_MS = 2000;

/** WorkerResponderOptions are the responder options that cross the process boundary (JSON). */
export type WorkerResponderOptions = Omit<ResponderOptions, 'log' | 'counters' | 'multiprocess'>;

/**
 * TargetFactory builds a worker's app where a TARGET module cannot be imported as it is (the
 * CLI's `--cgi-bin`): the worker imports `module` and calls its `createTarget(options)`.
 */
export interface TargetFactory {
  /** module is the factory module's URL or path. */
  module: string;
  /** options are JSON, passed to `createTarget` as they are. */
  options: unknown;
}

/** WorkerConfig is what the master tells a new worker in its `start` message (JSON-serialisable). */
export interface WorkerConfig {
  /** target is the app TARGET (`app.js[:export]`), imported afresh by every worker. */
  target: string;
  /** factory, when set, builds the app instead of importing `target` (which then only names it). */
  factory?: TargetFactory;
  /** fds are the listening sockets, as the worker's own fd numbers (3, 4 …). */
  fds: number[];
  /** maxRequests recycles the worker after this many requests; 0 never. */
  maxRequests: number;
  /** timeoutMs bounds a request's wall time; 0 never. */
  timeoutMs: number;
  /** gracefulTimeoutMs bounds a graceful stop; in-flight requests are cut after it. */
  gracefulTimeoutMs: number;
  /** allowedClients are the allow-list rules for TCP peers, or null for everyone. */
  allowedClients: { rules: string[]; source: string } | null;
  /** multiprocess is `gateway.multiprocess`. */
  multiprocess: boolean;
  /** responder are the FastCGI responder's limits. */
  responder: WorkerResponderOptions;
}

/** MasterMessage is a message from the master to a worker. */
export type MasterMessage =
  { type: 'cgi-bridge:start'; config: WorkerConfig } | { type: 'cgi-bridge:stop' };

/** WorkerMessage is a message from a worker to the master. */
export type WorkerMessage =
  /** ready: the app is loaded, its startup hook ran, and the worker accepts connections. */
  | { type: 'cgi-bridge:ready' }
  /** heartbeat: the worker's event loop turns (sent every HEARTBEAT_INTERVAL_MS). */
  | { type: 'cgi-bridge:heartbeat' }
  /** boot-error: the worker cannot serve; it exits with WORKER_EXIT.BOOT_ERROR next. */
  | { type: 'cgi-bridge:boot-error'; code: string; message: string }
  /** retiring: --max-requests was reached; the worker stops accepting and drains. */
  | { type: 'cgi-bridge:retiring'; requests: number };

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}

/** isWorkerMessage tells whether an IPC message is one of ours (an app may send its own). */
export function isWorkerMessage(m: unknown): m is WorkerMessage {
  return isObject(m) && typeof m.type === 'string' && m.type.startsWith('cgi-bridge:');
}

/** isMasterMessage tells whether an IPC message is one of ours. */
export function isMasterMessage(m: unknown): m is MasterMessage {
  return isObject(m) && typeof m.type === 'string' && m.type.startsWith('cgi-bridge:');
}
