// HTTP request -> CGI meta-variables (RFC 3875 §4.1): the built-in HTTP server's side of the
// translator, building what Apache, lighttpd and nginx build (docs/translator.md).
import type { IncomingMessage } from 'node:http';
import { isIPv4, isIPv6 } from 'node:net';
import { BridgeError } from '../errors.js';
import { hostWithoutPort, portOfHost, type MetaVariables } from './environ.js';
import { decodeLatin1, percentDecode, removeDotSegments } from './decode.js';

/** HttpMetaOptions says where the app is mounted and what the server calls itself. */
export interface HttpMetaOptions {
  /**
   * scriptName is the mount point (SCRIPT_NAME, decoded; a trailing `/` is ignored); the rest of
   * the path is PATH_INFO. A request outside it is `CGI_ERR_OUTSIDE_MOUNT` (404).
   */
  scriptName?: string;
  serverSoftware?: string;
  https?: boolean;
}

const NAME_CACHE = new Map<string, string | null>();

// RFC 3875 §4.1.18: HTTP_ + upper-cased name with '-' as '_'. Names holding '_' are dropped, as
// Apache 2.4 and nginx do (lighttpd 1.4.69 does not), so X_Forwarded_For cannot pose as
// X-Forwarded-For. Proxy is dropped (httpoxy, CVE-2016-5385), as Apache and lighttpd do.
// Content-Length and Content-Type are CONTENT_LENGTH / CONTENT_TYPE only (RFC 3875 §4.1.18:
// "available to the script in other variables"), as with Apache.
function metaName(header: string): string | null {
  let n = NAME_CACHE.get(header);
  if (n === undefined) {
    n =
      header.includes('_') || header === 'proxy'
        ? null
        : `HTTP_${header.toUpperCase().replace(/-/g, '_')}`;
    if (NAME_CACHE.size < 1000) NAME_CACHE.set(header, n);
  }
  return n;
}

/** RequestTarget is a request target split into its parts (raw: nothing is decoded). */
export interface RequestTarget {
  /** path is the raw path: `/` and beyond, without the query. */
  path: string;
  /** query is what follows the first `?`, or '' when there is none. */
  query: string;
  /** authority is the host[:port] of an absolute-form target (RFC 9112 §3.2.2), userinfo removed. */
  authority?: string;
}

const ABSOLUTE_FORM = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i;

/** splitTarget splits a request target into its raw path and query (no `?` -> empty query). */
export function splitTarget(url: string): RequestTarget {
  const q = url.indexOf('?');
  let path = q >= 0 ? url.slice(0, q) : url;
  const query = q >= 0 ? url.slice(q + 1) : '';
  // An absolute-form target (RFC 9112 §3.2.2) carries scheme and authority: keep only the path.
  const m = ABSOLUTE_FORM.exec(path);
  if (m === null) return { path, query };
  path = path.slice(m[0].length) || '/';
  const authority = m[1]!.slice(m[1]!.lastIndexOf('@') + 1);
  return { path, query, authority };
}

function badTarget(url: string, why: string): BridgeError {
  return new BridgeError(
    'CGI_ERR_BAD_REQUEST_TARGET',
    `cgi: request target ${JSON.stringify(url)} ${why}`,
    { status: 400 },
  );
}

const BAD_ESCAPE = /%(?![0-9A-Fa-f]{2})/;
// Nothing to decode, no dot segment, no `//`, all ASCII: the path is used as it is.
const NEEDS_WORK = /%|\/\.|\/\/|[^\x00-\x7f]/; // eslint-disable-line no-control-regex

/**
 * requestPath turns a raw origin-form path into the decoded path that becomes
 * SCRIPT_NAME + PATH_INFO (RFC 3875 §4.1.5, §4.1.13): percent-decoded by the UTF-8 rule, runs
 * of `/` merged (Apache's MergeSlashes and nginx's merge_slashes default), then dot segments
 * removed (RFC 3986 §5.2.4; `%2e%2e` counts, as with nginx). `%2F` is decoded to `/`, as
 * nginx and lighttpd do (Apache refuses it by default with a 404); REQUEST_URI keeps the raw form
 * for an app that must tell them apart. A path not starting with `/`, a `%` without two hex
 * digits, or an encoded NUL (`%00`) is `CGI_ERR_BAD_REQUEST_TARGET` (400), as with Apache and nginx.
 */
