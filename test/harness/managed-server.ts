// The lifecycle shared by every web server the harness starts: pick a free port, write the
// config, start the server in the foreground (no daemonizing: it stays a child of the test
// process, which reaps it, so no zombie is left behind) in its own session, wait for the port,
// and stop it by PID.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort, ownsListener, waitForListen } from './net-utils.js';
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

/** stopAtExit registers processes to SIGTERM if the test process exits while they still run. */
export function stopAtExit(ids: ProcessIdentity[]): void {
  for (const id of ids) live.add(id);
}

/** forgetAtExit undoes {@link stopAtExit} (after a regular stop). */
export function forgetAtExit(ids: ProcessIdentity[]): void {
  for (const id of ids) live.delete(id);
}
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
  /** The child's identity, taken right after spawn (it leads its own session). */
  self: ProcessIdentity | undefined;
  exited: Promise<void>;
  hasExited: () => boolean;
}

function launch(plan: LaunchPlan, startLog: string, cwd: string): Attempt {
  const fd = openSync(startLog, 'a');
  let done = false;
  let child: ChildProcess;
  try {
    // detached = own session and process group: Apache prefork SIGTERMs its whole process
    // group on shutdown, which would otherwise include the test process.
    child = spawn(plan.binary, plan.args, {
      cwd,
      env: plan.env,
      stdio: ['ignore', fd, fd],
      detached: true,
    });
    // do not keep the test process alive for a forgotten server (the exit hook stops it)
    child.unref();
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
  const self = child.pid === undefined ? undefined : identify(child.pid);
  return { child, self, exited, hasExited: () => done };
}

/** waitUntilServing waits until the port accepts connections on a socket the server holds. */
async function waitUntilServing(a: Attempt, port: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  const pid = a.child.pid ?? 0;
  for (;;) {
    const up = await waitForListen(`tcp:127.0.0.1:${port}`, {
      timeoutMs: Math.max(0, deadline - Date.now()),
      alive: () => !a.hasExited(),
    });
    if (!up || a.hasExited()) return false;
    // someone else may have taken the port: then our server fails to bind and exits
    if (await ownsListener(pid, port)) return true;
    if (Date.now() >= deadline) return false;
    await sleep(50);
  }
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
    await rm(plan.pidFile, { force: true }); // a stale one (lighttpd cannot always remove it)
    const a = launch(plan, startLog, state);
    const ok = await waitUntilServing(a, port, timeoutMs);
    const pid = a.child.pid ?? 0;
    if (ok) {
      // The servers run in the foreground, so the pid file names the child itself; give it a
      // moment to appear so stop() can go by the pid file.
      for (let i = 0; i < 20 && !(await readPidFile(plan.pidFile)).includes(pid); i++) {
        await sleep(50);
      }
    }
    const master = identify(pid);
    if (ok && master !== undefined) {
      return world.track(makeRunning(name, port, state, plan, startLog, master, a, helper));
    }
    // failed: make sure nothing is left, then report (or retry when the port was taken)
    const leftovers = master === undefined ? [] : [master];
    await stopProcesses(leftovers, { graceMs: 2000 });
    // a server that died during start may leave orphans (e.g. lighttpd bin-path apps)
    if (a.self !== undefined) await sweepSessions([a.self]);
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
    killed.push(...(await sweepSessions([master])));
    live.delete(master);
    if (helper !== undefined) await helper.stop();
    if (killed.length > 0) {
      process.emitWarning(
        `${name}: pid(s) ${killed.map((k) => k.pid).join(',')} outlived SIGTERM of the master ` +
          `and were killed separately (state ${state})`,
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
      const pids: number[] = [];
      if (isSameProcessAlive(master)) {
        pids.push(master.pid);
        for (const d of await descendantsOf(master.pid)) pids.push(d.pid);
      }
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
