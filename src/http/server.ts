// The built-in HTTP server front end: node:http requests -> the shared translator
// (metaVariablesFromHttp, buildEnviron) -> the one pipeline (runApp) -> the response.
import {
  createServer,
  STATUS_CODES,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { bodyLength, buildEnviron } from '../cgi/environ.js';
import { metaVariablesFromHttp } from '../cgi/http-meta.js';
import type { AppHooks } from '../cgi/child.js';
import { BridgeError, isBridgeError } from '../errors.js';
import { errorMessage, runApp } from '../gateway/handler.js';
import { RequestSignal } from '../gateway/signal.js';
import type { Environ, GatewayApp } from '../gateway/types.js';
import {
  formatListenAddress,
  listen,
  parseListenAddress,
  type ListenAddress,
} from '../server/address.js';
import { onStopSignals } from '../server/signals.js';
import { trackConnections } from './graceful.js';
import { lineErrorStream, stderrLog, type LogLine } from './log.js';
import { RequestBody } from './request-body.js';
import { httpResponseWriter } from './writer.js';

/**
 * DEFAULT_MAX_BODY_BYTES is the default request body limit: 1 GiB, Apache's LimitRequestBody
 * default. A development server receives uploads; a smaller limit is one flag away.
 */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024 * 1024;
/** DEFAULT_MAX_HEADER_SIZE is the default limit on the request line and headers: 16 KiB (node's). */
export const DEFAULT_MAX_HEADER_SIZE = 16 * 1024;
/** DEFAULT_HEADERS_TIMEOUT is how long a client may take to send its headers: 60 s (node's). */
export const DEFAULT_HEADERS_TIMEOUT = 60_000;
/** DEFAULT_REQUEST_TIMEOUT is how long a client may take to send the whole request: 300 s (node's). */
export const DEFAULT_REQUEST_TIMEOUT = 300_000;
/** DEFAULT_KEEP_ALIVE_TIMEOUT is how long an idle keep-alive connection stays open: 5 s (node's). */
export const DEFAULT_KEEP_ALIVE_TIMEOUT = 5_000;
/** DEFAULT_GRACEFUL_TIMEOUT is how long a stop waits for in-flight requests: 10 s. */
export const DEFAULT_GRACEFUL_TIMEOUT = 10_000;
/** DEFAULT_LISTEN is where the HTTP server listens when nothing is said: loopback only. */
export const DEFAULT_LISTEN = '127.0.0.1:8080';

/** HttpServerOptions configure {@link createHttpServer}; times are in milliseconds. */
export interface HttpServerOptions {
  /** scriptName mounts the app below a path prefix (SCRIPT_NAME); default '' (the root). */
  scriptName?: string;
  /** serverSoftware is SERVER_SOFTWARE; default `cgi-bridge`. */
  serverSoftware?: string;
  /** maxBodyBytes limits a request body (413 beyond it); default {@link DEFAULT_MAX_BODY_BYTES}. */
  maxBodyBytes?: number;
  /** maxHeaderSize limits the request line and headers (431 beyond it). */
  maxHeaderSize?: number;
  /** headersTimeout limits the time to receive the headers (408 after it). */
  headersTimeout?: number;
  /** requestTimeout limits the time to receive the whole request (408 after it); 0 disables it. */
  requestTimeout?: number;
  /** keepAliveTimeout is how long an idle connection waits for its next request. */
  keepAliveTimeout?: number;
  /** log receives whole lines (server messages and the apps' gateway.errors); default stderr. */
  log?: LogLine;
}

interface Context {
  app: GatewayApp;
  scriptName: string;
  serverSoftware: string;
  maxBody: number;
  log: LogLine;
}

const ignore = (): void => undefined;

// refuse answers a request the app never sees (limit, bad CONTENT_LENGTH) and closes the
// connection: the body that may follow is not read, so the connection cannot be reused.
function refuse(res: ServerResponse, status: number): void {
  const reason = STATUS_CODES[status] ?? 'Error';
  const text = `${status} ${reason}\n`;
  res.writeHead(status, reason, [
    'Content-Type',
    'text/plain; charset=utf-8',
    'Content-Length',
    String(Buffer.byteLength(text)),
    'Connection',
    'close',
  ]);
  res.end(text);
}

async function handleRequest(
  ctx: Context,
  req: IncomingMessage,
  res: ServerResponse,
  expectContinue: boolean,
): Promise<void> {
  // Failures surface through the body source and the writer; unhandled 'error' events would crash.
  req.on('error', ignore);
  res.on('error', ignore);
  // gateway.signal: the client went away before the response finished (made only when read).
  const signal = new RequestSignal();
  res.once('close', () => {
    if (!res.writableFinished) {
      signal.abort(new DOMException('This operation was aborted', 'AbortError'));
    }
  });
  const errors = lineErrorStream(ctx.log);
  let body: RequestBody | null = null;
  let environ: Environ;
  try {
    const meta = metaVariablesFromHttp(req, {
      scriptName: ctx.scriptName,
      serverSoftware: ctx.serverSoftware,
    });
    const length = bodyLength(meta);
    if (length !== null && length > ctx.maxBody) {
      throw new BridgeError(
        'HTTP_ERR_BODY_TOO_LARGE',
        `http: Content-Length ${length} is larger than the limit of ${ctx.maxBody} bytes`,
        { status: 413 },
      );
    }
    if (length !== 0) {
      // 100 Continue goes out when the app first reads, never after the final response began.
      const sendContinue = expectContinue
        ? () => {
            if (!res.headersSent) res.writeContinue();
          }
        : undefined;
      body = new RequestBody(req, ctx.maxBody, sendContinue);
    }
    environ = buildEnviron(meta, {
      input: body,
      errors,
      signal,
      multithread: true,
      multiprocess: false,
      runOnce: false,
      urlScheme: 'http',
    });
  } catch (e) {
    const status = isBridgeError(e) ? e.status : 500;
    if (status >= 500) ctx.log(`http: cannot serve ${req.method} ${req.url}: ${errorMessage(e)}`);
    if (!res.headersSent && !res.destroyed) refuse(res, status);
    return;
  }
  let draining: Promise<boolean> | undefined;
  const writer = httpResponseWriter(res, {
    // A body over the limit, or one the client holds back for a 100 Continue that never came,
    // leaves the connection at an unknown point of the request: it cannot carry another one.
    closeConnection: () => body !== null && (body.tooLarge || (expectContinue && !body.started)),
    beforeEnd: () => {
      if (body !== null && !body.ended) draining = body.drain();
    },
  });
  await runApp(ctx.app, environ, writer);
  errors.end();
  if (body !== null && !req.socket.destroyed && !(await (draining ?? body.drain()))) {
    // The body could not be read to its end (limit, client gone): the next bytes on this
    // connection are not a request line, so it must not be reused.
    req.socket.destroy();
  }
}

function connectionsCheckingInterval(headersTimeout: number, requestTimeout: number): number {
  // node checks both timeouts on this interval (default 30 s); keep it a fraction of the shortest.
  const shortest = Math.min(headersTimeout, requestTimeout > 0 ? requestTimeout : Infinity);
  return Math.max(50, Math.min(30_000, Math.floor(shortest / 4)));
}

/**
 * createHttpServer returns a node:http server that runs `app` for each request: keep-alive,
 * streaming both ways (the body reaches the app as it arrives, the response leaves as it is
 * produced), `gateway.signal` aborted when the client goes away, and limits with 4xx answers
 * (413 for a body over the limit, 431 for oversized headers, 408 for slow clients, 400 for
 * malformed requests — the last three answered by node itself). A body the app did not read is
 * drained (within the body limit) so the connection can carry the next request.
 */
export function createHttpServer(app: GatewayApp, options: HttpServerOptions = {}): Server {
  const headersTimeout = options.headersTimeout ?? DEFAULT_HEADERS_TIMEOUT;
  const requestTimeout = options.requestTimeout ?? DEFAULT_REQUEST_TIMEOUT;
  const server = createServer({
    maxHeaderSize: options.maxHeaderSize ?? DEFAULT_MAX_HEADER_SIZE,
    // node requires headersTimeout <= requestTimeout.
    headersTimeout: requestTimeout > 0 ? Math.min(headersTimeout, requestTimeout) : headersTimeout,
    requestTimeout,
    connectionsCheckingInterval: connectionsCheckingInterval(headersTimeout, requestTimeout),
  });
  server.keepAliveTimeout = options.keepAliveTimeout ?? DEFAULT_KEEP_ALIVE_TIMEOUT;
  const ctx: Context = {
    app,
    scriptName: options.scriptName ?? '',
    serverSoftware: options.serverSoftware ?? 'cgi-bridge',
    maxBody: options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
    log: options.log ?? stderrLog,
  };
  const handle = (req: IncomingMessage, res: ServerResponse, expectContinue: boolean): void => {
    handleRequest(ctx, req, res, expectContinue).catch((e: unknown) => {
      // A bug of ours must cost one connection, not the process.
      ctx.log(`http: request handling failed: ${errorMessage(e)}`);
      res.destroy();
    });
  };
  server.on('request', (req: IncomingMessage, res: ServerResponse) => handle(req, res, false));
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => handle(req, res, true));
  return server;
}

