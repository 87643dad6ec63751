// The translator: CGI meta-variables (a process environment, FastCGI params, an HTTP request)
// -> environ, and environ -> meta-variables for a child. RFC 3875 §4.1, plus what real servers
// send (test/fixtures/params, captured from Apache, lighttpd and nginx; docs/translator.md).
import { BridgeError } from '../errors.js';
import { fileWrapper } from '../gateway/file-wrapper.js';
import { BodyInput, type ByteSource } from '../gateway/input.js';
import { RequestSignal, requestSignalOf } from '../gateway/signal.js';
import type { Environ, ErrorStream } from '../gateway/types.js';
import { decodeBytes, percentEncodePath } from './decode.js';

/** MetaVariables are CGI meta-variables by name; `undefined` means absent. */
export type MetaVariables = Record<string, string | undefined>;

/** MetaPair is one meta-variable as a front end receives it: `[name, value]` or `{ name, value }`. */
export type MetaPair =
  readonly [name: string, value: string] | { readonly name: string; readonly value: string };

/** EnvironOptions are what a front end supplies next to the meta-variables. */
export interface EnvironOptions {
  /** input is the body source (stdin, FCGI_STDIN, the HTTP request), or null when there is none. */
  input: ByteSource | null;
  errors: ErrorStream;
  /** signal is `gateway.signal`; a {@link RequestSignal} makes it only when it is read. */
  signal: AbortSignal | RequestSignal;
  multithread: boolean;
  multiprocess: boolean;
  runOnce: boolean;
  /** urlScheme forces the scheme (the HTTP front end knows it); otherwise HTTPS / REQUEST_SCHEME decide. */
  urlScheme?: 'http' | 'https';
}

const VERSION = Object.freeze([1, 0] as const);

// RFC 9110 §8.6: Content-Length = 1*DIGIT. 15 digits stay below 2^53, so the number is exact.
const CONTENT_LENGTH = /^[0-9]{1,15}$/;
// RFC 9110 §5.6.3: optional whitespace (SP / HTAB) around a field value is not part of it.
const OWS = /^[ \t]+|[ \t]+$/g;
// RFC 9112 §6.1: chunked is the last transfer coding of a body whose length is unknown.
const CHUNKED_LAST = /(?:^|,)[ \t]*chunked[ \t]*$/i;

function badContentLength(value: string): BridgeError {
  return new BridgeError(
    'CGI_ERR_BAD_CONTENT_LENGTH',
    `cgi: CONTENT_LENGTH ${JSON.stringify(value)} is not a number`,
    { status: 400 },
  );
}

/**
 * bodyLength tells how many body bytes follow: CONTENT_LENGTH when set; `null` (read to EOF) when
 * it is absent and the body is chunked (Apache mod_cgid and mod_cgi pass only
 * HTTP_TRANSFER_ENCODING); 0 otherwise. An empty CONTENT_LENGTH (nginx on a GET) means absent.
 * HTTP_CONTENT_LENGTH is the client's header (nginx and lighttpd copy it), not the body length,
 * and is ignored. Spaces and tabs around the digits are trimmed (RFC 9110 §5.6.3 OWS); anything
 * else that is not 1 to 15 digits (a sign, an exponent, a suffix, 16 digits or more) is
 * `CGI_ERR_BAD_CONTENT_LENGTH`, status 400.
 */
export function bodyLength(vars: MetaVariables): number | null {
  const cl = vars.CONTENT_LENGTH;
  if (cl !== undefined && cl !== '') {
    const digits = cl.replace(OWS, '');
    if (!CONTENT_LENGTH.test(digits)) throw badContentLength(cl);
    return Number(digits);
  }
  const te = vars.HTTP_TRANSFER_ENCODING;
  if (te !== undefined && CHUNKED_LAST.test(te)) return null;
  return 0;
}

/**
 * urlScheme derives `gateway.url_scheme`: HTTPS=on or HTTPS=1 (any case; Apache mod_ssl, nginx
 * and lighttpd send `on`) or REQUEST_SCHEME=https means https. HTTPS=off (IIS) is plain http.
 */
export function urlScheme(vars: MetaVariables): 'http' | 'https' {
  if (httpsIsOn(vars.HTTPS)) return 'https';
  if (vars.REQUEST_SCHEME?.toLowerCase() === 'https') return 'https';
  return 'http';
}

