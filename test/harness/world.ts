// A World is one temporary directory under /tmp that holds everything a test starts: copied
// fixtures, server state dirs (config, pid file, logs, sockets) and a socket dir. It is mode
// 0755 all the way down so the unprivileged run user (www-data) can reach the fixtures even
// when the checkout lives under /root (mode 700).
import { chmod, cp, lstat, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';

/** Stoppable is anything a World stops at cleanup (servers, spawn-fcgi apps). */
export interface Stoppable {
  readonly name: string;
  stop(): Promise<void>;
}

/** World owns a temp dir and everything started in it; see {@link makeWorld}. */
export interface World {
  /** The world's root directory (mode 0755), e.g. `/tmp/cgi-bridge-test-AbC123`. */
  readonly dir: string;
  /**
   * copyFixtures copies a directory (recursively) into the world, keeping modes (executables
   * stay executable) and making everything readable by all, and returns the copy's path.
   */
  copyFixtures(srcDir: string): Promise<string>;
  /** makeStateDir creates a fresh, empty 0755 directory `NAME-N` for one server instance. */
  makeStateDir(name: string): Promise<string>;
  /**
   * socketPath returns a path for a unix socket in the world's socket dir (mode 1777, so both
   * root and the run user may create sockets there). The file is not created.
   */
  socketPath(name: string): string;
  /** track registers something to stop at cleanup (the start functions do this themselves). */
  track<T extends Stoppable>(s: T): T;
  /** cleanup stops everything started in this world (newest first) and removes the dir. */
  cleanup(): Promise<void>;
}

async function relaxModes(p: string): Promise<void> {
  const st = await lstat(p);
  if (st.isSymbolicLink()) return;
  if (st.isDirectory()) {
    await chmod(p, (st.mode & 0o7777) | 0o755);
    for (const name of await readdir(p)) await relaxModes(join(p, name));
  } else if (st.isFile()) {
    const exec = (st.mode & 0o100) !== 0 ? 0o111 : 0;
    await chmod(p, (st.mode & 0o7777) | 0o444 | exec);
  }
}

/** mkdir0755 creates a directory (and parents) and forces its mode to 0755 despite the umask. */
export async function mkdir0755(dir: string, mode = 0o755): Promise<string> {
  await mkdir(dir, { recursive: true });
  await chmod(dir, mode);
  return dir;
}

/**
 * makeWorld creates a world under /tmp (`/tmp/cgi-bridge-test-XXXXXX`, mode 0755). Always pair
 * it with cleanup, e.g. `t.after(() => world.cleanup())`.
 */
export async function makeWorld(): Promise<World> {
  const dir = await mkdtemp('/tmp/cgi-bridge-test-');
  await chmod(dir, 0o755);
  const sockDir = await mkdir0755(join(dir, 'sock'), 0o1777);
  const started: Stoppable[] = [];
  const counters = new Map<string, number>();
  let cleaned = false;

  const next = (name: string): string => {
    const n = (counters.get(name) ?? 0) + 1;
    counters.set(name, n);
    return `${name}-${n}`;
  };

  return {
    dir,
    async copyFixtures(srcDir: string): Promise<string> {
      const dest = join(dir, 'fixtures', next(basename(resolve(srcDir))));
      await mkdir0755(join(dir, 'fixtures'));
      await cp(resolve(srcDir), dest, { recursive: true });
      await relaxModes(dest);
      return dest;
    },
    async makeStateDir(name: string): Promise<string> {
      if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new Error(`bad state dir name ${name}`);
      return mkdir0755(join(dir, next(name)));
    },
    socketPath(name: string): string {
      if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new Error(`bad socket name ${name}`);
      return join(sockDir, name.endsWith('.sock') ? name : `${name}.sock`);
    },
    track<T extends Stoppable>(s: T): T {
      if (cleaned) throw new Error('world already cleaned up');
      started.push(s);
      return s;
    },
    async cleanup(): Promise<void> {
      if (cleaned) return;
      cleaned = true;
      const errors: unknown[] = [];
      for (const s of started.reverse()) {
        try {
          await s.stop();
        } catch (e) {
          errors.push(e);
        }
      }
      await rm(dir, { recursive: true, force: true, maxRetries: 3 });
      if (errors.length > 0) throw new AggregateError(errors, 'world cleanup: some stops failed');
    },
  };
}