/** ServeHttpOptions configure {@link serveHttp}; times are in milliseconds. */
export interface ServeHttpOptions extends HttpServerOptions {
  /** listen is an ADDR (see parseListenAddress) or a parsed one; default {@link DEFAULT_LISTEN}. */
  listen?: string | ListenAddress;
  /** socketMode is a unix socket's mode (default 0660, see DEFAULT_SOCKET_MODE). */
  socketMode?: number;
  /** gracefulTimeout bounds how long a stop waits for in-flight requests. */
  gracefulTimeout?: number;
  /** hooks are the app module's startup()/shutdown(), run before listening and after the last request. */
  hooks?: AppHooks;
  /** label names the app in the start-up line (the CLI passes TARGET); default `app`. */
  label?: string;
  /** signals installs SIGINT/SIGTERM handlers that stop the server gracefully; default true. */
  signals?: boolean;
}

/** HttpServerHandle is a running server from {@link serveHttp}. */
export interface HttpServerHandle {
  server: Server;
  /** url is where the server listens: `http://127.0.0.1:8080/`, or `unix:/path` for a socket. */
  url: string;
  /** stop stops gracefully (as SIGTERM does) and resolves once `closed` does. */
  stop(): Promise<void>;
  /** closed settles after the last request and the shutdown hook; it rejects if the hook threw. */
  closed: Promise<void>;
}

