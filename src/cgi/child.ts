// The script side of CGI (RFC 3875): a gateway app run once per request by a web server,
// reading meta-variables from the environment and the body from stdin, writing to stdout.
// This is the CGI request path: it loads only what one request needs (no CLI, no server code).
import { read, write, writeSync } from 'node:fs';
import { errorMessage, runApp, type ResponseWriter } from '../gateway/handler.js';
import { createErrorStream } from '../gateway/error-stream.js';
import type { GatewayApp, Header } from '../gateway/types.js';
import { bodyLength, buildEnviron, type MetaVariables } from './environ.js';
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

const READ_SIZE = 64 * 1024;

function writeAll(fd: number, data: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (offset: number): void => {
      write(fd, data, offset, data.length - offset, null, (err, n) => {
        if (err) return reject(err);
        if (offset + n < data.length) step(offset + n);
        else resolve();
      });
    };
    step(0);
  });
}

// stdin as an async byte source over plain read(2) in the thread pool: no net/tty stream setup
// on the start-up path, and a socket from mod_cgid reads the same as a pipe.
async function* readFd(fd: number): AsyncGenerator<Uint8Array> {
  for (;;) {
    const buf = Buffer.allocUnsafe(READ_SIZE);
    const n = await new Promise<number>((resolve, reject) => {
      read(fd, buf, 0, READ_SIZE, null, (err, bytes) => (err ? reject(err) : resolve(bytes)));
    }).catch(async (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EAGAIN') throw err;
      await new Promise((r) => setTimeout(r, 5));
      return -1;
    });
    if (n === 0) return;
    if (n > 0) yield buf.subarray(0, n);
  }
}

/** formatCgiHeaders renders the CGI response header block (RFC 3875 §6.2): Status line, fields, blank line. */
export function formatCgiHeaders(code: number, reason: string, headers: Header[]): Buffer {
  let s = `Status: ${code} ${reason}\r\n`;
  for (const [n, v] of headers) s += `${n}: ${v}\r\n`;
  s += '\r\n';
  // Header values are latin-1 strings: one char, one byte (the rule node:http applies too).
  return Buffer.from(s, 'latin1');
}

/**
 * runCgi serves one CGI request with `app` and resolves to the exit code: 0 when the response
 * went out whole or the client went away, 1 when the app failed, 2 when the environment is not a
 * usable CGI request (one line on stderr, nothing on stdout).
 */
export async function runCgi(app: GatewayApp, options: CgiOptions = {}): Promise<number> {
  const env = options.env ?? (process.env as MetaVariables);
  const outFd = options.stdoutFd ?? 1;
  const errFd = options.stderrFd ?? 2;
  const logLine = (s: string): void => {
    try {
      writeSync(errFd, s);
    } catch {
      // stderr closed: nothing left to tell
    }
  };
  const errors = createErrorStream(logLine);
  const controller = new AbortController();
  // A web server that gives up on the script (Apache's timeout, a client gone) sends SIGTERM.
  const onTerm = (): void => controller.abort();
  process.once('SIGTERM', onTerm);
  let environ;
  try {
    const input = bodyLength(env) === 0 ? null : readFd(options.stdinFd ?? 0);
    environ = buildEnviron(env, {
      input,
      errors,
      signal: controller.signal,
      multithread: false,
      multiprocess: true,
      runOnce: true,
    });
  } catch (e) {
    logLine(`${isBridgeError(e) ? e.message : `cgi: ${errorMessage(e)}`}\n`);
    process.removeListener('SIGTERM', onTerm);
    return 2;
  }
  let pending: Buffer | null = null;
  const writer: ResponseWriter = {
    writeHead(code, reason, headers) {
      // Held and sent with the first chunk: one write(2) for small responses.
      pending = formatCgiHeaders(code, reason, headers);
    },
    write(chunk) {
      const data = pending ? Buffer.concat([pending, chunk]) : chunk;
      pending = null;
      return writeAll(outFd, data).catch((err) => {
        controller.abort();
        throw err;
      });
    },
    end() {
      if (pending) {
        const p = pending;
        pending = null;
        return writeAll(outFd, p);
      }
    },
    abort() {
      pending = null;
    },
  };
  const result = await runApp(app, environ, writer);
  process.removeListener('SIGTERM', onTerm);
  if (result.aborted) return 0;
  return result.ok ? 0 : 1;
}

/**
 * cgiMain is the whole life of a CGI script process: startup hook, one request, shutdown hook,
 * exit. Bundled scripts and `cgi-bridge cgi` call it.
 */
export async function cgiMain(app: GatewayApp, hooks: AppHooks = {}): Promise<never> {
  let code: number;
  try {
    await hooks.startup?.();
    code = await runCgi(app);
  } catch (e) {
    writeSafe(`cgi: startup failed: ${errorMessage(e)}\n`);
    code = 1;
  }
  try {
    await hooks.shutdown?.();
  } catch (e) {
    writeSafe(`cgi: shutdown failed: ${errorMessage(e)}\n`);
    code ||= 1;
  }
  process.exit(code);
}

function writeSafe(s: string): void {
  try {
    writeSync(2, s);
  } catch {
    // nothing to do
  }
}
