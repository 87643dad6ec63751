// The script side of CGI (RFC 3875): a gateway app run once per request by a web server,
// reading meta-variables from the environment and the body from stdin, writing to stdout.
// This is the CGI request path: it loads only what one request needs (no CLI, no server code),
// and does its I/O with read(2)/write(2) on the raw fds (no process.stdin/stdout stream setup).
import { read, readFileSync, write, writeSync } from 'node:fs';
import { errorMessage, runApp, type ResponseWriter } from '../gateway/handler.js';
import { createErrorStream } from '../gateway/error-stream.js';
import type { Environ, GatewayApp, Header } from '../gateway/types.js';
import {
  buildEnviron,
  hasRepeatedName,
  metaVariablesFromProcessEnv,
  type MetaVariables,
} from './environ.js';
import { isBridgeError } from '../errors.js';

/** AppHooks are a module's lifecycle hooks (DESIGN.md, Lifecycle). */
export interface AppHooks {
  startup?: () => unknown;
  shutdown?: () => unknown;
}

/** CgiOptions let tests and embedders replace the process's environment and file descriptors. */
export interface CgiOptions {
  env?: MetaVariables;
  stdinFd?: number;
  stdoutFd?: number;
  stderrFd?: number;
}

/**
 * CGI_EXIT lists the exit codes of a CGI script process. A web server reads the response, not
 * the exit code (RFC 3875 §6 defines none), so these are for logs and for tests.
 */
export const CGI_EXIT = Object.freeze({
  /** OK: the response went out whole, or the client went away (EPIPE) and the request ended quietly. */
  OK: 0,
  /** APP_FAILED: the app or a lifecycle hook threw (the client got a 500 or a cut-off response). */
  APP_FAILED: 1,
  /** BAD_ENVIRONMENT: not a usable CGI request; one line on stderr, nothing on stdout. */
  BAD_ENVIRONMENT: 2,
  /** TERMINATED: the web server sent SIGTERM (128 + 15, the shell's convention). */
  TERMINATED: 143,
});

const READ_SIZE = 64 * 1024;
const RETRY_MS = 5;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// A request ends in exit(3), and libuv joins its thread pool there: a read(2) of stdin still in
// flight would hold the process until the web server closes the pipe. Counting reads lets
// cgiMain end such a process by signal instead.
let readsInFlight = 0;

function readOnce(fd: number, buf: Buffer): Promise<number> {
  readsInFlight++;
  return new Promise<number>((resolve, reject) => {
    read(fd, buf, 0, buf.length, null, (err, n) => {
      readsInFlight--;
      if (err) reject(err);
      else resolve(n);
    });
  });
}

function writeOnce(fd: number, data: Uint8Array, offset: number): Promise<number> {
  return new Promise((resolve, reject) => {
    write(fd, data, offset, data.length - offset, null, (err, n) =>
      err ? reject(err) : resolve(n),
    );
  });
}

const isEagain = (e: unknown): boolean => (e as NodeJS.ErrnoException)?.code === 'EAGAIN';

// POSIX guarantees that a write of at most PIPE_BUF (4096 on Linux) bytes to a pipe is atomic;
// into a pipe nothing was written to yet, it cannot block either. The response's first write
// is done that way when it is that small: no thread-pool hop for a small response (bench/).
const PIPE_BUF = 4096;

// writeAll writes every byte; a short write continues where it stopped. EAGAIN (a parent left
// the pipe non-blocking) waits and retries; anything else (EPIPE: the reader is gone) rejects.
// `first` says nothing was written to `fd` yet.
async function writeAll(fd: number, data: Uint8Array, first = false): Promise<void> {
  let offset = 0;
  if (first && data.length <= PIPE_BUF) {
    try {
      offset = writeSync(fd, data);
    } catch (e) {
      if (!isEagain(e)) throw e;
    }
  }
  while (offset < data.length) {
    try {
      offset += await writeOnce(fd, data, offset);
    } catch (e) {
      if (!isEagain(e)) throw e;
      await sleep(RETRY_MS);
    }
  }
}

