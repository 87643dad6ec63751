// Coded errors shared by every layer. Messages start with `cgi:`, `fcgi:` or `gateway:`; each
// class has a stable `code` (listed in docs/errors.md) so callers can branch without parsing text.

/** BridgeError is the base of every error this package throws on purpose. */
export class BridgeError extends Error {
  /** A stable machine-readable code such as `CGI_ERR_BAD_ENVIRONMENT`. */
  readonly code: string;
  /** The HTTP status a front end answers with when this error ends a request before headers. */
  readonly status: number;

  constructor(code: string, message: string, options?: { cause?: unknown; status?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BridgeError';
    this.code = code;
    this.status = options?.status ?? 500;
  }
}

/** isBridgeError tells whether `e` is a coded error of this package. */
export function isBridgeError(e: unknown): e is BridgeError {
  return e instanceof BridgeError;
}
