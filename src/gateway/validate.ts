// The contract checker (after Python's wsgiref.validate): middleware that checks both sides of the
// gateway interface — the environ and streams a server passes, and what the app does with them.
import { BridgeError } from '../errors.js';
import { kBodyLength, type SizedBody } from './file-wrapper.js';
import { findHeader, parseStatus, validateHeaders } from './headers.js';
import type {
  Body,
  Chunk,
  Environ,
  ErrorStream,
  GatewayApp,
  Header,
  InputStream,
  StartResponse,
  Write,
} from './types.js';

/**
 * VALIDATION_RULES names every check `validate()` makes, by the id that appears in its error
 * messages (`gateway: validate [id]: …`). "server" rules catch a front end breaking the
 * contract, "app" rules an application.
 */
export const VALIDATION_RULES = {
  // server: the environ
  'environ-object': 'server: environ is an object',
  'environ-required':
    'server: REQUEST_METHOD, SCRIPT_NAME, PATH_INFO, QUERY_STRING, SERVER_NAME, SERVER_PORT, SERVER_PROTOCOL, GATEWAY_INTERFACE and REQUEST_URI are present',
  'environ-strings': 'server: every key without a "." (a CGI meta-variable) has a string value',
  'environ-method': 'server: REQUEST_METHOD is a method token (RFC 9110 §9.1)',
  'environ-script-name':
    "server: SCRIPT_NAME is '' or starts with '/', and is not '/' alone (an app at the root has SCRIPT_NAME '' and PATH_INFO '/')",
  'environ-path-info': "server: PATH_INFO is '' or starts with '/'",
  'environ-server-port': 'server: SERVER_PORT is decimal digits',
  'environ-protocol': "server: SERVER_PROTOCOL is 'NAME/version' or 'INCLUDED' (RFC 3875 §4.1.16)",
  'environ-content-length': 'server: CONTENT_LENGTH, when present, is decimal digits (not empty)',
  'environ-httpoxy': 'server: HTTP_PROXY is never present (httpoxy, CVE-2016-5385)',
  'environ-version': 'server: gateway.version is [1, 0]',
  'environ-url-scheme': "server: gateway.url_scheme is 'http' or 'https'",
  'environ-input': 'server: gateway.input has read, readline, readlines and Symbol.asyncIterator',
  'environ-errors': 'server: gateway.errors has write, writelines and flush',
  'environ-flags':
    'server: gateway.multithread, gateway.multiprocess and gateway.run_once are booleans',
  'environ-signal': 'server: gateway.signal is an AbortSignal',
  'environ-file-wrapper': 'server: gateway.file_wrapper, when present, is a function',
  'app-arguments': 'server: the app is called with (environ, startResponse function)',
  // server: the input stream's results
  'input-result':
    'server: read() and readline() resolve to a Uint8Array, readlines() to an array of non-empty Uint8Arrays, for await yields non-empty Uint8Arrays',
  'input-bounded':
    'server: the input never yields more than CONTENT_LENGTH bytes (none when CONTENT_LENGTH is absent and the body is not chunked)',
  'input-exact':
    'server: read(n) returns n bytes unless the body ended, read() all that is left; nothing follows a short read',
  'input-line':
    "server: readline(limit) returns at most limit bytes, with a '\\n' only as its last byte",
  // server: the response side
  'close-once': 'server: close() on the body is called exactly once (never twice)',
  'close-called':
    'server: close() on the body is called at all (reported to gateway.errors when the body is garbage-collected unclosed)',
  'iterate-after-close': 'server: the body is not iterated after close()',
  // app: the input and error streams
  'input-argument':
    'app: read(size), readline(limit), readlines(hint) get at most one argument: undefined, null or an integer',
  'errors-argument':
    'app: gateway.errors.write() gets a string; writelines() an iterable of strings',
  // app: startResponse
  'start-response-arguments': 'app: startResponse gets 2 or 3 arguments',
  'start-response-twice': 'app: startResponse is called again only with excInfo (not undefined)',
  status:
    "app: the status is a string 'NNN Reason': a final status 200-599, a space, a reason without control characters",
  headers:
    'app: headers are an array of [name, value] string pairs; names are tokens; values have no CR, LF, NUL or other controls and no char above U+00FF; no Status header; one Content-Length at most, decimal digits',
  'hop-by-hop':
    'app: no hop-by-hop header (Connection, Keep-Alive, Transfer-Encoding, TE, Trailer, Upgrade, Proxy-*)',
  'content-type':
    'app: a response with a non-empty body (other than 204 and 304) has a Content-Type header',
  // app: the body
  body: 'app: the app returns (or resolves to) a string, a Uint8Array, or a sync or async iterable',
  chunk: 'app: every body chunk and every write() argument is a string or a Uint8Array',
  'start-response-first':
    'app: startResponse is called before the body produces its first chunk (for a single chunk or an array: before the app returns)',
  'content-length':
    'app: a declared Content-Length equals the bytes of the body produced through write() and the iterable (checked when the body ends; not for HEAD, 204, 304)',
} as const;

