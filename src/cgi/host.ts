// The host side of RFC 3875 (the web server's part): a legacy CGI program — Perl, shell, C,
// git-http-backend — as a gateway app. fromCgi({ script }) runs one program, fromCgi({ dir }) a
// cgi-bin directory; each request starts the program, streams both ways and reads its head.
import { basename, dirname, isAbsolute, resolve } from 'node:path';
import { BridgeError, isBridgeError } from '../errors.js';
import { emptyInput } from '../gateway/input.js';
import type { Body, Environ, GatewayApp, StartResponse } from '../gateway/types.js';
import type { CgiProgram, ProgramOutcome } from './cgi-program.js';
import { CgiResponseParser, reasonFor } from './cgi-response.js';
import {
  childEnvironment,
  inheritedEnvironment,
  searchArguments,
  type InheritOptions,
} from './child-env.js';
import { bodyLength } from './environ.js';
import { requestPath, splitTarget } from './http-meta.js';
import { DEFAULT_KILL_GRACE_MS } from './process-group.js';
import { CgiBinDirectory, type ScriptLocation } from './script-path.js';
import { spawnOption, type CgiSpawn } from './spawn-options.js';

/** CgiTarget is what {@link fromCgi} runs: one program, or any program in a cgi-bin directory. */
export type CgiTarget = { script: string } | { dir: string };

/** DEFAULT_MAX_REDIRECTS bounds a chain of local redirects (RFC 3875 §6.2.2): 10, like Apache's. */
export const DEFAULT_MAX_REDIRECTS = 10;

/** REDIRECT_DEPTH_KEY is the environ key counting the local redirects behind a request. */
export const REDIRECT_DEPTH_KEY = 'cgi-bridge.redirect_depth';

/** CgiHostOptions configure {@link fromCgi}; times are in milliseconds. */
export interface CgiHostOptions extends InheritOptions {
  /**
   * timeoutMs bounds each program's wall time (0, the default: no bound here; the CLI's
   * `--timeout` wraps the whole app as well). When it passes, the program's process group gets
   * SIGTERM, then SIGKILL; the client gets 504 if no headers went out, else a cut response.
   */
  timeoutMs?: number;
  /** killGraceMs is the time between SIGTERM and SIGKILL; default {@link DEFAULT_KILL_GRACE_MS}. */
  killGraceMs?: number;
  /** serverSoftware is SERVER_SOFTWARE when the environ has none; default `cgi-bridge`. */
  serverSoftware?: string;
  /**
   * documentRoot sets PATH_TRANSLATED = documentRoot + PATH_INFO. Without it the web server's
   * PATH_TRANSLATED is kept, except in dir mode (PATH_INFO split anew): DOCUMENT_ROOT + PATH_INFO.
   */
  documentRoot?: string;
  /**
   * scriptFilenameFrom (dir mode): `path` (default) walks PATH_INFO below the directory;
   * `environ` runs the web server's SCRIPT_FILENAME (else DOCUMENT_ROOT + SCRIPT_NAME) when it
   * lies inside the directory (fcgiwrap's mode behind nginx), SCRIPT_NAME and PATH_INFO as given.
   */
  scriptFilenameFrom?: 'path' | 'environ';
  /** maxHeaderLine limits one header line of a program, in bytes; default 8 KiB. */
  maxHeaderLine?: number;
  /** maxHeaders limits a program's header lines; default 100. */
  maxHeaders?: number;
  /** maxRedirects bounds a chain of local redirects (then 500); default {@link DEFAULT_MAX_REDIRECTS}. */
  maxRedirects?: number;
  /**
   * dispatch serves local redirects: an app mounted at the root (it gets SCRIPT_NAME '' and the
   * whole path as PATH_INFO). Default: this app, for a path under its own SCRIPT_NAME; a local
   * path elsewhere (or any, with `scriptFilenameFrom: 'environ'`) goes to the client as a 302.
   */
  dispatch?: GatewayApp;
  /** searchArgs passes a search query as arguments (RFC 3875 §4.4); default true. */
  searchArgs?: boolean;
  /** hostEnv is where inherited variables come from; default `process.env`, read once. */
  hostEnv?: Readonly<Record<string, string | undefined>>;
  /**
   * spawn says who starts the programs. `helper`: a fork server, one small Perl process per
   * Node process started at its first request (fork-server.ts); a request it cannot serve gets
   * 502. `direct`: cross-spawn from this process, which forks all of it. `auto` (the default):
   * the fork server once this process is large (AUTO_HELPER_RSS, 512 MiB resident), where
   * forking it costs more than the fork server does, when perl is found and the app is not run
   * once per process (a CGI script); otherwise, and after one log line when the fork server
   * cannot start, `direct`.
   * Without this option, `CGI_BRIDGE_SPAWN` from the environment decides, else `auto`.
   */
  spawn?: CgiSpawn;
}

