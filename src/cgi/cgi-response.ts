// The host side of RFC 3875 §6: an incremental parser of the response head a CGI program writes
// to its stdout (header lines up to a blank line, or an nph- script's own status line).
import { BridgeError } from '../errors.js';
import type { Header } from '../gateway/types.js';

/** DEFAULT_MAX_HEADER_LINE is the longest header line a program may write: 8 KiB (Apache's HUGE_STRING_LEN). */
export const DEFAULT_MAX_HEADER_LINE = 8192;
/** DEFAULT_MAX_HEADERS is how many header lines a program may write: 100 (Apache's LimitRequestFields). */
export const DEFAULT_MAX_HEADERS = 100;

/** CgiResponseOptions configure {@link CgiResponseParser}. */
export interface CgiResponseOptions {
  /** nph is true for an nph- script: its output starts with an HTTP status line (RFC 3875 §5). */
  nph?: boolean;
  /** maxHeaderLine limits one header line in bytes, without its line end. */
  maxHeaderLine?: number;
  /** maxHeaders limits the number of header lines. */
  maxHeaders?: number;
}

/**
 * CgiResponseHead is what a program's head asks for. `response`: send `code reason` with
 * `headers` and the program's body (a document, or a client redirect, RFC 3875 §6.2.1, §6.2.3,
 * §6.2.4). `local-redirect`: the server fetches `location` itself (RFC 3875 §6.2.2) and the
 * program's body is discarded.
 */
export interface CgiResponseHead {
  kind: 'response' | 'local-redirect';
  code: number;
  reason: string;
  headers: Header[];
  /** location is the Location field's value, when there was one. */
  location?: string;
}

// RFC 9110 §5.6.2: token = 1*tchar.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// RFC 9110 §5.5: VCHAR / obs-text / SP / HTAB; lines are read as latin-1, one char per byte.
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
// RFC 3875 §6.3.3: Status = "Status:" status-code SP reason-phrase; the reason may be missing.
const STATUS_VALUE = /^([0-9]{3})(?:[ \t]+(.*))?$/;
// RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ].
const STATUS_LINE = /^HTTP\/[0-9]\.[0-9] ([0-9]{3})(?: (.*))?$/;
const OWS = /^[ \t]+|[ \t]+$/g;
// RFC 3875 §6.2.2: local-pathquery = abs-path [ "?" query-string ]; `//host` is a network path.
const LOCAL_PATH = /^\/(?!\/)/;
// RFC 9110 §7.6.1: the front end frames the response; a program's hop-by-hop fields are dropped.
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

function malformed(code: string, message: string): BridgeError {
  return new BridgeError(code, `cgi: ${message}`, { status: 502 });
}

function quoteLine(line: string): string {
  return JSON.stringify(line.length > 80 ? `${line.slice(0, 80)}…` : line);
}

// Reason phrases of RFC 9110 §15 and the rest of the IANA status code registry (WebDAV,
// RFC 6585, RFC 7725 …): a table here, because importing node:http for STATUS_CODES would load
// the HTTP stack into every CGI child that imports the package root.
const REASONS: ReadonlyMap<number, string> = new Map(
  `200 OK
201 Created
202 Accepted
203 Non-Authoritative Information
204 No Content
205 Reset Content
206 Partial Content
207 Multi-Status
208 Already Reported
226 IM Used
300 Multiple Choices
301 Moved Permanently
302 Found
303 See Other
304 Not Modified
305 Use Proxy
307 Temporary Redirect
308 Permanent Redirect
400 Bad Request
401 Unauthorized
402 Payment Required
403 Forbidden
404 Not Found
405 Method Not Allowed
406 Not Acceptable
407 Proxy Authentication Required
408 Request Timeout
409 Conflict
410 Gone
411 Length Required
412 Precondition Failed
413 Content Too Large
414 URI Too Long
415 Unsupported Media Type
416 Range Not Satisfiable
417 Expectation Failed
418 I'm a Teapot
421 Misdirected Request
422 Unprocessable Content
423 Locked
424 Failed Dependency
425 Too Early
426 Upgrade Required
428 Precondition Required
429 Too Many Requests
431 Request Header Fields Too Large
451 Unavailable For Legal Reasons
500 Internal Server Error
501 Not Implemented
502 Bad Gateway
503 Service Unavailable
504 Gateway Timeout
505 HTTP Version Not Supported
506 Variant Also Negotiates
507 Insufficient Storage
508 Loop Detected
510 Not Extended
511 Network Authentication Required`
    .split('\n')
    .map((e) => [Number(e.slice(0, 3)), e.slice(4)] as const),
);

