// Tests for src/cgi/decode.ts: the UTF-8-with-U+FFFD rule, percent-decoding, re-encoding and
// dot-segment removal, as byte-level tables.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  decodeBytes,
  decodeLatin1,
  percentDecode,
  percentEncodePath,
  removeDotSegments,
} from '../../src/cgi/decode.js';

const R = '\uFFFD';

// One U+FFFD per maximal invalid subpart (WHATWG Encoding "UTF-8 decode", Unicode §3.9 U+FFFD
// substitution): what node's Buffer, TextDecoder and V8's environment decoding all do.
const utf8Tests: { name: string; bytes: number[]; want: string }[] = [
  { name: 'ascii', bytes: [0x61, 0x3d, 0x31], want: 'a=1' },
  { name: 'two-byte', bytes: [0x63, 0x61, 0x66, 0xc3, 0xa9], want: 'café' },
  { name: 'four-byte', bytes: [0xf0, 0x9f, 0x98, 0x80], want: '😀' },
  { name: 'lone 0xff', bytes: [0x2f, 0xff], want: `/${R}` },
  { name: 'lone continuation', bytes: [0x80, 0x61], want: `${R}a` },
  { name: 'two bad bytes', bytes: [0xff, 0xfe], want: R + R },
  { name: 'truncated three-byte', bytes: [0xe2, 0x82, 0x61], want: `${R}a` },
  { name: 'truncated at end', bytes: [0x61, 0xe2, 0x82], want: `a${R}` },
  { name: 'overlong slash', bytes: [0xc0, 0xaf], want: R + R },
  { name: 'surrogate', bytes: [0xed, 0xa0, 0x80], want: R + R + R },
  { name: 'above U+10FFFF', bytes: [0xf4, 0x90, 0x80, 0x80], want: R + R + R + R },
  { name: 'BOM is kept', bytes: [0xef, 0xbb, 0xbf, 0x61], want: '\uFEFFa' },
  { name: 'NUL is data', bytes: [0x61, 0x00, 0x62], want: 'a\0b' },
];

describe('decodeBytes', () => {
  for (const t of utf8Tests) {
    it(t.name, () => {
      assert.equal(decodeBytes(Uint8Array.from(t.bytes)), t.want);
    });
  }

  it('agrees with TextDecoder (non-fatal, BOM kept) on every table row', () => {
    const td = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
    for (const t of utf8Tests)
      assert.equal(
        decodeBytes(Uint8Array.from(t.bytes)),
        td.decode(Uint8Array.from(t.bytes)),
        t.name,
      );
  });

  it('reads only the view it is given, not the whole ArrayBuffer', () => {
    const whole = Uint8Array.from([0xff, 0x61, 0x62, 0xff]);
    assert.equal(decodeBytes(whole.subarray(1, 3)), 'ab');
  });
});

describe('decodeLatin1', () => {
  const tests: { name: string; in: string; want: string }[] = [
    { name: 'ascii unchanged', in: 'curl/7.88.1', want: 'curl/7.88.1' },
    { name: 'utf-8 bytes as latin-1', in: 'caf\xc3\xa9', want: 'café' },
    { name: 'invalid byte', in: 'caf\xc3\xa9 \xff', want: `café ${R}` },
    { name: 'already decoded (char above U+00FF)', in: 'café ☕', want: 'café ☕' },
  ];
  for (const t of tests) {
    it(t.name, () => assert.equal(decodeLatin1(t.in), t.want));
  }
});

describe('percentDecode', () => {
  const tests: { name: string; in: string; want: string }[] = [
    { name: 'space', in: '/p%20q/r', want: '/p q/r' },
    { name: 'utf-8', in: '/caf%C3%A9', want: '/café' },
    { name: 'lower-case hex', in: '/caf%c3%a9', want: '/café' },
    { name: 'lone %FF', in: '/caf%C3%A9/%FF', want: `/café/${R}` },
    { name: 'split sequence', in: '/%C3', want: `/${R}` },
    { name: 'encoded slash', in: '/a%2Fb', want: '/a/b' },
    { name: 'encoded dots', in: '/%2e%2e/x', want: '/../x' },
    { name: 'encoded percent', in: '/100%25', want: '/100%' },
    { name: 'plus is not space in a path', in: '/a+b', want: '/a+b' },
    { name: 'bad escape stays', in: '/a%zz', want: '/a%zz' },
    { name: 'truncated escape stays', in: '/a%4', want: '/a%4' },
    { name: 'percent at end', in: '/a%', want: '/a%' },
    { name: 'raw latin-1 bytes', in: '/caf\xc3\xa9', want: '/café' },
    { name: 'mixed raw and escaped bytes', in: '/caf\xc3%A9', want: '/café' },
    { name: 'decoded string with escapes', in: '/☕%20x', want: '/☕ x' },
  ];
  for (const t of tests) {
    it(t.name, () => assert.equal(percentDecode(t.in), t.want));
  }
});

describe('percentEncodePath', () => {
  const tests: { name: string; in: string; want: string }[] = [
    {
      name: 'safe path unchanged',
      in: "/a-b_c.d~e/!$&'()*+,;=:@",
      want: "/a-b_c.d~e/!$&'()*+,;=:@",
    },
    { name: 'space', in: '/app.x/p q/r', want: '/app.x/p%20q/r' },
    { name: 'utf-8', in: '/café', want: '/caf%C3%A9' },
    { name: 'replacement char', in: `/${R}`, want: '/%EF%BF%BD' },
    { name: 'percent', in: '/100%', want: '/100%25' },
    { name: 'query and fragment chars', in: '/a?b#c', want: '/a%3Fb%23c' },
    { name: 'empty', in: '', want: '' },
  ];
  for (const t of tests) {
    it(t.name, () => assert.equal(percentEncodePath(t.in), t.want));
  }

  it('round-trips through percentDecode', () => {
    for (const t of tests) assert.equal(percentDecode(percentEncodePath(t.in)), t.in, t.name);
  });
});

describe('removeDotSegments', () => {
  // RFC 3986 §5.2.4, for absolute paths; never above the root.
  const tests: [string, string][] = [
    ['/a/b/c', '/a/b/c'],
    ['/a/../b', '/b'],
    ['/a/./b', '/a/b'],
    ['/a/b/..', '/a/'],
    ['/a/b/.', '/a/b/'],
    ['/..', '/'],
    ['/../../etc/passwd', '/etc/passwd'],
    ['/a/b/../../../c', '/c'],
    ['/app.x/.hidden', '/app.x/.hidden'],
    ['/a/..b/c', '/a/..b/c'],
    ['/a/.../c', '/a/.../c'],
    ['/', '/'],
  ];
  for (const [input, want] of tests) {
    it(`${input} -> ${want}`, () => assert.equal(removeDotSegments(input), want));
  }
});
