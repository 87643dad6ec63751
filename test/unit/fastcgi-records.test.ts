// Byte-level tests of FastCGI records (FastCGI spec §3.3–§5.5): raw bytes in, records out, and back,
// plus a realistic nginx request replayed whole, byte by byte and in odd chunk sizes.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { BridgeError } from '../../src/errors.js';
import { ParamsDecoder, encodeParams, type ParamInput } from '../../src/fastcgi/params.js';
import {
  FCGI_ABORT_REQUEST,
  FCGI_AUTHORIZER,
  FCGI_BEGIN_REQUEST,
  FCGI_CANT_MPX_CONN,
  FCGI_DATA,
  FCGI_END_REQUEST,
  FCGI_FILTER,
  FCGI_GET_VALUES,
  FCGI_GET_VALUES_RESULT,
  FCGI_HEADER_LEN,
  FCGI_KEEP_CONN,
  FCGI_MAXTYPE,
  FCGI_MAX_CONNS,
  FCGI_MAX_CONTENT_LENGTH,
  FCGI_MAX_RECORD_LENGTH,
  FCGI_MAX_REQS,
  FCGI_MPXS_CONNS,
  FCGI_NULL_REQUEST_ID,
  FCGI_OVERLOADED,
  FCGI_PARAMS,
  FCGI_REQUEST_COMPLETE,
  FCGI_RESPONDER,
  FCGI_STDERR,
  FCGI_STDIN,
  FCGI_STDOUT,
  FCGI_UNKNOWN_ROLE,
  FCGI_UNKNOWN_TYPE,
  FCGI_VERSION_1,
  isManagementRecordType,
  recordTypeName,
} from '../../src/fastcgi/protocol.js';
import {
  RecordDecoder,
  decodeBeginRequestBody,
  decodeEndRequestBody,
  decodeGetValues,
  decodeGetValuesResult,
  decodeRecords,
  decodeUnknownTypeBody,
  encodeAbortRequest,
  encodeBeginRequest,
  encodeEndRequest,
  encodeGetValues,
  encodeGetValuesResult,
  encodeRecord,
  encodeRecordHeader,
  encodeRequestEnd,
  encodeStream,
  encodeUnknownType,
  encodedStreamLength,
  paddingFor,
  type FcgiRecord,
} from '../../src/fastcgi/records.js';
import { bytes, coded } from './fastcgi-codec-helpers.js';

// A deterministic, non-repeating-looking body.
function pattern(length: number, seed = 1): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = seed;
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

function cut(data: Buffer, size: number): Buffer[] {
  const pieces: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) pieces.push(data.subarray(i, i + size));
  return pieces;
}

function plain(records: FcgiRecord[]): { type: number; requestId: number; content: Buffer }[] {
  return records.map((r) => ({
    type: r.type,
    requestId: r.requestId,
    content: Buffer.from(r.content),
  }));
}

describe('protocol constants (FastCGI spec §8)', () => {
  test('values', () => {
    assert.equal(FCGI_VERSION_1, 1);
    assert.equal(FCGI_HEADER_LEN, 8);
    assert.equal(FCGI_MAX_CONTENT_LENGTH, 65535);
    assert.equal(FCGI_MAX_RECORD_LENGTH, 8 + 65535 + 255);
    assert.equal(FCGI_NULL_REQUEST_ID, 0);
    assert.deepEqual(
      [
        FCGI_BEGIN_REQUEST,
        FCGI_ABORT_REQUEST,
        FCGI_END_REQUEST,
        FCGI_PARAMS,
        FCGI_STDIN,
        FCGI_STDOUT,
        FCGI_STDERR,
        FCGI_DATA,
        FCGI_GET_VALUES,
        FCGI_GET_VALUES_RESULT,
        FCGI_UNKNOWN_TYPE,
      ],
      [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
    );
    assert.equal(FCGI_MAXTYPE, 11);
    assert.deepEqual([FCGI_RESPONDER, FCGI_AUTHORIZER, FCGI_FILTER], [1, 2, 3]);
    assert.equal(FCGI_KEEP_CONN, 1);
    assert.deepEqual(
      [FCGI_REQUEST_COMPLETE, FCGI_CANT_MPX_CONN, FCGI_OVERLOADED, FCGI_UNKNOWN_ROLE],
      [0, 1, 2, 3],
    );
    assert.deepEqual(
      [FCGI_MAX_CONNS, FCGI_MAX_REQS, FCGI_MPXS_CONNS],
      ['FCGI_MAX_CONNS', 'FCGI_MAX_REQS', 'FCGI_MPXS_CONNS'],
    );
  });

  test('recordTypeName and isManagementRecordType', () => {
    assert.equal(recordTypeName(FCGI_STDIN), 'FCGI_STDIN');
    assert.equal(recordTypeName(FCGI_UNKNOWN_TYPE), 'FCGI_UNKNOWN_TYPE');
    assert.equal(recordTypeName(0), 'type 0');
    assert.equal(recordTypeName(200), 'type 200');
    assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12].filter(isManagementRecordType), [
      FCGI_GET_VALUES,
      FCGI_GET_VALUES_RESULT,
      FCGI_UNKNOWN_TYPE,
    ]);
  });
});

const getValuesBody = bytes(
  [14, 0],
  'FCGI_MAX_CONNS',
  [13, 0],
  'FCGI_MAX_REQS',
  [15, 0],
  'FCGI_MPXS_CONNS',
);

