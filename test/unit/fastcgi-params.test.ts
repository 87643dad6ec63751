// Byte-level tests of FastCGI name-value pairs (FastCGI spec §3.4) and the FCGI_PARAMS stream decoder (§5.2).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { BridgeError } from '../../src/errors.js';
import {
  DEFAULT_MAX_PARAMS,
  DEFAULT_MAX_PARAMS_BYTES,
  MAX_PARAM_LENGTH,
  ParamsDecoder,
  decodeParamLength,
  decodeParams,
  encodeParamLength,
  encodeParams,
  paramLengthSize,
  type ParamInput,
  type ParamPair,
} from '../../src/fastcgi/params.js';
import { bytes, coded } from './fastcgi-codec-helpers.js';

function strings(pairs: ParamPair[]): [string, string][] {
  return pairs.map((p) => [p.name, p.value]);
}

// Decodes `raw` pushed in the given pieces, then ends the stream.
function decodePieces(pieces: Uint8Array[]): [string, string][] {
  const decoder = new ParamsDecoder();
  const out: ParamPair[] = [];
  for (const piece of pieces) out.push(...decoder.push(piece));
  decoder.end();
  return strings(out);
}

function cut(raw: Buffer, size: number): Buffer[] {
  const pieces: Buffer[] = [];
  for (let i = 0; i < raw.length; i += size) pieces.push(raw.subarray(i, i + size));
  return pieces;
}

// FastCGI spec §3.4: one byte below 128, else four bytes with the high bit set.
const sizeTests: { size: number; raw: number[] }[] = [
  { size: 0, raw: [0x00] },
  { size: 1, raw: [0x01] },
  { size: 127, raw: [0x7f] },
  { size: 128, raw: [0x80, 0x00, 0x00, 0x80] },
  { size: 1000, raw: [0x80, 0x00, 0x03, 0xe8] },
  { size: 33554431, raw: [0x81, 0xff, 0xff, 0xff] },
  { size: 2 ** 31 - 1, raw: [0xff, 0xff, 0xff, 0xff] },
];

describe('name-value lengths (FastCGI spec §3.4)', () => {
  for (const { size, raw } of sizeTests) {
    test(`${size} <-> ${Buffer.from(raw).toString('hex')}`, () => {
      assert.deepEqual(encodeParamLength(size), Buffer.from(raw));
      assert.equal(paramLengthSize(size), raw.length);
      assert.deepEqual(decodeParamLength(Buffer.from(raw)), { length: size, size: raw.length });
      assert.deepEqual(decodeParamLength(bytes([9], raw), 1), { length: size, size: raw.length });
      // Any shorter prefix of a 4-byte length is incomplete, not a length.
      for (let n = 0; n < raw.length; n++)
        assert.equal(decodeParamLength(Buffer.from(raw.slice(0, n))), null);
    });
  }

  test('2^31 and beyond cannot be encoded', () => {
    assert.equal(MAX_PARAM_LENGTH, 2 ** 31 - 1);
    assert.throws(() => encodeParamLength(2 ** 31), coded('FCGI_ERR_INVALID_ARGUMENT'));
    assert.throws(() => encodeParamLength(-1), coded('FCGI_ERR_INVALID_ARGUMENT'));
  });
});

const v127 = 'v'.repeat(127);
const v128 = 'v'.repeat(128);
const n127 = 'N'.repeat(127);
const n128 = 'N'.repeat(128);