/** ValidationRule is the id of one check of {@link validate}. */
export type ValidationRule = keyof typeof VALIDATION_RULES;

function fail(rule: ValidationRule, detail: string): never {
  throw new BridgeError('GATEWAY_ERR_VALIDATION', `gateway: validate [${rule}]: ${detail}`);
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const DIGITS = /^\d+$/;
const PROTOCOL = /^(?:[A-Za-z][A-Za-z0-9+.-]*\/\d+(?:\.\d+)?|INCLUDED)$/;
const REQUIRED = [
  'REQUEST_METHOD',
  'SCRIPT_NAME',
  'PATH_INFO',
  'QUERY_STRING',
  'SERVER_NAME',
  'SERVER_PORT',
  'SERVER_PROTOCOL',
  'GATEWAY_INTERFACE',
  'REQUEST_URI',
] as const;
const NO_BODY_STATUS = new Set([204, 304]);

const show = (v: unknown): string =>
  typeof v === 'string' ? JSON.stringify(v) : v === null ? 'null' : typeof v;

function byteLength(chunk: Chunk): number {
  return typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.byteLength;
}

function isChunk(v: unknown): v is Chunk {
  return typeof v === 'string' || v instanceof Uint8Array;
}

function checkEnviron(environ: unknown): asserts environ is Environ {
  if (typeof environ !== 'object' || environ === null)
    fail('environ-object', `got ${show(environ)}`);
  const env = environ as Record<string, unknown>;
  for (const key of REQUIRED) {
    if (!(key in env)) fail('environ-required', `${key} is missing`);
  }
  for (const key of Object.keys(env)) {
    if (!key.includes('.') && typeof env[key] !== 'string') {
      fail('environ-strings', `${key} is ${show(env[key])}, not a string`);
    }
  }
  const s = (key: string): string => env[key] as string;
  if (!TOKEN.test(s('REQUEST_METHOD'))) {
    fail('environ-method', `REQUEST_METHOD ${show(env.REQUEST_METHOD)} is not a token`);
  }
  const scriptName = s('SCRIPT_NAME');
  if ((scriptName !== '' && !scriptName.startsWith('/')) || scriptName === '/') {
    fail('environ-script-name', `SCRIPT_NAME ${show(scriptName)}`);
  }
  const pathInfo = s('PATH_INFO');
  if (pathInfo !== '' && !pathInfo.startsWith('/')) {
    fail('environ-path-info', `PATH_INFO ${show(pathInfo)} does not start with '/'`);
  }
  if (!DIGITS.test(s('SERVER_PORT'))) {
    fail('environ-server-port', `SERVER_PORT ${show(env.SERVER_PORT)}`);
  }
  if (!PROTOCOL.test(s('SERVER_PROTOCOL'))) {
    fail('environ-protocol', `SERVER_PROTOCOL ${show(env.SERVER_PROTOCOL)}`);
  }
  if ('CONTENT_LENGTH' in env && !DIGITS.test(s('CONTENT_LENGTH'))) {
    fail('environ-content-length', `CONTENT_LENGTH ${show(env.CONTENT_LENGTH)}`);
  }
  if ('HTTP_PROXY' in env) fail('environ-httpoxy', 'HTTP_PROXY is in the environ');
  const version = env['gateway.version'];
  if (!Array.isArray(version) || version.length !== 2 || version[0] !== 1 || version[1] !== 0) {
    fail('environ-version', `gateway.version is ${JSON.stringify(version) ?? 'undefined'}`);
  }
  const scheme = env['gateway.url_scheme'];
  if (scheme !== 'http' && scheme !== 'https') {
    fail('environ-url-scheme', `gateway.url_scheme is ${show(scheme)}`);
  }
  const input = env['gateway.input'] as Record<string | symbol, unknown> | null | undefined;
  for (const m of ['read', 'readline', 'readlines', Symbol.asyncIterator] as const) {
    if (typeof input?.[m] !== 'function') {
      fail('environ-input', `gateway.input has no ${String(m)}()`);
    }
  }
  const errors = env['gateway.errors'] as Record<string, unknown> | null | undefined;
  for (const m of ['write', 'writelines', 'flush']) {
    if (typeof errors?.[m] !== 'function') fail('environ-errors', `gateway.errors has no ${m}()`);
  }
  for (const k of ['gateway.multithread', 'gateway.multiprocess', 'gateway.run_once']) {
    if (typeof env[k] !== 'boolean') fail('environ-flags', `${k} is ${show(env[k])}`);
  }
  if (!(env['gateway.signal'] instanceof AbortSignal)) {
    fail('environ-signal', `gateway.signal is ${show(env['gateway.signal'])}`);
  }
  const fw = env['gateway.file_wrapper'];
  if (fw !== undefined && typeof fw !== 'function') {
    fail('environ-file-wrapper', `gateway.file_wrapper is ${show(fw)}`);
  }
}

// expectedLength is the body length the environ announces: a number, or null for "to EOF".
function expectedLength(env: Environ): number | null {
  if (env.CONTENT_LENGTH !== undefined) return Number(env.CONTENT_LENGTH);
  const te = env.HTTP_TRANSFER_ENCODING;
  return te !== undefined && /chunked/i.test(te) ? null : 0;
}

function checkCountArg(args: unknown[], method: string): void {
  if (args.length > 1) fail('input-argument', `${method}() got ${args.length} arguments`);
  const v = args[0];
  if (v !== undefined && v !== null && !(typeof v === 'number' && Number.isInteger(v))) {
    fail('input-argument', `${method}(${show(v)}): not an integer`);
  }
}

function isBytes(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array;
}

// checkedInput wraps gateway.input: the app's arguments on the way in, the server's results on
// the way out. The underlying input serializes reads, so results arrive in call order.
function checkedInput(input: InputStream, env: Environ): InputStream {
  const length = expectedLength(env);
  let consumed = 0;
  let ended = false; // a short read was seen: nothing may follow
  const account = (bytes: Uint8Array, wanted: number | null, method: string): Uint8Array => {
    if (bytes.length > 0 && ended) {
      fail('input-exact', `${method}() returned ${bytes.length} bytes after a short read`);
    }
    consumed += bytes.length;
    if (length !== null && consumed > length) {
      fail('input-bounded', `${consumed} bytes read, CONTENT_LENGTH is ${length}`);
    }
    if (wanted !== null) {
      const left = length === null ? Infinity : length - (consumed - bytes.length);
      const full = Math.min(wanted, left);
      if (bytes.length < full && length !== null) {
        fail('input-exact', `${method}() returned ${bytes.length} bytes, ${full} were due`);
      }
      if (bytes.length < wanted) ended = true;
    }
    return bytes;
  };
  const checkLine = (line: Uint8Array, limit: number | null, method: string): void => {
    if (limit !== null && line.length > limit) {
      fail('input-line', `${method}() returned ${line.length} bytes, limit ${limit}`);
    }
    const nl = line.indexOf(10);
    if (nl >= 0 && nl !== line.length - 1) {
      fail('input-line', `${method}() returned a line with a '\\n' before its end`);
    }
  };
  const count = (v: unknown): number | null => (typeof v === 'number' && v >= 0 ? v : null);
  return {
    async read(...args: unknown[]): Promise<Uint8Array> {
      checkCountArg(args, 'read');
      const r: unknown = await input.read(...(args as [number?]));
      if (!isBytes(r)) fail('input-result', `read() resolved to ${show(r)}`);
      const size = count(args[0]);
      return account(r, size ?? Infinity, 'read');
    },
    async readline(...args: unknown[]): Promise<Uint8Array> {
      checkCountArg(args, 'readline');
      const r: unknown = await input.readline(...(args as [number?]));
      if (!isBytes(r)) fail('input-result', `readline() resolved to ${show(r)}`);
      checkLine(r, count(args[0]), 'readline');
      return account(r, null, 'readline');
    },
    async readlines(...args: unknown[]): Promise<Uint8Array[]> {
      checkCountArg(args, 'readlines');
      const r: unknown = await input.readlines(...(args as [number?]));
      if (!Array.isArray(r)) fail('input-result', `readlines() resolved to ${show(r)}`);
      for (const line of r as unknown[]) {
        if (!isBytes(line) || line.length === 0) {
          fail(
            'input-result',
            `readlines() gave a line that is ${isBytes(line) ? 'empty' : show(line)}`,
          );
        }
        checkLine(line, null, 'readlines');
        account(line, null, 'readlines');
      }
      return r as Uint8Array[];
    },
    async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
      for await (const chunk of input as AsyncIterable<unknown>) {
        if (!isBytes(chunk) || chunk.length === 0) {
          fail(
            'input-result',
            `for await yielded ${isBytes(chunk) ? 'an empty chunk' : show(chunk)}`,
          );
        }
        yield account(chunk, null, 'for await');
      }
    },
  };
}

