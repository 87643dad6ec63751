// Status line and header validation for app responses (RFC 9110 §5, PEP 3333 "The start_response() Callable").
import { BridgeError } from '../errors.js';
import type { Header } from './types.js';

// RFC 9110 §5.6.2: token = 1*tchar.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// RFC 9110 §5.5: field-value is VCHAR / obs-text / SP / HTAB; no CR, LF, NUL or other controls.
// Values are latin-1 strings (one char per byte), the same rule node:http enforces.
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
// RFC 9112 §4: status-code SP [ reason-phrase ]; PEP 3333 asks for 'NNN Reason'. The space is
// required, the reason may be empty. RFC 9110 §15: valid codes are 100-599; 1xx are interim
// responses the server handles itself, so an app's final status is 200-599.
const STATUS = /^([2-5]\d\d) ([\t\x20-\x7e\x80-\xff]*)$/;

// RFC 9110 §7.6.1: hop-by-hop fields belong to the server, never to the app (PEP 3333 forbids them too).
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'trailers',
  'transfer-encoding',
  'upgrade',
]);

/** ParsedStatus is a validated status line split in code and reason phrase. */
export interface ParsedStatus {
  code: number;
  reason: string;
}

// Apps send the same few statuses over and over: each is parsed once.
const STATUS_CACHE = new Map<string, ParsedStatus>();
const STATUS_CACHE_MAX = 256;

/** parseStatus validates an app's `'NNN Reason'` status and splits it (the result is frozen and may be shared). */
export function parseStatus(status: unknown): ParsedStatus {
  if (typeof status === 'string') {
    const cached = STATUS_CACHE.get(status);
    if (cached !== undefined) return cached;
  }
  const parsed = parseStatusOnce(status);
  if (STATUS_CACHE.size < STATUS_CACHE_MAX) STATUS_CACHE.set(status as string, parsed);
  return parsed;
}

function parseStatusOnce(status: unknown): ParsedStatus {
  if (typeof status !== 'string') {
    throw new BridgeError(
      'GATEWAY_ERR_BAD_STATUS',
      `gateway: status must be a string, got ${typeof status}`,
    );
  }
  const m = STATUS.exec(status);
  if (!m) {
    throw new BridgeError(
      'GATEWAY_ERR_BAD_STATUS',
      `gateway: status ${JSON.stringify(status)} is not 'NNN Reason' with a final status 200-599 and no control characters`,
    );
  }
  return Object.freeze({ code: Number(m[1]), reason: m[2] ?? '' });
}

/** validateHeaders checks an app's header list and returns a copy; it throws a coded error on the first bad one. */
export function validateHeaders(headers: unknown): Header[] {
  if (!Array.isArray(headers)) {
    throw new BridgeError(
      'GATEWAY_ERR_BAD_HEADER',
      'gateway: headers must be an array of [name, value] pairs',
    );
  }
  const out: Header[] = [];
  let contentLength: string | undefined;
  for (const h of headers as unknown[]) {
    if (
      !Array.isArray(h) ||
      h.length !== 2 ||
      typeof h[0] !== 'string' ||
      typeof h[1] !== 'string'
    ) {
      throw new BridgeError(
        'GATEWAY_ERR_BAD_HEADER',
        `gateway: header ${String(h)} is not a [name, value] pair of strings`,
      );
    }
    const [name, value] = h as [string, string];
    if (!TOKEN.test(name)) {
      throw new BridgeError(
        'GATEWAY_ERR_BAD_HEADER',
        `gateway: header name ${JSON.stringify(name)} is not a token`,
      );
    }
    if (!FIELD_VALUE.test(value)) {
      throw new BridgeError(
        'GATEWAY_ERR_BAD_HEADER',
        `gateway: header ${name} has a control character (CR, LF, NUL …) or a character above U+00FF in its value`,
      );
    }
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower)) {
      throw new BridgeError(
        'GATEWAY_ERR_HOP_BY_HOP',
        `gateway: hop-by-hop header ${name} is the server's to set, not the app's`,
      );
    }
    // RFC 3875 §6.3.3: Status is a CGI control field; as a header it would be ambiguous on the CGI front end.
    if (lower === 'status') {
      throw new BridgeError(
        'GATEWAY_ERR_BAD_HEADER',
        'gateway: set the status through startResponse, not a Status header',
      );
    }
    if (lower === 'content-length') {
      if (!/^\d{1,15}$/.test(value)) {
        throw new BridgeError(
          'GATEWAY_ERR_BAD_HEADER',
          `gateway: Content-Length ${JSON.stringify(value)} is not a number`,
        );
      }
      // RFC 9110 §8.6: a repeated Content-Length makes the message length ambiguous.
      if (contentLength !== undefined) {
        throw new BridgeError(
          'GATEWAY_ERR_BAD_HEADER',
          'gateway: more than one Content-Length header',
        );
      }
      contentLength = value;
    }
    out.push([name, value]);
  }
  return out;
}

/** findHeader returns the value of the first header called `name` (case-insensitive). */
export function findHeader(headers: readonly Header[], name: string): string | undefined {
  const lower = name.toLowerCase();
  for (const [n, v] of headers) if (n.toLowerCase() === lower) return v;
  return undefined;
}
