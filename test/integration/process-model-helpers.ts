// Helpers for the process-model tests: a one-request FastCGI client built on the project's own
// codec, and `cgi-bridge fastcgi` run as a real process with its log lines and pids followed.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { encodeParams } from '../../src/fastcgi/params.js';
import {
  FCGI_END_REQUEST,
  FCGI_PARAMS,
  FCGI_RESPONDER,
  FCGI_STDERR,
  FCGI_STDIN,
  FCGI_STDOUT,
} from '../../src/fastcgi/protocol.js';
import {
  RecordDecoder,
  decodeEndRequestBody,
  encodeBeginRequest,
  encodeStream,
} from '../../src/fastcgi/records.js';
import { descendantsOf, isProcessAlive, sleep } from '../harness/process-utils.js';

/** ROOT is the repository. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** BIN is the built command line (npm test builds dist/ first). */
export const BIN = join(ROOT, 'bin/cgi-bridge.js');
/** APP is the process-model test app. */
export const APP = join(ROOT, 'test/fixtures/apps/process-model-app.js');

/** FcgiTarget is where a request goes: TCP or a unix socket. */
export type FcgiTarget = { host: string; port: number } | { path: string };

/** FcgiResult is a decoded FastCGI response. */
export interface FcgiResult {
  status: number;
  headers: Record<string, string>;
  body: string;
  stderr: string;
  /** appStatus is FCGI_END_REQUEST's app status; undefined when the connection closed without one. */
  appStatus: number | undefined;
}

/**
 * fcgiRequest sends one FastCGI request for `path` (with `?query`) on a new connection and
 * resolves with the response; it rejects when the connection fails or closes before
 * FCGI_END_REQUEST (with the error's code, or `ECLOSED`), or after `timeoutMs`.
 */
export function fcgiRequest(
  target: FcgiTarget,
  path: string,
  timeoutMs = 15_000,
): Promise<FcgiResult> {
  const [pathInfo, query = ''] = path.split('?');
  const params: [string, string][] = [
    ['REQUEST_METHOD', 'GET'],
    ['SCRIPT_NAME', ''],
    ['PATH_INFO', pathInfo!],
    ['QUERY_STRING', query],
    ['REQUEST_URI', path],
    ['SERVER_NAME', 'localhost'],
    ['SERVER_PORT', '80'],
    ['SERVER_PROTOCOL', 'HTTP/1.1'],
    ['GATEWAY_INTERFACE', 'CGI/1.1'],
  ];
  const request = Buffer.concat([
    encodeBeginRequest(1, FCGI_RESPONDER, 0),
    encodeStream(FCGI_PARAMS, 1, encodeParams(params), { end: true }),
    encodeStream(FCGI_STDIN, 1, Buffer.alloc(0), { end: true }),
  ]);
  return new Promise((resolve, reject) => {
    const socket = 'path' in target ? connect(target.path) : connect(target.port, target.host);
    const decoder = new RecordDecoder();
    const stdout: Buffer[] = [];
    let stderr = '';
    let appStatus: number | undefined;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        Object.assign(new Error(`no response to ${path} within ${timeoutMs} ms`), {
          code: 'ETIMEDOUT',
        }),
      );
    }, timeoutMs);
    socket.on('connect', () => socket.write(request));
    socket.on('data', (chunk: Buffer) => {
      decoder.push(chunk);
      for (const r of decoder) {
        if (r.type === FCGI_STDOUT) stdout.push(Buffer.from(r.content));
        else if (r.type === FCGI_STDERR) stderr += Buffer.from(r.content).toString();
        else if (r.type === FCGI_END_REQUEST) appStatus = decodeEndRequestBody(r.content).appStatus;
      }
    });
    socket.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      if (appStatus === undefined) {
        reject(
          Object.assign(new Error(`connection closed without a response to ${path}`), {
            code: 'ECLOSED',
          }),
        );
        return;
      }
      const text = Buffer.concat(stdout).toString();
      const split = text.indexOf('\r\n\r\n');
      const head = split < 0 ? text : text.slice(0, split);
      const headers: Record<string, string> = {};
      for (const line of head.split('\r\n')) {
        const colon = line.indexOf(':');
        if (colon > 0) headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
      }
      const status = Number((headers.status ?? '200').split(' ')[0]);
      resolve({ status, headers, body: split < 0 ? '' : text.slice(split + 4), stderr, appStatus });
    });
  });
}

/** pidOf asks the app for the pid of the worker that answers. */
export async function pidOf(target: FcgiTarget): Promise<number> {
  const r = await fcgiRequest(target, '/pid');
  if (r.status !== 200) throw new Error(`/pid answered ${r.status}`);
  return Number(r.body.trim());
}

/**
 * fdOf is the descriptor of a listening server or a socket of this process, to hand to a
 * child as fd 0 or fd 3 (node's stdio takes a number; a net.Server at index 0 is refused).
 */