/** reasonFor returns the standard reason phrase of `code` (RFC 9110 §15), or '' for an unknown code. */
export function reasonFor(code: number): string {
  return REASONS.get(code) ?? '';
}

/**
 * CgiResponseParser reads a CGI program's output head incrementally: `push` each stdout chunk
 * until it returns the bytes after the head (the start of the body, maybe empty), then read
 * `head`. Lines end with LF or CRLF (RFC 3875 §6.3 allows either); a line starting with SP or
 * HTAB continues the previous field (obs-fold, joined with one SP as RFC 9112 §5.2 permits).
 * Every failure is a BridgeError with status 502:
 * - `CGI_ERR_NO_OUTPUT` (from `end`): the program wrote nothing;
 * - `CGI_ERR_HEADERS_INCOMPLETE` (from `end`): the output ended before the blank line;
 * - `CGI_ERR_BAD_HEADER`: a line without a colon, a name that is not a token, a control char in a
 *   value, a bad Status or nph status line (a final status 200-599 is required), a repeated
 *   Status, Content-Type or Location (RFC 3875 §6.3: each CGI field at most once), a bad or
 *   repeated Content-Length;
 * - `CGI_ERR_NO_CONTENT_TYPE`: neither Content-Type, nor Status, nor Location (RFC 3875 §6.2.1);
 * - `CGI_ERR_HEADER_TOO_LONG`, `CGI_ERR_TOO_MANY_HEADERS`: a limit was passed.
 * The head's rules: Status sets the code and keeps the program's reason phrase (the standard one
 * when it gave none); a Location with a local path and no other status than 200 is a local
 * redirect; any other Location is a client redirect, 302 Found unless Status says otherwise;
 * otherwise 200 OK. Hop-by-hop fields are dropped; the rest keep their order and spelling.
 */
export class CgiResponseParser {
  /** head is the parsed head, once `push` returned the body's first bytes. */
  head: CgiResponseHead | undefined;
  private readonly nph: boolean;
  private readonly maxLine: number;
  private readonly maxHeaders: number;
  private partial: Buffer | null = null;
  private fields: Header[] = [];
  private statusLine: { code: number; reason: string } | undefined;
  private sawBytes = false;

  constructor(options: CgiResponseOptions = {}) {
    this.nph = options.nph === true;
    this.maxLine = options.maxHeaderLine ?? DEFAULT_MAX_HEADER_LINE;
    this.maxHeaders = options.maxHeaders ?? DEFAULT_MAX_HEADERS;
  }

  /**
   * push feeds one chunk of output. It returns undefined while the head is incomplete, and the
   * rest of the chunk (the body's first bytes) once the blank line was seen; it throws a coded
   * error for a malformed head. Chunks after that belong to the body and must not be pushed.
   */
  push(chunk: Uint8Array): Uint8Array | undefined {
    if (this.head) throw new Error('CgiResponseParser: push after the head was complete');
    if (chunk.length === 0) return undefined;
    this.sawBytes = true;
    let buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (this.partial !== null) {
      buf = Buffer.concat([this.partial, buf]);
      this.partial = null;
    }
    let start = 0;
    for (;;) {
      const lf = buf.indexOf(10, start);
      if (lf < 0) break;
      let end = lf;
      if (end > start && buf[end - 1] === 13) end--;
      if (end - start > this.maxLine) throw this.tooLong();
      if (end === start) {
        this.head = this.finish();
        return buf.subarray(lf + 1);
      }
      this.line(buf.toString('latin1', start, end));
      start = lf + 1;
    }
    // An unfinished line may still get its CR: allow one byte for it.
    if (buf.length - start > this.maxLine + 1) throw this.tooLong();
    if (start < buf.length) this.partial = Buffer.from(buf.subarray(start));
    return undefined;
  }

  /** end reports the end of the output before the head was complete: it always throws. */
  end(): never {
    if (!this.sawBytes) throw malformed('CGI_ERR_NO_OUTPUT', 'the program wrote no output');
    throw malformed(
      'CGI_ERR_HEADERS_INCOMPLETE',
      'the program ended its output before the blank line that ends its headers',
    );
  }

  private tooLong(): BridgeError {
    return malformed(
      'CGI_ERR_HEADER_TOO_LONG',
      `a header line from the program is longer than ${this.maxLine} bytes`,
    );
  }

