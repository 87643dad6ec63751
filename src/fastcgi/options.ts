// The FastCGI responder's options: limits, flow-control and hold-policy settings with their
// defaults, and the per-process counters that connections share.
import { tmpdir } from 'node:os';
import { BridgeError } from '../errors.js';
import { DEFAULT_MAX_PARAMS, DEFAULT_MAX_PARAMS_BYTES } from './params.js';

/**
 * FcgiCounters are the per-process counts the limits are enforced against. One object is
 * shared by every connection of a process (a connection alone cannot know how many requests
 * its siblings carry); {@link createFcgiCounters} makes one.
 */
export interface FcgiCounters {
  /** connections is the number of open responder connections. */
  connections: number;
  /** requests is the number of requests in progress: accepted and not yet fully finished. */
  requests: number;
}

/** createFcgiCounters returns a fresh zeroed {@link FcgiCounters}. */
export function createFcgiCounters(): FcgiCounters {
  return { connections: 0, requests: 0 };
}

// Used when a caller passes none: "per process" is then literally this module's instance.
const processCounters = createFcgiCounters();

/** ResponderOptions tune a FastCGI responder; every field has a default (see the DEFAULT_* constants). */
export interface ResponderOptions {
  /** multiprocess is `gateway.multiprocess`: true when other processes serve the same app. */
  multiprocess?: boolean;
  /** multiplex accepts several concurrent requests per connection; advertised as FCGI_MPXS_CONNS. */
  multiplex?: boolean;
  /** maxConnections caps open connections per process (FCGI_MAX_CONNS); beyond it a new one is closed at once. */
  maxConnections?: number;
  /** maxConcurrentRequests caps requests in progress per process (FCGI_MAX_REQS); beyond it FCGI_OVERLOADED. */
  maxConcurrentRequests?: number;
  /** maxRequestsPerConnection caps concurrent requests on one connection; beyond it FCGI_OVERLOADED. */
  maxRequestsPerConnection?: number;
  /** maxParamsBytes caps a request's FCGI_PARAMS stream in bytes; beyond it a 431 response. */
  maxParamsBytes?: number;
  /** maxParams caps the number of params of a request; beyond it a 431 response. */
  maxParams?: number;
  /** maxBodyBytes caps a request body (FCGI_STDIN); beyond it a 413 response, the rest discarded. */
  maxBodyBytes?: number;
  /**
   * stdinHighWaterMark is how many unread body bytes a request may have buffered before the
   * socket is paused, when the connection carries only that request.
   */
  stdinHighWaterMark?: number;
  /**
   * maxStdinBuffer is how many unread body bytes a request may have buffered while the
   * connection is multiplexed (pausing would stall the other requests); beyond it that
   * request's input fails with FCGI_ERR_STDIN_OVERFLOW.
   */
  maxStdinBuffer?: number;
  /**
   * holdResponseUntilBodyRead holds a response (headers included) until its request body has
   * been received whole, because nginx stops sending a body once the reply starts (issue 3).
   */
  holdResponseUntilBodyRead?: boolean;
  /** maxHoldBytes is how much of a held response stays in memory; the rest goes to an unlinked temp file. */
  maxHoldBytes?: number;
  /** tmpDir is where held responses beyond `maxHoldBytes` are spilled (default `os.tmpdir()`). */
  tmpDir?: string;
  /**
   * requestTimeoutMs bounds a request's wall time from FCGI_BEGIN_REQUEST; past it
   * `gateway.signal` fires and the web server gets a 504 (or a cut-off response, when the
   * response had started) with FCGI_END_REQUEST. 0 (the default) means no bound.
   */
  requestTimeoutMs?: number;
  /** idleTimeoutMs closes a connection that carries no request and sent nothing for this long; 0 never. */
  idleTimeoutMs?: number;
  /**
   * drainGraceMs is how long, during a graceful shutdown, a kept-alive connection must have been
   * idle before it is closed (it serves what comes until then: the web server may be sending a
   * request on it right now, and closing under it would fail that request). 0 closes idle
   * connections at once.
   */
  drainGraceMs?: number;
  /** closeTimeoutMs is how long a closing connection waits for the peer's FIN before it is destroyed. */
  closeTimeoutMs?: number;
  /** log receives one line per connection-level event (a protocol error, a refused connection). */
  log?: (line: string) => void;
  /** counters are the shared per-process counts; default: one object for the whole process. */
  counters?: FcgiCounters;
}

/** DEFAULT_MAX_CONNECTIONS is the default of `maxConnections`. */
export const DEFAULT_MAX_CONNECTIONS = 1024;
/** DEFAULT_MAX_CONCURRENT_REQUESTS is the default of `maxConcurrentRequests`. */
export const DEFAULT_MAX_CONCURRENT_REQUESTS = 1024;
/** DEFAULT_MAX_REQUESTS_PER_CONNECTION is the default of `maxRequestsPerConnection`. */
export const DEFAULT_MAX_REQUESTS_PER_CONNECTION = 128;
/**
 * DEFAULT_MAX_BODY_BYTES is the default of `maxBodyBytes`: 2 GiB. The web server enforces the
 * real upload policy (nginx `client_max_body_size`); this only bounds a runaway stream.
 */