function checkedErrors(errors: ErrorStream): ErrorStream {
  return {
    write(s: string): void {
      if (typeof s !== 'string') fail('errors-argument', `write(${show(s)})`);
      errors.write(s);
    },
    writelines(lines: Iterable<string>): void {
      if (
        lines === null ||
        typeof (lines as Partial<Iterable<string>>)[Symbol.iterator] !== 'function'
      ) {
        fail('errors-argument', `writelines(${show(lines)}): not iterable`);
      }
      const all = [...lines];
      for (const l of all)
        if (typeof l !== 'string') fail('errors-argument', `writelines() got ${show(l)}`);
      errors.writelines(all);
    },
    flush(): void {
      errors.flush();
    },
  };
}

// A body never closed is only noticed when it is garbage-collected (as wsgiref's __del__).
// Created on first use, so importing the library without validating costs nothing.
let unclosedRegistry: FinalizationRegistry<ErrorStream> | undefined;
function unclosed(): FinalizationRegistry<ErrorStream> {
  unclosedRegistry ??= new FinalizationRegistry<ErrorStream>((errors) => {
    try {
      errors.write(
        'gateway: validate [close-called]: a body was garbage-collected without close() being called\n',
      );
    } catch {
      // nothing left to tell
    }
  });
  return unclosedRegistry;
}