// readFd is stdin as an async byte source over plain read(2) in the thread pool: no net/tty
// stream setup on the start-up path, and a socket from mod_cgid reads the same as a pipe. It
// reads only when the app asks for more, so a 10 MB upload is never held whole.
async function* readFd(fd: number): AsyncGenerator<Uint8Array> {
  for (;;) {
    const buf = Buffer.allocUnsafe(READ_SIZE);
    let n: number;
    try {
      n = await readOnce(fd, buf);
    } catch (e) {
      if (!isEagain(e)) throw e;
      await sleep(RETRY_MS);
      continue;
    }
    if (n === 0) return;
    yield buf.subarray(0, n);
  }
}

/**
 * cgiHeaderText renders the CGI response header block (RFC 3875 §6.2) as a latin-1 string:
 * Status line, fields, blank line. Header values are latin-1 strings, one char per byte (the
 * rule node:http applies too), so its length is its size in bytes.
 */
export function cgiHeaderText(code: number, reason: string, headers: Header[]): string {
  let s = `Status: ${code} ${reason}\r\n`;
  for (const [n, v] of headers) s += `${n}: ${v}\r\n`;
  return `${s}\r\n`;
}

/** formatCgiHeaders renders the CGI response header block (RFC 3875 §6.2): Status line, fields, blank line. */
export function formatCgiHeaders(code: number, reason: string, headers: Header[]): Buffer {
  return Buffer.from(cgiHeaderText(code, reason, headers), 'latin1');
}

/** A CGI request whose environment was accepted, ready to be served. */
interface Prepared {
  environ: Environ;
  outFd: number;
  log: (s: string) => void;
  controller: AbortController;
  terminated: () => boolean;
  /** dispose removes the SIGTERM listener. */
  dispose: () => void;
}

function stderrLine(fd: number): (s: string) => void {
  return (s) => {
    try {
      writeSync(fd, s);
    } catch {
      // stderr closed by the web server: nothing left to tell
    }
  };
}

// processMetaVariables is this process's environment with repeated names merged: nginx before
// 1.23 sends a param per Cookie line, fcgiwrap passes both to the script, and process.env keeps
// only the first. The raw block (Linux: /proc/self/environ) has them all. This is the CGI
// request path: the block's names are checked, and only a repeat costs a decode and a copy.
function processMetaVariables(): MetaVariables {
  let block: Buffer | null = null;
  try {
    block = process.platform === 'linux' ? readFileSync('/proc/self/environ') : null;
  } catch {
    // no /proc: process.env is all there is
  }
  if (block === null || !hasRepeatedName(block)) return process.env as MetaVariables;
  return metaVariablesFromProcessEnv(process.env, block);
}

// prepare validates the environment and builds the environ; a broken one is a single line.
function prepare(options: CgiOptions): Prepared | string {
  const env = options.env ?? processMetaVariables();
  const log = stderrLine(options.stderrFd ?? 2);
  const controller = new AbortController();
  let environ: Environ;
  try {
    // bodyLength (inside buildEnviron) gives null for a chunked body under mod_cgid: read to EOF.
    environ = buildEnviron(env, {
      input: readFd(options.stdinFd ?? 0),
      errors: createErrorStream(log),
      signal: controller.signal,
      multithread: false,
      multiprocess: true,
      runOnce: true,
    });
  } catch (e) {
    return isBridgeError(e) ? e.message : `cgi: ${e instanceof Error ? e.message : String(e)}`;
  }
  // A web server that gives up on the script (Apache's Timeout, a client gone) sends SIGTERM;
  // the app sees it as gateway.signal.
  let terminated = false;
  const onTerm = (): void => {
    terminated = true;
    controller.abort();
  };
  process.on('SIGTERM', onTerm);
  return {
    environ,
    outFd: options.stdoutFd ?? 1,
    log,
    controller,
    terminated: () => terminated,
    dispose: () => process.removeListener('SIGTERM', onTerm),
  };
}

function cgiWriter(p: Prepared): ResponseWriter {
  let pending: Buffer | null = null;
  let first = true;
  const send = (data: Uint8Array): Promise<void> => {
    const isFirst = first;
    first = false;
    return writeAll(p.outFd, data, isFirst);
  };
  return {
    writeHead(code, reason, headers) {
      // Held and sent with the first chunk: one write(2) for a small response.
      pending = formatCgiHeaders(code, reason, headers);
    },
    write(chunk) {
      const data = pending ? Buffer.concat([pending, chunk]) : chunk;
      pending = null;
      return send(data).catch((err: unknown) => {
        // EPIPE: the web server closed our stdout (the client went away). The pipeline sees the
        // failed write, stops the body and calls close(); gateway.signal tells the app.
        p.controller.abort();
        throw err;
      });
    },
    end() {
      if (!pending) return;
      const head = pending;
      pending = null;
      return send(head);
    },
    abort() {
      // After headers, a CGI script cuts a response off by exiting non-zero before the body ends.
      pending = null;
    },
  };
}