/** serverUrl tells where a listening server can be reached. */
export function serverUrl(server: Server, addr: ListenAddress): string {
  const a = server.address();
  if (a !== null && typeof a === 'object') {
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    return `http://${host}:${a.port}/`;
  }
  if (typeof a === 'string' && a !== '') return `unix:${a}`;
  return formatListenAddress(addr);
}

/**
 * serveHttp runs `app` on the built-in HTTP server: startup hook, listen, print
 * `serving LABEL on URL`, serve until SIGINT/SIGTERM or `stop()`, then stop accepting, let
 * in-flight requests finish (within `gracefulTimeout`; a second signal cuts them at once),
 * close idle keep-alive connections and run the shutdown hook.
 */
export async function serveHttp(
  app: GatewayApp,
  options: ServeHttpOptions = {},
): Promise<HttpServerHandle> {
  const addr =
    typeof options.listen === 'object'
      ? options.listen
      : parseListenAddress(options.listen ?? DEFAULT_LISTEN);
  const log = options.log ?? stderrLog;
  const hooks = options.hooks ?? {};
  await hooks.startup?.();
  const server = createHttpServer(app, { ...options, log });
  const tracker = trackConnections(server);
  try {
    await listen(server, addr, { socketMode: options.socketMode });
  } catch (e) {
    await hooks.shutdown?.();
    throw e;
  }
  const url = serverUrl(server, addr);
  log(`serving ${options.label ?? 'app'} on ${url}`);

  let removeSignals = (): void => undefined;
  let settle!: { resolve: () => void; reject: (e: unknown) => void };
  const closed = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  // A failed shutdown hook rejects `closed` for whoever awaits it, and crashes no one who does not.
  closed.catch(ignore);
  let stopping = false;
  const stop = (): Promise<void> => {
    if (!stopping) {
      stopping = true;
      (async () => {
        const cut = await tracker.stop(options.gracefulTimeout ?? DEFAULT_GRACEFUL_TIMEOUT);
        removeSignals();
        if (cut > 0) log(`graceful timeout: ${cut} request(s) cut off`);
        await hooks.shutdown?.();
      })().then(settle.resolve, settle.reject);
    }
    return closed;
  };
  if (options.signals ?? true) {
    removeSignals = onStopSignals(
      (signal) => {
        log(`${signal}: stopping (in-flight requests: ${tracker.active})`);
        void stop();
      },
      () => tracker.stopNow(),
    );
  }
  // server.close() called directly ends up here too, so `closed` always settles.
  server.once('close', () => void stop());
  return { server, url, stop, closed };
}