// One record of every type: content in, raw bytes out (and back). `encode` is the dedicated helper,
// when there is one, which must give the same bytes.
const recordTests: {
  desc: string;
  type: number;
  requestId: number;
  content: Buffer;
  raw: Buffer;
  encode?: () => Buffer;
}[] = [
  {
    desc: 'FCGI_BEGIN_REQUEST, Responder, keep-conn',
    type: FCGI_BEGIN_REQUEST,
    requestId: 1,
    content: bytes([0, 1, 1, 0, 0, 0, 0, 0]),
    raw: bytes([1, 1, 0, 1, 0, 8, 0, 0], [0, 1, 1, 0, 0, 0, 0, 0]),
    encode: () => encodeBeginRequest(1, FCGI_RESPONDER, FCGI_KEEP_CONN),
  },
  {
    desc: 'FCGI_ABORT_REQUEST',
    type: FCGI_ABORT_REQUEST,
    requestId: 1,
    content: bytes(),
    raw: bytes([1, 2, 0, 1, 0, 0, 0, 0]),
    encode: () => encodeAbortRequest(1),
  },
  {
    // FastCGI spec Appendix B, example 3: {FCGI_END_REQUEST, 1, {938, FCGI_REQUEST_COMPLETE}}.
    desc: 'FCGI_END_REQUEST, app status 938',
    type: FCGI_END_REQUEST,
    requestId: 1,
    content: bytes([0, 0, 0x03, 0xaa, 0, 0, 0, 0]),
    raw: bytes([1, 3, 0, 1, 0, 8, 0, 0], [0, 0, 0x03, 0xaa, 0, 0, 0, 0]),
    encode: () => encodeEndRequest(1, 938, FCGI_REQUEST_COMPLETE),
  },
  {
    desc: 'FCGI_END_REQUEST rejecting with FCGI_CANT_MPX_CONN',
    type: FCGI_END_REQUEST,
    requestId: 2,
    content: bytes([0, 0, 0, 0, 1, 0, 0, 0]),
    raw: bytes([1, 3, 0, 2, 0, 8, 0, 0], [0, 0, 0, 0, 1, 0, 0, 0]),
    encode: () => encodeEndRequest(2, 0, FCGI_CANT_MPX_CONN),
  },
  {
    desc: 'FCGI_PARAMS, 15 bytes, 1 byte of padding',
    type: FCGI_PARAMS,
    requestId: 1,
    content: bytes([11, 2], 'SERVER_PORT80'),
    raw: bytes([1, 4, 0, 1, 0, 15, 1, 0], [11, 2], 'SERVER_PORT80', [0]),
  },
  {
    desc: 'FCGI_STDIN, request id 300',
    type: FCGI_STDIN,
    requestId: 300,
    content: bytes('hello'),
    raw: bytes([1, 5, 0x01, 0x2c, 0, 5, 3, 0], 'hello', [0, 0, 0]),
  },
  {
    desc: 'FCGI_STDOUT, request id 65535',
    type: FCGI_STDOUT,
    requestId: 65535,
    content: bytes('Content-type: text/html\r\n\r\n'),
    raw: bytes([1, 6, 0xff, 0xff, 0, 27, 5, 0], 'Content-type: text/html\r\n\r\n', [0, 0, 0, 0, 0]),
  },
  {
    desc: 'FCGI_STDERR',
    type: FCGI_STDERR,
    requestId: 1,
    content: bytes('config error: missing SI_UID\n'),
    raw: bytes([1, 7, 0, 1, 0, 29, 3, 0], 'config error: missing SI_UID\n', [0, 0, 0]),
  },
  {
    desc: 'FCGI_DATA, 8 bytes: no padding',
    type: FCGI_DATA,
    requestId: 2,
    content: bytes('12345678'),
    raw: bytes([1, 8, 0, 2, 0, 8, 0, 0], '12345678'),
  },
  {
    desc: 'FCGI_GET_VALUES',
    type: FCGI_GET_VALUES,
    requestId: 0,
    content: getValuesBody,
    raw: bytes([1, 9, 0, 0, 0, 48, 0, 0], getValuesBody),
    encode: () => encodeGetValues([FCGI_MAX_CONNS, FCGI_MAX_REQS, FCGI_MPXS_CONNS]),
  },
  {
    // The same bytes Go's net/http/fcgi TestGetValues expects.
    desc: 'FCGI_GET_VALUES_RESULT',
    type: FCGI_GET_VALUES_RESULT,
    requestId: 0,
    content: bytes([15, 1], 'FCGI_MPXS_CONNS1'),
    raw: bytes('\x01\n\x00\x00\x00\x12\x06\x00', '\x0f\x01FCGI_MPXS_CONNS1', [0, 0, 0, 0, 0, 0]),
    encode: () => encodeGetValuesResult([[FCGI_MPXS_CONNS, '1']]),
  },
  {
    desc: 'FCGI_UNKNOWN_TYPE',
    type: FCGI_UNKNOWN_TYPE,
    requestId: 0,
    content: bytes([200, 0, 0, 0, 0, 0, 0, 0]),
    raw: bytes([1, 11, 0, 0, 0, 8, 0, 0], [200, 0, 0, 0, 0, 0, 0, 0]),
    encode: () => encodeUnknownType(200),
  },
  {
    desc: 'a type the spec does not define passes through',
    type: 42,
    requestId: 7,
    content: bytes('x'),
    raw: bytes([1, 42, 0, 7, 0, 1, 7, 0], 'x', [0, 0, 0, 0, 0, 0, 0]),
  },
];