function httpsIsOn(value: string | undefined): boolean {
  const v = value?.toLowerCase();
  return v === 'on' || v === '1';
}

/**
 * requestUri rebuilds REQUEST_URI from SCRIPT_NAME + PATH_INFO + QUERY_STRING when a server sent
 * none: the path is percent-encoded again (RFC 3986 §3.3), the query is raw already (RFC 3875 §4.1.7).
 */
export function requestUri(scriptName: string, pathInfo: string, query: string): string {
  const path = percentEncodePath(scriptName + pathInfo) || '/';
  return query === '' ? path : `${path}?${query}`;
}

/**
 * hostWithoutPort strips the port from a Host header value and keeps an IPv6 literal in brackets
 * (`[::1]:8080` -> `[::1]`), the SERVER_NAME form of RFC 3875 §4.1.14 that Apache and lighttpd
 * send too. A value that is not a valid host (a bare `::1`) is returned as it is.
 */
export function hostWithoutPort(host: string | undefined): string | undefined {
  if (host === undefined || host === '') return undefined;
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end > 0 ? host.slice(0, end + 1) : host;
  }
  const colon = host.indexOf(':');
  if (colon < 0 || host.indexOf(':', colon + 1) >= 0) return host;
  return host.slice(0, colon);
}

/** portOfHost returns the port of a Host header value (`example.com:8080` -> `8080`), if it has one. */
export function portOfHost(host: string | undefined): string | undefined {
  if (host === undefined) return undefined;
  const m = /^(?:\[[^\]]*\]|[^:[\]]*):([0-9]{1,5})$/.exec(host);
  return m?.[1];
}

