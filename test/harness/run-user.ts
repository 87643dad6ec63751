// The unprivileged user that servers, CGI scripts and FastCGI apps run as when the tests run as
// root (Apache and lighttpd refuse to serve as root; fcgiwrap and spawn-fcgi would happily run
// every script as root).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { toolPath } from './tools.js';

const execFileP = promisify(execFile);

/** RunUser is the account workers run as when the harness runs as root. */
export interface RunUser {
  name: string;
  group: string;
  uid: number;
  gid: number;
}

/** isRoot tells whether this process runs as root. */
export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

async function lookup(name: string): Promise<RunUser | undefined> {
  try {
    const id = toolPath('id');
    const [u, g, gn] = await Promise.all([
      execFileP(id, ['-u', name]),
      execFileP(id, ['-g', name]),
      execFileP(id, ['-gn', name]),
    ]);
    return {
      name,
      uid: Number(u.stdout.trim()),
      gid: Number(g.stdout.trim()),
      group: gn.stdout.trim(),
    };
  } catch {
    return undefined;
  }
}

let cached: Promise<RunUser | undefined> | undefined;

/**
 * runUser returns the user that workers run as: `www-data` (or `nobody` where there is no
 * www-data) when the harness runs as root, undefined otherwise (no user switching then).
 */
export function runUser(): Promise<RunUser | undefined> {
  cached ??= (async () => {
    if (!isRoot()) return undefined;
    for (const name of ['www-data', 'nobody']) {
      const u = await lookup(name);
      if (u !== undefined && u.uid !== 0) return u;
    }
    throw new Error('running as root but there is neither a www-data nor a nobody user');
  })();
  return cached;
}

/** userCan runs `test FLAG PATH` as `user` (e.g. `-x` = may execute / search). */
export async function userCan(
  user: RunUser,
  flag: '-r' | '-w' | '-x',
  path: string,
): Promise<boolean> {
  try {
    await execFileP(toolPath('test'), [flag, path], { uid: user.uid, gid: user.gid });
    return true;
  } catch {
    return false;
  }
}

/**
 * assertUserCanUse throws a clear error when the run user cannot read and search `dir` (or
 * execute `file`). A checkout under /root (mode 700) is the usual cause: copy fixtures with
 * `world.copyFixtures()` first.
 */
export async function assertUserCanUse(
  user: RunUser | undefined,
  what: { dir?: string; file?: string },
): Promise<void> {
  if (user === undefined) return;
  if (what.dir !== undefined) {
    const ok = (await userCan(user, '-r', what.dir)) && (await userCan(user, '-x', what.dir));
    if (!ok) {
      throw new Error(
        `user ${user.name} cannot read/search ${what.dir} (or a parent dir): ` +
          'copy it with world.copyFixtures() or chmod a+rx the path',
      );
    }
  }
  if (what.file !== undefined && !(await userCan(user, '-x', what.file))) {
    throw new Error(
      `user ${user.name} cannot execute ${what.file} (or search a parent dir): ` +
        'copy it with world.copyFixtures() or chmod a+rx the path',
    );
  }
}
