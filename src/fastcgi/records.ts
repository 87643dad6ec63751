// FastCGI 1.0 records (FastCGI spec §3.3): encoders for every record type and the streaming RecordDecoder.
import { BridgeError } from '../errors.js';
import { decodeParams, encodeParams } from './params.js';
import {
  FCGI_ABORT_REQUEST,
  FCGI_BEGIN_REQUEST,
  FCGI_END_REQUEST,
  FCGI_GET_VALUES,
  FCGI_GET_VALUES_RESULT,
  FCGI_HEADER_LEN,
  FCGI_KEEP_CONN,
  FCGI_MAX_CONTENT_LENGTH,
  FCGI_MAX_PADDING_LENGTH,
  FCGI_MAX_REQUEST_ID,
  FCGI_NULL_REQUEST_ID,
  FCGI_REQUEST_COMPLETE,
  FCGI_STDERR,
  FCGI_STDOUT,
  FCGI_UNKNOWN_TYPE,
  FCGI_VERSION_1,
  recordTypeName,
} from './protocol.js';

/**
 * FcgiRecord is one decoded record with its padding dropped. `content` may share memory with
 * the chunk it was decoded from (a record wholly inside one pushed chunk is a view, not a copy).
 */
export interface FcgiRecord {
  version: number;
  type: number;
  requestId: number;
  content: Buffer;
}

/** BeginRequestBody is the decoded body of FCGI_BEGIN_REQUEST (FastCGI spec §5.1). */
export interface BeginRequestBody {
  /** role is the requested role; may be a value the spec does not define (answer FCGI_UNKNOWN_ROLE). */
  role: number;
  /** flags is the raw flags byte. */
  flags: number;
  /** keepConn is the FCGI_KEEP_CONN bit of `flags`. */
  keepConn: boolean;
}

/** EndRequestBody is the decoded body of FCGI_END_REQUEST (FastCGI spec §5.5). */
export interface EndRequestBody {
  /** appStatus is the application's exit status, a uint32. */
  appStatus: number;
  /** protocolStatus is one of FCGI_REQUEST_COMPLETE … FCGI_UNKNOWN_ROLE, or another byte value. */
  protocolStatus: number;
}

const EMPTY = Buffer.alloc(0);
// Padding bytes are never read by the peer (FastCGI spec §3.3); zeros keep output deterministic.
const ZEROS = Buffer.alloc(FCGI_MAX_PADDING_LENGTH);

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes)
    ? bytes
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function invalidArgument(message: string): BridgeError {
  return new BridgeError('FCGI_ERR_INVALID_ARGUMENT', `fcgi: ${message}`);
}

function checkUint(value: number, max: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw invalidArgument(`${what} must be an integer from 0 to ${max}, got ${value}`);
  }
}

function badRecord(type: number, expected: string, length: number): BridgeError {
  return new BridgeError(
    'FCGI_ERR_BAD_RECORD',
    `fcgi: ${recordTypeName(type)} body must be ${expected}, got ${length} bytes`,
  );
}

/**
 * paddingFor gives the padding that rounds `contentLength` up to a multiple of 8, the
 * alignment the spec recommends senders keep (FastCGI spec §3.3).
 */
export function paddingFor(contentLength: number): number {
  return -contentLength & 7;
}

/**
 * writeHeader writes an 8-byte record header into `target` at `offset` (FastCGI spec §3.3) and
 * returns where the content goes.
 */
export function writeHeader(
  target: Buffer,
  offset: number,
  type: number,
  requestId: number,
  contentLength: number,
  paddingLength: number,
): number {
  // FastCGI spec §3.3: version, type, requestId (B1 B0), contentLength (B1 B0), paddingLength, reserved.
  target[offset] = FCGI_VERSION_1;
  target[offset + 1] = type;
  target[offset + 2] = requestId >>> 8;
  target[offset + 3] = requestId & 0xff;
  target[offset + 4] = contentLength >>> 8;
  target[offset + 5] = contentLength & 0xff;
  target[offset + 6] = paddingLength;
  target[offset + 7] = 0;
  return offset + FCGI_HEADER_LEN;
}

