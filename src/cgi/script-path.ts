// The host side's cgi-bin resolution: a request path (or the web server's SCRIPT_FILENAME) ->
// the executable to run, its SCRIPT_NAME and PATH_INFO. It never leaves its directory.
// The per-request checks (stat, realpath, access) are synchronous, as in Apache and fcgiwrap:
// each is a few microseconds on a local disk, where a trip through libuv's thread pool costs
// far more (two thread hand-offs per call, the futex calls of bench/results/legacy.md).
import { accessSync, constants, realpathSync, statSync } from 'node:fs';
import { realpath } from 'node:fs/promises';
import { dirname, isAbsolute, resolve, sep } from 'node:path';
import { BridgeError } from '../errors.js';

/** ScriptLocation is a resolved script. */
export interface ScriptLocation {
  /** filename is SCRIPT_FILENAME: the directory plus the walked segments (symlinks kept). */
  filename: string;
  /** executable is the real path that was checked and is run (symlinks resolved). */
  executable: string;
  /** scriptName is SCRIPT_NAME: the mount point plus the walked segments. */
  scriptName: string;
  /** pathInfo is PATH_INFO: what follows the script in the path, as it was given. */
  pathInfo: string;
}

function notFound(why: string): BridgeError {
  return new BridgeError('CGI_ERR_SCRIPT_NOT_FOUND', `cgi: ${why}`, { status: 404 });
}

function forbidden(why: string): BridgeError {
  return new BridgeError('CGI_ERR_SCRIPT_FORBIDDEN', `cgi: ${why}`, { status: 403 });
}

function errnoCode(e: unknown): string | undefined {
  return (e as { code?: unknown } | null)?.code as string | undefined;
}

// A missing path is 404; anything else the file system refuses (EACCES, ELOOP) is 403.
function statError(e: unknown, path: string): BridgeError {
  const code = errnoCode(e);
  if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ENAMETOOLONG') {
    return notFound(`${path} does not exist`);
  }
  return forbidden(`${path} cannot be examined (${code ?? String(e)})`);
}

/**
 * CgiBinDirectory resolves scripts inside one directory, with the rules of DESIGN.md ("cgi-bin
 * resolution never leaves its directory … and runs only executable regular files"). Each
 * refusal is a BridgeError: `CGI_ERR_SCRIPT_NOT_FOUND` (404) for a missing file, a `.` or `..`
 * segment, a NUL, a hidden segment (a name starting with `.`: `.git`, `.htaccess`, never
 * served); `CGI_ERR_SCRIPT_FORBIDDEN` (403) for a directory, a file that is not regular or not
 * executable, a real path (symlinks resolved) outside the directory. The directory's own real
 * path is resolved once and cached.
 */
export class CgiBinDirectory {
  /** root is the directory as given, made absolute. */
  readonly root: string;
  private rootReal: Promise<string> | undefined;

  constructor(dir: string) {
    this.root = resolve(dir);
  }

  private realRoot(): Promise<string> {
    // A failure is not cached: the directory may appear later (a mount, a deploy).
    this.rootReal ??= realpath(this.root).catch((e: unknown) => {
      this.rootReal = undefined;
      throw forbidden(`the cgi directory ${this.root} is not accessible (${errnoCode(e) ?? e})`);
    });
    return this.rootReal;
  }

  private inside(real: string, rootReal: string): boolean {
    return rootReal === sep ? real.startsWith(sep) : real.startsWith(rootReal + sep);
  }