export function fdOf(handleOwner: Server | Socket): number {
  const fd = (handleOwner as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('no file descriptor');
  return fd;
}

/** RunningFastcgi is `cgi-bridge fastcgi …` running as a process. */
export interface RunningFastcgi {
  child: ChildProcess;
  pid: number;
  /** lines are stderr's lines so far. */
  readonly lines: string[];
  /** exited resolves with the exit code and signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  /** waitFor resolves with the first stderr line matching `re` (from `from` on), failing after `ms`. */
  waitFor(re: RegExp, ms?: number, from?: number): Promise<string>;
  /** workerPids are the live worker processes now (the master's descendants). */
  workerPids(): Promise<number[]>;
  /** seen are every worker pid ever seen (for the "nothing left running" check). */
  readonly seen: Set<number>;
  /** kill stops everything that is left: SIGKILL to the master and every pid seen. */
  kill(): Promise<void>;
}

/** SpawnOptions tune {@link startFastcgi}. */
export interface SpawnOptions {
  env?: Record<string, string>;
  /** stdin is the child's fd 0 (a descriptor of this process, see {@link fdOf}); default ignored. */
  stdin?: number;
  /** extra are more descriptors, from fd 3 on (systemd socket activation). */
  extra?: number[];
  /** shell runs the command through `sh -c 'LISTEN_PID=$$ exec …'`, as systemd sets LISTEN_PID. */
  listenPidFromShell?: boolean;
}

const running = new Set<RunningFastcgi>();

/**
 * startFastcgi runs `node bin/cgi-bridge.js fastcgi ARGS`; whatever is left of it is killed
 * when test `t` ends.
 */
export function startFastcgi(
  t: TestContext,
  args: string[],
  options: SpawnOptions = {},
): RunningFastcgi {
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', ...options.env };
  const argv = [BIN, 'fastcgi', ...args];
  const stdio: StdioOptions = [options.stdin ?? 'ignore', 'pipe', 'pipe', ...(options.extra ?? [])];
  const child = options.listenPidFromShell
    ? spawn('/bin/sh', ['-c', 'LISTEN_PID=$$ exec "$0" "$@"', process.execPath, ...argv], {
        cwd: ROOT,
        env,
        stdio,
      })
    : spawn(process.execPath, argv, { cwd: ROOT, env, stdio });
  const lines: string[] = [];
  const seen = new Set<number>();
  const waiters = new Set<() => void>();
  let partial = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (s: string) => {
    const parts = (partial + s).split('\n');
    partial = parts.pop() ?? '';
    for (const line of parts) {
      lines.push(line);
      for (const m of line.matchAll(/process-model-app: startup (\d+)/g)) seen.add(Number(m[1]));
    }
    for (const w of waiters) w();
  });
  child.stdout!.resume();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>(
    (resolve) => child.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  const run: RunningFastcgi = {
    child,
    pid: child.pid!,
    lines,
    exited,
    seen,
    waitFor(re, ms = 30_000, from = 0) {
      return new Promise((resolve, reject) => {
        const check = (): boolean => {
          const hit = lines.slice(from).find((l) => re.test(l));
          if (hit === undefined) return false;
          waiters.delete(check as () => void);
          clearTimeout(timer);
          resolve(hit);
          return true;
        };
        const timer = setTimeout(() => {
          waiters.delete(check as () => void);
          reject(
            new Error(`no stderr line matching ${re} within ${ms} ms; got:\n${lines.join('\n')}`),
          );
        }, ms);
        if (!check()) waiters.add(check as () => void);
      });
    },
    async workerPids() {
      const pids = (await descendantsOf(child.pid!)).map((p) => p.pid);
      for (const p of pids) seen.add(p);
      return pids;
    },
    async kill() {
      for (const pid of [child.pid!, ...seen]) {
        if (isProcessAlive(pid)) process.kill(pid, 'SIGKILL');
      }
      running.delete(run);
    },
  };
  running.add(run);
  t.after(async () => {
    await run.workerPids().catch(() => []);
    await run.kill();
  });
  return run;
}

/** killAll kills whatever is left of every run (the file's `after` hook, a last resort). */
export async function killAll(): Promise<void> {
  for (const run of [...running]) {
    await run.workerPids().catch(() => []);
    await run.kill();
  }
}

/** waitUntil polls `predicate` every 50 ms, failing after `ms`. */
export async function waitUntil(
  predicate: () => boolean | Promise<boolean>,
  ms: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** listeningPort extracts the port of a `serving … on 127.0.0.1:PORT` line. */
export function portOf(line: string): number {
  const m = /:(\d+)(?:[ ,)]|$)/.exec(line.replace(/^.* on /, ''));
  if (!m) throw new Error(`no port in ${JSON.stringify(line)}`);
  return Number(m[1]);
}