// Output a program writes after a local redirect, or on a HEAD request, is read and dropped up
// to this much; past it the program is stopped.
const DISCARD_LIMIT = 1024 * 1024;

interface Located extends ScriptLocation {
  /** PATH_TRANSLATED: a value, null to remove it, undefined to keep the environ's. */
  pathTranslated: string | null | undefined;
}

// cgi-program.js pulls in cross-spawn and node:child_process, tens of milliseconds to load: an
// app that imports the package root (a CGI script, run once per request) must not pay for them.
let programModule: Promise<typeof import('./cgi-program.js')> | undefined;
const loadProgram = (): Promise<typeof import('./cgi-program.js')> =>
  (programModule ??= import('./cgi-program.js'));

/** describeExit renders how a program ended for a log line: `exit code 3`, `killed by SIGTERM` … */
function describeExit(o: ProgramOutcome): string {
  if (o.spawnError) return `could not be started (${o.spawnError.code ?? o.spawnError.message})`;
  if (!o.exited) return 'still running';
  return o.signal !== null ? `killed by ${o.signal}` : `exit code ${o.code}`;
}

function respond(startResponse: StartResponse, code: number): Body {
  const reason = reasonFor(code);
  startResponse(`${code} ${reason}`, [['Content-Type', 'text/plain; charset=utf-8']]);
  return [`${code} ${reason}\n`];
}