// Pairs in, raw bytes out, and back. `decoded` is what the decoder gives when it differs from the input.
const pairTests: {
  desc: string;
  pairs: [ParamInput, ParamInput][];
  raw: Buffer;
  decoded?: [string, string][];
}[] = [
  { desc: 'no pairs', pairs: [], raw: bytes() },
  { desc: 'short name and value', pairs: [['A', 'B']], raw: bytes([1, 1], 'AB') },
  { desc: 'empty value', pairs: [['REMOTE_USER', '']], raw: bytes([11, 0], 'REMOTE_USER') },
  { desc: 'empty name and value', pairs: [['', '']], raw: bytes([0, 0]) },
  {
    // FastCGI spec Appendix B, example 1: "\013\002SERVER_PORT80\013\016SERVER_ADDR199.170.183.42".
    desc: 'the spec example',
    pairs: [
      ['SERVER_PORT', '80'],
      ['SERVER_ADDR', '199.170.183.42'],
    ],
    raw: bytes([0o13, 0o2], 'SERVER_PORT80', [0o13, 0o16], 'SERVER_ADDR199.170.183.42'),
  },
  {
    desc: 'value of 127 bytes: 1-byte length',
    pairs: [['X', v127]],
    raw: bytes([1, 0x7f], 'X', v127),
  },
  {
    desc: 'value of 128 bytes: 4-byte length',
    pairs: [['X', v128]],
    raw: bytes([1, 0x80, 0, 0, 0x80], 'X', v128),
  },
  { desc: 'name of 127 bytes: 1-byte length', pairs: [[n127, '']], raw: bytes([0x7f, 0], n127) },
  {
    desc: 'name of 128 bytes: 4-byte length',
    pairs: [[n128, '']],
    raw: bytes([0x80, 0, 0, 0x80, 0], n128),
  },
  {
    desc: 'name and value both 4-byte',
    pairs: [[n128, v128]],
    raw: bytes([0x80, 0, 0, 0x80, 0x80, 0, 0, 0x80], n128, v128),
  },
  {
    desc: 'UTF-8 lengths count bytes',
    pairs: [['HTTP_X_NAME', 'Zoë']],
    raw: bytes([11, 4], 'HTTP_X_NAME', 'Zo', [0xc3, 0xab]),
  },
  {
    desc: 'bytes are sent as they are',
    pairs: [[Buffer.from('N'), new Uint8Array([0x41, 0x00, 0x42])]],
    raw: bytes([1, 3], 'N', [0x41, 0x00, 0x42]),
    decoded: [['N', 'A\0B']],
  },
  {
    desc: 'invalid UTF-8 decodes to U+FFFD',
    pairs: [[new Uint8Array([0x4e, 0xff]), new Uint8Array([0x63, 0x61, 0x66, 0xe9])]],
    raw: bytes([2, 4], [0x4e, 0xff], 'caf', [0xe9]),
    decoded: [['N\uFFFD', 'caf\uFFFD']],
  },
];

describe('encodeParams and decodeParams', () => {
  for (const t of pairTests) {
    test(t.desc, () => {
      assert.deepEqual(encodeParams(t.pairs), t.raw);
      const decoded = decodeParams(t.raw);
      const expected =
        t.decoded ??
        t.pairs.map(([n, v]): [string, string] => [
          typeof n === 'string' ? n : Buffer.from(n).toString(),
          typeof v === 'string' ? v : Buffer.from(v).toString(),
        ]);
      assert.deepEqual(strings(decoded), expected);
      // The raw bytes survive exactly, whatever the text decoding did.
      assert.deepEqual(
        encodeParams(decoded.map((p): [Uint8Array, Uint8Array] => [p.rawName, p.rawValue])),
        t.raw,
      );
    });
  }

  test('encodeParams takes any iterable, once', () => {
    function* gen(): Generator<[string, string]> {
      yield ['A', '1'];
      yield ['B', '2'];
    }
    assert.deepEqual(encodeParams(gen()), bytes([1, 1], 'A1', [1, 1], 'B2'));
    assert.deepEqual(encodeParams(new Map([['A', '1']])), bytes([1, 1], 'A1'));
  });

  test('a BOM and NUL are kept, not stripped', () => {
    const [pair] = decodeParams(bytes([1, 5], 'V', [0xef, 0xbb, 0xbf, 0x41, 0x00]));
    assert.equal(pair?.value, '\uFEFFA\0');
  });
});

// A stream with every length form, so that splits land inside 4-byte prefixes, names and values.
const mixed = encodeParams([
  ['SERVER_PORT', '80'],
  [n128, 'x'],
  ['HTTP_COOKIE', v128 + 'é'],
  ['', ''],
  ['EMPTY', ''],
  [n127, v127],
]);
const mixedPairs = strings(decodeParams(mixed));

