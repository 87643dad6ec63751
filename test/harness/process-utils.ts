// Process helpers for the test harness. Everything works by PID (never by name) and reads
// /proc directly: a process in state Z (zombie) counts as dead, because on some sandboxes
// PID 1 does not reap orphans and `kill(pid, 0)` would report a stopped daemon as alive forever.
import { readFile, readdir } from 'node:fs/promises';
import { readFileSync } from 'node:fs';

/** sleep resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** ProcStat is the part of /proc/PID/stat the harness uses. */
export interface ProcStat {
  pid: number;
  /** One-letter state: R, S, D, Z, T … */
  state: string;
  ppid: number;
  /** Session id (the pid of the session leader). */
  session: number;
  /** Start time in clock ticks since boot; with the pid it identifies a process uniquely. */
  startTime: string;
}

function parseStat(text: string): ProcStat | undefined {
  // "PID (comm) S PPID …": comm may contain spaces and parentheses, so split at the last ')'.
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  const pid = Number.parseInt(text.slice(0, text.indexOf(' ')), 10);
  const rest = text
    .slice(close + 2)
    .trim()
    .split(' ');
  // rest[0] is field 3 (state), rest[1] field 4 (ppid), rest[3] field 6 (session),
  // rest[19] field 22 (starttime).
  if (rest.length < 20) return undefined;
  return {
    pid,
    state: rest[0] ?? '?',
    ppid: Number(rest[1]),
    session: Number(rest[3]),
    startTime: rest[19] ?? '',
  };
}

/** readProcStat returns /proc/PID/stat, or undefined when the process does not exist. */
export function readProcStat(pid: number): ProcStat | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    return parseStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

/** isProcessAlive tells whether `pid` exists and is not a zombie. */
export function isProcessAlive(pid: number): boolean {
  const st = readProcStat(pid);
  return st !== undefined && st.state !== 'Z' && st.state !== 'X';
}

/** ProcessIdentity pins a pid to one process (pid + start time), so a reused pid is never killed. */
export interface ProcessIdentity {
  pid: number;
  startTime: string;
}

/** identify returns the identity of a live process, or undefined when it is gone. */
export function identify(pid: number): ProcessIdentity | undefined {
  const st = readProcStat(pid);
  if (st === undefined || st.state === 'Z' || st.state === 'X') return undefined;
  return { pid, startTime: st.startTime };
}

/** isSameProcessAlive tells whether the process behind `id` still runs (and is not a zombie). */
export function isSameProcessAlive(id: ProcessIdentity): boolean {
  const st = readProcStat(id.pid);
  return st !== undefined && st.state !== 'Z' && st.state !== 'X' && st.startTime === id.startTime;
}

async function allStats(): Promise<ProcStat[]> {
  const out: ProcStat[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const st = parseStat(await readFile(`/proc/${name}/stat`, 'utf8'));
      if (st !== undefined) out.push(st);
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** descendantsOf lists every live descendant of `pid` (children, grandchildren …). */
export async function descendantsOf(pid: number): Promise<ProcessIdentity[]> {
  const kids = new Map<number, ProcStat[]>();
  for (const st of await allStats()) {
    const list = kids.get(st.ppid) ?? [];
    list.push(st);
    kids.set(st.ppid, list);
  }
  const out: ProcessIdentity[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const p = queue.shift() as number;
    for (const k of kids.get(p) ?? []) {
      if (k.state !== 'Z' && k.state !== 'X') out.push({ pid: k.pid, startTime: k.startTime });
      queue.push(k.pid);
    }
  }
  return out;
}

function signal(id: ProcessIdentity, sig: NodeJS.Signals): void {
  if (!isSameProcessAlive(id)) return;
  try {
    process.kill(id.pid, sig);
  } catch {
    // gone (ESRCH) or not ours (EPERM): nothing more to do
  }
}

async function waitDead(ids: ProcessIdentity[], timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!ids.some(isSameProcessAlive)) return true;
    if (Date.now() >= deadline) return false;
    await sleep(50);
  }
}

/** StopOptions tunes {@link stopProcesses}. */
export interface StopOptions {
  /** How long to wait after SIGTERM before SIGKILL (default 5000 ms). */
  graceMs?: number;
  /** Processes to SIGKILL if they outlive the main ones (e.g. children recorded at start). */
  extra?: ProcessIdentity[];
}

/**
 * stopProcesses sends SIGTERM to `main`, waits up to `graceMs`, SIGKILLs what is left, then
 * gives the descendants (recorded now and `extra`) a moment to follow and SIGKILLs survivors.
 * Zombies count as dead. Returns the identities that were still alive when SIGKILL was sent.
 */
export async function stopProcesses(
  main: ProcessIdentity[],
  opts: StopOptions = {},
): Promise<ProcessIdentity[]> {
  const live = main.filter(isSameProcessAlive);
  const seen = new Set<string>();
  const followers: ProcessIdentity[] = [];
  const addFollower = (id: ProcessIdentity): void => {
    const key = `${id.pid}:${id.startTime}`;
    if (seen.has(key)) return;
    seen.add(key);
    followers.push(id);
  };
  for (const id of live) seen.add(`${id.pid}:${id.startTime}`);
  for (const id of live) for (const d of await descendantsOf(id.pid)) addFollower(d);
  for (const id of opts.extra ?? []) addFollower(id);

  const killed: ProcessIdentity[] = [];
  for (const id of live) signal(id, 'SIGTERM');
  if (!(await waitDead(live, opts.graceMs ?? 5000))) {
    for (const id of live.filter(isSameProcessAlive)) {
      killed.push(id);
      signal(id, 'SIGKILL');
    }
    await waitDead(live, 2000);
  }
  if (!(await waitDead(followers, 3000))) {
    for (const id of followers.filter(isSameProcessAlive)) {
      killed.push(id);
      signal(id, 'SIGKILL');
    }
    await waitDead(followers, 2000);
  }
  return killed;
}

/**
 * sessionMembers lists the live processes of the session that `leader` started (its setsid
 * session), including orphans that were re-parented to PID 1 after the leader died. Returns []
 * when the leader's pid now belongs to another process (pid reuse).
 */
export async function sessionMembers(leader: ProcessIdentity): Promise<ProcessIdentity[]> {
  const now = readProcStat(leader.pid);
  if (now !== undefined && now.startTime !== leader.startTime) return [];
  return (await allStats())
    .filter((st) => st.session === leader.pid && st.pid !== leader.pid)
    .filter((st) => st.state !== 'Z' && st.state !== 'X')
    .filter((st) => Number(st.startTime) >= Number(leader.startTime))
    .map((st) => ({ pid: st.pid, startTime: st.startTime }));
}

/**
 * sweepSessions stops whatever is left in the sessions of `leaders` (SIGTERM, then SIGKILL):
 * the last resort for orphans of a dead server, e.g. a bin-path app of a lighttpd that failed.
 */
export async function sweepSessions(leaders: ProcessIdentity[]): Promise<ProcessIdentity[]> {
  const left: ProcessIdentity[] = [];
  for (const l of leaders) left.push(...(await sessionMembers(l)));
  if (left.length === 0) return [];
  await stopProcesses(left, { graceMs: 2000 });
  return left;
}

/** readPidFile returns the pids listed in a pid file (one or more), or [] when it is missing. */
export async function readPidFile(file: string): Promise<number[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split(/\s+/)
    .filter((s) => /^\d+$/.test(s))
    .map(Number);
}