function stringVar(environ: Environ, name: string): string | undefined {
  const v = environ[name];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

// errorText is an error's message for a log line, without the layer prefix.
function errorText(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  return message.startsWith('cgi: ') ? message.slice(5) : message;
}

function log(environ: Environ, line: string): void {
  try {
    environ['gateway.errors'].write(`${line}\n`);
  } catch {
    // a broken log never breaks the request
  }
}

// outcomeError turns how a program ended after its headers into the error that cuts the
// response (or, while nothing was sent yet, picks its status); undefined when it ended well.
function outcomeError(
  o: ProgramOutcome,
  label: string,
  timeoutMs: number,
): BridgeError | undefined {
  switch (o.stopReason) {
    case 'timeout':
      return new BridgeError(
        'CGI_ERR_TIMEOUT',
        `cgi: ${label} did not finish within ${timeoutMs} ms; its process group was terminated`,
        { status: 504 },
      );
    case 'aborted':
    case 'closed':
      return new BridgeError('CGI_ERR_ABORTED', `cgi: ${label} was stopped: the client went away`, {
        status: 502,
      });
    case 'input':
      return new BridgeError(
        'CGI_ERR_INPUT_FAILED',
        `cgi: ${label} was stopped: the request body failed`,
        { cause: o.inputError, status: isBridgeError(o.inputError) ? o.inputError.status : 400 },
      );
    case 'lingered':
      return undefined; // its output was complete; only the exit status is unknown
    default:
      if (o.code === 0) return undefined;
      return new BridgeError(
        'CGI_ERR_PROGRAM_FAILED',
        `cgi: ${label} ended with ${describeExit(o)} after sending its headers`,
        { status: 502 },
      );
  }
}

// redirectEnviron is the environ of the GET a local redirect asks for (RFC 3875 §6.2.2), the
// path split at `mount`; null when the path is not under it; throws for a malformed path.
function redirectEnviron(
  environ: Environ,
  location: string,
  mount: string,
  depth: number,
): Environ | null {
  const hash = location.indexOf('#');
  const target = splitTarget(hash < 0 ? location : location.slice(0, hash));
  const path = requestPath(target.path);
  const base = mount.replace(/\/+$/, '');
  if (base !== '' && path !== base && !path.startsWith(`${base}/`)) return null;
  const next: Record<string, unknown> = { ...environ };
  // "any message-body attached to the request … may not be available" (RFC 3875 §6.2.2): none is.
  for (const k of [
    'CONTENT_LENGTH',
    'CONTENT_TYPE',
    'HTTP_CONTENT_LENGTH',
    'HTTP_TRANSFER_ENCODING',
    'PATH_TRANSLATED',
  ]) {
    delete next[k];
  }
  next.REQUEST_METHOD = 'GET';
  next.SCRIPT_NAME = base;
  next.PATH_INFO = path.slice(base.length);
  next.QUERY_STRING = target.query;
  next.REQUEST_URI = target.query === '' ? target.path : `${target.path}?${target.query}`;
  next['gateway.input'] = emptyInput();
  next[REDIRECT_DEPTH_KEY] = depth;
  return next as Environ;
}

/**
 * fromCgi makes a gateway app of a CGI program (`{ script }`) or of every executable in a
 * directory (`{ dir }`, resolved by {@link CgiBinDirectory}: the first executable regular file
 * on the path, never outside the directory; 404/403 otherwise, and nothing runs).
 *
 * Per request the program is started by the fork server or with cross-spawn (`options.spawn`;
 * never through a shell), argv per RFC 3875 §4.4,
 * in its own directory, as the leader of its own process group; its environment is the
 * request's meta-variables with SCRIPT_FILENAME, SCRIPT_NAME, PATH_INFO (and PATH_TRANSLATED
 * when a document root is known) plus PATH and the configured names only (see
 * childEnvironment). The request body is pumped to its stdin while its stdout is read, both with
 * backpressure; its head is parsed by CgiResponseParser; its body streams on as it comes. Its
 * stderr goes to gateway.errors, one line at a time, prefixed with its file name.
 *
 * Failures: a program that cannot be started, writes no head, a malformed or incomplete one,
 * or no Content-Type/Status/Location gets 502 (504 when its time ran out) and one log line
 * naming it; a failed exit after the headers cuts the response (the body iterator throws). A
 * local redirect is fetched as a GET from `options.dispatch` (default: this app), at most
 * `maxRedirects` deep (then 500). The program's group is terminated on timeout, on
 * gateway.signal, when the response is given up, and when the program exits leaving
 * background processes behind.
 *
 * nph- scripts (RFC 3875 §5: the name starts with `nph-`) write their own status line; it is
 * parsed into the status and headers like any head. The bytes are not passed to the socket as
 * they are: the front end still frames the response (chunked or Content-Length, Date, keep-alive).
 */
export function fromCgi(target: CgiTarget, options: CgiHostOptions = {}): GatewayApp {
  const hasScript = typeof (target as { script?: unknown }).script === 'string';
  const hasDir = typeof (target as { dir?: unknown }).dir === 'string';
  if (hasScript === hasDir) {
    throw new BridgeError(
      'CGI_ERR_BAD_OPTION',
      'cgi: fromCgi needs exactly one of { script } or { dir }',
    );
  }
  const inherited = inheritedEnvironment(options.hostEnv ?? process.env, options);
  const script = hasScript ? resolve((target as { script: string }).script) : undefined;
  const directory = hasDir ? new CgiBinDirectory((target as { dir: string }).dir) : undefined;
  const fromEnviron = directory !== undefined && options.scriptFilenameFrom === 'environ';
  const timeoutMs = Math.max(0, options.timeoutMs ?? 0);
  const killGraceMs = Math.max(0, options.killGraceMs ?? DEFAULT_KILL_GRACE_MS);
  const serverSoftware = options.serverSoftware ?? 'cgi-bridge';
  const maxRedirects = options.maxRedirects ?? DEFAULT_MAX_REDIRECTS;
  const searchArgs = options.searchArgs ?? true;
  const documentRoot = options.documentRoot?.replace(/\/+$/, '');
  const spawnMode = spawnOption(options.spawn);

  const locate = async (environ: Environ): Promise<Located> => {
    let found: ScriptLocation;
    if (script !== undefined) {
      found = {
        filename: script,
        executable: script,
        scriptName: environ.SCRIPT_NAME,
        pathInfo: environ.PATH_INFO,
      };
    } else if (fromEnviron) {
      let given = stringVar(environ, 'SCRIPT_FILENAME');
      if (given === undefined || !isAbsolute(given)) {
        // fcgiwrap's fallback; Apache's `proxy:fcgi://…` SCRIPT_FILENAME is not a path either.
        const root = stringVar(environ, 'DOCUMENT_ROOT');
        given = root === undefined ? given : `${root.replace(/\/+$/, '')}${environ.SCRIPT_NAME}`;
      }
      const r = await directory!.resolveFilename(given ?? '');
      found = { ...r, scriptName: environ.SCRIPT_NAME, pathInfo: environ.PATH_INFO };
    } else {
      found = await directory!.resolvePath(environ.SCRIPT_NAME, environ.PATH_INFO);
    }
    // RFC 3875 §4.1.6: PATH_TRANSLATED maps PATH_INFO into the document tree, absent without
    // PATH_INFO. Where PATH_INFO is the web server's (script mode, SCRIPT_FILENAME mode), so is
    // its PATH_TRANSLATED; where it was split anew, DOCUMENT_ROOT decides, else there is none.
    const splitAnew = directory !== undefined && !fromEnviron;
    const root =
      documentRoot ??
      (splitAnew ? stringVar(environ, 'DOCUMENT_ROOT')?.replace(/\/+$/, '') : undefined);
    const pathTranslated =
      root !== undefined
        ? found.pathInfo === ''
          ? null
          : root + found.pathInfo
        : splitAnew
          ? null
          : undefined;
    return { ...found, pathTranslated };
  };

  const app: GatewayApp = async (environ, startResponse) => {
    const where = `${environ.REQUEST_METHOD} ${environ.SCRIPT_NAME}${environ.PATH_INFO}`;
    let loc: Located;
    try {
      loc = await locate(environ);
    } catch (e) {
      if (!isBridgeError(e) || (e.status !== 403 && e.status !== 404)) throw e;
      log(environ, `${e.message} (${where})`);
      return respond(startResponse, e.status);
    }
    const signal = environ['gateway.signal'];
    if (signal.aborted) {
      const why = `cgi: the client went away before ${loc.filename} started`;
      throw new BridgeError('CGI_ERR_ABORTED', why, { status: 502 });
    }
    const label = loc.filename;
    const length = bodyLength({
      CONTENT_LENGTH: stringVar(environ, 'CONTENT_LENGTH'),
      HTTP_TRANSFER_ENCODING: stringVar(environ, 'HTTP_TRANSFER_ENCODING'),
    });
    const env = childEnvironment(
      environ,
      {
        SCRIPT_FILENAME: loc.filename,
        SCRIPT_NAME: loc.scriptName,
        PATH_INFO: loc.pathInfo,
        PATH_TRANSLATED: loc.pathTranslated,
      },
      inherited,
      serverSoftware,
    );
    const { CgiProgram } = await loadProgram();
    let program: CgiProgram;
    try {
      program = await CgiProgram.start({
        executable: loc.executable,
        args: searchArgs ? searchArguments(environ.QUERY_STRING) : [],
        cwd: dirname(loc.filename),
        env,
        stdin: length !== 0,
        label,
        errors: environ['gateway.errors'],
        signal,
        timeoutMs,
        killGraceMs,
        // A process that serves one request (CGI) would pay for the fork server's start and
        // never win it back.
        spawn: spawnMode === 'auto' && environ['gateway.run_once'] ? 'direct' : spawnMode,
      });
    } catch (e) {
      log(environ, `cgi: ${label} could not be started: ${errorText(e)}`);
      return respond(startResponse, 502);
    }
    if (length !== 0) void program.pumpStdin(environ['gateway.input']);

    const parser = new CgiResponseParser({
      nph: basename(loc.filename).startsWith('nph-'),
      maxHeaderLine: options.maxHeaderLine,
      maxHeaders: options.maxHeaders,
    });
    let rest: Uint8Array | undefined;
    try {
      while (rest === undefined) {
        const chunk = await program.read();
        rest = chunk === null ? parser.end() : parser.push(chunk);
      }
    } catch (e) {
      return failBeforeHeaders(environ, startResponse, program, e, label);
    }
    const head = parser.head!;
    if (head.kind === 'local-redirect') {
      // The program's output after a local redirect is not used (RFC 3875 §6.2.2); let it end.
      void program.discard(DISCARD_LIMIT);
      return localRedirect(environ, startResponse, head.location!, label);
    }
    try {
      startResponse(`${head.code} ${head.reason}`, head.headers);
    } catch (e) {
      program.close();
      log(environ, `cgi: ${label}: its head was refused: ${errorText(e)}`);
      return respond(startResponse, 502);
    }
    const bodyless = environ.REQUEST_METHOD === 'HEAD' || head.code === 204 || head.code === 304;
    return programBody(program, rest, bodyless, label);
  };

  const failBeforeHeaders = async (
    environ: Environ,
    startResponse: StartResponse,
    program: CgiProgram,
    error: unknown,
    label: string,
  ): Promise<Body> => {
    const code = isBridgeError(error) ? error.code : '';
    const ended = code === 'CGI_ERR_NO_OUTPUT' || code === 'CGI_ERR_HEADERS_INCOMPLETE';
    // A malformed head: the program is stopped at once. An ended output: its exit is awaited
    // for the log line and for the reason (timeout, abort, body failure) it may have been stopped.
    let o: ProgramOutcome | undefined;
    if (ended) o = await program.outcome();
    program.close();
    if (o?.stopReason === 'aborted') return respond(startResponse, 502); // nobody is listening
    if (o?.stopReason === 'timeout') return respond(startResponse, 504); // the program logged it
    if (o?.stopReason === 'input') {
      const e = o.inputError;
      log(environ, `cgi: ${label}: the request body failed: ${errorText(e)}`);
      return respond(startResponse, isBridgeError(e) ? e.status : 400);
    }
    if (o?.spawnError) {
      const errno = o.spawnError.code;
      log(environ, `cgi: ${label} ${describeExit(o)}`);
      return respond(startResponse, errno === 'ENOENT' ? 404 : errno === 'EACCES' ? 403 : 502);
    }
    log(environ, `cgi: ${label}: ${errorText(error)}${o ? ` (${describeExit(o)})` : ''}`);
    return respond(startResponse, 502);
  };

  const localRedirect = (
    environ: Environ,
    startResponse: StartResponse,
    location: string,
    label: string,
  ): Body | Promise<Body> => {
    const previous = environ[REDIRECT_DEPTH_KEY];
    const depth = typeof previous === 'number' ? previous : 0;
    if (depth >= maxRedirects) {
      log(environ, `cgi: ${label}: more than ${maxRedirects} local redirects (last: ${location})`);
      return respond(startResponse, 500);
    }
    let next: Environ | null = null;
    if (options.dispatch !== undefined || !fromEnviron) {
      try {
        next = redirectEnviron(
          environ,
          location,
          options.dispatch ? '' : environ.SCRIPT_NAME,
          depth + 1,
        );
      } catch (e) {
        log(
          environ,
          `cgi: ${label}: bad local redirect ${JSON.stringify(location)}: ${errorText(e)}`,
        );
        return respond(startResponse, 502);
      }
    }
    if (next === null) {
      // Not ours to fetch: the client follows it, as Go's cgi host does without a handler.
      startResponse(`302 ${reasonFor(302)}`, [['Location', location]]);
      return [];
    }
    return (options.dispatch ?? app)(next, startResponse);
  };

  const programBody = (
    program: CgiProgram,
    first: Uint8Array,
    bodyless: boolean,
    label: string,
  ): Body => {
    let started = false;
    async function* chunks(): AsyncGenerator<Uint8Array> {
      started = true;
      if (first.length > 0) yield first;
      for (let c = await program.read(); c !== null; c = await program.read()) yield c;
      const failure = outcomeError(await program.outcome(), label, timeoutMs);
      if (failure) throw failure;
    }
    return Object.assign(chunks(), {
      close(): void {
        // HEAD, 204, 304: the pipeline never reads the body; let the program finish as with a GET.
        if (!started && bodyless && program.stopReason === undefined)
          void program.discard(DISCARD_LIMIT);
        else program.close();
      },
    });
  };

  return app;
}