export const DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024 * 1024;
/** DEFAULT_STDIN_HIGH_WATER_MARK is the default of `stdinHighWaterMark`: 256 KiB. */
export const DEFAULT_STDIN_HIGH_WATER_MARK = 256 * 1024;
/** DEFAULT_MAX_STDIN_BUFFER is the default of `maxStdinBuffer`: 1 MiB. */
export const DEFAULT_MAX_STDIN_BUFFER = 1024 * 1024;
/** DEFAULT_MAX_HOLD_BYTES is the default of `maxHoldBytes`: 1 MiB. */
export const DEFAULT_MAX_HOLD_BYTES = 1024 * 1024;
/**
 * DEFAULT_IDLE_TIMEOUT_MS is the default of `idleTimeoutMs`: 5 minutes, well above nginx's
 * upstream `keepalive_timeout` (60 s), so the web server, not us, retires idle kept-alive
 * connections (closing first races with a request it is about to send).
 */
export const DEFAULT_IDLE_TIMEOUT_MS = 300_000;
/** DEFAULT_DRAIN_GRACE_MS is the default of `drainGraceMs`. */
export const DEFAULT_DRAIN_GRACE_MS = 2_000;
/** DEFAULT_CLOSE_TIMEOUT_MS is the default of `closeTimeoutMs`. */
export const DEFAULT_CLOSE_TIMEOUT_MS = 5_000;

/** ResolvedResponderOptions are {@link ResponderOptions} with every default filled in. */
export type ResolvedResponderOptions = Required<ResponderOptions>;

const resolved = new WeakSet<object>();

function defaultLog(line: string): void {
  process.stderr.write(line.endsWith('\n') ? line : `${line}\n`);
}

function count(value: number | undefined, fallback: number, name: string, min = 0): number {
  if (value === undefined) return fallback;
  if (!(Number.isInteger(value) || value === Infinity) || value < min) {
    throw new BridgeError(
      'FCGI_ERR_INVALID_ARGUMENT',
      `fcgi: ${name} must be an integer >= ${min}, got ${value}`,
    );
  }
  return value;
}

/**
 * resolveResponderOptions fills in the defaults and checks every limit (a bad one throws
 * FCGI_ERR_INVALID_ARGUMENT). Resolving an already resolved object returns it unchanged.
 */
export function resolveResponderOptions(options: ResponderOptions = {}): ResolvedResponderOptions {
  if (resolved.has(options)) return options as ResolvedResponderOptions;
  const out: ResolvedResponderOptions = {
    multiprocess: options.multiprocess ?? false,
    multiplex: options.multiplex ?? true,
    maxConnections: count(options.maxConnections, DEFAULT_MAX_CONNECTIONS, 'maxConnections', 1),
    maxConcurrentRequests: count(
      options.maxConcurrentRequests,
      DEFAULT_MAX_CONCURRENT_REQUESTS,
      'maxConcurrentRequests',
      1,
    ),
    maxRequestsPerConnection: count(
      options.maxRequestsPerConnection,
      DEFAULT_MAX_REQUESTS_PER_CONNECTION,
      'maxRequestsPerConnection',
      1,
    ),
    maxParamsBytes: count(options.maxParamsBytes, DEFAULT_MAX_PARAMS_BYTES, 'maxParamsBytes'),
    maxParams: count(options.maxParams, DEFAULT_MAX_PARAMS, 'maxParams'),
    maxBodyBytes: count(options.maxBodyBytes, DEFAULT_MAX_BODY_BYTES, 'maxBodyBytes'),
    stdinHighWaterMark: count(
      options.stdinHighWaterMark,
      DEFAULT_STDIN_HIGH_WATER_MARK,
      'stdinHighWaterMark',
    ),
    maxStdinBuffer: count(options.maxStdinBuffer, DEFAULT_MAX_STDIN_BUFFER, 'maxStdinBuffer'),
    holdResponseUntilBodyRead: options.holdResponseUntilBodyRead ?? true,
    maxHoldBytes: count(options.maxHoldBytes, DEFAULT_MAX_HOLD_BYTES, 'maxHoldBytes'),
    tmpDir: options.tmpDir ?? tmpdir(),
    requestTimeoutMs: count(options.requestTimeoutMs, 0, 'requestTimeoutMs'),
    idleTimeoutMs: count(options.idleTimeoutMs, DEFAULT_IDLE_TIMEOUT_MS, 'idleTimeoutMs'),
    drainGraceMs: count(options.drainGraceMs, DEFAULT_DRAIN_GRACE_MS, 'drainGraceMs'),
    closeTimeoutMs: count(options.closeTimeoutMs, DEFAULT_CLOSE_TIMEOUT_MS, 'closeTimeoutMs'),
    log: options.log ?? defaultLog,
    counters: options.counters ?? processCounters,
  };
  resolved.add(out);
  return out;
}