  private line(text: string): void {
    if (this.nph && this.statusLine === undefined) {
      const m = STATUS_LINE.exec(text);
      const code = m ? Number(m[1]) : 0;
      if (!m || code < 200 || code > 599 || !FIELD_VALUE.test(m[2] ?? '')) {
        throw malformed('CGI_ERR_BAD_HEADER', `bad nph status line ${quoteLine(text)}`);
      }
      this.statusLine = { code, reason: m[2] ?? reasonFor(code) };
      return;
    }
    const first = text.charCodeAt(0);
    if ((first === 0x20 || first === 0x09) && this.fields.length > 0) {
      const last = this.fields[this.fields.length - 1]!;
      last[1] = `${last[1]} ${text.replace(OWS, '')}`.replace(OWS, '');
      return;
    }
    if (this.fields.length >= this.maxHeaders) {
      throw malformed(
        'CGI_ERR_TOO_MANY_HEADERS',
        `the program wrote more than ${this.maxHeaders} header lines`,
      );
    }
    const colon = text.indexOf(':');
    const name = colon < 0 ? '' : text.slice(0, colon);
    if (!TOKEN.test(name)) {
      throw malformed('CGI_ERR_BAD_HEADER', `malformed header line ${quoteLine(text)}`);
    }
    this.fields.push([name, text.slice(colon + 1).replace(OWS, '')]);
  }

  private finish(): CgiResponseHead {
    let status: { code: number; reason: string } | undefined;
    let contentType = false;
    let contentLength = false;
    let location: string | undefined;
    const headers: Header[] = [];
    for (const [name, value] of this.fields) {
      if (!FIELD_VALUE.test(value)) {
        throw malformed('CGI_ERR_BAD_HEADER', `header ${name} has a control character`);
      }
      const lower = name.toLowerCase();
      if (HOP_BY_HOP.has(lower)) continue;
      if (lower === 'status') {
        // An nph script's status line is authoritative; a Status field there is not a header.
        if (this.nph) continue;
        const m = STATUS_VALUE.exec(value);
        const code = m ? Number(m[1]) : 0;
        if (!m || code < 200 || code > 599 || status !== undefined) {
          throw malformed(
            'CGI_ERR_BAD_HEADER',
            status !== undefined
              ? 'the program wrote Status twice'
              : `bad Status ${JSON.stringify(value)}: a final status 200-599 is required`,
          );
        }
        status = { code, reason: m[2] ? m[2] : reasonFor(code) };
        continue;
      }
      if (lower === 'content-type' || lower === 'location') {
        if ((lower === 'location' ? location !== undefined : contentType) && !this.nph) {
          throw malformed('CGI_ERR_BAD_HEADER', `the program wrote ${name} twice`);
        }
        if (lower === 'location') {
          if (value === '')
            throw malformed('CGI_ERR_BAD_HEADER', 'the program wrote an empty Location');
          location = value;
        } else contentType = true;
      } else if (lower === 'content-length') {
        // RFC 9110 §8.6: a repeated Content-Length makes the length ambiguous.
        if (!/^[0-9]{1,15}$/.test(value) || contentLength) {
          throw malformed(
            'CGI_ERR_BAD_HEADER',
            `bad or repeated Content-Length ${JSON.stringify(value)}`,
          );
        }
        contentLength = true;
      }
      headers.push([name, value]);
    }
    const wroteFields = this.fields.length > 0;
    this.fields = [];
    if (this.nph) {
      if (this.statusLine === undefined) {
        throw malformed('CGI_ERR_BAD_HEADER', 'the nph program wrote no status line');
      }
      const { code, reason } = this.statusLine;
      return { kind: 'response', code, reason, headers, location };
    }
    if (location !== undefined) {
      // Apache's rule (mod_cgi): a local path with status 200 is fetched by the server itself.
      if (LOCAL_PATH.test(location) && (status === undefined || status.code === 200)) {
        return { kind: 'local-redirect', code: 200, reason: 'OK', headers: [], location };
      }
      const s = status ?? { code: 302, reason: reasonFor(302) };
      return { kind: 'response', code: s.code, reason: s.reason, headers, location };
    }
    if (status === undefined && !contentType) {
      throw malformed(
        'CGI_ERR_NO_CONTENT_TYPE',
        wroteFields
          ? 'the program wrote neither Content-Type, nor Status, nor Location'
          : 'the program wrote no header fields',
      );
    }
    const s = status ?? { code: 200, reason: reasonFor(200) };
    return { kind: 'response', code: s.code, reason: s.reason, headers };
  }
}
