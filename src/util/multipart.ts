// A streaming multipart/form-data reader (RFC 7578 over RFC 2046 §5.1) for apps: parts come out
// as the body arrives, each part's content as a stream, so an upload is never held whole.
import { BridgeError } from '../errors.js';

/** MultipartLimits bound what a client can make the reader hold or do. */
export interface MultipartLimits {
  /** maxHeaderBytes caps one part's header block (default 16 KiB). */
  maxHeaderBytes?: number;
  /** maxParts caps the number of parts (default 1000). */
  maxParts?: number;
}

/** MultipartPart is one part: its headers, the form-data names, and its content as a stream. */
export interface MultipartPart {
  /** headers by lower-case name (a repeated name keeps the last value). */
  headers: Record<string, string>;
  /** name is the form field's name (Content-Disposition `name`). */
  name: string | undefined;
  /** filename is set for a file upload (`filename*` per RFC 5987 wins over `filename`). */
  filename: string | undefined;
  /** contentType is the part's Content-Type, when it has one. */
  contentType: string | undefined;
  /**
   * body yields the part's bytes as they arrive. Read it before asking for the next part;
   * what is left unread is skipped.
   */
  body: AsyncIterable<Uint8Array>;
}

const CRLF = Buffer.from('\r\n');
const HEADER_END = Buffer.from('\r\n\r\n');

function bad(message: string): BridgeError {
  return new BridgeError('MULTIPART_ERR_MALFORMED', `gateway: multipart: ${message}`, {
    status: 400,
  });
}

/**
 * boundaryOf returns the `boundary` parameter of a multipart Content-Type, or undefined when
 * the type is not multipart or the boundary is missing or invalid (RFC 2046 §5.1.1: 1 to 70
 * characters, not ending in a space).
 */
export function boundaryOf(contentType: string | undefined): string | undefined {
  if (contentType === undefined || !/^\s*multipart\//i.test(contentType)) return undefined;
  const params = parseParams(contentType.slice(contentType.indexOf(';') + 1));
  const b = params.boundary;
  if (b === undefined || b.length < 1 || b.length > 70 || b.endsWith(' ')) return undefined;
  if (!/^[0-9A-Za-z'()+_,\-./:=? ]+$/.test(b)) return undefined;
  return b;
}

/**
 * parseParams reads `; key=value; key="quoted \" value"` parameters (RFC 9110 §5.6.6), with
 * lower-case keys. An RFC 5987 `key*=UTF-8''percent-encoded` value is decoded and stored under
 * `key*`.
 */
export function parseParams(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  const re = /;?\s*([^\s=;]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))/gy;
  let i = 0;
  while (i < s.length) {
    re.lastIndex = i;
    const m = re.exec(s);
    if (!m) {
      // Skip a parameter without `=` (such as the disposition type itself).
      const next = s.indexOf(';', i + 1);
      if (next < 0) break;
      i = next;
      continue;
    }
    const key = m[1]!.toLowerCase();
    let value = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3]!.trim();
    if (key.endsWith('*')) value = decodeExtValue(value) ?? value;
    out[key] = value;
    i = re.lastIndex;
  }
  return out;
}

// RFC 5987 §3.2: charset'language'percent-encoded; only UTF-8 (and its ASCII subset) is read.
function decodeExtValue(v: string): string | undefined {
  const m = /^(utf-8|us-ascii)'[^']*'(.*)$/i.exec(v);
  if (!m) return undefined;
  try {
    return decodeURIComponent(m[2]!);
  } catch {
    return undefined;
  }
}

// Reader holds the bytes received but not yet consumed, pulling more from the source on demand.
class Reader {
  buf: Buffer;
  private ended = false;

  constructor(
    private readonly it: AsyncIterator<Uint8Array>,
    initial: Buffer,
  ) {
    this.buf = initial;
  }

  async fill(): Promise<boolean> {
    if (this.ended) return false;
    const r = await this.it.next();
    if (r.done) {
      this.ended = true;
      return false;
    }
    this.buf = this.buf.length === 0 ? Buffer.from(r.value) : Buffer.concat([this.buf, r.value]);
    return true;
  }

  // need makes at least n bytes available; false at the end of the source.
  async need(n: number): Promise<boolean> {
    while (this.buf.length < n) if (!(await this.fill())) return false;
    return true;
  }
}

