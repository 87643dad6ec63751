// Finding the external programs the integration tests need, and skipping (or, on CI, failing)
// a test when one is missing.
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import type { TestContext } from 'node:test';

/** The PATH every server is started with (see `cleanEnv`). */
export const CLEAN_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Where Debian keeps Apache's modules. */
export const APACHE_MODULES_DIR = '/usr/lib/apache2/modules';

/** Debian package that provides each tool, for the skip message. */
const PACKAGES: Record<string, string> = {
  apache2: 'apache2',
  lighttpd: 'lighttpd',
  nginx: 'nginx',
  fcgiwrap: 'fcgiwrap',
  'spawn-fcgi': 'spawn-fcgi',
  'cgi-fcgi': 'libfcgi-bin',
  mod_fcgid: 'libapache2-mod-fcgid',
  wrk: 'wrk',
  ab: 'apache2-utils',
  h2load: 'nghttp2-client',
  'php-fpm8.2': 'php-fpm',
  perl: 'perl',
  curl: 'curl',
};

function isExecutableFile(p: string): boolean {
  try {
    if (!statSync(p).isFile()) return false;
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * findTool returns the absolute path of an executable, or undefined. A name with a slash is
 * checked as is; a bare name is looked up in `searchPath` (default: the process PATH followed by
 * /usr/local/sbin, /usr/local/bin, /usr/sbin, /usr/bin, /sbin, /bin — sbin is often missing
 * from a non-root PATH). `mod_NAME` looks for an Apache module `mod_NAME.so` instead.
 */
export function findTool(name: string, searchPath?: string): string | undefined {
  if (/^mod_[a-z0-9_]+$/.test(name)) {
    const so = join(APACHE_MODULES_DIR, `${name}.so`);
    try {
      return statSync(so).isFile() ? so : undefined;
    } catch {
      return undefined;
    }
  }
  if (name.includes('/')) {
    const abs = isAbsolute(name) ? name : resolve(name);
    return isExecutableFile(abs) ? abs : undefined;
  }
  const dirs = (searchPath ?? `${process.env.PATH ?? ''}${delimiter}${CLEAN_PATH}`)
    .split(delimiter)
    .filter((d) => isAbsolute(d));
  for (const dir of dirs) {
    const p = join(dir, name);
    if (isExecutableFile(p)) return p;
  }
  return undefined;
}

/**
 * toolPath is {@link findTool} that throws a clear error when the tool is missing (for the start
 * functions; tests call {@link requireTool} first).
 */
export function toolPath(name: string): string {
  const p = findTool(name);
  if (p === undefined) throw new Error(`${name} not installed (${installHint(name)})`);
  return p;
}

function installHint(...names: string[]): string {
  const pkgs = [...new Set(names.map((n) => PACKAGES[n] ?? n))];
  return `apt-get install ${pkgs.join(' ')}`;
}

/**
 * requireTool checks that every named binary (e.g. `apache2`, `lighttpd`, `nginx`, `fcgiwrap`,
 * `spawn-fcgi`, `cgi-fcgi`) or Apache module (`mod_fcgid`) is installed. When one is missing it
 * skips the test with `SKIP: NAME not installed (apt-get install PKG)` and returns false — the
 * caller must then return — except on CI (`CI=true`), where a missing tool fails the test.
 *
 * ```ts
 * if (!requireTool(t, 'nginx', 'fcgiwrap', 'spawn-fcgi')) return;
 * ```
 */
export function requireTool(t: TestContext, ...binaries: string[]): boolean {
  const missing = binaries.filter((b) => findTool(b) === undefined);
  if (missing.length === 0) return true;
  const msg = `${missing.join(', ')} not installed (${installHint(...missing)})`;
  if (process.env.CI === 'true') {
    throw new Error(`${msg}: required on CI (CI=true)`);
  }
  t.skip(`SKIP: ${msg}`);
  return false;
}
