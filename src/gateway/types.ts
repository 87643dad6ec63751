// The gateway interface: the types every app and every front end share (docs/gateway-interface.md).

/** Chunk is one piece of a response body; strings are sent as UTF-8. */
export type Chunk = Uint8Array | string;

/**
 * Body is what an app returns: any sync or async iterable of chunks (an array, a generator,
 * a stream), a single chunk, or a `gateway.file_wrapper` result. `close()`, when present, is
 * called exactly once when the server is done with the body, on success, error or abort.
 */
export type Body = (Iterable<Chunk> | AsyncIterable<Chunk> | Chunk) & {
  close?(): void | Promise<void>;
};

/** Write is the legacy `write()` callable returned by `startResponse`; await it for backpressure. */
export type Write = (chunk: Chunk) => void | Promise<void>;

/** A response header: `[name, value]`. */
export type Header = [string, string];

/**
 * StartResponse begins the response. `status` is `'NNN Reason'`. A second call is an error
 * unless `excInfo` is passed (not `undefined`); after headers were sent, `excInfo` is re-thrown.
 */
export type StartResponse = (status: string, headers: Header[], excInfo?: unknown) => Write;

/** GatewayApp is an application: called once per request. */
export type GatewayApp = (environ: Environ, startResponse: StartResponse) => Body | Promise<Body>;

/** InputStream is `gateway.input`: the request body, byte-exact, never past CONTENT_LENGTH. */
export interface InputStream extends AsyncIterable<Uint8Array> {
  /** read returns up to `size` bytes (all that is left when omitted); empty at the end. */
  read(size?: number): Promise<Uint8Array>;
  /** readline returns one line including its `\n`, at most `limit` bytes; empty at the end. */
  readline(limit?: number): Promise<Uint8Array>;
  /** readlines returns the remaining lines, stopping once about `hint` bytes were read. */
  readlines(hint?: number): Promise<Uint8Array[]>;
}

/** ErrorStream is `gateway.errors`: text for the server's error log (stderr, FCGI_STDERR, log). */
export interface ErrorStream {
  /** write adds text to the error log. */
  write(s: string): void;
  /** writelines writes each string in turn (no newlines are added). */
  writelines(lines: Iterable<string>): void;
  /** flush pushes buffered text out. */
  flush(): void;
}

/** FileWrapper is `gateway.file_wrapper`: turns a path or an open fd into an efficiently sent body. */
export type FileWrapper = (file: string | number, blockSize?: number) => Body;

/** The gateway keys of an environ, next to the CGI meta-variables. */
export interface GatewayKeys {
  'gateway.version': readonly [1, 0];
  'gateway.url_scheme': 'http' | 'https';
  'gateway.input': InputStream;
  'gateway.errors': ErrorStream;
  'gateway.multithread': boolean;
  'gateway.multiprocess': boolean;
  'gateway.run_once': boolean;
  'gateway.file_wrapper'?: FileWrapper;
  'gateway.signal': AbortSignal;
}

/** The CGI meta-variables (RFC 3875 §4.1) that every environ carries, always as strings. */
export interface CgiVariables {
  REQUEST_METHOD: string;
  SCRIPT_NAME: string;
  PATH_INFO: string;
  QUERY_STRING: string;
  SERVER_NAME: string;
  SERVER_PORT: string;
  SERVER_PROTOCOL: string;
  REQUEST_URI: string;
  GATEWAY_INTERFACE: string;
  CONTENT_TYPE?: string;
  CONTENT_LENGTH?: string;
  REMOTE_ADDR?: string;
  REMOTE_PORT?: string;
  REMOTE_HOST?: string;
  REMOTE_USER?: string;
  REMOTE_IDENT?: string;
  AUTH_TYPE?: string;
  PATH_TRANSLATED?: string;
  SERVER_SOFTWARE?: string;
  SCRIPT_FILENAME?: string;
  DOCUMENT_ROOT?: string;
  HTTPS?: string;
}

/**
 * Environ is what an app receives: every CGI meta-variable as a string (HTTP_* included) plus
 * the `gateway.*` keys. Middleware may add keys of its own (use a dotted prefix).
 */
export type Environ = GatewayKeys &
  CgiVariables & { [name: `HTTP_${string}`]: string | undefined } & { [name: string]: unknown };