function writeRecord(
  target: Buffer,
  offset: number,
  type: number,
  requestId: number,
  content: Uint8Array,
  start: number,
  end: number,
): number {
  const length = end - start;
  const padding = paddingFor(length);
  let pos = writeHeader(target, offset, type, requestId, length, padding);
  target.set(length === content.length ? content : content.subarray(start, end), pos);
  pos += length;
  ZEROS.copy(target, pos, 0, padding);
  return pos + padding;
}

/**
 * encodeRecordHeader encodes the 8-byte header alone, for callers that send the content
 * separately (a vectored write of a large body). `paddingLength` defaults to {@link paddingFor}.
 */
export function encodeRecordHeader(
  type: number,
  requestId: number,
  contentLength: number,
  paddingLength: number = paddingFor(contentLength),
): Buffer {
  checkUint(type, 255, 'type');
  checkUint(requestId, FCGI_MAX_REQUEST_ID, 'requestId');
  checkUint(contentLength, FCGI_MAX_CONTENT_LENGTH, 'contentLength');
  checkUint(paddingLength, FCGI_MAX_PADDING_LENGTH, 'paddingLength');
  const out = Buffer.allocUnsafe(FCGI_HEADER_LEN);
  writeHeader(out, 0, type, requestId, contentLength, paddingLength);
  return out;
}

/**
 * encodeRecord encodes one record: header, `content` (at most 65535 bytes) and zeroed padding,
 * by default up to a multiple of 8 (FastCGI spec §3.3). An empty `content` on a stream type is
 * that stream's end marker (FastCGI spec §3.3, §5.3).
 */
export function encodeRecord(
  type: number,
  requestId: number,
  content: Uint8Array = EMPTY,
  paddingLength: number = paddingFor(content.length),
): Buffer {
  checkUint(type, 255, 'type');
  checkUint(requestId, FCGI_MAX_REQUEST_ID, 'requestId');
  checkUint(content.length, FCGI_MAX_CONTENT_LENGTH, 'content length');
  checkUint(paddingLength, FCGI_MAX_PADDING_LENGTH, 'paddingLength');
  const out = Buffer.allocUnsafe(FCGI_HEADER_LEN + content.length + paddingLength);
  const pos = writeHeader(out, 0, type, requestId, content.length, paddingLength);
  out.set(content, pos);
  out.fill(0, pos + content.length);
  return out;
}

/**
 * encodedStreamLength gives the byte size of {@link encodeStream}'s output for `dataLength`
 * bytes of data, with the empty end record when `end` is true.
 */
export function encodedStreamLength(dataLength: number, end = false): number {
  const full = Math.floor(dataLength / FCGI_MAX_CONTENT_LENGTH);
  const rest = dataLength % FCGI_MAX_CONTENT_LENGTH;
  const fullSize = FCGI_HEADER_LEN + FCGI_MAX_CONTENT_LENGTH + paddingFor(FCGI_MAX_CONTENT_LENGTH);
  return (
    full * fullSize +
    (rest > 0 ? FCGI_HEADER_LEN + rest + paddingFor(rest) : 0) +
    (end ? FCGI_HEADER_LEN : 0)
  );
}

function writeStream(
  target: Buffer,
  offset: number,
  type: number,
  requestId: number,
  data: Uint8Array,
  end: boolean,
): number {
  let pos = offset;
  for (let start = 0; start < data.length; start += FCGI_MAX_CONTENT_LENGTH) {
    const stop = Math.min(start + FCGI_MAX_CONTENT_LENGTH, data.length);
    pos = writeRecord(target, pos, type, requestId, data, start, stop);
  }
  if (end) pos = writeHeader(target, pos, type, requestId, 0, 0);
  return pos;
}