describe('ParamsDecoder: the stream split anywhere (FastCGI spec §5.2)', () => {
  test('split in two at every offset', () => {
    for (let i = 0; i <= mixed.length; i++) {
      assert.deepEqual(
        decodePieces([mixed.subarray(0, i), mixed.subarray(i)]),
        mixedPairs,
        `split at ${i}`,
      );
    }
  });

  test('split in three around every 4-byte prefix', () => {
    // The prefixes of [n128, 'x'] start at byte 15; cut at every pair of offsets around them.
    for (let i = 10; i < 30; i++) {
      for (let j = i; j < 30; j++) {
        const pieces = [mixed.subarray(0, i), mixed.subarray(i, j), mixed.subarray(j)];
        assert.deepEqual(decodePieces(pieces), mixedPairs, `split at ${i}, ${j}`);
      }
    }
  });

  for (const size of [1, 2, 3, 5, 7, 13, 64, 1000]) {
    test(`pieces of ${size} bytes`, () => {
      assert.deepEqual(decodePieces(cut(mixed, size)), mixedPairs);
    });
  }

  test('empty pushes change nothing', () => {
    const decoder = new ParamsDecoder();
    assert.deepEqual(decoder.push(new Uint8Array(0)), []);
    assert.deepEqual(strings(decoder.push(bytes([1, 1], 'A'))), []);
    assert.deepEqual(decoder.push(Buffer.alloc(0)), []);
    assert.deepEqual(strings(decoder.push(bytes('1'))), [['A', '1']]);
    decoder.end();
    assert.equal(decoder.count, 1);
    assert.equal(decoder.bytes, 4);
    assert.equal(decoder.ended, true);
  });

  test('push returns the pairs it completes, in order', () => {
    const decoder = new ParamsDecoder();
    const first = decoder.push(mixed.subarray(0, 20));
    assert.deepEqual(strings(first), [['SERVER_PORT', '80']]);
    const rest = decoder.push(mixed.subarray(20));
    assert.deepEqual(strings([...first, ...rest]), mixedPairs);
  });

  test('a pair wholly inside one push is a view of it; a split one is copied', () => {
    const raw = bytes([1, 2], 'AB1', [1, 2], 'CD2');
    const decoder = new ParamsDecoder();
    const [a] = decoder.push(raw.subarray(0, 8)); // cuts "CD2" after "C"
    const [c] = decoder.push(raw.subarray(8));
    assert.equal(c?.value, 'D2');
    // Overwrite the pushed bytes: the view sees it, the copy does not.
    raw.fill(0x5a);
    assert.equal(a?.rawValue.toString(), 'ZZ');
    assert.equal(c?.rawValue.toString(), 'D2');
  });

  test('a plain Uint8Array is accepted', () => {
    const decoder = new ParamsDecoder();
    assert.deepEqual(strings(decoder.push(new Uint8Array([1, 1, 0x41, 0x42]))), [['A', 'B']]);
  });
});

