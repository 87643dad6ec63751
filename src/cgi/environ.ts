// The translator: CGI meta-variables (a process environment, FastCGI params, an HTTP request)
// -> environ, and environ -> meta-variables for a child. RFC 3875 §4.1, plus what real servers send.
import { BridgeError } from '../errors.js';
import { fileWrapper } from '../gateway/file-wrapper.js';
import { BodyInput, type ByteSource } from '../gateway/input.js';
import type { Environ, ErrorStream } from '../gateway/types.js';
import { percentEncodePath } from './decode.js';

/** MetaVariables are CGI meta-variables by name; `undefined` means absent. */
export type MetaVariables = Record<string, string | undefined>;

/** EnvironOptions are what a front end supplies next to the meta-variables. */
export interface EnvironOptions {
  /** input is the body source (stdin, FCGI_STDIN, the HTTP request), or null when there is none. */
  input: ByteSource | null;
  errors: ErrorStream;
  signal: AbortSignal;
  multithread: boolean;
  multiprocess: boolean;
  runOnce: boolean;
  /** urlScheme forces the scheme (the HTTP front end knows it); otherwise HTTPS / REQUEST_SCHEME decide. */
  urlScheme?: 'http' | 'https';
}

const VERSION = Object.freeze([1, 0] as const);

/**
 * bodyLength tells how many body bytes follow: CONTENT_LENGTH when set; `null` (read to EOF) when
 * it is absent and the body is chunked (Apache mod_cgid passes only HTTP_TRANSFER_ENCODING);
 * 0 otherwise. An empty CONTENT_LENGTH (nginx on a GET) means absent. HTTP_CONTENT_LENGTH is
 * the client's header, not the body length, and is ignored here.
 */
export function bodyLength(vars: MetaVariables): number | null {
  const cl = vars.CONTENT_LENGTH;
  if (cl !== undefined && cl !== '') {
    if (!/^\d{1,15}$/.test(cl.trim())) {
      throw new BridgeError(
        'CGI_ERR_BAD_CONTENT_LENGTH',
        `cgi: CONTENT_LENGTH ${JSON.stringify(cl)} is not a number`,
        {
          status: 400,
        },
      );
    }
    return Number(cl.trim());
  }
  const te = vars.HTTP_TRANSFER_ENCODING;
  if (te !== undefined && /(^|,)\s*chunked\s*$/i.test(te)) return null;
  return 0;
}

/** urlScheme derives `gateway.url_scheme`: HTTPS=on|1 (any case) or REQUEST_SCHEME=https means https. */
export function urlScheme(vars: MetaVariables): 'http' | 'https' {
  const https = vars.HTTPS?.toLowerCase();
  if (https === 'on' || https === '1') return 'https';
  if (vars.REQUEST_SCHEME?.toLowerCase() === 'https') return 'https';
  return 'http';
}

/** requestUri rebuilds REQUEST_URI from SCRIPT_NAME + PATH_INFO + QUERY_STRING when a server sent none. */
export function requestUri(scriptName: string, pathInfo: string, query: string): string {
  const path = percentEncodePath(scriptName + pathInfo) || '/';
  return query === '' ? path : `${path}?${query}`;
}

/**
 * buildEnviron normalizes meta-variables into an environ. It fills what RFC 3875 requires
 * (SCRIPT_NAME, PATH_INFO, QUERY_STRING default to ''), drops empty CONTENT_LENGTH and
 * CONTENT_TYPE, drops HTTP_PROXY (httpoxy), rebuilds a missing REQUEST_URI, and adds the gateway
 * keys. A missing REQUEST_METHOD or a bad CONTENT_LENGTH is a coded error.
 */
export function buildEnviron(vars: MetaVariables, options: EnvironOptions): Environ {
  const env: Record<string, unknown> = {};
  for (const k in vars) {
    const v = vars[k];
    if (v !== undefined) env[k] = v;
  }
  const method = vars.REQUEST_METHOD;
  if (method === undefined || method === '' || !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(method)) {
    throw new BridgeError(
      'CGI_ERR_BAD_ENVIRONMENT',
      method === undefined || method === ''
        ? 'cgi: REQUEST_METHOD is not set; this is not a CGI request'
        : `cgi: REQUEST_METHOD ${JSON.stringify(method)} is not a method token`,
      { status: 400 },
    );
  }
  const length = bodyLength(vars);
  if (vars.CONTENT_LENGTH !== undefined) {
    if (vars.CONTENT_LENGTH === '') delete env.CONTENT_LENGTH;
    else env.CONTENT_LENGTH = vars.CONTENT_LENGTH.trim();
  }
  if (vars.CONTENT_TYPE === '') delete env.CONTENT_TYPE;
  // httpoxy (CVE-2016-5385): a client's Proxy: header must never pass for proxy configuration.
  delete env.HTTP_PROXY;
  const scriptName = vars.SCRIPT_NAME ?? '';
  const pathInfo = vars.PATH_INFO ?? '';
  const query = vars.QUERY_STRING ?? '';
  env.SCRIPT_NAME = scriptName;
  env.PATH_INFO = pathInfo;
  env.QUERY_STRING = query;
  const scheme = options.urlScheme ?? urlScheme(vars);
  env.SERVER_NAME ??= hostWithoutPort(vars.HTTP_HOST) ?? 'localhost';
  env.SERVER_PORT ??= scheme === 'https' ? '443' : '80';
  env.SERVER_PROTOCOL ??= 'HTTP/1.0';
  env.GATEWAY_INTERFACE ??= 'CGI/1.1';
  if (vars.REQUEST_URI === undefined || vars.REQUEST_URI === '') {
    env.REQUEST_URI = requestUri(scriptName, pathInfo, query);
  }
  env['gateway.version'] = VERSION;
  env['gateway.url_scheme'] = scheme;
  env['gateway.input'] = new BodyInput(options.input, length);
  env['gateway.errors'] = options.errors;
  env['gateway.multithread'] = options.multithread;
  env['gateway.multiprocess'] = options.multiprocess;
  env['gateway.run_once'] = options.runOnce;
  env['gateway.file_wrapper'] = fileWrapper;
  env['gateway.signal'] = options.signal;
  return env as Environ;
}

/** hostWithoutPort strips the port from a Host header value (`[::1]:8080` -> `::1`). */
export function hostWithoutPort(host: string | undefined): string | undefined {
  if (host === undefined || host === '') return undefined;
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end > 0 ? host.slice(1, end) : host;
  }
  const colon = host.indexOf(':');
  return colon >= 0 ? host.slice(0, colon) : host;
}

const META_NAME = /^[A-Z][A-Z0-9_]*$/;

/**
 * metaVariablesFromEnviron returns an environ's CGI meta-variables (string values with
 * upper-case names) for a child process: gateway keys and middleware keys are left out, and
 * HTTP_PROXY never passes (httpoxy).
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
