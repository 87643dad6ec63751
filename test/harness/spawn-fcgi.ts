// spawn-fcgi: binds a socket, forks N copies of a FastCGI app with the listen socket on fd 0,
// writes their pids (-P) and exits. Used directly by tests and by nginx for fcgiwrap.
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { realpath, rm, stat } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { cleanEnv, forgetAtExit, stopAtExit, tailOf } from './managed-server.js';
import { parseTarget, type ListenTarget } from './net-utils.js';
import {
  descendantsOf,
  identify,
  isSameProcessAlive,
  readPidFile,
  sleep,
  stopProcesses,
  sweepSessions,
  type ProcessIdentity,
} from './process-utils.js';
import { assertUserCanUse, runUser } from './run-user.js';
import { CLEAN_PATH, findTool, toolPath } from './tools.js';
import type { World } from './world.js';

/** Options of {@link startSpawnFcgi}. */
export interface SpawnFcgiOptions {
  /** Where the app listens: `tcp:127.0.0.1:PORT` or `unix:/abs/path.sock`. */
  listen: ListenTarget;
  /** Number of app processes (`-F`, default 1). */
  children?: number;
  /** The app and its arguments; a bare command[0] is looked up in PATH (spawn-fcgi would not). */
  command: string[];
  /** Extra environment for the app, on top of PATH=/usr/local/sbin:…:/bin and LANG=C. */
  env?: Record<string, string>;
  /** Unix socket mode (`-M`, default 0o666). */
  socketMode?: number;
  /** State dir name prefix in the world (default `spawn-fcgi`). */
  name?: string;
}

/** SpawnedFcgiApp is a FastCGI app running under spawn-fcgi. */
export interface SpawnedFcgiApp {
  readonly name: string;
  /** The listen target it was started with. */
  readonly listen: ListenTarget;
  /** The app processes' pids (spawn-fcgi itself has exited). */
  readonly pids: readonly number[];
  /** State dir (pid file, spawn-fcgi.log). */
  readonly state: string;
  /** The absolute path that was exec'd. */
  readonly executable: string;
  /** processes lists the live app pids and their descendants. */
  processes(): Promise<number[]>;
  /** errorLog returns spawn-fcgi's output and whatever the apps wrote to stdout/stderr. */
  errorLog(): Promise<string>;
  /** stop SIGTERMs the app pids (SIGKILL after ~5 s) and removes a unix socket. Idempotent. */
  stop(): Promise<void>;
}

/** resolveCommand turns command[0] into an absolute executable path (PATH search). */
export async function resolveCommand(
  cmd0: string | undefined,
  env: Record<string, string> | undefined,
): Promise<string> {
  if (cmd0 === undefined || cmd0 === '') throw new Error('empty command');
  const search = [env?.PATH, process.env.PATH, CLEAN_PATH].filter(Boolean).join(delimiter);
  const found = findTool(cmd0, search);
  if (found === undefined) throw new Error(`command ${cmd0} not found or not executable`);
  return found;
}

/**
 * startSpawnFcgi runs `command` under spawn-fcgi on `listen`. command[0] is resolved to an
 * absolute path first (spawn-fcgi execs without a PATH search and would report a missing
 * program only as "child exited with: 2"). As root the app runs as www-data (`-u/-g`, a unix
 * socket is chowned with `-U/-G`). The environment is clean (`env -i`-like) plus `opts.env`.
 * Waits until the socket exists, then re-checks after 0.3 s that every child survived.
 */
export async function startSpawnFcgi(
  world: World,
  opts: SpawnFcgiOptions,
): Promise<SpawnedFcgiApp> {
  const target = parseTarget(opts.listen);
  const children = opts.children ?? 1;
  const exe = await resolveCommand(opts.command[0], opts.env);
  const user = await runUser();
  await assertUserCanUse(user, { file: exe });
  const spawnFcgi = toolPath('spawn-fcgi');
  const state = await world.makeStateDir(opts.name ?? 'spawn-fcgi');
  const pidFile = join(state, 'spawn-fcgi.pid');
  const log = join(state, 'spawn-fcgi.log');

  const args = ['-F', String(children), '-P', pidFile, '-d', state];
  if (target.kind === 'tcp') {
    args.push('-a', target.host, '-p', String(target.port));
  } else {
    await rm(target.path, { force: true });
    args.push('-s', target.path, '-M', (opts.socketMode ?? 0o666).toString(8));
  }
  if (user !== undefined) {
    args.push('-u', user.name, '-g', user.group);
    if (target.kind === 'unix') args.push('-U', user.name, '-G', user.group);
  }
  args.push('--', exe, ...opts.command.slice(1));

  const fd = openSync(log, 'a');
  let code: number | null;
  try {
    const child = spawn(spawnFcgi, args, {
      cwd: state,
      env: cleanEnv(opts.env),
      stdio: ['ignore', fd, fd],
    });
    code = await new Promise<number | null>((resolve) => {
      child.once('exit', (c) => resolve(c));
      child.once('error', () => resolve(-1));
    });
  } finally {
    closeSync(fd);
  }
  const pids = await readPidFile(pidFile);
  let ids = pids.map(identify).filter((x): x is ProcessIdentity => x !== undefined);
  const fail = async (why: string): Promise<never> => {
    await stopProcesses(ids, { graceMs: 2000 });
    await sweepSessions(ids);
    if (target.kind === 'unix') await rm(target.path, { force: true });
    throw new Error(`spawn-fcgi ${opts.command.join(' ')}: ${why}\n${await tailOf([log])}`);
  };
  if (code !== 0) await fail(`spawn-fcgi exited with ${code}`);
  if (target.kind === 'unix') {
    const isSock = await stat(target.path).then(
      (s) => s.isSocket(),
      () => false,
    );
    if (!isSock) await fail(`no socket at ${target.path}`);
  }
  // spawn-fcgi only watches each child briefly: make sure they all survived
  await sleep(300);
  if (ids.length !== children || !ids.every(isSameProcessAlive)) {
    await fail(`expected ${children} live children, got pids [${pids.join(',')}]`);
  }
  stopAtExit(ids);
  const realExe = await realpath(exe);
  const recorded: ProcessIdentity[] = [];
  for (const id of ids) recorded.push(...(await descendantsOf(id.pid)));
  let stopping: Promise<void> | undefined;

  const app: SpawnedFcgiApp = {
    name: opts.name ?? 'spawn-fcgi',
    listen: opts.listen,
    pids,
    state,
    executable: realExe,
    async processes(): Promise<number[]> {
      const out: number[] = [];
      for (const id of ids.filter(isSameProcessAlive)) {
        out.push(id.pid);
        for (const d of await descendantsOf(id.pid)) out.push(d.pid);
      }
      return out;
    },
    errorLog: () => tailOf([log], Number.MAX_SAFE_INTEGER),
    stop(): Promise<void> {
      stopping ??= (async () => {
        await stopProcesses(ids, { extra: recorded });
        await sweepSessions(ids); // each app leads its own session (spawn-fcgi calls setsid)
        forgetAtExit(ids);
        ids = [];
        if (target.kind === 'unix') await rm(target.path, { force: true });
      })();
      return stopping;
    },
  };
  return world.track(app);
}