/** Per-request state shared by the wrappers. */
class RequestState {
  started = false;
  code = 0;
  declared: number | undefined;
  headers: Header[] = [];
  produced = 0; // body bytes through write() and the iterable
  sawBody = false;
  closed = false;

  constructor(readonly env: Environ) {}

  get dropsBody(): boolean {
    return this.env.REQUEST_METHOD === 'HEAD' || NO_BODY_STATUS.has(this.code);
  }

  // chunk checks one piece of body from the iterable or write().
  chunk(value: unknown, where: string): Chunk {
    if (!isChunk(value)) fail('chunk', `${where} ${show(value)}, not a string or Uint8Array`);
    const n = byteLength(value);
    if (n > 0 && !this.sawBody) {
      this.sawBody = true;
      if (
        this.started &&
        !NO_BODY_STATUS.has(this.code) &&
        findHeader(this.headers, 'content-type') === undefined
      ) {
        fail('content-type', `a ${this.code} response with a body has no Content-Type header`);
      }
    }
    this.produced += n;
    return value;
  }

  mustHaveStarted(what: string): void {
    if (!this.started) fail('start-response-first', `${what} before startResponse was called`);
  }

  // ended checks the declared length once the whole body was produced.
  ended(): void {
    this.mustHaveStarted('the body ended');
    if (this.declared !== undefined && !this.dropsBody && this.produced !== this.declared) {
      fail(
        'content-length',
        `the body has ${this.produced} bytes, the declared Content-Length is ${this.declared}`,
      );
    }
  }
}