describe('records: encodeRecord and decodeRecords (FastCGI spec §3.3)', () => {
  for (const t of recordTests) {
    test(t.desc, () => {
      assert.deepEqual(encodeRecord(t.type, t.requestId, t.content), t.raw);
      if (t.encode) assert.deepEqual(t.encode(), t.raw);
      assert.deepEqual(decodeRecords(t.raw), [
        { version: 1, type: t.type, requestId: t.requestId, content: t.content },
      ]);
    });
  }

  test('all of them in one chunk, and header by header', () => {
    const raw = Buffer.concat(recordTests.map((t) => t.raw));
    const expected = recordTests.map((t) => ({
      type: t.type,
      requestId: t.requestId,
      content: t.content,
    }));
    assert.deepEqual(plain(decodeRecords(raw)), expected);
    const decoder = new RecordDecoder();
    const got: FcgiRecord[] = [];
    for (const piece of cut(raw, FCGI_HEADER_LEN)) {
      decoder.push(piece);
      got.push(...decoder);
    }
    assert.deepEqual(plain(got), expected);
  });

  test('encodeRecordHeader alone', () => {
    assert.deepEqual(
      encodeRecordHeader(FCGI_STDOUT, 258, 65535),
      bytes([1, 6, 1, 2, 0xff, 0xff, 1, 0]),
    );
    assert.deepEqual(encodeRecordHeader(FCGI_STDOUT, 1, 3, 0), bytes([1, 6, 0, 1, 0, 3, 0, 0]));
  });

  test('bad arguments are refused', () => {
    const invalid = coded('FCGI_ERR_INVALID_ARGUMENT');
    assert.throws(() => encodeRecord(FCGI_STDOUT, 1, Buffer.alloc(65536)), invalid);
    assert.throws(() => encodeRecord(FCGI_STDOUT, 65536), invalid);
    assert.throws(() => encodeRecord(FCGI_STDOUT, -1), invalid);
    assert.throws(() => encodeRecord(FCGI_STDOUT, 1.5), invalid);
    assert.throws(() => encodeRecord(256, 1), invalid);
    assert.throws(() => encodeRecord(FCGI_STDOUT, 1, bytes('x'), 256), invalid);
    assert.throws(() => encodeStream(FCGI_STDOUT, 70000, bytes('x')), invalid);
    assert.throws(() => encodeEndRequest(1, 2 ** 32), invalid);
    assert.throws(() => encodeBeginRequest(1, 65536), invalid);
    const tooBig = Array.from({ length: 10000 }, (_, i): [string, string] => [`NAME_${i}`, 'x']);
    assert.throws(() => encodeGetValuesResult(tooBig), invalid);
  });
});

describe('padding (FastCGI spec §3.3)', () => {
  test('content is padded to a multiple of 8 with zeros', () => {
    for (let n = 0; n <= 17; n++) {
      const raw = encodeRecord(FCGI_STDOUT, 1, Buffer.alloc(n, 0xaa));
      const padding = (8 - (n % 8)) % 8;
      assert.equal(paddingFor(n), padding, `paddingFor(${n})`);
      assert.equal(raw.length, 8 + n + padding);
      assert.equal(raw.length % 8, 0);
      assert.equal(raw[6], padding);
      assert.ok(
        raw.subarray(8 + n).every((b) => b === 0),
        'padding bytes are zero',
      );
    }
    assert.equal(paddingFor(65535), 1);
  });

  test('any padding a peer chooses is skipped, whatever its bytes', () => {
    const raw = bytes(
      [1, 6, 0, 1, 0, 3, 255, 0],
      'abc',
      Buffer.alloc(255, 0xee),
      [1, 6, 0, 1, 0, 0, 7, 0],
      Buffer.alloc(7, 0xee),
      [1, 6, 0, 1, 0, 2, 0, 0],
      'de',
    );
    assert.deepEqual(plain(decodeRecords(raw)), [
      { type: FCGI_STDOUT, requestId: 1, content: bytes('abc') },
      { type: FCGI_STDOUT, requestId: 1, content: bytes() },
      { type: FCGI_STDOUT, requestId: 1, content: bytes('de') },
    ]);
  });

  test('a non-zero reserved byte is ignored', () => {
    assert.deepEqual(plain(decodeRecords(bytes([1, 5, 0, 1, 0, 1, 0, 0x99], 'z'))), [
      { type: FCGI_STDIN, requestId: 1, content: bytes('z') },
    ]);
  });
});

const stdout200k = pattern(200_000, 7);
const stdin66000 = Buffer.alloc(66000);

// Streams (FastCGI spec §5.3): content in, raw records out, the empty record closing the stream.
const streamTests: {
  desc: string;
  type: number;
  requestId: number;
  content: Buffer;
  raw: Buffer;
}[] = [
  {
    desc: 'end of stream only',
    type: FCGI_STDOUT,
    requestId: 1,
    content: bytes(),
    raw: bytes([1, 6, 0, 1, 0, 0, 0, 0]),
  },
  {
    desc: 'one record',
    type: FCGI_STDERR,
    requestId: 2,
    content: bytes('oops\n'),
    raw: bytes([1, 7, 0, 2, 0, 5, 3, 0], 'oops\n', [0, 0, 0], [1, 7, 0, 2, 0, 0, 0, 0]),
  },
  {
    desc: '66000 bytes: two records',
    type: FCGI_STDIN,
    requestId: 300,
    content: stdin66000,
    raw: bytes(
      [1, 5, 0x01, 0x2c, 0xff, 0xff, 1, 0],
      Buffer.alloc(65536),
      [1, 5, 0x01, 0x2c, 0x01, 0xd1, 7, 0],
      Buffer.alloc(472),
      [1, 5, 0x01, 0x2c, 0, 0, 0, 0],
    ),
  },
  {
    // 200 000 = 3 × 65535 + 3395 (0x0d43, padded by 5).
    desc: '200 000 bytes of stdout: four records',
    type: FCGI_STDOUT,
    requestId: 1,
    content: stdout200k,
    raw: bytes(
      [1, 6, 0, 1, 0xff, 0xff, 1, 0],
      stdout200k.subarray(0, 65535),
      [0],
      [1, 6, 0, 1, 0xff, 0xff, 1, 0],
      stdout200k.subarray(65535, 131070),
      [0],
      [1, 6, 0, 1, 0xff, 0xff, 1, 0],
      stdout200k.subarray(131070, 196605),
      [0],
      [1, 6, 0, 1, 0x0d, 0x43, 5, 0],
      stdout200k.subarray(196605),
      [0, 0, 0, 0, 0],
      [1, 6, 0, 1, 0, 0, 0, 0],
    ),
  },
];