/** StreamOptions tunes {@link encodeStream}. */
export interface StreamOptions {
  /** end appends the empty record that closes the stream (FastCGI spec §5.3); default false. */
  end?: boolean;
}

/**
 * encodeStream encodes `data` as stream records (FCGI_STDOUT, FCGI_STDERR, FCGI_STDIN,
 * FCGI_DATA, FCGI_PARAMS) of at most 65535 content bytes each, in one buffer. Empty `data`
 * gives no record unless `end` is set: an empty record would close the stream (FastCGI spec §5.3).
 */
export function encodeStream(
  type: number,
  requestId: number,
  data: Uint8Array,
  options: StreamOptions = {},
): Buffer {
  checkUint(type, 255, 'type');
  checkUint(requestId, FCGI_MAX_REQUEST_ID, 'requestId');
  const end = options.end ?? false;
  const out = Buffer.allocUnsafe(encodedStreamLength(data.length, end));
  writeStream(out, 0, type, requestId, data, end);
  return out;
}

/** encodeBeginRequestBody encodes the 8-byte FCGI_BEGIN_REQUEST body: role, flags, 5 reserved bytes (FastCGI spec §5.1). */
export function encodeBeginRequestBody(role: number, flags = 0): Buffer {
  checkUint(role, 0xffff, 'role');
  checkUint(flags, 0xff, 'flags');
  const body = Buffer.alloc(8);
  body.writeUInt16BE(role, 0);
  body[2] = flags;
  return body;
}

/** encodeBeginRequest encodes a whole FCGI_BEGIN_REQUEST record (FastCGI spec §5.1); pass FCGI_KEEP_CONN in `flags` to keep the connection. */
export function encodeBeginRequest(requestId: number, role: number, flags = 0): Buffer {
  return encodeRecord(FCGI_BEGIN_REQUEST, requestId, encodeBeginRequestBody(role, flags));
}

/** decodeBeginRequestBody decodes an FCGI_BEGIN_REQUEST body; one not 8 bytes long throws FCGI_ERR_BAD_RECORD (FastCGI spec §5.1). */
export function decodeBeginRequestBody(content: Uint8Array): BeginRequestBody {
  if (content.length !== 8) throw badRecord(FCGI_BEGIN_REQUEST, '8 bytes', content.length);
  const flags = content[2];
  return {
    role: (content[0] << 8) | content[1],
    flags,
    keepConn: (flags & FCGI_KEEP_CONN) !== 0,
  };
}

/** encodeAbortRequest encodes an FCGI_ABORT_REQUEST record, which has no body (FastCGI spec §5.4). */
export function encodeAbortRequest(requestId: number): Buffer {
  return encodeRecord(FCGI_ABORT_REQUEST, requestId);
}

/**
 * encodeEndRequestBody encodes the 8-byte FCGI_END_REQUEST body: appStatus (uint32),
 * protocolStatus, 3 reserved bytes (FastCGI spec §5.5). A negative `appStatus` is sent as its
 * two's complement, as a C exit status would be.
 */
export function encodeEndRequestBody(
  appStatus = 0,
  protocolStatus: number = FCGI_REQUEST_COMPLETE,
): Buffer {
  if (!Number.isInteger(appStatus) || appStatus < -0x80000000 || appStatus > 0xffffffff) {
    throw invalidArgument(`appStatus must be an int32 or uint32, got ${appStatus}`);
  }
  checkUint(protocolStatus, 0xff, 'protocolStatus');
  // From the pool, not a fresh ArrayBuffer: one is sent with every response.
  const body = Buffer.allocUnsafe(8);
  body.writeUInt32BE(appStatus >>> 0, 0);
  body[4] = protocolStatus;
  body[5] = 0;
  body[6] = 0;
  body[7] = 0;
  return body;
}

/**
 * encodeEndRequest encodes a whole FCGI_END_REQUEST record (FastCGI spec §5.5). Alone, with a
 * protocol status other than FCGI_REQUEST_COMPLETE, it rejects a request; to finish one, see
 * {@link encodeRequestEnd}.
 */