async function serve(app: GatewayApp, p: Prepared): Promise<number> {
  if (p.terminated()) return CGI_EXIT.TERMINATED;
  const result = await runApp(app, p.environ, cgiWriter(p));
  if (p.terminated()) return CGI_EXIT.TERMINATED;
  if (result.aborted) return CGI_EXIT.OK;
  return result.ok ? CGI_EXIT.OK : CGI_EXIT.APP_FAILED;
}

/**
 * runCgi serves one CGI request with `app` and resolves to its exit code (see {@link CGI_EXIT}):
 * 0 when the response went out whole or the client went away, 1 when the app failed, 2 when
 * the environment is not a usable CGI request (one line on stderr, nothing on stdout), 143 when
 * SIGTERM arrived (the app saw it as `gateway.signal`).
 */
export async function runCgi(app: GatewayApp, options: CgiOptions = {}): Promise<number> {
  const p = prepare(options);
  if (typeof p === 'string') {
    stderrLine(options.stderrFd ?? 2)(`${p}\n`);
    return CGI_EXIT.BAD_ENVIRONMENT;
  }
  try {
    return await serve(app, p);
  } finally {
    p.dispose();
  }
}

// The body a web server shows when the app cannot even start; details go to the error log only.
function startupFailedResponse(): Buffer {
  const body = Buffer.from('500 Internal Server Error\n');
  const head = formatCgiHeaders(500, 'Internal Server Error', [
    ['Content-Type', 'text/plain; charset=utf-8'],
    ['Content-Length', String(body.length)],
  ]);
  return Buffer.concat([head, body]);
}

// The one cgiMain of this process, once started (a CGI process serves exactly one request).
let mainRun: Promise<never> | undefined;

/**
 * cgiMain is the whole life of a CGI script process: check the environment, `startup` hook, one
 * request, `shutdown` hook, exit. Bundled scripts, `serve(app)` and `cgi-bridge cgi` call it.
 * A broken environment exits 2 before any hook runs; a failing `startup` answers a generic 500.
 * After SIGTERM, or when a read of stdin is still in flight (exit(3) would wait for it), the
 * process ends by SIGTERM rather than exit(3). Only the first call serves: a later one (a
 * bundled module that also calls `serve(app)` itself) returns the same promise.
 */
export function cgiMain(
  app: GatewayApp,
  hooks: AppHooks = {},
  options: CgiOptions = {},
): Promise<never> {
  mainRun ??= cgiLife(app, hooks, options);
  return mainRun;
}

async function cgiLife(app: GatewayApp, hooks: AppHooks, options: CgiOptions): Promise<never> {
  const p = prepare(options);
  if (typeof p === 'string') {
    stderrLine(options.stderrFd ?? 2)(`${p}\n`);
    return exitProcess(CGI_EXIT.BAD_ENVIRONMENT, false);
  }
  let code: number;
  let started = false;
  try {
    await hooks.startup?.();
    started = true;
  } catch (e) {
    p.log(`cgi: startup failed: ${errorMessage(e)}\n`);
    await writeAll(p.outFd, startupFailedResponse(), true).catch(() => undefined);
  }
  code = started ? await serve(app, p) : CGI_EXIT.APP_FAILED;
  try {
    await hooks.shutdown?.();
  } catch (e) {
    p.log(`cgi: shutdown failed: ${errorMessage(e)}\n`);
    if (code === CGI_EXIT.OK) code = CGI_EXIT.APP_FAILED;
  }
  p.dispose();
  return exitProcess(code, p.terminated());
}

function exitProcess(code: number, terminated: boolean): Promise<never> {
  if (terminated || readsInFlight > 0) {
    // With no listener left, SIGTERM takes its default action at once: no thread-pool join.
    process.removeAllListeners('SIGTERM');
    process.kill(process.pid, 'SIGTERM');
    return new Promise<never>(() => undefined);
  }
  process.exit(code);
}