function parseHeaders(block: Buffer): Record<string, string> {
  const headers: Record<string, string> = {};
  // RFC 7578 §5.1: field values are UTF-8 in practice (browsers send file names raw).
  for (const line of block.toString('utf8').split('\r\n')) {
    if (line === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0) throw bad(`header line without a colon: ${JSON.stringify(line.slice(0, 80))}`);
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return headers;
}

/**
 * readMultipart yields the parts of a multipart body as they arrive from `source` (for example
 * `environ['gateway.input']`). Memory stays bounded by the largest chunk plus the boundary,
 * whatever the size of the parts. A body that is cut off, lacks the closing delimiter or breaks
 * a limit throws `MULTIPART_ERR_MALFORMED` (status 400).
 */
export async function* readMultipart(
  source: AsyncIterable<Uint8Array>,
  boundary: string,
  limits: MultipartLimits = {},
): AsyncGenerator<MultipartPart> {
  const maxHeaderBytes = limits.maxHeaderBytes ?? 16 * 1024;
  const maxParts = limits.maxParts ?? 1000;
  // RFC 2046 §5.1.1: the delimiter is CRLF "--" boundary; the CRLF belongs to it, not to the
  // part before. A leading CRLF lets the first boundary (at the very start) match the same way.
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  const r = new Reader(source[Symbol.asyncIterator](), Buffer.from(CRLF));

  // The preamble is ignored: drop everything before the first delimiter.
  for (;;) {
    const at = r.buf.indexOf(delimiter);
    if (at >= 0) {
      r.buf = r.buf.subarray(at + delimiter.length);
      break;
    }
    r.buf = r.buf.subarray(Math.max(0, r.buf.length - delimiter.length + 1));
    if (!(await r.fill())) throw bad('no boundary found in the body');
  }

  for (let count = 0; ; count++) {
    // After a delimiter: "--" closes the body; otherwise optional blanks (transport padding) and CRLF.
    if (!(await r.need(2))) throw bad('the body ends right after a boundary');
    if (r.buf[0] === 0x2d && r.buf[1] === 0x2d) return; // the epilogue is ignored
    let eol: number;
    while ((eol = r.buf.indexOf(CRLF)) < 0) {
      if (r.buf.length > 256) throw bad('garbage after a boundary');
      if (!(await r.fill())) throw bad('the body ends inside a boundary line');
    }
    if (!/^[ \t]*$/.test(r.buf.subarray(0, eol).toString('latin1')))
      throw bad('garbage after a boundary');
    r.buf = r.buf.subarray(eol + 2);
    if (count >= maxParts) throw bad(`more than ${maxParts} parts`);

    // A part with no headers starts with the blank line at once.
    let end: number;
    let block: Buffer;
    if (!(await r.need(2))) throw bad('the body ends inside part headers');
    if (r.buf[0] === 0x0d && r.buf[1] === 0x0a) {
      block = Buffer.alloc(0);
      r.buf = r.buf.subarray(2);
    } else {
      while ((end = r.buf.indexOf(HEADER_END)) < 0) {
        if (r.buf.length > maxHeaderBytes) throw bad(`part headers over ${maxHeaderBytes} bytes`);
        if (!(await r.fill())) throw bad('the body ends inside part headers');
      }
      if (end > maxHeaderBytes) throw bad(`part headers over ${maxHeaderBytes} bytes`);
      block = r.buf.subarray(0, end);
      r.buf = r.buf.subarray(end + 4);
    }
    const headers = parseHeaders(block);
    const disposition = parseParams(headers['content-disposition'] ?? '');

    let finished = false;
    // body streams up to the next delimiter, keeping back only what could be its first bytes.
    const body = async function* (): AsyncGenerator<Uint8Array> {
      for (;;) {
        const at = r.buf.indexOf(delimiter);
        if (at >= 0) {
          const last = r.buf.subarray(0, at);
          r.buf = r.buf.subarray(at + delimiter.length);
          finished = true;
          if (last.length > 0) yield last;
          return;
        }
        const safe = r.buf.length - (delimiter.length - 1);
        if (safe > 0) {
          const out = r.buf.subarray(0, safe);
          r.buf = r.buf.subarray(safe);
          yield out;
        }
        if (!(await r.fill())) throw bad('the body ends inside a part (no closing boundary)');
      }
    };
    const stream = body();
    // A consumer that stops early (`break`) must not close the stream: the rest is skipped below.
    const view: AsyncIterator<Uint8Array> = {
      next: () => stream.next(),
      return: async () => ({ done: true, value: undefined }),
    };
    yield {
      headers,
      name: disposition.name,
      filename: disposition['filename*'] ?? disposition.filename,
      contentType: headers['content-type'],
      body: { [Symbol.asyncIterator]: () => view },
    };
    // Skip what the consumer left unread, so the next part starts at its boundary.
    if (!finished) for await (const _ of stream);
  }
}