export function encodeEndRequest(
  requestId: number,
  appStatus = 0,
  protocolStatus: number = FCGI_REQUEST_COMPLETE,
): Buffer {
  return encodeRecord(FCGI_END_REQUEST, requestId, encodeEndRequestBody(appStatus, protocolStatus));
}

/** decodeEndRequestBody decodes an FCGI_END_REQUEST body; one not 8 bytes long throws FCGI_ERR_BAD_RECORD (FastCGI spec §5.5). */
export function decodeEndRequestBody(content: Uint8Array): EndRequestBody {
  if (content.length !== 8) throw badRecord(FCGI_END_REQUEST, '8 bytes', content.length);
  return { appStatus: toBuffer(content).readUInt32BE(0), protocolStatus: content[4] };
}

/**
 * encodeUnknownType encodes the FCGI_UNKNOWN_TYPE management record answering a management
 * record of type `type` the application does not understand (FastCGI spec §4.2).
 */
export function encodeUnknownType(type: number): Buffer {
  checkUint(type, 255, 'type');
  const body = Buffer.alloc(8);
  body[0] = type;
  return encodeRecord(FCGI_UNKNOWN_TYPE, FCGI_NULL_REQUEST_ID, body);
}

/** decodeUnknownTypeBody gives the record type an FCGI_UNKNOWN_TYPE body reports (FastCGI spec §4.2). */
export function decodeUnknownTypeBody(content: Uint8Array): number {
  if (content.length !== 8) throw badRecord(FCGI_UNKNOWN_TYPE, '8 bytes', content.length);
  return content[0];
}

function managementRecord(type: number, pairs: Iterable<readonly [string, string]>): Buffer {
  const body = encodeParams(pairs);
  if (body.length > FCGI_MAX_CONTENT_LENGTH) {
    throw invalidArgument(
      `${recordTypeName(type)} body of ${body.length} bytes does not fit one record`,
    );
  }
  return encodeRecord(type, FCGI_NULL_REQUEST_ID, body);
}

/**
 * encodeGetValues encodes an FCGI_GET_VALUES management record asking for `names`, each sent
 * as a pair with an empty value (FastCGI spec §4.1).
 */
export function encodeGetValues(names: Iterable<string>): Buffer {
  const pairs: [string, string][] = [];
  for (const name of names) pairs.push([name, '']);
  return managementRecord(FCGI_GET_VALUES, pairs);
}

/**
 * decodeGetValues gives the variable names an FCGI_GET_VALUES body asks for, in order
 * (FastCGI spec §4.1). Values, which should be empty, are ignored; a cut pair throws
 * FCGI_ERR_PARAMS_TRUNCATED.
 */
export function decodeGetValues(content: Uint8Array): string[] {
  return decodeParams(content, { maxBytes: FCGI_MAX_CONTENT_LENGTH }).map((pair) => pair.name);
}

/**
 * encodeGetValuesResult encodes the FCGI_GET_VALUES_RESULT management record answering
 * FCGI_GET_VALUES (FastCGI spec §4.1); the application includes only the names it knows,
 * e.g. `[[FCGI_MPXS_CONNS, '1']]`.
 */
export function encodeGetValuesResult(values: Iterable<readonly [string, string]>): Buffer {
  return managementRecord(FCGI_GET_VALUES_RESULT, values);
}

/** decodeGetValuesResult decodes an FCGI_GET_VALUES_RESULT body into a name → value map (FastCGI spec §4.1). */
export function decodeGetValuesResult(content: Uint8Array): Map<string, string> {
  const values = new Map<string, string>();
  for (const pair of decodeParams(content, { maxBytes: FCGI_MAX_CONTENT_LENGTH })) {
    values.set(pair.name, pair.value);
  }
  return values;
}