function checkedStartResponse(req: RequestState, startResponse: StartResponse): StartResponse {
  return (...args: unknown[]): Write => {
    if (args.length < 2 || args.length > 3) {
      fail('start-response-arguments', `got ${args.length} arguments`);
    }
    const [status, headers, excInfo] = args;
    if (req.started && excInfo === undefined) {
      fail('start-response-twice', 'startResponse called a second time without excInfo');
    }
    let parsed;
    let list: Header[];
    try {
      parsed = parseStatus(status);
    } catch (e) {
      fail('status', e instanceof Error ? e.message : String(e));
    }
    try {
      list = validateHeaders(headers);
    } catch (e) {
      const rule =
        e instanceof BridgeError && e.code === 'GATEWAY_ERR_HOP_BY_HOP' ? 'hop-by-hop' : 'headers';
      fail(rule, e instanceof Error ? e.message : String(e));
    }
    const write = (startResponse as (...a: unknown[]) => Write)(...args);
    req.started = true;
    req.code = parsed.code;
    req.headers = list;
    const cl = findHeader(list, 'content-length');
    req.declared = cl === undefined ? undefined : Number(cl);
    return (chunk: Chunk) => write(req.chunk(chunk, 'write() got'));
  };
}

type AnyIterator = Iterator<unknown> | AsyncIterator<unknown>;

// checkedIterator checks each chunk the server pulls, and that it stops pulling after close().
function checkedIterator<I extends AnyIterator>(req: RequestState, inner: I, isAsync: boolean): I {
  let first = true;
  const onResult = (r: IteratorResult<unknown>): IteratorResult<unknown> => {
    if (r.done) {
      req.ended();
      return r;
    }
    if (first) {
      first = false;
      req.mustHaveStarted('the body produced its first chunk');
    }
    return { done: false, value: req.chunk(r.value, 'the body yielded') };
  };
  const before = (): void => {
    if (req.closed) fail('iterate-after-close', 'the body was iterated after close()');
  };
  const it = isAsync
    ? {
        async next(): Promise<IteratorResult<unknown>> {
          before();
          return onResult(await (inner as AsyncIterator<unknown>).next());
        },
        async return(v?: unknown): Promise<IteratorResult<unknown>> {
          return (await inner.return?.(v)) ?? { done: true, value: v };
        },
      }
    : {
        next(): IteratorResult<unknown> {
          before();
          return onResult((inner as Iterator<unknown>).next());
        },
        return(v?: unknown): IteratorResult<unknown> {
          return (
            ((inner as Iterator<unknown>).return?.(v) as IteratorResult<unknown>) ?? {
              done: true,
              value: v,
            }
          );
        },
      };
  return it as unknown as I;
}

// checkedBody wraps what the app returned in a body the pipeline treats the same way (same
// Content-Length rules), adding the checks and a close() that must be called exactly once.
function checkedBody(req: RequestState, body: unknown): Body {
  const original = body as { close?: () => void | Promise<void> } | null;
  const close = (): void | Promise<void> => {
    if (req.closed) fail('close-once', 'close() was called a second time');
    req.closed = true;
    unclosed().unregister(req);
    if (original !== null && typeof original === 'object' && typeof original.close === 'function') {
      return original.close();
    }
  };
  let wrapped: object;
  if (isChunk(body) || Array.isArray(body)) {
    // A single chunk or an array is complete when returned: check it all now. A one-element
    // array gets the same Content-Length a single chunk would.
    const chunks: unknown[] = isChunk(body) ? [body] : [...(body as unknown[])];
    req.mustHaveStarted('the app returned its body');
    for (const c of chunks) req.chunk(c, 'the body holds');
    req.ended();
    wrapped = chunks;
  } else if (body !== null && typeof body === 'object') {
    const src = body as Partial<AsyncIterable<unknown> & Iterable<unknown> & SizedBody>;
    const asyncIt = src[Symbol.asyncIterator];
    const syncIt = src[Symbol.iterator];
    if (typeof asyncIt !== 'function' && typeof syncIt !== 'function') {
      fail('body', 'the app returned an object that is not iterable');
    }
    const target: Record<string | symbol, unknown> = {};
    if (typeof asyncIt === 'function') {
      target[Symbol.asyncIterator] = () =>
        checkedIterator(req, asyncIt.call(body) as AsyncIterator<unknown>, true);
    } else {
      target[Symbol.iterator] = () =>
        checkedIterator(req, syncIt!.call(body) as Iterator<unknown>, false);
    }
    const sized = src[kBodyLength];
    if (typeof sized === 'function') target[kBodyLength] = () => sized.call(body);
    wrapped = target;
  } else {
    fail('body', `the app returned ${show(body)}`);
  }
  Object.defineProperty(wrapped, 'close', { value: close, enumerable: false });
  unclosed().register(wrapped, req.env['gateway.errors'], req);
  return wrapped as Body;
}