  /**
   * resolvePath walks `pathInfo` (decoded, as the environ gives it) the way Apache's mod_cgi
   * does: one segment at a time from the directory down to the first regular file, which must
   * be executable; the rest of `pathInfo` is the script's PATH_INFO and its SCRIPT_NAME is
   * `mount` plus the walked segments. Empty segments (`//`) are skipped.
   */
  async resolvePath(mount: string, pathInfo: string): Promise<ScriptLocation> {
    if (pathInfo.includes('\0')) throw notFound('the path holds a NUL');
    if (pathInfo !== '' && !pathInfo.startsWith('/')) {
      throw notFound(`the path ${JSON.stringify(pathInfo)} is not absolute`);
    }
    const rootReal = await this.realRoot();
    let dir = this.root;
    let scriptName = mount.endsWith('/') ? mount.replace(/\/+$/, '') : mount;
    let pos = 0;
    for (;;) {
      while (pathInfo.charCodeAt(pos) === 0x2f) pos++;
      if (pos >= pathInfo.length) throw forbidden(`${dir} is a directory, not a script`);
      let end = pathInfo.indexOf('/', pos);
      if (end < 0) end = pathInfo.length;
      const segment = pathInfo.slice(pos, end);
      // The HTTP front end removes dot segments; one that still arrives (FastCGI params, an
      // encoded form) is a traversal attempt.
      if (segment === '.' || segment === '..') throw notFound('the path holds a dot segment');
      if (segment.startsWith('.')) throw notFound(`${segment} is hidden`);
      const candidate = `${dir}/${segment}`;
      let st;
      try {
        st = statSync(candidate);
      } catch (e) {
        throw statError(e, candidate);
      }
      scriptName += `/${segment}`;
      if (st.isDirectory()) {
        dir = candidate;
        pos = end;
        continue;
      }
      const executable = this.checkFile(candidate, st.isFile(), rootReal);
      return { filename: candidate, executable, scriptName, pathInfo: pathInfo.slice(end) };
    }
  }

  /**
   * resolveFilename checks a SCRIPT_FILENAME the web server chose (nginx's
   * `$document_root$fastcgi_script_name`, fcgiwrap's mode): it must be an absolute path whose
   * real path lies inside the directory, a regular executable file, with no hidden segment
   * below the directory. When a prefix of it is a file (`/cgi-bin/x.sh/more`: ENOTDIR), the
   * path is shortened to that file, as fcgiwrap does.
   */
  async resolveFilename(filename: string): Promise<{ filename: string; executable: string }> {
    if (filename.includes('\0')) throw notFound('SCRIPT_FILENAME holds a NUL');
    if (!isAbsolute(filename)) {
      throw notFound(`SCRIPT_FILENAME ${JSON.stringify(filename)} is not an absolute path`);
    }
    const rootReal = await this.realRoot();
    let candidate = filename;
    let real: string;
    for (;;) {
      try {
        real = realpathSync.native(candidate);
        break;
      } catch (e) {
        const parent = dirname(candidate);
        if (errnoCode(e) !== 'ENOTDIR' || parent === candidate) throw statError(e, candidate);
        candidate = parent;
      }
    }
    if (!this.inside(real, rootReal)) {
      throw forbidden(`${candidate} is outside the cgi directory ${this.root}`);
    }
    if (
      real
        .slice(rootReal.length)
        .split(sep)
        .some((s) => s.startsWith('.'))
    ) {
      throw notFound(`${candidate} is hidden`);
    }
    let st;
    try {
      st = statSync(real);
    } catch (e) {
      throw statError(e, candidate);
    }
    if (st.isDirectory()) throw forbidden(`${candidate} is a directory, not a script`);
    return { filename: candidate, executable: this.checkFile(real, st.isFile(), rootReal) };
  }

  // checkFile returns the real path of a regular executable file inside the directory.
  private checkFile(path: string, regular: boolean, rootReal: string): string {
    if (!regular) throw forbidden(`${path} is not a regular file`);
    let real: string;
    try {
      real = realpathSync.native(path);
    } catch (e) {
      throw statError(e, path);
    }
    if (!this.inside(real, rootReal)) {
      throw forbidden(`${path} resolves to ${real}, outside the cgi directory ${this.root}`);
    }
    try {
      accessSync(real, constants.X_OK);
    } catch {
      throw forbidden(`${path} is not executable`);
    }
    return real;
  }
}
