// The lifecycle shared by every web server the harness starts: pick a free port, write the
// config, start the server in the foreground (as a child of the test process, so it is reaped
// and dies with a Ctrl-C of the test run), wait for the port, and stop it by PID.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort, waitForListen } from './net-utils.js';
import {
  descendantsOf,
  identify,
  isSameProcessAlive,
  readPidFile,
  sleep,
  stopProcesses,
  type ProcessIdentity,
} from './process-utils.js';
import { CLEAN_PATH } from './tools.js';
import type { World } from './world.js';

/** RunningServer is a web server started by the harness. */
export interface RunningServer {
  /** `apache`, `lighttpd` or `nginx`. */
  readonly name: string;
  /** Base URL without a trailing slash, e.g. `http://127.0.0.1:40123`. */
  readonly url: string;
  readonly port: number;
  /** The instance's state dir (config, pid file, logs, run/, tmp/, htdocs/). */
  readonly state: string;
  /** The generated config file. */
  readonly configFile: string;
  /** The master process's pid (from the pid file). */
  readonly pid: number;
  /** processes lists the live pids of the master, its descendants and helpers (fcgiwrap). */
  processes(): Promise<number[]>;
  /** errorLog returns the server's error log(s) and its captured stdout/stderr. */
  errorLog(): Promise<string>;
  /** stop sends SIGTERM (then SIGKILL after ~5 s) by pid; calling it again is a no-op. */
  stop(): Promise<void>;
}

/** cleanEnv is the environment servers start with (`env -i` style) plus `extra`. */
export function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: CLEAN_PATH, LANG: 'C', ...extra };
}

/** What a server's build step produces for one start attempt. */
export interface LaunchPlan {
  binary: string;
  args: string[];
  env: Record<string, string>;
  pidFile: string;
  configFile: string;
  /** Error logs to show in errorLog() and in start failures (the start log is added). */
  logFiles: string[];
}

/** Helpers a server owns besides its master (nginx's fcgiwrap), stopped after it. */
export interface Helper {
  processes(): Promise<number[]>;
  stop(): Promise<void>;
}

// Safety net: if a test forgets to stop a server, SIGTERM it when the test process exits.
const live = new Set<ProcessIdentity>();
process.once('exit', () => {
  for (const id of live) {
    if (!isSameProcessAlive(id)) continue;
    try {
      process.kill(id.pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
});

/** tailOf returns the last `n` lines of each file, headed like `tail` does. */
export async function tailOf(files: string[], n = 20): Promise<string> {
  const parts: string[] = [];
  for (const f of files) {
    let text: string;
    try {
      text = await readFile(f, 'utf8');
    } catch {
      continue;
    }
    if (text.trim() === '') continue;
    const lines = text.trimEnd().split('\n');
    parts.push(`==> ${f} <==\n${lines.slice(-n).join('\n')}`);
  }
  return parts.join('\n');
}

const IN_USE = /address already in use|could not bind|EADDRINUSE/i;

interface Attempt {
  child: ChildProcess;
  exited: Promise<void>;
  hasExited: () => boolean;
}

function launch(plan: LaunchPlan, startLog: string, cwd: string): Attempt {
  const fd = openSync(startLog, 'a');
  let done = false;
  let child: ChildProcess;
  try {
    child = spawn(plan.binary, plan.args, { cwd, env: plan.env, stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd);
  }
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      done = true;
      resolve();
    });
    child.once('error', () => {
      done = true;
      resolve();
    });
  });
  return { child, exited, hasExited: () => done };
}

/**
 * startManaged runs `build(port)` for a fresh free port, starts the server in the foreground,
 * and waits (up to `timeoutMs`) for the port to accept connections. A start that fails because
 * the port was taken meanwhile is retried with another port. On failure it throws with the tail
 * of the logs. The server is tracked by `world`.
 */
export async function startManaged(
  world: World,
  name: string,
  state: string,
  build: (port: number) => Promise<LaunchPlan>,
  helper?: Helper,
  timeoutMs = 10_000,
): Promise<RunningServer> {
  const startLog = join(state, 'start.log');
  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const plan = await build(port);
    const a = launch(plan, startLog, state);
    const ok = await waitForListen(`tcp:127.0.0.1:${port}`, {
      timeoutMs,
      alive: () => !a.hasExited(),
    });
    let pid = a.child.pid ?? 0;
    if (ok) {
      // The pid file is written before the port is bound; prefer it (the brief's contract).
      for (let i = 0; i < 20; i++) {
        const fromFile = (await readPidFile(plan.pidFile))[0];
        if (fromFile !== undefined) {
          pid = fromFile;
          break;
        }
        await sleep(50);
      }
    }
    const master = identify(pid);
    if (ok && master !== undefined) {
      return world.track(makeRunning(name, port, state, plan, startLog, master, a, helper));
    }
    // failed: make sure nothing is left, then report (or retry when the port was taken)
    const ids = [a.child.pid, pid].map((p) => (p ? identify(p) : undefined));
    await stopProcesses(ids.filter((x): x is ProcessIdentity => x !== undefined), {
      graceMs: 2000,
    });
    const logs = [...plan.logFiles, startLog];
    const tail = await tailOf(logs);
    const why = a.hasExited()
      ? `exited during start (code ${a.child.exitCode ?? a.child.signalCode})`
      : `not listening on 127.0.0.1:${port} after ${timeoutMs} ms`;
    lastError = new Error(`${name} ${why}; config ${plan.configFile}\n${tail}`);
    if (!IN_USE.test(tail)) break;
  }
  if (helper !== undefined) await helper.stop();
  throw lastError ?? new Error(`${name}: start failed`);
}

function makeRunning(
  name: string,
  port: number,
  state: string,
  plan: LaunchPlan,
  startLog: string,
  master: ProcessIdentity,
  a: Attempt,
  helper: Helper | undefined,
): RunningServer {
  live.add(master);
  let recorded: ProcessIdentity[] = [];
  void descendantsOf(master.pid).then((d) => (recorded = d));
  let stopping: Promise<void> | undefined;

  const stop = async (): Promise<void> => {
    const fromFile = (await readPidFile(plan.pidFile))
      .map(identify)
      .filter((x): x is ProcessIdentity => x !== undefined && x.pid === master.pid);
    const main = fromFile.length > 0 ? fromFile : [master];
    const killed = await stopProcesses(main, { extra: recorded });
    // the master is our child: wait until node has reaped it
    await Promise.race([a.exited, sleep(2000)]);
    live.delete(master);
    if (helper !== undefined) await helper.stop();
    if (killed.length > 0) {
      process.emitWarning(
        `${name}: needed SIGKILL for pid(s) ${killed.map((k) => k.pid).join(',')} (state ${state})`,
      );
    }
  };

  return {
    name,
    url: `http://127.0.0.1:${port}`,
    port,
    state,
    configFile: plan.configFile,
    pid: master.pid,
    async processes(): Promise<number[]> {
      const pids = isSameProcessAlive(master) ? [master.pid] : [];
      for (const d of await descendantsOf(master.pid)) pids.push(d.pid);
      if (helper !== undefined) pids.push(...(await helper.processes()));
      return [...new Set(pids)];
    },
    async errorLog(): Promise<string> {
      return tailOf([...plan.logFiles, startLog], Number.MAX_SAFE_INTEGER);
    },
    stop(): Promise<void> {
      stopping ??= stop();
      return stopping;
    },
  };
}