describe('ParamsDecoder: limits', () => {
  test('the defaults', () => {
    assert.equal(DEFAULT_MAX_PARAMS_BYTES, 128 * 1024);
    assert.equal(DEFAULT_MAX_PARAMS, 1000);
  });

  test('a 2^31-1 name length is refused at the prefix, before any name byte', () => {
    const decoder = new ParamsDecoder();
    assert.throws(
      () => decoder.push(bytes([0xff, 0xff, 0xff, 0xff])),
      coded('FCGI_ERR_PARAMS_TOO_LARGE'),
    );
  });

  test('a 2^31-1 value length is refused at the prefix, even cut in two', () => {
    const decoder = new ParamsDecoder();
    assert.deepEqual(decoder.push(bytes([1, 0xff, 0xff])), []);
    assert.throws(
      () => decoder.push(bytes([0xff, 0xff])),
      (e: unknown) => {
        assert.ok(e instanceof BridgeError);
        assert.equal(e.code, 'FCGI_ERR_PARAMS_TOO_LARGE');
        assert.equal(e.status, 431);
        return true;
      },
    );
  });

  test('a length announcing more than is left is refused before the bytes come', () => {
    const decoder = new ParamsDecoder({ maxBytes: 100 });
    // 1 + 4 + 1 + 95 = 101 bytes.
    assert.throws(
      () => decoder.push(bytes([1, 0x80, 0, 0, 95])),
      coded('FCGI_ERR_PARAMS_TOO_LARGE'),
    );
  });

  test('exactly maxBytes passes; one more byte fails', () => {
    const pair = bytes([1, 0x80, 0, 0, 94], 'N', 'v'.repeat(94)); // 100 bytes
    assert.equal(pair.length, 100);
    assert.equal(decodeParams(pair, { maxBytes: 100 }).length, 1);
    assert.throws(() => decodeParams(pair, { maxBytes: 99 }), coded('FCGI_ERR_PARAMS_TOO_LARGE'));
    const decoder = new ParamsDecoder({ maxBytes: 100 });
    decoder.push(pair);
    assert.throws(() => decoder.push(bytes([0])), coded('FCGI_ERR_PARAMS_TOO_LARGE'));
  });

  test('the default size limit: 128 KiB passes, one byte more fails', () => {
    const value = 'v'.repeat(DEFAULT_MAX_PARAMS_BYTES - 6);
    const raw = encodeParams([['V', value]]);
    assert.equal(raw.length, DEFAULT_MAX_PARAMS_BYTES);
    assert.equal(decodeParams(raw)[0]?.value.length, value.length);
    assert.throws(
      () => decodeParams(encodeParams([['V', value + 'v']])),
      coded('FCGI_ERR_PARAMS_TOO_LARGE'),
    );
  });

  test('maxParams pairs pass; the next one fails', () => {
    const three = encodeParams([
      ['A', '1'],
      ['B', '2'],
      ['C', '3'],
    ]);
    assert.equal(decodeParams(three, { maxParams: 3 }).length, 3);
    const decoder = new ParamsDecoder({ maxParams: 3 });
    decoder.push(three);
    assert.throws(
      () => decoder.push(bytes([0])),
      (e: unknown) => {
        assert.ok(e instanceof BridgeError);
        assert.equal(e.code, 'FCGI_ERR_TOO_MANY_PARAMS');
        assert.equal(e.status, 431);
        return true;
      },
    );
  });

  test('the default count limit: 1000 pairs pass, 1001 fail', () => {
    const pairs = (n: number): [string, string][] =>
      Array.from({ length: n }, (_, i): [string, string] => [`P${i}`, '']);
    assert.equal(decodeParams(encodeParams(pairs(1000))).length, 1000);
    assert.throws(() => decodeParams(encodeParams(pairs(1001))), coded('FCGI_ERR_TOO_MANY_PARAMS'));
  });

  test('an error is sticky', () => {
    const decoder = new ParamsDecoder({ maxBytes: 4 });
    let first: unknown;
    assert.throws(
      () => decoder.push(bytes([1, 4])),
      (e) => ((first = e), true),
    );
    assert.throws(
      () => decoder.push(bytes()),
      (e) => e === first,
    );
    assert.throws(
      () => decoder.end(),
      (e) => e === first,
    );
  });

  test('bad limits are refused', () => {
    assert.throws(() => new ParamsDecoder({ maxBytes: -1 }), coded('FCGI_ERR_INVALID_ARGUMENT'));
    assert.throws(() => new ParamsDecoder({ maxParams: 1.5 }), coded('FCGI_ERR_INVALID_ARGUMENT'));
  });
});

describe('ParamsDecoder: the end of the stream', () => {
  test('an empty stream is no pairs', () => {
    const decoder = new ParamsDecoder();
    decoder.end();
    assert.equal(decoder.count, 0);
  });

  const truncations: { desc: string; raw: Buffer }[] = [
    { desc: 'inside a 4-byte name length', raw: bytes([0x80, 0]) },
    { desc: 'after the name length', raw: bytes([1]) },
    { desc: 'inside a 4-byte value length', raw: bytes([1, 0x80, 0, 0]) },
    { desc: 'inside the name', raw: bytes([3, 1], 'AB') },
    { desc: 'inside the value', raw: bytes([1, 3], 'A12') },
    { desc: 'after a whole pair, inside the next', raw: bytes([1, 1], 'A1', [2]) },
  ];
  for (const { desc, raw } of truncations) {
    test(`ending ${desc} is FCGI_ERR_PARAMS_TRUNCATED`, () => {
      const decoder = new ParamsDecoder();
      decoder.push(raw);
      assert.throws(
        () => decoder.end(),
        (e: unknown) => {
          assert.ok(e instanceof BridgeError);
          assert.equal(e.code, 'FCGI_ERR_PARAMS_TRUNCATED');
          assert.equal(e.status, 400);
          assert.match(e.message, /^fcgi: FCGI_PARAMS stream ended inside/);
          return true;
        },
      );
    });
  }

  test('a stream cut short just waits until it is ended', () => {
    const decoder = new ParamsDecoder();
    assert.deepEqual(decoder.push(bytes([1, 3], 'A12')), []);
    assert.deepEqual(strings(decoder.push(bytes('3'))), [['A', '123']]);
    decoder.end();
  });

  test('content after the end is FCGI_ERR_UNEXPECTED_RECORD', () => {
    const decoder = new ParamsDecoder();
    decoder.end();
    decoder.end(); // idempotent
    assert.throws(() => decoder.push(bytes([1, 1], 'AB')), coded('FCGI_ERR_UNEXPECTED_RECORD'));
  });
});
