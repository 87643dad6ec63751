// FastCGI name-value pairs (FastCGI spec §3.4): the encoder and the streaming FCGI_PARAMS decoder (§5.2).
import { isAscii } from 'node:buffer';
import { BridgeError } from '../errors.js';

/** ParamInput is a name or value to encode: a string is sent as UTF-8, bytes as they are. */
export type ParamInput = string | Uint8Array;

/**
 * ParamPair is one decoded name-value pair. `name` and `value` are the bytes decoded as UTF-8
 * with invalid sequences replaced by U+FFFD (the project's rule for every front end);
 * `rawName` and `rawValue` are the exact bytes, which may share memory with the pushed content.
 */
export interface ParamPair {
  name: string;
  value: string;
  rawName: Buffer;
  rawValue: Buffer;
}

/** MAX_PARAM_LENGTH is the longest name or value a 4-byte length can state: 2^31 − 1 (FastCGI spec §3.4). */
export const MAX_PARAM_LENGTH = 0x7fffffff;

/**
 * DEFAULT_MAX_PARAMS_BYTES is the default cap on a whole FCGI_PARAMS stream, length prefixes
 * included: 128 KiB, four times nginx's largest default header set (4 × 8 KiB buffers) plus
 * the CGI variables, well above Node's own 16 KiB header limit.
 */
export const DEFAULT_MAX_PARAMS_BYTES = 128 * 1024;

/**
 * ParamSink receives each decoded pair as two strings (UTF-8, U+FFFD for invalid sequences),
 * in order, with the decoder's target object: the decoder then makes no pair object at all.
 */
export type ParamSink = (target: object, name: string, value: string) => void;

/** DEFAULT_MAX_PARAMS is the default cap on the number of pairs in one FCGI_PARAMS stream. */
export const DEFAULT_MAX_PARAMS = 1000;

/** ParamsLimits bounds what a {@link ParamsDecoder} accepts from a web server. */
export interface ParamsLimits {
  /** maxBytes caps the stream's total bytes, prefixes included (default {@link DEFAULT_MAX_PARAMS_BYTES}). */
  maxBytes?: number;
  /** maxParams caps the number of pairs (default {@link DEFAULT_MAX_PARAMS}). */
  maxParams?: number;
}

const EMPTY = Buffer.alloc(0);

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes)
    ? bytes
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function invalidArgument(message: string): BridgeError {
  return new BridgeError('FCGI_ERR_INVALID_ARGUMENT', `fcgi: ${message}`);
}

/** paramLengthSize gives how many bytes the length prefix for `length` takes: 1 below 128, else 4 (FastCGI spec §3.4). */
export function paramLengthSize(length: number): 1 | 4 {
  return length < 0x80 ? 1 : 4;
}

function checkParamLength(length: number, what: string): void {
  if (length > MAX_PARAM_LENGTH) {
    throw invalidArgument(`${what} of ${length} bytes exceeds the ${MAX_PARAM_LENGTH}-byte limit`);
  }
}

// FastCGI spec §3.4: a length below 128 is one byte; otherwise four bytes, big-endian, with the
// high bit of the first byte set as the marker (so 31 bits of length).
function writeParamLength(target: Buffer, offset: number, length: number): number {
  if (length < 0x80) {
    target[offset] = length;
    return offset + 1;
  }
  target.writeUInt32BE((length | 0x80000000) >>> 0, offset);
  return offset + 4;
}

/** encodeParamLength encodes one name or value length as its 1- or 4-byte prefix (FastCGI spec §3.4). */
export function encodeParamLength(length: number): Buffer {
  if (!Number.isInteger(length) || length < 0) throw invalidArgument(`bad length ${length}`);
  checkParamLength(length, 'a length');
  const out = Buffer.allocUnsafe(paramLengthSize(length));
  writeParamLength(out, 0, length);
  return out;
}

/**
 * decodeParamLength reads the length prefix at `offset`: `{ length, size }` with `size` the
 * prefix's byte count, or `null` when `bytes` ends before the prefix does.
 */
export function decodeParamLength(
  bytes: Uint8Array,
  offset = 0,
): { length: number; size: 1 | 4 } | null {
  if (offset >= bytes.length) return null;
  const first = bytes[offset];
  if (first < 0x80) return { length: first, size: 1 };
  if (bytes.length - offset < 4) return null;
  const length =
    ((first & 0x7f) * 0x1000000 +
      (bytes[offset + 1] << 16) +
      (bytes[offset + 2] << 8) +
      bytes[offset + 3]) >>>
    0;
  return { length, size: 4 };
}

