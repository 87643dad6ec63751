// HTTP request -> CGI meta-variables (RFC 3875 §4.1), the way Apache and nginx build them.
import type { IncomingMessage } from 'node:http';
import { hostWithoutPort, type MetaVariables } from './environ.js';
import { decodeLatin1, percentDecode, removeDotSegments } from './decode.js';

/** HttpMetaOptions says where the app is mounted and what the server calls itself. */
export interface HttpMetaOptions {
  /** scriptName is the mount point (SCRIPT_NAME); the rest of the path is PATH_INFO. */
  scriptName?: string;
  serverSoftware?: string;
  https?: boolean;
}

const NAME_CACHE = new Map<string, string>();

// RFC 3875 §4.1.18: HTTP_ + upper-cased name with '-' as '_'. Names holding '_' are dropped, as
// Apache 2.4 and nginx do, so X_Forwarded_For cannot pose as X-Forwarded-For.
function metaName(header: string): string | undefined {
  let n = NAME_CACHE.get(header);
  if (n === undefined) {
    if (header.includes('_')) return undefined;
    n = `HTTP_${header.toUpperCase().replace(/-/g, '_')}`;
    if (NAME_CACHE.size < 1000) NAME_CACHE.set(header, n);
  }
  return n;
}

/** splitTarget splits a request target into its raw path and query (no `?` -> empty query). */
export function splitTarget(url: string): { path: string; query: string } {
  const q = url.indexOf('?');
  const raw = q >= 0 ? url.slice(0, q) : url;
  // An absolute-form target (RFC 9112 §3.2.2) carries scheme and authority: keep only the path.
  const path = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw)
    ? raw.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/]*/i, '') || '/'
    : raw;
  return { path, query: q >= 0 ? url.slice(q + 1) : '' };
}

/**
 * metaVariablesFromHttp builds meta-variables from a node:http request: the path is
 * percent-decoded (by the UTF-8 rule) and dot segments are removed before it becomes
 * SCRIPT_NAME + PATH_INFO; QUERY_STRING and REQUEST_URI stay raw.
 */
export function metaVariablesFromHttp(
  req: IncomingMessage,
  options: HttpMetaOptions = {},
): MetaVariables {
  const url = req.url ?? '/';
  const { path, query } = splitTarget(url);
  const decoded = removeDotSegments(percentDecode(path));
  const scriptName = options.scriptName ?? '';
  let pathInfo = decoded;
  if (scriptName !== '' && (decoded === scriptName || decoded.startsWith(`${scriptName}/`))) {
    pathInfo = decoded.slice(scriptName.length);
  }
  const sock = req.socket;
  const vars: MetaVariables = {
    GATEWAY_INTERFACE: 'CGI/1.1',
    REQUEST_METHOD: req.method ?? 'GET',
    SCRIPT_NAME: scriptName,
    PATH_INFO: pathInfo,
    QUERY_STRING: query,
    REQUEST_URI: url,
    SERVER_PROTOCOL: `HTTP/${req.httpVersion}`,
    SERVER_SOFTWARE: options.serverSoftware ?? 'cgi-bridge',
    SERVER_PORT: sock.localPort === undefined ? '0' : String(sock.localPort),
  };
  if (sock.remoteAddress !== undefined) {
    vars.REMOTE_ADDR = sock.remoteAddress.startsWith('::ffff:')
      ? sock.remoteAddress.slice(7)
      : sock.remoteAddress;
    vars.REMOTE_PORT = String(sock.remotePort);
  }
  if (options.https) vars.HTTPS = 'on';
  const h = req.headers;
  for (const name in h) {
    const value = h[name];
    if (value === undefined) continue;
    if (name === 'content-length') {
      vars.CONTENT_LENGTH = value as string;
      continue;
    }
    if (name === 'content-type') {
      vars.CONTENT_TYPE = decodeLatin1(value as string);
      continue;
    }
    const meta = metaName(name);
    if (meta === undefined) continue;
    vars[meta] = decodeLatin1(Array.isArray(value) ? value.join(', ') : value);
  }
  const host = vars.HTTP_HOST;
  vars.SERVER_NAME = hostWithoutPort(host) ?? sock.localAddress ?? 'localhost';
  return vars;
}