/** RequestEndOptions says what {@link encodeRequestEnd} puts before FCGI_END_REQUEST. */
export interface RequestEndOptions {
  /** stdout is the last response bytes, sent before the empty FCGI_STDOUT record. */
  stdout?: Uint8Array;
  /** stderr is the last error-log bytes, sent before the empty FCGI_STDERR record. */
  stderr?: Uint8Array;
  /**
   * endStderr sends the empty FCGI_STDERR record; needed only when the request wrote to stderr
   * (FastCGI spec Appendix B). Default: true when `stderr` is non-empty.
   */
  endStderr?: boolean;
  /** appStatus is the application status of FCGI_END_REQUEST; default 0. */
  appStatus?: number;
  /** protocolStatus of FCGI_END_REQUEST; default FCGI_REQUEST_COMPLETE. */
  protocolStatus?: number;
}

/**
 * encodeRequestEnd builds the tail of a Responder's reply as one buffer, for one coalesced
 * write: the last stdout bytes, the empty FCGI_STDOUT record, optionally stderr bytes and the
 * empty FCGI_STDERR record, then FCGI_END_REQUEST (FastCGI spec §6.2, §5.5, Appendix B).
 */
export function encodeRequestEnd(requestId: number, options: RequestEndOptions = {}): Buffer {
  checkUint(requestId, FCGI_MAX_REQUEST_ID, 'requestId');
  const stdout = options.stdout ?? EMPTY;
  const stderr = options.stderr ?? EMPTY;
  const endStderr = options.endStderr ?? stderr.length > 0;
  const endBody = encodeEndRequestBody(options.appStatus, options.protocolStatus);
  const size =
    encodedStreamLength(stdout.length, true) +
    (endStderr ? encodedStreamLength(stderr.length, true) : encodedStreamLength(stderr.length)) +
    FCGI_HEADER_LEN +
    endBody.length;
  const out = Buffer.allocUnsafe(size);
  let pos = writeStream(out, 0, FCGI_STDOUT, requestId, stdout, true);
  pos = writeStream(out, pos, FCGI_STDERR, requestId, stderr, endStderr);
  writeRecord(out, pos, FCGI_END_REQUEST, requestId, endBody, 0, endBody.length);
  return out;
}

// The smallest part of a streamed record passed on before the record is complete: 8 KiB.
const MIN_STREAM_PIECE = 8 * 1024;

function badVersion(version: number): BridgeError {
  // 'G', 'P', 'H' …: an HTTP client pointed at the FastCGI socket is the usual cause.
  const hint =
    version >= 0x41 && version <= 0x5a ? '; is an HTTP client talking to the FastCGI socket?' : '';
  return new BridgeError(
    'FCGI_ERR_BAD_VERSION',
    `fcgi: unsupported record version ${version} (expected ${FCGI_VERSION_1})${hint}`,
  );
}

/**
 * RecordDecoder turns a byte stream into records (FastCGI spec §3.3). `push()` chunks of any
 * size, split at any byte; drain complete records with `read()` or `for (const r of decoder)`.
 *
 * A record wholly inside one chunk is returned as a view of it (no copy); only a record split
 * across chunks is copied, so the decoder holds at most one incomplete record — fewer than
 * FCGI_MAX_RECORD_LENGTH bytes (`bufferedBytes`). Padding is skipped. A record is returned only
 * once all of its bytes, padding included, have arrived; an incomplete one just waits — except
 * for the `streamTypes` given to the constructor, whose content is passed on in pieces, as views.
 *
 * Errors surface from `read()` in stream order, after every record before them, and are sticky:
 * `FCGI_ERR_BAD_VERSION` for a version other than 1 (framing is lost, close the connection),
 * `FCGI_ERR_TRUNCATED` when `end()` is called inside a record. Record types are not checked:
 * answering unknown ones (FastCGI spec §4.2) is the connection's job.
 */