export function requestPath(rawPath: string): string {
  if (!rawPath.startsWith('/')) throw badTarget(rawPath, 'is not an absolute path');
  if (!NEEDS_WORK.test(rawPath)) return rawPath;
  if (BAD_ESCAPE.test(rawPath)) throw badTarget(rawPath, 'holds a bad percent escape');
  const decoded = percentDecode(rawPath);
  if (decoded.includes('\0')) throw badTarget(rawPath, 'holds an encoded NUL');
  return removeDotSegments(decoded.replace(/\/{2,}/g, '/'));
}

// node reports an IPv4 peer on a dual-stack socket as ::ffff:a.b.c.d; CGI wants a.b.c.d.
function plainAddress(address: string): string {
  return address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address;
}

/**
 * metaVariablesFromHttp builds meta-variables from a node:http request, for buildEnviron:
 * SCRIPT_NAME + PATH_INFO from the path as {@link requestPath} decodes it, split at the mount
 * point; QUERY_STRING raw; REQUEST_URI raw in origin form (an absolute-form target loses scheme
 * and authority, and its authority becomes HTTP_HOST, RFC 9112 §3.2.2); one HTTP_* per header
 * (node joins repeated lines with `, `, Cookie with `; `; names with `_` and Proxy dropped);
 * SERVER_NAME from the Host header (`[::1]` keeps its brackets, RFC 3875 §4.1.14) else the local
 * address; REMOTE_ADDR / SERVER_ADDR without node's `::ffff:`. Every value that came as bytes is
 * decoded by the UTF-8 rule (src/cgi/decode.ts). Throws `CGI_ERR_BAD_REQUEST_TARGET` (400) or
 * `CGI_ERR_OUTSIDE_MOUNT` (404).
 */
export function metaVariablesFromHttp(
  req: IncomingMessage,
  options: HttpMetaOptions = {},
): MetaVariables {
  const url = req.url ?? '/';
  const target = splitTarget(url);
  const decoded = requestPath(target.path);
  const scriptName = (options.scriptName ?? '').replace(/\/+$/, '');
  let pathInfo = decoded;
  if (scriptName !== '') {
    if (decoded !== scriptName && !decoded.startsWith(`${scriptName}/`)) {
      throw new BridgeError(
        'CGI_ERR_OUTSIDE_MOUNT',
        `cgi: ${JSON.stringify(decoded)} is not under ${JSON.stringify(scriptName)}`,
        { status: 404 },
      );
    }
    pathInfo = decoded.slice(scriptName.length);
  }
  const https = options.https === true;
  const sock = req.socket;
  const requestUri =
    target.query === '' && !url.endsWith('?') ? target.path : `${target.path}?${target.query}`;
  const vars: MetaVariables = {
    GATEWAY_INTERFACE: 'CGI/1.1',
    REQUEST_METHOD: req.method ?? 'GET',
    REQUEST_SCHEME: https ? 'https' : 'http',
    SCRIPT_NAME: scriptName,
    PATH_INFO: pathInfo,
    QUERY_STRING: decodeLatin1(target.query),
    REQUEST_URI: decodeLatin1(requestUri),
    SERVER_PROTOCOL: `HTTP/${req.httpVersion}`,
    SERVER_SOFTWARE: options.serverSoftware ?? 'cgi-bridge',
  };
  if (https) vars.HTTPS = 'on';
  if (sock.remoteAddress !== undefined) {
    vars.REMOTE_ADDR = plainAddress(sock.remoteAddress);
    vars.REMOTE_PORT = String(sock.remotePort);
  }
  const local = sock.localAddress === undefined ? undefined : plainAddress(sock.localAddress);
  if (local !== undefined) vars.SERVER_ADDR = local;
  const h = req.headers;
  for (const name in h) {
    const value = h[name];
    if (value === undefined) continue;
    const text = decodeLatin1(Array.isArray(value) ? value.join(', ') : value);
    if (name === 'content-length') vars.CONTENT_LENGTH = text;
    else if (name === 'content-type') vars.CONTENT_TYPE = text;
    else {
      const meta = metaName(name);
      if (meta !== null) vars[meta] = text;
    }
  }
  if (target.authority !== undefined) vars.HTTP_HOST = decodeLatin1(target.authority);
  const host = vars.HTTP_HOST;
  vars.SERVER_NAME =
    hostWithoutPort(host) ??
    (local === undefined ? 'localhost' : isIPv6(local) ? `[${local}]` : local);
  vars.SERVER_PORT =
    sock.localPort !== undefined
      ? String(sock.localPort)
      : (portOfHost(host) ?? (https ? '443' : '80'));
  return vars;
}
