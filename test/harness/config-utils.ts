// Small validators shared by the config generators. Generated configs interpolate paths and
// prefixes unquoted in places (nginx, lighttpd bin-path), so anything unusual is refused up front.
import { realpath } from 'node:fs/promises';
import type { ListenTarget } from './net-utils.js';

/** FcgiRoute maps a URL prefix to an external FastCGI responder. */
export interface FcgiRoute {
  /** URL prefix such as `/app` (a trailing slash is ignored). */
  prefix: string;
  /** `tcp:127.0.0.1:PORT` or `unix:/abs/path.sock`. */
  target: ListenTarget;
}

/** normalizePrefix turns `app`, `/app/` … into `/app`; it throws on unusual characters. */
export function normalizePrefix(prefix: string): string {
  const p = `/${prefix.replace(/^\/+/, '').replace(/\/+$/, '')}`;
  if (p === '/' || !/^\/[A-Za-z0-9_.\-/]+$/.test(p) || p.includes('//')) {
    throw new Error(`bad URL prefix ${JSON.stringify(prefix)} (letters, digits, _ . - / only)`);
  }
  return p;
}

/** safePath resolves an existing path (symlinks too) and refuses characters configs can't take. */
export async function safePath(p: string, what: string): Promise<string> {
  let real: string;
  try {
    real = await realpath(p);
  } catch {
    throw new Error(`${what} ${p} does not exist`);
  }
  assertSafeString(real, what);
  return real;
}

/** assertSafeString refuses whitespace, quotes, backslashes, `$`, `;`, braces and control chars. */
export function assertSafeString(s: string, what: string): void {
  const control = [...s].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f);
  if (s === '' || control || /[\s"'\\$;{}#]/.test(s)) {
    throw new Error(`${what} ${JSON.stringify(s)} contains characters the configs cannot take`);
  }
}

/** commandLine joins argv with spaces for servers that split on spaces (no quoting possible). */
export function commandLine(argv: string[], what: string): string {
  for (const a of argv) assertSafeString(a, `${what} argument`);
  return argv.join(' ');
}