export class RecordDecoder {
  // Types whose content is passed on in pieces as it arrives (see the constructor), and the
  // small rest of such a record being gathered.
  readonly #streamTypes: ReadonlySet<number>;
  #gather: Buffer | null = null;
  #gatherFilled = 0;
  #ready: FcgiRecord[] = [];
  #readyHead = 0;
  // The incomplete record carried from one chunk to the next.
  readonly #header = Buffer.alloc(FCGI_HEADER_LEN);
  #headerFilled = 0;
  #content: Buffer | null = null;
  #contentFilled = 0;
  #paddingLeft = 0;
  #partialBytes = 0;
  #error: BridgeError | null = null;
  #ended = false;

  /**
   * constructor takes the record types whose content may be split (`streamTypes`, e.g.
   * FCGI_STDIN and FCGI_DATA): a record of those types cut across chunks is not gathered but
   * passed on as it arrives, as several records of its type and id whose contents, never empty,
   * add up to its content (parts under 8 KiB of a record still arriving are gathered up to its
   * end). Without it, every record comes whole.
   */
  constructor(options: { streamTypes?: Iterable<number> } = {}) {
    this.#streamTypes = new Set(options.streamTypes ?? []);
  }

  /** bufferedBytes is how many bytes of an incomplete record the decoder holds; always < FCGI_MAX_RECORD_LENGTH. */
  get bufferedBytes(): number {
    return this.#partialBytes;
  }

  /** queuedRecords is how many complete records wait to be read. */
  get queuedRecords(): number {
    return this.#ready.length - this.#readyHead;
  }

  /** ended tells whether `end()` was called. */
  get ended(): boolean {
    return this.#ended;
  }

  /** push adds the next chunk of the stream; the records it completes become readable. */
  push(chunk: Uint8Array): void {
    if (this.#ended) {
      throw new BridgeError('FCGI_ERR_DECODER_ENDED', 'fcgi: RecordDecoder.push() after end()');
    }
    if (this.#error) return;
    const buf = toBuffer(chunk);
    let pos = 0;
    if (this.#partialBytes > 0) pos = this.#continue(buf, 0);
    // Fast path: whole records inside this chunk become views of it.
    while (this.#error === null && buf.length - pos >= FCGI_HEADER_LEN) {
      if (buf[pos] !== FCGI_VERSION_1) {
        this.#error = badVersion(buf[pos]);
        return;
      }
      const contentLength = (buf[pos + 4] << 8) | buf[pos + 5];
      const next = pos + FCGI_HEADER_LEN + contentLength + buf[pos + 6];
      if (next > buf.length) break;
      this.#ready.push({
        version: FCGI_VERSION_1,
        type: buf[pos + 1],
        requestId: (buf[pos + 2] << 8) | buf[pos + 3],
        content: buf.subarray(pos + FCGI_HEADER_LEN, pos + FCGI_HEADER_LEN + contentLength),
      });
      pos = next;
    }
    if (this.#error === null && pos < buf.length) this.#continue(buf, pos);
  }

  /** read returns the next complete record, or null when more bytes are needed; throws the stream's error once reached. */
  read(): FcgiRecord | null {
    if (this.#readyHead < this.#ready.length) {
      const record = this.#ready[this.#readyHead];
      this.#readyHead += 1;
      if (this.#readyHead === this.#ready.length) {
        // Drop the references so delivered records (and their chunks) can be collected.
        this.#ready = [];
        this.#readyHead = 0;
      }
      return record;
    }
    if (this.#error) throw this.#error;
    return null;
  }

  /** Symbol.iterator drains the complete records available now (it stops, it does not wait). */
  *[Symbol.iterator](): Generator<FcgiRecord, void, undefined> {
    for (let record = this.read(); record !== null; record = this.read()) yield record;
  }

  /** end marks the end of input; an incomplete record becomes an FCGI_ERR_TRUNCATED error from `read()`. */
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    if (this.#error === null && this.#partialBytes > 0) {
      this.#error = new BridgeError(
        'FCGI_ERR_TRUNCATED',
        `fcgi: stream ended inside a record (${this.#partialBytes} bytes of it received)`,
      );
    }
  }