function writeBytes(target: Buffer, offset: number, data: ParamInput, length: number): number {
  if (typeof data === 'string') target.write(data, offset, length, 'utf8');
  else target.set(data, offset);
  return offset + length;
}

/**
 * encodeParams encodes name-value pairs as one buffer of FastCGI name-value pairs (FastCGI spec
 * §3.4), ready to be cut into FCGI_PARAMS or FCGI_GET_VALUES(_RESULT) records. Strings are
 * encoded as UTF-8; lengths count bytes, not characters.
 */
export function encodeParams(pairs: Iterable<readonly [ParamInput, ParamInput]>): Buffer {
  // Two passes, one allocation: measure every pair, then write into an exact-size buffer.
  const items: { name: ParamInput; value: ParamInput; nameLen: number; valueLen: number }[] = [];
  let total = 0;
  for (const [name, value] of pairs) {
    const nameLen = typeof name === 'string' ? Buffer.byteLength(name, 'utf8') : name.byteLength;
    const valueLen =
      typeof value === 'string' ? Buffer.byteLength(value, 'utf8') : value.byteLength;
    checkParamLength(nameLen, 'a name');
    checkParamLength(valueLen, 'a value');
    items.push({ name, value, nameLen, valueLen });
    total += paramLengthSize(nameLen) + paramLengthSize(valueLen) + nameLen + valueLen;
  }
  const out = Buffer.allocUnsafe(total);
  let pos = 0;
  for (const { name, value, nameLen, valueLen } of items) {
    pos = writeParamLength(out, pos, nameLen);
    pos = writeParamLength(out, pos, valueLen);
    pos = writeBytes(out, pos, name, nameLen);
    pos = writeBytes(out, pos, value, valueLen);
  }
  return out;
}

// Decoder states: which part of the current pair the next byte belongs to.
const S_NAME_LENGTH = 0;
const S_VALUE_LENGTH = 1;
const S_BODY = 2;

function limit(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 0)
    throw invalidArgument(`${name} must be an integer >= 0`);
  return value;
}

/**
 * ParamsDecoder decodes an FCGI_PARAMS stream (FastCGI spec §5.2) incrementally: `push()` each
 * record's content as it arrives, split anywhere (inside a length prefix, a name or a value),
 * and get back the pairs it completes; call `end()` on the empty FCGI_PARAMS record.
 *
 * Limits are checked as soon as a length prefix is read, so a prefix announcing 2^31 − 1 bytes
 * is refused before anything is buffered. Errors are {@link BridgeError}s:
 * `FCGI_ERR_PARAMS_TOO_LARGE` and `FCGI_ERR_TOO_MANY_PARAMS` (status 431),
 * `FCGI_ERR_PARAMS_TRUNCATED` when the stream ends inside a pair and
 * `FCGI_ERR_UNEXPECTED_RECORD` for content after the end (status 400). An error is sticky:
 * every later call throws it again.
 */
export class ParamsDecoder {
  readonly #maxBytes: number;
  readonly #maxParams: number;
  #state = S_NAME_LENGTH;
  // A 4-byte length prefix split across pushes is gathered here (FastCGI spec §3.4).
  // Allocated only when a prefix is cut, which is rare.
  #prefix: Buffer | null = null;
  #prefixFilled = 0;
  #nameLength = 0;
  #valueLength = 0;
  // A name and value split across pushes are gathered here; whole ones are sliced, not copied.
  #body: Buffer | null = null;
  #bodyFilled = 0;
  #bytes = 0;
  #count = 0;
  #ended = false;
  #error: BridgeError | null = null;
  readonly #sink: ParamSink | null;
  readonly #target: object;
  // With a sink: the pushed chunk decoded once when it is all ASCII (what web servers send),
  // so each name and value is a slice of it instead of a decode of its own.
  #chunk: Buffer | null = null;
  #text: string | null = null;

  /**
   * constructor takes optional limits (omitted ones take their defaults) and an optional
   * sink: with one, pairs go to it (with `target`) as they complete and `push()` returns an
   * empty list.
   */
  constructor(limits: ParamsLimits = {}, sink: ParamSink | null = null, target: object = {}) {
    this.#maxBytes = limit(limits.maxBytes, DEFAULT_MAX_PARAMS_BYTES, 'maxBytes');
    this.#maxParams = limit(limits.maxParams, DEFAULT_MAX_PARAMS, 'maxParams');
    this.#sink = sink;
    this.#target = target;
  }

  /** bytes is how many bytes of the stream were pushed so far. */
  get bytes(): number {
    return this.#bytes;
  }

