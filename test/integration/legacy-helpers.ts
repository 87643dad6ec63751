// Helpers for the legacy-CGI integration tests: `cgi-bridge serve|fastcgi --cgi-bin …` run as a
// real child process (the built CLI), requests with raw, unnormalized paths, canary markers
// that prove a program never ran, and a C program compiled by the test.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { request, type IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  descendantsOf,
  identify,
  isSameProcessAlive,
  sleep,
  type ProcessIdentity,
} from '../harness/process-utils.js';

const execFileP = promisify(execFile);

/** ROOT is the repository. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** BIN is the built command line (npm test builds dist/ first). */
export const BIN = join(ROOT, 'bin/cgi-bridge.js');
/** FIXTURES is test/fixtures. */
export const FIXTURES = join(ROOT, 'test/fixtures');

/** CliProcess is `cgi-bridge serve|fastcgi …` running as a child process. */
export interface CliProcess {
  child: ChildProcess;
  pid: number;
  /** address is where it said it serves: `http://127.0.0.1:PORT` or `unix:/path`. */
  address: string;
  /** url is `address` without a trailing slash (HTTP only). */
  url: string;
  /** lines are its stderr lines so far. */
  readonly lines: string[];
  /** seen are the process and every descendant seen so far (workers, CGI programs). */
  readonly seen: Map<string, ProcessIdentity>;
  /** record adds the current descendants to `seen`. */
  record(): Promise<void>;
  /** stop sends SIGTERM, waits for the exit (SIGKILL after 15 s) and returns the exit code. */
  stop(): Promise<number | null>;
}

export interface CliOptions {
  /** env is the child's whole environment (default: PATH only). */
  env?: Record<string, string>;
  cwd?: string;
}

/**
 * startCli runs `node bin/cgi-bridge.js ARGS` and resolves once it logs `serving … on ADDR`;
 * it rejects with its stderr when it exits first. Whatever is left is killed when `t` ends
 * (with `t` null, the caller stops it).
 */
export async function startCli(
  t: TestContext | null,
  args: string[],
  options: CliOptions = {},
): Promise<CliProcess> {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: options.cwd ?? ROOT,
    env: options.env ?? { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const lines: string[] = [];
  const seen = new Map<string, ProcessIdentity>();
  const see = (id: ProcessIdentity | undefined): void => {
    if (id !== undefined) seen.set(`${id.pid}:${id.startTime}`, id);
  };
  see(identify(child.pid!));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  let partial = '';
  let onLine = (): void => undefined;
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (s: string) => {
    const parts = (partial + s).split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts);
    onLine();
  });
  const record = async (): Promise<void> => {
    for (const d of await descendantsOf(child.pid!)) see(d);
  };
  let stopped: Promise<number | null> | undefined;
  const stop = (): Promise<number | null> => {
    stopped ??= (async () => {
      await record().catch(() => undefined);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const code = await Promise.race([exited, sleep(15_000).then(() => 'late' as const)]);
      // By identity (pid + start time): a pid that was reused since is someone else's process.
      for (const id of seen.values()) if (isSameProcessAlive(id)) process.kill(id.pid, 'SIGKILL');
      return code === 'late' ? null : code;
    })();
    return stopped;
  };
  t?.after(() => stop());
  const address = await new Promise<string>((resolve, reject) => {
    const check = (): void => {
      for (const line of lines) {
        const m = / on (http:\/\/\S+|unix:\S+)/.exec(line);
        if (m && /serving /.test(line)) {
          resolve(m[1]!);
          return;
        }
      }
    };
    onLine = check;
    check();
    void exited.then((code) =>
      reject(new Error(`cgi-bridge ${args.join(' ')} exited with ${code}:\n${lines.join('\n')}`)),
    );
    setTimeout(
      () => reject(new Error(`cgi-bridge ${args.join(' ')} did not start:\n${lines.join('\n')}`)),
      30_000,
    ).unref();
  });
  return {
    child,
    pid: child.pid!,
    address,
    url: address.replace(/\/$/, ''),
    lines,
    seen,
    record,
    stop,
  };
}

/** RunResult is a finished CLI run that was not a server. */
export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** runCli runs `node bin/cgi-bridge.js ARGS` to its end (usage errors and the like). */
export function runCli(args: string[], env?: Record<string, string>): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: ROOT,
      env: env ?? { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** RawResponse is a response to {@link rawGet}. */
export interface RawResponse {
  status: number;
  reason: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/**
 * rawGet sends a request with `path` exactly as given (node's http client does not normalize
 * a path passed this way, unlike a URL string: `..`, `%2e%2e`, `%2f` and `%00` reach the server).
 */
export function rawGet(
  base: string,
  path: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<RawResponse> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        path,
        method: options.method ?? 'GET',
        headers: {
          ...(options.body !== undefined
            ? { 'content-length': String(Buffer.byteLength(options.body)) }
            : {}),
          ...options.headers,
        },
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.once('error', reject);
        res.once('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            reason: res.statusMessage ?? '',
            headers: res.headers,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
      },
    );
    req.setTimeout(30_000, () => req.destroy(new Error(`no answer to ${path} in 30 s`)));
    req.once('error', reject);
    req.end(options.body);
  });
}

/** canaries lists the markers canary programs left in `dir` (`canary-NAME-ran`). */
export function canaries(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.startsWith('canary-'))
    .sort();
}

/** compileC compiles one C file with gcc into `out` (mode 0755); false when gcc is missing. */
export async function compileC(source: string, out: string): Promise<boolean> {
  try {
    await execFileP('gcc', ['-O2', '-Wall', '-Werror', '-o', out, source]);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
  return true;
}

/** waitGone waits until none of `ids` is alive (up to `ms`); it returns the survivors. */
export async function waitGone(
  ids: Iterable<ProcessIdentity>,
  ms = 10_000,
): Promise<ProcessIdentity[]> {
  const list = [...ids];
  const deadline = Date.now() + ms;
  for (;;) {
    const alive = list.filter(isSameProcessAlive);
    if (alive.length === 0 || Date.now() > deadline) return alive;
    await sleep(50);
  }
}
