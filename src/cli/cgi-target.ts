// The CLI's CGI host targets (the web-server side of RFC 3875): `--cgi-bin DIR`,
// `--cgi-script FILE` and fastcgi's `--cgi-root DIR` made into one gateway app with fromCgi, for
// `serve` and `fastcgi` alike. The spec is plain JSON, so that each pre-fork worker rebuilds the
// same app (createTarget) where an app.js TARGET would be imported.
import { accessSync, constants, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { reasonFor } from '../cgi/cgi-response.js';
import type { CgiSpawn } from '../cgi/spawn-options.js';
import { fromCgi } from '../cgi/host.js';
import { BridgeError } from '../errors.js';
import type { Body, GatewayApp, StartResponse } from '../gateway/types.js';
import type { LoadedTarget } from '../server/load-target.js';
import type { CgiArgs } from './options.js';

/** DEFAULT_CGI_PREFIX is where `--cgi-bin DIR` is mounted without `--cgi-prefix`. */
export const DEFAULT_CGI_PREFIX = '/cgi-bin';

/**
 * DEFAULT_CGI_TIMEOUT_MS bounds a CGI program's wall time when `--timeout` is not given: 60 s,
 * nginx's `fastcgi_read_timeout` and Apache's `Timeout`, after which they give up anyway.
 */
export const DEFAULT_CGI_TIMEOUT_MS = 60_000;

/** CGI_TARGET_MODULE is this module, which a pre-fork worker imports to call {@link createTarget}. */
export const CGI_TARGET_MODULE = import.meta.url;

/**
 * CgiTargetKind says what the program is: `dir` (--cgi-bin: the path is walked below the
 * directory, Apache's way), `script` (--cgi-script: one program) or `root` (--cgi-root: the web
 * server's SCRIPT_FILENAME, fcgiwrap's way).
 */
export type CgiTargetKind = 'dir' | 'script' | 'root';

/** CgiTargetSpec is a CGI target as JSON: what {@link buildCgiApp} builds and workers receive. */
export interface CgiTargetSpec {
  kind: CgiTargetKind;
  /** path is the directory or program, absolute. */
  path: string;
  /**
   * prefix is the URL path the program or directory is mounted at ('' is the root): the
   * request's SCRIPT_NAME + PATH_INFO is split there anew, whatever split the front end made.
   * null keeps the front end's split (a --cgi-script behind a web server, --cgi-root).
   */
  prefix: string | null;
  /** inheritEnv names the variables CGI programs get from cgi-bridge's environment. */
  inheritEnv: string[];
  /** env are the `--env` pairs, set for every CGI program. */
  env: [string, string][];
  /** timeoutMs bounds each program's wall time (0: none). */
  timeoutMs: number;
  /** spawn is `--cgi-spawn` (fromCgi's `spawn`); absent: fromCgi's default. */
  spawn?: CgiSpawn;
}

/** CgiTargetArgs are what {@link cgiTargetSpec} reads from a command line. */
export interface CgiTargetArgs extends CgiArgs {
  target?: string;
  env?: [string, string][];
}

function badTarget(message: string): BridgeError {
  return new BridgeError('CLI_ERR_BAD_TARGET', `cgi-bridge: ${message}`);
}

/**
 * checkTargetChoice is the yargs `.check()` of `serve` and `fastcgi`: exactly one of TARGET,
 * --cgi-bin, --cgi-script (and --cgi-root where `withRoot`), and the CGI-only options only with
 * one of those. It throws an Error with the usage message, or returns true.
 */
export function checkTargetChoice(args: CgiTargetArgs, withRoot: boolean): true {
  const forms = [
    args.target !== undefined ? 'TARGET' : undefined,
    args.cgiBin !== undefined ? '--cgi-bin' : undefined,
    args.cgiScript !== undefined ? '--cgi-script' : undefined,
    withRoot && args.cgiRoot !== undefined ? '--cgi-root' : undefined,
  ].filter((f): f is string => f !== undefined);
  const choices = `TARGET (app.js[:export]), --cgi-bin DIR, --cgi-script FILE${withRoot ? ' or --cgi-root DIR' : ''}`;
  if (forms.length === 0) throw new Error(`no TARGET: give ${choices}`);
  if (forms.length > 1)
    throw new Error(`${forms.join(' and ')} exclude each other: give one of ${choices}`);
  if (forms[0] === 'TARGET') {
    const keys = {
      'cgi-prefix': 'cgiPrefix',
      'inherit-env': 'inheritEnv',
      'cgi-spawn': 'cgiSpawn',
    };
    for (const [flag, key] of Object.entries(keys) as [string, keyof CgiTargetArgs][]) {
      if (args[key] !== undefined) throw new Error(`--${flag} needs --cgi-bin or --cgi-script`);
    }
  }
  if (forms[0] === '--cgi-root' && args.cgiPrefix !== undefined) {
    throw new Error('--cgi-prefix does not apply to --cgi-root: the web server names the program');
  }
  return true;
}

function checkPath(flag: string, path: string, want: 'directory' | 'program'): void {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw badTarget(`${flag} ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  if (want === 'directory') {
    if (!st.isDirectory()) throw badTarget(`${flag} ${path} is not a directory`);
    return;
  }
  if (!st.isFile()) throw badTarget(`${flag} ${path} is not a regular file`);
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw badTarget(`${flag} ${path} is not executable (chmod +x it)`);
  }
}

/**
 * cgiTargetSpec reads a CGI target from parsed arguments (after --chdir, so relative paths are
 * resolved where the user asked): undefined when the command has an app.js TARGET instead. The
 * directory must exist, the program be an executable regular file: otherwise
 * `CLI_ERR_BAD_TARGET`, before anything listens. `timeoutMs` undefined means
 * {@link DEFAULT_CGI_TIMEOUT_MS}.
 */
export function cgiTargetSpec(
  args: CgiTargetArgs,
  timeoutMs: number | undefined,
): CgiTargetSpec | undefined {
  const common = {
    inheritEnv: args.inheritEnv ?? [],
    env: args.env ?? [],
    timeoutMs: timeoutMs ?? DEFAULT_CGI_TIMEOUT_MS,
    ...(args.cgiSpawn !== undefined ? { spawn: args.cgiSpawn } : {}),
  };
  if (args.cgiBin !== undefined) {
    const path = resolve(args.cgiBin);
    checkPath('--cgi-bin', path, 'directory');
    return { kind: 'dir', path, prefix: args.cgiPrefix ?? DEFAULT_CGI_PREFIX, ...common };
  }
  if (args.cgiScript !== undefined) {
    const path = resolve(args.cgiScript);
    checkPath('--cgi-script', path, 'program');
    return { kind: 'script', path, prefix: args.cgiPrefix ?? null, ...common };
  }
  if (args.cgiRoot !== undefined) {
    const path = resolve(args.cgiRoot);
    checkPath('--cgi-root', path, 'directory');
    return { kind: 'root', path, prefix: null, ...common };
  }
  return undefined;
}

/** describeCgiTarget names a target in start-up lines: `--cgi-bin /srv/cgi at /cgi-bin/`. */
export function describeCgiTarget(spec: CgiTargetSpec): string {
  const flag =
    spec.kind === 'dir' ? '--cgi-bin' : spec.kind === 'script' ? '--cgi-script' : '--cgi-root';
  return spec.prefix === null ? `${flag} ${spec.path}` : `${flag} ${spec.path} at ${spec.prefix}/`;
}

function notFound(startResponse: StartResponse): Body {
  startResponse(`404 ${reasonFor(404)}`, [['Content-Type', 'text/plain; charset=utf-8']]);
  return [`404 ${reasonFor(404)}\n`];
}

/**
 * mountAt serves `app` at `prefix`: the request's whole path (SCRIPT_NAME + PATH_INFO, however
 * the HTTP server or nginx split it) is split anew into SCRIPT_NAME = prefix and PATH_INFO = the
 * rest, which is what fromCgi({ dir }) walks. A path outside the prefix is a 404.
 */
export function mountAt(prefix: string, app: GatewayApp): GatewayApp {
  if (prefix === '') {
    return (environ, startResponse) =>
      app(
        { ...environ, SCRIPT_NAME: '', PATH_INFO: environ.SCRIPT_NAME + environ.PATH_INFO },
        startResponse,
      );
  }
  return (environ, startResponse) => {
    const path = environ.SCRIPT_NAME + environ.PATH_INFO;
    // Not logged, like the HTTP front end's own 404 outside its mount point (a favicon.ico …).
    if (path !== prefix && !path.startsWith(`${prefix}/`)) return notFound(startResponse);
    return app(
      { ...environ, SCRIPT_NAME: prefix, PATH_INFO: path.slice(prefix.length) },
      startResponse,
    );
  };
}

/**
 * buildCgiApp makes the gateway app of a CGI target: fromCgi over the directory or program with
 * the spec's environment allow-list (PATH, `inheritEnv` from `hostEnv`, `env`) and timeout,
 * mounted at its prefix (see {@link mountAt}). `root` runs the web server's SCRIPT_FILENAME
 * inside the directory (fromCgi's `scriptFilenameFrom: 'environ'`).
 */
export function buildCgiApp(
  spec: CgiTargetSpec,
  hostEnv: Readonly<Record<string, string | undefined>> = process.env,
): GatewayApp {
  const options = {
    inheritEnv: spec.inheritEnv,
    env: Object.fromEntries(spec.env),
    timeoutMs: spec.timeoutMs,
    hostEnv,
    spawn: spec.spawn,
  };
  const app =
    spec.kind === 'script'
      ? fromCgi({ script: spec.path }, options)
      : fromCgi(
          { dir: spec.path },
          spec.kind === 'root' ? { ...options, scriptFilenameFrom: 'environ' } : options,
        );
  return spec.prefix === null ? app : mountAt(spec.prefix, app);
}

function isStringPair(v: unknown): v is [string, string] {
  return Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === 'string');
}

/** parseCgiTargetSpec checks that JSON from another process is a {@link CgiTargetSpec}. */
export function parseCgiTargetSpec(value: unknown): CgiTargetSpec {
  const v = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  const ok =
    (v.kind === 'dir' || v.kind === 'script' || v.kind === 'root') &&
    typeof v.path === 'string' &&
    (v.prefix === null || typeof v.prefix === 'string') &&
    Array.isArray(v.inheritEnv) &&
    v.inheritEnv.every((n) => typeof n === 'string') &&
    Array.isArray(v.env) &&
    v.env.every(isStringPair) &&
    typeof v.timeoutMs === 'number' &&
    (v.spawn === undefined || v.spawn === 'auto' || v.spawn === 'helper' || v.spawn === 'direct');
  if (!ok) throw badTarget(`not a CGI target spec: ${JSON.stringify(value)}`);
  return v as unknown as CgiTargetSpec;
}

/**
 * createTarget is the app factory a pre-fork worker calls with the spec the master sent
 * (worker-protocol.ts, `factory`): the same app as in the master, built in the worker.
 */
export function createTarget(options: unknown): LoadedTarget {
  const spec = parseCgiTargetSpec(options);
  return { app: buildCgiApp(spec), specifier: describeCgiTarget(spec) };
}