  /** count is how many pairs were completed so far. */
  get count(): number {
    return this.#count;
  }

  /** ended tells whether `end()` was called. */
  get ended(): boolean {
    return this.#ended;
  }

  /** push decodes the next piece of the stream and returns the pairs it completes, in order. */
  push(content: Uint8Array): ParamPair[] {
    if (this.#error) throw this.#error;
    if (this.#ended) {
      throw this.#fail(
        new BridgeError(
          'FCGI_ERR_UNEXPECTED_RECORD',
          'fcgi: FCGI_PARAMS content after the end of the stream',
          { status: 400 },
        ),
      );
    }
    const chunk = toBuffer(content);
    if (this.#bytes + chunk.length > this.#maxBytes) {
      throw this.#fail(this.#tooLarge(this.#bytes + chunk.length));
    }
    const out: ParamPair[] = [];
    if (this.#sink !== null) {
      this.#chunk = chunk;
      this.#text = isAscii(chunk) ? chunk.toString('latin1') : null;
    }
    let pos = 0;
    try {
      while (pos < chunk.length) {
        pos =
          this.#state === S_BODY
            ? this.#readBody(chunk, pos, out)
            : this.#readLength(chunk, pos, out);
        if (this.#error) throw this.#error;
      }
    } finally {
      this.#chunk = null;
      this.#text = null;
    }
    this.#bytes += chunk.length;
    return out;
  }

  /** end marks the end of the stream (the empty FCGI_PARAMS record); throws if it cuts a pair short. */
  end(): void {
    if (this.#error) throw this.#error;
    if (this.#ended) return;
    this.#ended = true;
    if (this.#state !== S_NAME_LENGTH || this.#prefixFilled > 0) {
      const where =
        this.#state === S_BODY
          ? 'a name or value'
          : this.#state === S_VALUE_LENGTH
            ? 'a pair'
            : 'a length';
      throw this.#fail(
        new BridgeError(
          'FCGI_ERR_PARAMS_TRUNCATED',
          `fcgi: FCGI_PARAMS stream ended inside ${where} (pair ${this.#count + 1})`,
          { status: 400 },
        ),
      );
    }
  }

  #fail(error: BridgeError): BridgeError {
    this.#error = error;
    return error;
  }

  #tooLarge(bytes: number): BridgeError {
    return new BridgeError(
      'FCGI_ERR_PARAMS_TOO_LARGE',
      `fcgi: FCGI_PARAMS stream of ${bytes} bytes or more exceeds the ${this.#maxBytes}-byte limit`,
      { status: 431 },
    );
  }