describe('streams: encodeStream (FastCGI spec §5.3)', () => {
  for (const t of streamTests) {
    test(t.desc, () => {
      const raw = encodeStream(t.type, t.requestId, t.content, { end: true });
      assert.ok(raw.equals(t.raw), 'encoded bytes');
      assert.equal(encodedStreamLength(t.content.length, true), t.raw.length);
      const records = decodeRecords(t.raw);
      for (const r of records) {
        assert.equal(r.type, t.type);
        assert.equal(r.requestId, t.requestId);
        assert.ok(r.content.length <= FCGI_MAX_CONTENT_LENGTH);
      }
      assert.equal(records.at(-1)?.content.length, 0, 'the last record is empty');
      assert.ok(Buffer.concat(records.map((r) => r.content)).equals(t.content), 'content');
    });
  }

  test('200 000 bytes split into 65535-byte records', () => {
    const records = decodeRecords(encodeStream(FCGI_STDOUT, 1, stdout200k, { end: true }));
    assert.deepEqual(
      records.map((r) => r.content.length),
      [65535, 65535, 65535, 3395, 0],
    );
  });

  test('without end, no empty record: empty data gives nothing at all', () => {
    assert.equal(encodeStream(FCGI_STDOUT, 1, bytes()).length, 0);
    assert.equal(encodedStreamLength(0), 0);
    const raw = encodeStream(FCGI_STDOUT, 1, bytes('abc'));
    assert.deepEqual(raw, bytes([1, 6, 0, 1, 0, 3, 5, 0], 'abc', [0, 0, 0, 0, 0]));
    assert.deepEqual(
      decodeRecords(encodeStream(FCGI_STDOUT, 1, Buffer.alloc(65535))).map((r) => r.content.length),
      [65535],
    );
  });

  test('a Uint8Array that is not a Buffer is fine', () => {
    const data = new Uint8Array([1, 2, 3]);
    assert.deepEqual(
      encodeStream(FCGI_STDIN, 1, data),
      bytes([1, 5, 0, 1, 0, 3, 5, 0], [1, 2, 3, 0, 0, 0, 0, 0]),
    );
  });
});

describe('encodeRequestEnd: the coalesced tail of a response (FastCGI spec §6.2, Appendix B)', () => {
  const body = bytes('Content-type: text/html\r\n\r\n<html>\n<head> ... ');

  test('stdout, empty stdout, FCGI_END_REQUEST', () => {
    const expected = Buffer.concat([
      encodeRecord(FCGI_STDOUT, 1, body),
      encodeRecord(FCGI_STDOUT, 1),
      encodeEndRequest(1, 0, FCGI_REQUEST_COMPLETE),
    ]);
    assert.deepEqual(encodeRequestEnd(1, { stdout: body }), expected);
  });

  test('nothing left to write: empty stdout and FCGI_END_REQUEST only', () => {
    assert.deepEqual(
      encodeRequestEnd(5),
      bytes([1, 6, 0, 5, 0, 0, 0, 0], [1, 3, 0, 5, 0, 8, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0]),
    );
  });

  test('stderr was used: its empty record too, app status 938 (Appendix B, example 3)', () => {
    const expected = Buffer.concat([
      encodeRecord(FCGI_STDOUT, 1, bytes('<title>Hello</title>')),
      encodeRecord(FCGI_STDOUT, 1),
      encodeRecord(FCGI_STDERR, 1),
      encodeEndRequest(1, 938),
    ]);
    assert.deepEqual(
      encodeRequestEnd(1, {
        stdout: bytes('<title>Hello</title>'),
        endStderr: true,
        appStatus: 938,
      }),
      expected,
    );
  });

  test('stderr bytes are sent and their stream ended', () => {
    const expected = Buffer.concat([
      encodeRecord(FCGI_STDOUT, 3),
      encodeRecord(FCGI_STDERR, 3, bytes('boom\n')),
      encodeRecord(FCGI_STDERR, 3),
      encodeEndRequest(3, 1),
    ]);
    assert.deepEqual(encodeRequestEnd(3, { stderr: bytes('boom\n'), appStatus: 1 }), expected);
  });

  test('200 000 bytes of stdout in one buffer', () => {
    const raw = encodeRequestEnd(1, { stdout: stdout200k });
    assert.ok(
      raw.equals(
        Buffer.concat([
          encodeStream(FCGI_STDOUT, 1, stdout200k, { end: true }),
          encodeEndRequest(1),
        ]),
      ),
    );
    const records = decodeRecords(raw);
    assert.deepEqual(
      records.map((r) => [r.type, r.content.length]),
      [
        [FCGI_STDOUT, 65535],
        [FCGI_STDOUT, 65535],
        [FCGI_STDOUT, 65535],
        [FCGI_STDOUT, 3395],
        [FCGI_STDOUT, 0],
        [FCGI_END_REQUEST, 8],
      ],
    );
  });

  test('a negative app status is sent as its two’s complement', () => {
    const [record] = decodeRecords(encodeRequestEnd(1, { appStatus: -1 }).subarray(8));
    assert.deepEqual(record?.content, bytes([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]));
    assert.deepEqual(decodeEndRequestBody(record?.content ?? bytes()), {
      appStatus: 0xffffffff,
      protocolStatus: FCGI_REQUEST_COMPLETE,
    });
  });
});