/**
 * validate wraps `app` in a checker of the gateway contract, for tests: failures throw a
 * `BridgeError` with code `GATEWAY_ERR_VALIDATION` and a message naming the rule
 * (`gateway: validate [status]: …`). It changes nothing else: a correct app behaves the same
 * with or without it. What it checks (ids as in {@link VALIDATION_RULES}):
 *
 * The server side (a front end breaking the contract):
 * - environ-object, environ-required: environ is an object with REQUEST_METHOD, SCRIPT_NAME,
 *   PATH_INFO, QUERY_STRING, SERVER_NAME, SERVER_PORT, SERVER_PROTOCOL, GATEWAY_INTERFACE, REQUEST_URI.
 * - environ-strings: every key without a "." is a string (dotted keys belong to gateway and middleware).
 * - environ-method: REQUEST_METHOD is a token. environ-script-name: SCRIPT_NAME is '' or starts
 *   with '/' and is not '/'. environ-path-info: PATH_INFO is '' or starts with '/'.
 * - environ-server-port: SERVER_PORT is digits. environ-protocol: SERVER_PROTOCOL is 'NAME/x.y'
 *   or 'INCLUDED'. environ-content-length: CONTENT_LENGTH, when present, is digits.
 * - environ-httpoxy: no HTTP_PROXY.
 * - environ-version, environ-url-scheme, environ-input, environ-errors, environ-flags,
 *   environ-signal, environ-file-wrapper: the gateway.* keys have the right types and methods.
 * - app-arguments: the app gets (environ, startResponse function).
 * - input-result, input-bounded, input-exact, input-line: gateway.input resolves to
 *   Uint8Arrays, never past CONTENT_LENGTH (nothing without CONTENT_LENGTH unless chunked),
 *   read(n) byte-exact, lines end at their only '\n' and respect the limit.
 * - close-once, iterate-after-close: the server calls the body's close() once and stops
 *   iterating after it; close-called: a body garbage-collected unclosed is reported to
 *   gateway.errors (it cannot be thrown: nobody is left to catch it).
 *
 * The app side:
 * - input-argument: read/readline/readlines get at most one argument, undefined, null or an integer.
 * - errors-argument: gateway.errors gets strings only.
 * - start-response-arguments: 2 or 3 arguments. start-response-twice: a second call passes excInfo.
 * - status: 'NNN Reason', 200-599, no control characters (1xx are the server's).
 * - headers: [name, value] string pairs, token names, no CR/LF/NUL/controls or chars above
 *   U+00FF in values, no Status header, one numeric Content-Length at most. hop-by-hop: none.
 * - content-type: a non-empty body (but for 204/304) comes with a Content-Type.
 * - body: a string, a Uint8Array or an iterable (a single chunk is allowed: it is not iterated
 *   character by character as in WSGI). chunk: every chunk and write() argument is a string or
 *   Uint8Array.
 * - start-response-first: startResponse before the first chunk (single chunk, array: before returning).
 * - content-length: a declared Content-Length equals the bytes produced (checked at the end of
 *   the body, not for HEAD, 204 and 304).
 *
 * Allowed on purpose: write() used while the body is being iterated (the pipeline keeps the
 * order); a body on HEAD, 204 or 304 (the pipeline drops it); excInfo on a first call.
 */
export function validate(app: GatewayApp): GatewayApp {
  return (...args: Parameters<GatewayApp>): Body | Promise<Body> => {
    if (args.length !== 2 || typeof args[1] !== 'function') {
      fail('app-arguments', `got ${args.length} arguments, startResponse ${show(args[1])}`);
    }
    const [environ, startResponse] = args;
    checkEnviron(environ);
    const env = {
      ...environ,
      'gateway.input': checkedInput(environ['gateway.input'], environ),
      'gateway.errors': checkedErrors(environ['gateway.errors']),
    } as Environ;
    const req = new RequestState(env);
    const returned = app(env, checkedStartResponse(req, startResponse));
    if (
      typeof returned === 'object' &&
      returned !== null &&
      typeof (returned as Partial<PromiseLike<unknown>>).then === 'function'
    ) {
      return Promise.resolve(returned).then((body) => checkedBody(req, body));
    }
    return checkedBody(req, returned);
  };
}
