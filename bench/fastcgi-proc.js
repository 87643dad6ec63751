// Process and socket helpers of the FastCGI benchmark (bench/fastcgi.js): free ports, waiting
// for a listener, the run user, and /proc readings (descendants, peak RSS).
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { connect, createServer } from 'node:net';

/** sleep resolves after `ms` milliseconds. */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** freePort asks the kernel for a free loopback port. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * stopper returns `stop()` for a spawned child: SIGTERM, then after `graceMs` SIGKILL for it
 * and for the `descendants` it had when stop() began (when asked), each by pid.
 */
export function stopper(child, graceMs, { descendants: withKids = false } = {}) {
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return async () => {
    const kids = withKids ? descendants(child.pid) : [];
    if (alive(child.pid)) child.kill('SIGTERM');
    await Promise.race([exited, sleep(graceMs)]);
    for (const pid of [child.pid, ...kids]) if (alive(pid)) process.kill(pid, 'SIGKILL');
  };
}

/** alive tells whether `pid` exists and is not a zombie (PID 1 here may not reap). */
export function alive(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/**
 * acceptsConnections polls until a TCP port on 127.0.0.1 (a number) or a unix socket (a path)
 * accepts a connection; false after `ms`.
 */
export async function acceptsConnections(where, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const ok = await new Promise((resolve) => {
      const c = typeof where === 'number' ? connect(where, '127.0.0.1') : connect(where);
      c.once('connect', () => {
        c.destroy();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (ok) return true;
    await sleep(50);
  }
  return false;
}

/** runUser is who nginx's and php-fpm's workers run as when we are root (www-data), else undefined. */
export function runUser() {
  if (process.getuid?.() !== 0) return undefined;
  const id = (...a) => spawnSync('id', [...a, 'www-data'], { encoding: 'utf8' });
  const uid = id('-u');
  if (uid.status !== 0) throw new Error('running as root needs a www-data user');
  return { name: 'www-data', group: id('-gn').stdout.trim() };
}

/** descendants lists the live descendants of `pid` (children, grandchildren …). */
export function descendants(pid) {
  const kids = new Map();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (rest[0] === 'Z') continue;
      const ppid = Number(rest[1]);
      if (!kids.has(ppid)) kids.set(ppid, []);
      kids.get(ppid).push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  const out = [];
  const queue = [pid];
  while (queue.length > 0) {
    for (const k of kids.get(queue.shift()) ?? []) {
      out.push(k);
      queue.push(k);
    }
  }
  return out;
}

/** peakRssKiB returns a process's peak resident set size (VmHWM) in KiB, or 0 when it is gone. */
export function peakRssKiB(pid) {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** cpuTicks returns a process's user + system CPU time in clock ticks (0 when it is gone). */
export function cpuTicks(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields 14 (utime) and 15 (stime) of proc(5) are rest[11] and rest[12]
    return Number(rest[11]) + Number(rest[12]);
  } catch {
    return 0;
  }
}