describe('record bodies (FastCGI spec §4, §5.1, §5.5)', () => {
  const beginTests: { raw: number[]; role: number; flags: number; keepConn: boolean }[] = [
    { raw: [0, 1, 1, 0, 0, 0, 0, 0], role: FCGI_RESPONDER, flags: 1, keepConn: true },
    { raw: [0, 1, 0, 0, 0, 0, 0, 0], role: FCGI_RESPONDER, flags: 0, keepConn: false },
    { raw: [0, 2, 0, 0, 0, 0, 0, 0], role: FCGI_AUTHORIZER, flags: 0, keepConn: false },
    { raw: [0, 3, 1, 9, 9, 9, 9, 9], role: FCGI_FILTER, flags: 1, keepConn: true },
    { raw: [0x12, 0x34, 0xfe, 0, 0, 0, 0, 0], role: 0x1234, flags: 0xfe, keepConn: false },
  ];
  for (const { raw, role, flags, keepConn } of beginTests) {
    test(`FCGI_BEGIN_REQUEST body ${Buffer.from(raw).toString('hex')}`, () => {
      assert.deepEqual(decodeBeginRequestBody(Buffer.from(raw)), { role, flags, keepConn });
    });
  }

  test('a FCGI_BEGIN_REQUEST body that is not 8 bytes is FCGI_ERR_BAD_RECORD', () => {
    assert.throws(
      () => decodeBeginRequestBody(bytes([0, 1, 1, 0, 0, 0, 0])),
      coded('FCGI_ERR_BAD_RECORD'),
    );
    assert.throws(() => decodeBeginRequestBody(Buffer.alloc(9)), coded('FCGI_ERR_BAD_RECORD'));
    assert.throws(() => decodeEndRequestBody(bytes()), coded('FCGI_ERR_BAD_RECORD'));
    assert.throws(() => decodeUnknownTypeBody(bytes([1])), coded('FCGI_ERR_BAD_RECORD'));
  });

  test('FCGI_END_REQUEST body', () => {
    assert.deepEqual(decodeEndRequestBody(bytes([0xff, 0xff, 0xff, 0xfe, 3, 0, 0, 0])), {
      appStatus: 0xfffffffe,
      protocolStatus: FCGI_UNKNOWN_ROLE,
    });
    assert.deepEqual(decodeEndRequestBody(new Uint8Array([0, 0, 1, 0, 2, 0, 0, 0])), {
      appStatus: 256,
      protocolStatus: FCGI_OVERLOADED,
    });
  });

  test('FCGI_UNKNOWN_TYPE body', () => {
    assert.equal(decodeUnknownTypeBody(bytes([12, 0, 0, 0, 0, 0, 0, 0])), 12);
  });

  test('FCGI_GET_VALUES names, and its result', () => {
    assert.deepEqual(decodeGetValues(getValuesBody), [
      FCGI_MAX_CONNS,
      FCGI_MAX_REQS,
      FCGI_MPXS_CONNS,
    ]);
    assert.deepEqual(decodeGetValues(bytes()), []);
    assert.throws(
      () => decodeGetValues(getValuesBody.subarray(0, 10)),
      coded('FCGI_ERR_PARAMS_TRUNCATED'),
    );
    const [result] = decodeRecords(
      encodeGetValuesResult([
        [FCGI_MAX_CONNS, '10'],
        [FCGI_MPXS_CONNS, '0'],
      ]),
    );
    assert.equal(result?.requestId, FCGI_NULL_REQUEST_ID);
    assert.deepEqual(
      decodeGetValuesResult(result?.content ?? bytes()),
      new Map([
        [FCGI_MAX_CONNS, '10'],
        [FCGI_MPXS_CONNS, '0'],
      ]),
    );
  });
});