// A method is a token (RFC 9110 §9.1, §5.6.2).
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * buildEnviron normalizes meta-variables into an environ:
 * - a missing or empty REQUEST_METHOD (not a CGI request) or one that is not a token is
 *   `CGI_ERR_BAD_ENVIRONMENT`; a bad CONTENT_LENGTH is `CGI_ERR_BAD_CONTENT_LENGTH` (see bodyLength);
 * - empty CONTENT_LENGTH, CONTENT_TYPE and REMOTE_USER (nginx sends all three on every GET) are
 *   absent; CONTENT_LENGTH loses surrounding whitespace; lighttpd's CONTENT_LENGTH=0 stays;
 * - HTTP_PROXY is dropped (httpoxy, CVE-2016-5385: nginx forwards a client's `Proxy:` header);
 * - SCRIPT_NAME, PATH_INFO, QUERY_STRING default to '' (RFC 3875 §4.1); SERVER_NAME to the Host
 *   header's host, else `localhost`; SERVER_PORT to the Host header's port, else 80 / 443;
 *   SERVER_PROTOCOL to HTTP/1.0; GATEWAY_INTERFACE to CGI/1.1; an empty value counts as absent;
 * - a missing or empty REQUEST_URI is rebuilt from SCRIPT_NAME + PATH_INFO + QUERY_STRING;
 * - REQUEST_SCHEME is set to `gateway.url_scheme`, and HTTPS to `on` for https, so the three agree;
 * - every other variable (SCRIPT_FILENAME as Apache's FPM backend type sends it,
 *   `proxy:fcgi://host:port/path`, included) passes through unchanged.
 */
export function buildEnviron(vars: MetaVariables, options: EnvironOptions): Environ {
  const env: Record<string, unknown> = {};
  // A lazy signal goes in first (see RequestSignal.install).
  if (options.signal instanceof RequestSignal) options.signal.install(env);
  for (const k in vars) {
    const v = vars[k];
    if (v !== undefined) env[k] = v;
  }
  return completeEnviron(env, options);
}

/**
 * completeEnviron is {@link buildEnviron} in place: `env` holds the meta-variables (string
 * values, no `undefined`) and becomes the environ, without a copy. A front end that collects
 * its variables straight into a fresh object (the FastCGI responder) saves the copy; one with
 * a RequestSignal installs it on that object before the variables (RequestSignal.install).
 */
export function completeEnviron(env: Record<string, unknown>, options: EnvironOptions): Environ {
  const vars = env as MetaVariables;
  const method = vars.REQUEST_METHOD;
  if (method === undefined || method === '' || !TOKEN.test(method)) {
    throw new BridgeError(
      'CGI_ERR_BAD_ENVIRONMENT',
      method === undefined || method === ''
        ? 'cgi: REQUEST_METHOD is not set; this is not a CGI request'
        : `cgi: REQUEST_METHOD ${JSON.stringify(method)} is not a method token`,
      { status: 400 },
    );
  }
  const length = bodyLength(vars);
  const cl = vars.CONTENT_LENGTH;
  if (cl !== undefined) {
    if (cl === '') delete env.CONTENT_LENGTH;
    else if (cl !== String(length)) env.CONTENT_LENGTH = String(length);
  }
  if (vars.CONTENT_TYPE === '') delete env.CONTENT_TYPE;
  if (vars.REMOTE_USER === '') delete env.REMOTE_USER;
  if (vars.HTTP_PROXY !== undefined) delete env.HTTP_PROXY;
  const scriptName = vars.SCRIPT_NAME ?? '';
  const pathInfo = vars.PATH_INFO ?? '';
  const query = vars.QUERY_STRING ?? '';
  env.SCRIPT_NAME = scriptName;
  env.PATH_INFO = pathInfo;
  env.QUERY_STRING = query;
  const https = vars.HTTPS;
  const scheme = options.urlScheme ?? urlScheme(vars);
  env.REQUEST_SCHEME = scheme;
  if (scheme === 'https' && !httpsIsOn(https)) env.HTTPS = 'on';
  if (scheme === 'http' && httpsIsOn(https)) delete env.HTTPS; // the front end overrode it
  env.SERVER_NAME = vars.SERVER_NAME || (hostWithoutPort(vars.HTTP_HOST) ?? 'localhost');
  env.SERVER_PORT =
    vars.SERVER_PORT || (portOfHost(vars.HTTP_HOST) ?? (scheme === 'https' ? '443' : '80'));
  env.SERVER_PROTOCOL = vars.SERVER_PROTOCOL || 'HTTP/1.0';
  env.GATEWAY_INTERFACE = vars.GATEWAY_INTERFACE || 'CGI/1.1';
  if (!vars.REQUEST_URI) env.REQUEST_URI = requestUri(scriptName, pathInfo, query);
  env['gateway.version'] = VERSION;
  env['gateway.url_scheme'] = scheme;
  env['gateway.input'] = new BodyInput(options.input, length);
  env['gateway.errors'] = options.errors;
  env['gateway.multithread'] = options.multithread;
  env['gateway.multiprocess'] = options.multiprocess;
  env['gateway.run_once'] = options.runOnce;
  env['gateway.file_wrapper'] = fileWrapper;
  const signal = options.signal;
  if (!(signal instanceof RequestSignal)) env['gateway.signal'] = signal;
  else if (requestSignalOf(env) !== signal) signal.install(env);
  return env as Environ;
}

/**
 * metaVariablesFromPairs turns meta-variables received as a list (FastCGI params, an environment
 * block) into MetaVariables, applying the one rule for a name that occurs more than once:
 * - HTTP_COOKIE values are joined with `; ` and other HTTP_* values with `, `, in order. nginx
 *   before 1.23 sends one param per repeated header line (`Cookie: a=1` and `Cookie: b=2` arrive as
 *   two HTTP_COOKIE params) and lighttpd sends `X_Y` and `X-Y` as two HTTP_X_Y; joining gives
 *   what nginx 1.23+, Apache and lighttpd send for a repeated header (RFC 9110 §5.3,
 *   RFC 6265 §5.4).
 * - HTTP_HOST and every other name: the last one wins. A server refuses a request with two Host
 *   headers, so a repeat comes from configuration (`include fastcgi.conf` plus one's own
 *   `fastcgi_param SCRIPT_FILENAME`), where the later line is the intended override — what
 *   php-fpm, Go's net/http/fcgi and flup do.
 * The result has no prototype, so a name like `__proto__` or `constructor` is plain data.
 */
export function metaVariablesFromPairs(pairs: Iterable<MetaPair>): MetaVariables {
  const out: MetaVariables = Object.create(null) as MetaVariables;
  for (const pair of pairs) {
    // No destructuring into a fresh array: this runs for every param of every request.
    let name: string;
    let value: string;
    if ('name' in pair) {
      name = pair.name;
      value = pair.value;
    } else {
      name = pair[0];
      value = pair[1];
    }
    addMetaVariable(out, name, value);
  }
  return out;
}

/**
 * addMetaVariable adds one meta-variable to `vars` with the rule of
 * {@link metaVariablesFromPairs} for a name already there: HTTP_* values (not HTTP_HOST) are
 * joined, anything else is replaced.
 */
export function addMetaVariable(vars: MetaVariables, name: string, value: string): void {
  // Only an HTTP_* name (but HTTP_HOST) needs the previous value: one lookup less for the rest.
  if (name.charCodeAt(0) !== 0x48 || !name.startsWith('HTTP_') || name === 'HTTP_HOST') {
    vars[name] = value;
    return;
  }
  const prev = vars[name];
  vars[name] =
    prev === undefined ? value : `${prev}${name === 'HTTP_COOKIE' ? '; ' : ', '}${value}`;
}

/**
 * environBlockPairs splits a process environment block (`NAME=value\0...`, as in
 * `/proc/self/environ`) into decoded `[name, value]` pairs in order, duplicates kept. An entry
 * without `=` is skipped (execve(2) allows it; it names nothing).
 */
export function environBlockPairs(block: Uint8Array): [string, string][] {
  const pairs: [string, string][] = [];
  let start = 0;
  for (let i = 0; i <= block.length; i++) {
    if (i < block.length && block[i] !== 0) continue;
    const entry = block.subarray(start, i);
    start = i + 1;
    const eq = entry.indexOf(0x3d);
    if (eq > 0)
      pairs.push([decodeBytes(entry.subarray(0, eq)), decodeBytes(entry.subarray(eq + 1))]);
  }
  return pairs;
}

/**
 * hasRepeatedName tells whether an environment block names a variable more than once, looking
 * at the names' bytes only: the cheap test a caller makes before {@link metaVariablesFromProcessEnv},
 * which decodes the whole block.
 */
export function hasRepeatedName(block: Uint8Array): boolean {
  const bytes = Buffer.from(block.buffer, block.byteOffset, block.byteLength);
  const seen = new Set<string>();
  for (let start = 0; start < bytes.length;) {
    let end = bytes.indexOf(0, start);
    if (end < 0) end = bytes.length;
    const eq = bytes.indexOf(0x3d, start);
    if (eq > start && eq < end) {
      const name = bytes.toString('latin1', start, eq);
      if (seen.has(name)) return true;
      seen.add(name);
    }
    start = end + 1;
  }
  return false;
}

/**
 * metaVariablesFromProcessEnv is the CGI front end's view of its environment: `env` (normally
 * `process.env`), with the duplicate rule of {@link metaVariablesFromPairs} applied to the names
 * that occur more than once in `block`, the raw environment block (`/proc/self/environ`, or null
 * where there is none). Node's process.env shows only the first of two entries with one name:
 * nginx 1.22 + fcgiwrap passes two HTTP_COOKIE entries for two Cookie lines.
 */
export function metaVariablesFromProcessEnv(
  env: Record<string, string | undefined>,
  block: Uint8Array | null,
): MetaVariables {
  const out: MetaVariables = { ...env };
  if (block === null) return out;
  const pairs = environBlockPairs(block);
  const seen = new Set<string>();
  const repeated = new Set<string>();
  for (const [name] of pairs) (seen.has(name) ? repeated : seen).add(name);
  if (repeated.size === 0) return out;
  const merged = metaVariablesFromPairs(pairs.filter(([name]) => repeated.has(name)));
  for (const name of repeated) out[name] = merged[name];
  return out;
}

const META_NAME = /^[A-Z][A-Z0-9_]*$/;

/**
 * metaVariablesFromEnviron returns an environ's CGI meta-variables (string values with
 * upper-case names) for a child process: gateway keys and middleware keys are left out, and
 * HTTP_PROXY never passes (httpoxy). A value holding NUL cannot be passed in an environment
 * block (execve(2)) and is left out.
 */
export function metaVariablesFromEnviron(environ: Environ): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k in environ) {
    const v = environ[k];
    if (typeof v === 'string' && META_NAME.test(k) && k !== 'HTTP_PROXY' && !v.includes('\0'))
      out[k] = v;
  }
  return out;
}