  #readLength(chunk: Buffer, pos: number, out: ParamPair[]): number {
    if (
      this.#state === S_NAME_LENGTH &&
      this.#prefixFilled === 0 &&
      this.#count >= this.#maxParams
    ) {
      this.#fail(
        new BridgeError(
          'FCGI_ERR_TOO_MANY_PARAMS',
          `fcgi: FCGI_PARAMS stream has more than ${this.#maxParams} pairs`,
          { status: 431 },
        ),
      );
      return chunk.length;
    }
    let length: number;
    if (this.#prefixFilled === 0 && chunk[pos]! < 0x80) {
      // The 1-byte form, most lengths (FastCGI spec §3.4): no decode object needed.
      length = chunk[pos]!;
      pos += 1;
    } else if (this.#prefixFilled === 0) {
      const decoded = decodeParamLength(chunk, pos);
      if (decoded === null) {
        // Only a 4-byte prefix can be cut; keep its first bytes for the next push.
        chunk.copy((this.#prefix ??= Buffer.alloc(4)), 0, pos);
        this.#prefixFilled = chunk.length - pos;
        return chunk.length;
      }
      length = decoded.length;
      pos += decoded.size;
    } else {
      const n = Math.min(4 - this.#prefixFilled, chunk.length - pos);
      const prefix = (this.#prefix ??= Buffer.alloc(4));
      chunk.copy(prefix, this.#prefixFilled, pos, pos + n);
      this.#prefixFilled += n;
      pos += n;
      if (this.#prefixFilled < 4) return pos;
      this.#prefixFilled = 0;
      // The prefix was cut, so it is the 4-byte form: drop its marker bit (FastCGI spec §3.4).
      length = prefix.readUInt32BE(0) & 0x7fffffff;
    }
    // `pos` within this chunk plus the bytes before it is the stream offset where the name (or
    // value) starts; refusing here keeps a huge announced length from ever being buffered.
    const start = this.#bytes + pos;
    if (this.#state === S_NAME_LENGTH) {
      if (start + length > this.#maxBytes) {
        this.#fail(this.#tooLarge(start + length));
        return chunk.length;
      }
      this.#nameLength = length;
      this.#state = S_VALUE_LENGTH;
      return pos;
    }
    if (start + this.#nameLength + length > this.#maxBytes) {
      this.#fail(this.#tooLarge(start + this.#nameLength + length));
      return chunk.length;
    }
    this.#valueLength = length;
    this.#state = S_BODY;
    // An empty name and value complete the pair now: no body byte will come to finish it.
    if (this.#nameLength + length === 0) this.#emit(EMPTY, 0, out);
    return pos;
  }

  #readBody(chunk: Buffer, pos: number, out: ParamPair[]): number {
    const need = this.#nameLength + this.#valueLength;
    if (this.#body === null && chunk.length - pos >= need) {
      this.#emit(chunk, pos, out);
      return pos + need;
    }
    this.#body ??= Buffer.allocUnsafe(need);
    const n = Math.min(need - this.#bodyFilled, chunk.length - pos);
    chunk.copy(this.#body, this.#bodyFilled, pos, pos + n);
    this.#bodyFilled += n;
    if (this.#bodyFilled === need) {
      this.#emit(this.#body, 0, out);
      this.#body = null;
      this.#bodyFilled = 0;
    }
    return pos + n;
  }

  #emit(body: Buffer, start: number, out: ParamPair[]): void {
    const sink = this.#sink;
    if (sink === null) {
      out.push(new DecodedPair(body, start, start + this.#nameLength, this.#valueLength));
    } else {
      const split = start + this.#nameLength;
      const end = split + this.#valueLength;
      const text = body === this.#chunk ? this.#text : null;
      if (text !== null) {
        const value = split === end ? '' : text.slice(split, end);
        sink(this.#target, knownName(body, text, start, split), value);
      } else {
        // The project's one rule for bytes that become environ strings (src/cgi/decode.ts).
        sink(this.#target, body.toString('utf8', start, split), body.toString('utf8', split, end));
      }
    }
    this.#count += 1;
    this.#state = S_NAME_LENGTH;
  }
}

// Param names recur on every request (a web server sends the same set each time): each is
// decoded once and then found by its bytes, so the responder gets the same string object,
// already a property key, instead of a fresh string the environ would have to intern.
const NAMES = new Map<number, string>();
const MAX_NAMES = 4096;

function knownName(bytes: Buffer, text: string, start: number, end: number): string {
  let h = end - start;
  for (let i = start; i < end; i++) h = (Math.imul(h, 31) + bytes[i]!) | 0;
  const known = NAMES.get(h);
  if (known !== undefined && known.length === end - start) {
    let i = 0;
    while (i < known.length && known.charCodeAt(i) === bytes[start + i]) i++;
    if (i === known.length) return known;
  }
  const name = text.slice(start, end);
  if (known !== undefined || NAMES.size >= MAX_NAMES) return name;
  // A property key is interned: this is the one string every later request gets.
  const key = Object.keys({ [name]: 0 })[0]!;
  NAMES.set(h, key);
  return key;
}

// DecodedPair is a pair decoded straight from the bytes it lies in: the strings are decoded at
// once, the raw views are made only when asked for (the responder only wants the strings).
class DecodedPair implements ParamPair {
  readonly name: string;
  readonly value: string;
  private readonly bytes: Buffer;
  private readonly start: number;
  private readonly split: number;
  private readonly end: number;

  constructor(bytes: Buffer, start: number, split: number, valueLength: number) {
    const end = split + valueLength;
    // The project's one rule for bytes that become environ strings: UTF-8, U+FFFD for invalid
    // sequences (src/cgi/decode.ts, decodeBytes), shared with the CGI and HTTP front ends;
    // decoded in place, without a view per string.
    this.name = bytes.toString('utf8', start, split);
    this.value = valueLength === 0 ? '' : bytes.toString('utf8', split, end);
    this.bytes = bytes;
    this.start = start;
    this.split = split;
    this.end = end;
  }

  get rawName(): Buffer {
    return this.bytes.subarray(this.start, this.split);
  }

  get rawValue(): Buffer {
    return this.bytes.subarray(this.split, this.end);
  }
}

/** decodeParams decodes a complete name-value list in one call (e.g. FCGI_GET_VALUES content, FastCGI spec §4.1). */
export function decodeParams(content: Uint8Array, limits?: ParamsLimits): ParamPair[] {
  const decoder = new ParamsDecoder(limits);
  const pairs = decoder.push(content);
  decoder.end();
  return pairs;
}