describe('RecordDecoder', () => {
  const a = encodeRecord(FCGI_STDIN, 1, bytes('first'));
  const b = encodeRecord(FCGI_STDIN, 1, bytes('second!'));

  test('several records in one chunk are views of it, not copies', () => {
    const chunk = Buffer.concat([a, b]);
    const decoder = new RecordDecoder();
    decoder.push(chunk);
    assert.equal(decoder.queuedRecords, 2);
    const records = [...decoder];
    assert.deepEqual(
      records.map((r) => r.content.toString()),
      ['first', 'second!'],
    );
    chunk.fill(0x5a);
    assert.deepEqual(
      records.map((r) => r.content.toString()),
      ['ZZZZZ', 'ZZZZZZZ'],
    );
    assert.equal(decoder.read(), null);
    assert.equal(decoder.bufferedBytes, 0);
  });

  test('a record split across chunks is copied', () => {
    const chunk = Buffer.from(a);
    const decoder = new RecordDecoder();
    decoder.push(chunk.subarray(0, 10));
    assert.equal(decoder.read(), null);
    assert.equal(decoder.bufferedBytes, 10);
    decoder.push(chunk.subarray(10));
    const record = decoder.read();
    chunk.fill(0x5a);
    assert.equal(record?.content.toString(), 'first');
  });

  test('a split header with the content whole in the next chunk needs no copy', () => {
    const chunk = Buffer.from(a);
    const decoder = new RecordDecoder();
    decoder.push(chunk.subarray(0, 5));
    decoder.push(chunk.subarray(5));
    const record = decoder.read();
    chunk.fill(0x5a);
    assert.equal(record?.content.toString(), 'ZZZZZ');
  });

  test('a record waits for its padding', () => {
    const decoder = new RecordDecoder();
    decoder.push(a.subarray(0, 8 + 5)); // header and content, no padding
    assert.equal(decoder.read(), null);
    decoder.push(a.subarray(13, 15));
    assert.equal(decoder.read(), null);
    decoder.push(a.subarray(15));
    assert.equal(decoder.read()?.content.toString(), 'first');
  });

  test('a truncated stream leaves the decoder waiting, not failing, until end()', () => {
    const decoder = new RecordDecoder();
    decoder.push(Buffer.concat([a, b.subarray(0, 11)]));
    assert.equal(decoder.read()?.content.toString(), 'first');
    assert.equal(decoder.read(), null);
    assert.equal(decoder.read(), null);
    assert.equal(decoder.bufferedBytes, 11);
    decoder.end();
    assert.throws(
      () => decoder.read(),
      (e: unknown) => {
        assert.ok(e instanceof BridgeError);
        assert.equal(e.code, 'FCGI_ERR_TRUNCATED');
        assert.match(e.message, /^fcgi: stream ended inside a record \(11 bytes/);
        return true;
      },
    );
  });

  test('records queued before end() are still read before the truncation error', () => {
    const decoder = new RecordDecoder();
    decoder.push(Buffer.concat([a, b.subarray(0, 3)]));
    decoder.end();
    assert.equal(decoder.read()?.content.toString(), 'first');
    assert.throws(() => decoder.read(), coded('FCGI_ERR_TRUNCATED'));
  });

  test('end() at a record boundary is clean', () => {
    const decoder = new RecordDecoder();
    decoder.push(a);
    decoder.end();
    decoder.end();
    assert.equal(decoder.ended, true);
    assert.equal(decoder.read()?.content.toString(), 'first');
    assert.equal(decoder.read(), null);
    assert.throws(() => decoder.push(b), coded('FCGI_ERR_DECODER_ENDED'));
  });

  test('a bad version comes after the good records before it, and sticks', () => {
    const decoder = new RecordDecoder();
    decoder.push(Buffer.concat([a, bytes([2, 5, 0, 1, 0, 0, 0, 0]), b]));
    assert.equal(decoder.read()?.content.toString(), 'first');
    let first: unknown;
    assert.throws(
      () => decoder.read(),
      (e: unknown) => {
        first = e;
        assert.ok(e instanceof BridgeError);
        assert.equal(e.code, 'FCGI_ERR_BAD_VERSION');
        assert.equal(e.message, 'fcgi: unsupported record version 2 (expected 1)');
        return true;
      },
    );
    decoder.push(b); // ignored: framing is lost
    assert.throws(
      () => decoder.read(),
      (e) => e === first,
    );
  });

  test('a bad version is seen at the first byte, before the header is whole', () => {
    const decoder = new RecordDecoder();
    decoder.push(a);
    decoder.push(bytes([0]));
    assert.equal(decoder.read()?.content.toString(), 'first');
    assert.throws(() => decoder.read(), coded('FCGI_ERR_BAD_VERSION'));
  });

  test('an HTTP request sent to the FastCGI socket is named as such', () => {
    const decoder = new RecordDecoder();
    decoder.push(bytes('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    assert.throws(
      () => decoder.read(),
      (e: unknown) => {
        assert.ok(e instanceof BridgeError && e.code === 'FCGI_ERR_BAD_VERSION');
        assert.match(e.message, /^fcgi: unsupported record version 71 .*HTTP client/);
        return true;
      },
    );
  });

  test('the largest record, byte by byte, never holds a full record’s worth', () => {
    const content = pattern(FCGI_MAX_CONTENT_LENGTH, 3);
    const raw = encodeRecord(FCGI_STDOUT, 9, content, 255);
    assert.equal(raw.length, FCGI_MAX_RECORD_LENGTH);
    const decoder = new RecordDecoder();
    let most = 0;
    const got: FcgiRecord[] = [];
    for (let i = 0; i < raw.length; i++) {
      decoder.push(raw.subarray(i, i + 1));
      most = Math.max(most, decoder.bufferedBytes);
      got.push(...decoder);
    }
    assert.equal(most, FCGI_MAX_RECORD_LENGTH - 1);
    assert.equal(got.length, 1);
    assert.ok(got[0]?.content.equals(content));
    assert.equal(decoder.bufferedBytes, 0);
  });

  test('the iterator stops when no whole record is left; it does not wait', () => {
    const decoder = new RecordDecoder();
    decoder.push(Buffer.concat([a, b.subarray(0, 4)]));
    assert.equal([...decoder].length, 1);
    assert.equal([...decoder].length, 0);
    decoder.push(b.subarray(4));
    assert.equal([...decoder].length, 1);
  });

  test('a plain Uint8Array chunk is accepted', () => {
    const decoder = new RecordDecoder();
    decoder.push(new Uint8Array(a));
    assert.equal(decoder.read()?.content.toString(), 'first');
  });
});

// A realistic request as nginx sends it with `include fastcgi_params; fastcgi_keep_conn on;`: the
// CGI variables, then the request headers as HTTP_*, a cookie over 127 bytes (4-byte length), a
// header name over 127 bytes, UTF-8 and a Latin-1 byte that is not UTF-8, and a 70 000-byte body.
const requestBody = pattern(70_000, 11);
const longHeaderName = 'HTTP_X_' + 'LONG_'.repeat(25);
const nginxParams: [string, ParamInput][] = [
  ['SCRIPT_FILENAME', '/srv/www/app/index.js'],
  ['QUERY_STRING', 'q=caf%C3%A9&page=2'],
  ['REQUEST_METHOD', 'POST'],
  ['CONTENT_TYPE', 'application/octet-stream'],
  ['CONTENT_LENGTH', String(requestBody.length)],
  ['SCRIPT_NAME', '/app'],
  ['REQUEST_URI', '/app/upload?q=caf%C3%A9&page=2'],
  ['DOCUMENT_URI', '/app/upload'],
  ['DOCUMENT_ROOT', '/srv/www'],
  ['SERVER_PROTOCOL', 'HTTP/1.1'],
  ['REQUEST_SCHEME', 'https'],
  ['HTTPS', 'on'],
  ['GATEWAY_INTERFACE', 'CGI/1.1'],
  ['SERVER_SOFTWARE', 'nginx/1.24.0'],
  ['REMOTE_ADDR', '203.0.113.7'],
  ['REMOTE_PORT', '52344'],
  ['REMOTE_USER', ''],
  ['SERVER_ADDR', '192.0.2.10'],
  ['SERVER_PORT', '443'],
  ['SERVER_NAME', 'example.org'],
  ['REDIRECT_STATUS', '200'],
  ['PATH_INFO', '/upload'],
  ['HTTP_HOST', 'example.org'],
  ['HTTP_USER_AGENT', 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0'],
  ['HTTP_ACCEPT', 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'],
  ['HTTP_ACCEPT_LANGUAGE', 'fr-FR,fr;q=0.8,en-US;q=0.5,en;q=0.3'],
  ['HTTP_ACCEPT_ENCODING', 'gzip, deflate, br, zstd'],
  ['HTTP_CONTENT_TYPE', 'application/octet-stream'],
  ['HTTP_CONTENT_LENGTH', String(requestBody.length)],
  ['HTTP_COOKIE', 'session=' + 'a1b2c3d4'.repeat(40) + '; theme=dark'],
  ['HTTP_X_FORWARDED_FOR', '198.51.100.23'],
  ['HTTP_X_USER_NAME', 'Zoë Ångström'],
  ['HTTP_X_LEGACY', Buffer.from([0x63, 0x61, 0x66, 0xe9])],
  [longHeaderName, 'yes'],
];
const expectedParams: [string, string][] = nginxParams.map(([n, v]) => [
  n,
  typeof v === 'string' ? v : Buffer.from(v).toString('utf8'),
]);

// BEGIN_REQUEST, PARAMS cut every 100 bytes (so pairs straddle records), the empty PARAMS,
// STDIN in 8 KiB records like nginx's client body buffer, the empty STDIN.
const paramsStream = encodeParams(nginxParams);
const requestStream = Buffer.concat([
  encodeBeginRequest(1, FCGI_RESPONDER, FCGI_KEEP_CONN),
  ...cut(paramsStream, 100).map((piece) => encodeRecord(FCGI_PARAMS, 1, piece)),
  encodeRecord(FCGI_PARAMS, 1),
  ...cut(requestBody, 8192).map((piece) => encodeRecord(FCGI_STDIN, 1, piece)),
  encodeRecord(FCGI_STDIN, 1),
]);

interface Replayed {
  records: { type: number; requestId: number; content: Buffer }[];
  begin: unknown;
  params: [string, string][];
  paramsEnded: boolean;
  stdin: Buffer;
  stdinEnded: boolean;
  mostBuffered: number;
}

// Feeds the stream in pieces given by `sizes` (cycled), handling records the way a responder would.
function replay(raw: Buffer, sizes: number[]): Replayed {
  const decoder = new RecordDecoder();
  const params = new ParamsDecoder();
  const out: Replayed = {
    records: [],
    begin: undefined,
    params: [],
    paramsEnded: false,
    stdin: bytes(),
    stdinEnded: false,
    mostBuffered: 0,
  };
  const stdin: Buffer[] = [];
  const handle = (record: FcgiRecord): void => {
    out.records.push({
      type: record.type,
      requestId: record.requestId,
      content: Buffer.from(record.content),
    });
    if (record.type === FCGI_BEGIN_REQUEST) out.begin = decodeBeginRequestBody(record.content);
    else if (record.type === FCGI_PARAMS && record.content.length === 0) {
      params.end();
      out.paramsEnded = true;
    } else if (record.type === FCGI_PARAMS) {
      for (const pair of params.push(record.content)) out.params.push([pair.name, pair.value]);
    } else if (record.type === FCGI_STDIN && record.content.length === 0) out.stdinEnded = true;
    else if (record.type === FCGI_STDIN) stdin.push(Buffer.from(record.content));
  };
  for (let pos = 0, i = 0; pos < raw.length; i++) {
    const size = sizes[i % sizes.length] ?? raw.length;
    decoder.push(raw.subarray(pos, pos + size));
    pos += size;
    out.mostBuffered = Math.max(out.mostBuffered, decoder.bufferedBytes);
    for (const record of decoder) handle(record);
  }
  decoder.end();
  assert.equal(decoder.read(), null);
  out.stdin = Buffer.concat(stdin);
  return out;
}

describe('a whole nginx request replayed at every split (gunicorn treq.py style)', () => {
  const whole = replay(requestStream, [requestStream.length]);

  test('whole: the request as sent', () => {
    assert.deepEqual(whole.begin, { role: FCGI_RESPONDER, flags: FCGI_KEEP_CONN, keepConn: true });
    assert.deepEqual(whole.params, expectedParams);
    assert.ok(whole.paramsEnded);
    assert.ok(whole.stdin.equals(requestBody));
    assert.ok(whole.stdinEnded);
    const paramsRecords = Math.ceil(paramsStream.length / 100);
    assert.equal(whole.records.length, 1 + paramsRecords + 1 + Math.ceil(70_000 / 8192) + 1);
    const params = new Map(whole.params);
    assert.equal(params.get('HTTP_X_LEGACY'), 'caf\uFFFD');
    assert.equal(params.get('HTTP_X_USER_NAME'), 'Zoë Ångström');
    assert.equal(params.get(longHeaderName), 'yes');
  });

  for (const size of [1, 3, 7, 13, 64, 1000, 8192, 65536]) {
    test(`in chunks of ${size} bytes`, () => {
      const got = replay(requestStream, [size]);
      assert.deepEqual({ ...got, mostBuffered: 0 }, { ...whole, mostBuffered: 0 });
      assert.ok(got.mostBuffered < FCGI_MAX_RECORD_LENGTH);
    });
  }

  test('in chunks of mixed odd sizes', () => {
    const got = replay(
      requestStream,
      [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597],
    );
    assert.deepEqual({ ...got, mostBuffered: 0 }, { ...whole, mostBuffered: 0 });
  });
});

describe('RecordDecoder with streamTypes: bodies passed on as they arrive', () => {
  // A body record with padding between two other records, cut at every byte.
  const body = Buffer.from(Array.from({ length: 1001 }, (_, i) => i % 251));
  const raw = Buffer.concat([
    encodeRecord(FCGI_PARAMS, 3, Buffer.from('abc')),
    encodeRecord(FCGI_STDIN, 3, body),
    encodeRecord(FCGI_DATA, 3, Buffer.from('data!')),
    encodeRecord(FCGI_STDIN, 3),
  ]);

  test('at every split: pieces, never empty, add up to each body; other records come whole', () => {
    for (let cut = 1; cut < raw.length; cut++) {
      const decoder = new RecordDecoder({ streamTypes: [FCGI_STDIN, FCGI_DATA] });
      const seen: { type: number; id: number; content: Buffer }[] = [];
      let mostBuffered = 0;
      for (const part of [raw.subarray(0, cut), raw.subarray(cut)]) {
        decoder.push(part);
        mostBuffered = Math.max(mostBuffered, decoder.bufferedBytes);
        for (const r of decoder) {
          seen.push({ type: r.type, id: r.requestId, content: Buffer.from(r.content) });
        }
      }
      decoder.end();
      assert.equal(decoder.read(), null, `cut ${cut}`);
      const params = seen.filter((r) => r.type === FCGI_PARAMS);
      assert.deepEqual(
        params.map((r) => r.content.toString()),
        ['abc'],
        `cut ${cut}`,
      );
      const stdin = seen.filter((r) => r.type === FCGI_STDIN);
      assert.ok(
        stdin.every((r) => r.id === 3),
        `cut ${cut}`,
      );
      // The pieces first (none empty), then the one empty record that ends the stream.
      assert.deepEqual(Buffer.concat(stdin.map((r) => r.content)), body, `cut ${cut}`);
      assert.equal(stdin.at(-1)!.content.length, 0, `cut ${cut}`);
      assert.ok(
        stdin.slice(0, -1).every((r) => r.content.length > 0),
        `cut ${cut}`,
      );
      assert.ok(stdin.length <= 3, `cut ${cut}: ${stdin.length} records`);
      const data = seen.filter((r) => r.type === FCGI_DATA);
      assert.equal(Buffer.concat(data.map((r) => r.content)).toString(), 'data!', `cut ${cut}`);
      // Under 8 KiB, the rest of a body record is gathered: never more than the record.
      assert.ok(mostBuffered <= FCGI_HEADER_LEN + body.length, `cut ${cut}: held ${mostBuffered}`);
    }
  });

  test('a large part goes on at once as a view; bytes trickling in are gathered, not passed one by one', () => {
    const big = Buffer.alloc(40_000, 7);
    const record = encodeRecord(FCGI_STDIN, 2, big);
    const decoder = new RecordDecoder({ streamTypes: [FCGI_STDIN] });
    const first = record.subarray(0, FCGI_HEADER_LEN + 20_000);
    decoder.push(first);
    const piece = decoder.read()!;
    assert.equal(piece.content.length, 20_000);
    assert.equal(piece.content.buffer, first.buffer, 'a view of the pushed bytes, not a copy');
    assert.ok(decoder.bufferedBytes <= FCGI_HEADER_LEN);
    for (let i = FCGI_HEADER_LEN + 20_000; i < record.length; i++)
      decoder.push(record.subarray(i, i + 1));
    const rest = [...decoder];
    assert.equal(rest.length, 1, `${rest.length} pieces for 20,000 single bytes`);
    assert.deepEqual(Buffer.concat([piece.content, rest[0]!.content]), big);
    assert.equal(decoder.bufferedBytes, 0);
  });

  test('a body cut off by the end of the stream is still FCGI_ERR_TRUNCATED', () => {
    const decoder = new RecordDecoder({ streamTypes: [FCGI_STDIN] });
    const record = encodeRecord(FCGI_STDIN, 1, Buffer.alloc(20_000, 1));
    decoder.push(record.subarray(0, 10_000));
    assert.equal(decoder.read()?.content.length, 10_000 - FCGI_HEADER_LEN);
    decoder.end();
    assert.throws(() => decoder.read(), { code: 'FCGI_ERR_TRUNCATED' });
  });

  test('without streamTypes a cut record comes whole, as before', () => {
    const decoder = new RecordDecoder();
    const record = encodeRecord(FCGI_STDIN, 1, body);
    decoder.push(record.subarray(0, 100));
    assert.equal(decoder.read(), null);
    decoder.push(record.subarray(100));
    assert.deepEqual(decoder.read()?.content, body);
  });
});