  // Feeds bytes from `pos` into the incomplete record; returns where the next record starts, or
  // the chunk's end when it is used up first.
  #continue(buf: Buffer, pos: number): number {
    const start = pos;
    if (this.#headerFilled < FCGI_HEADER_LEN) {
      const n = Math.min(FCGI_HEADER_LEN - this.#headerFilled, buf.length - pos);
      buf.copy(this.#header, this.#headerFilled, pos, pos + n);
      this.#headerFilled += n;
      pos += n;
      // The version is the first byte: refuse a stray HTTP request at once (FastCGI spec §3.3).
      if (this.#header[0] !== FCGI_VERSION_1) {
        this.#error = badVersion(this.#header[0]);
        return buf.length;
      }
      if (this.#headerFilled < FCGI_HEADER_LEN) {
        this.#partialBytes += pos - start;
        return pos;
      }
      this.#contentFilled = 0;
      this.#content = null;
      this.#paddingLeft = this.#header[6];
    }
    const contentLength = (this.#header[4] << 8) | this.#header[5];
    const type = this.#header[1];
    const streamed = contentLength > 0 && this.#streamTypes.has(type);
    if (streamed) {
      // A streamed type: what is here of the content goes on now, as a view. A small part of
      // a record still arriving (a peer sending a few bytes at a time) is gathered instead, up
      // to the end of the record, so that each piece is worth handing to an app.
      const requestId = (this.#header[2] << 8) | this.#header[3];
      const left = contentLength - this.#contentFilled;
      const n = Math.min(left, buf.length - pos);
      if (this.#gather === null && n > 0 && (n === left || n >= MIN_STREAM_PIECE)) {
        this.#ready.push({
          version: FCGI_VERSION_1,
          type,
          requestId,
          content: buf.subarray(pos, pos + n),
        });
      } else if (n > 0) {
        this.#gather ??= Buffer.allocUnsafe(left);
        buf.copy(this.#gather, this.#gatherFilled, pos, pos + n);
        this.#gatherFilled += n;
        if (n === left) {
          this.#ready.push({ version: FCGI_VERSION_1, type, requestId, content: this.#gather });
          this.#gather = null;
          this.#gatherFilled = 0;
        }
      }
      this.#contentFilled += n;
      pos += n;
    } else if (this.#contentFilled < contentLength) {
      if (this.#content === null && buf.length - pos >= contentLength) {
        this.#content = buf.subarray(pos, pos + contentLength);
        this.#contentFilled = contentLength;
        pos += contentLength;
      } else {
        this.#content ??= Buffer.allocUnsafe(contentLength);
        const n = Math.min(contentLength - this.#contentFilled, buf.length - pos);
        buf.copy(this.#content, this.#contentFilled, pos, pos + n);
        this.#contentFilled += n;
        pos += n;
      }
    }
    const skip = Math.min(this.#paddingLeft, buf.length - pos);
    this.#paddingLeft -= skip;
    pos += skip;
    if (this.#contentFilled < contentLength || this.#paddingLeft > 0) {
      // Held: the header and the content so far; of a streamed record, only what is gathered
      // (what went on as views is not).
      this.#partialBytes = streamed
        ? this.#headerFilled + this.#gatherFilled
        : this.#partialBytes + pos - start;
      return pos;
    }
    if (!streamed) {
      this.#ready.push({
        version: FCGI_VERSION_1,
        type,
        requestId: (this.#header[2] << 8) | this.#header[3],
        content: this.#content ?? EMPTY,
      });
    }
    this.#headerFilled = 0;
    this.#content = null;
    this.#contentFilled = 0;
    this.#partialBytes = 0;
    return pos;
  }
}

/** decodeRecords decodes a complete byte string into its records; a cut-off last record throws FCGI_ERR_TRUNCATED. */
export function decodeRecords(bytes: Uint8Array): FcgiRecord[] {
  const decoder = new RecordDecoder();
  decoder.push(bytes);
  decoder.end();
  return [...decoder];
}
