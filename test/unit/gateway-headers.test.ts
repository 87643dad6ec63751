// Status and header validation (src/gateway/headers.ts): one table row per rule.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { findHeader, parseStatus, validateHeaders } from '../../src/gateway/headers.js';

describe('parseStatus', () => {
  const good: [string, number, string][] = [
    ['200 OK', 200, 'OK'],
    ['404 Not Found', 404, 'Not Found'],
    ['599 Custom', 599, 'Custom'],
    ['200 ', 200, ''], // RFC 9112 §4: the reason phrase may be empty, the space may not
    ['201 Créé', 201, 'Créé'], // latin-1 reason
    ['500 Tab\there', 500, 'Tab\there'],
  ];
  for (const [status, code, reason] of good) {
    it(`accepts ${JSON.stringify(status)}`, () => {
      assert.deepEqual(parseStatus(status), { code, reason });
    });
  }

  const bad: [unknown, string][] = [
    ['200', 'no space and no reason (PEP 3333 asks for NNN Reason)'],
    ['200OK', 'no space'],
    [' 200 OK', 'leading space'],
    ['20 OK', 'two digits'],
    ['2000 OK', 'four digits'],
    ['099 X', 'below 100'],
    ['100 Continue', '1xx interim status'],
    ['101 Switching Protocols', '1xx interim status'],
    ['600 Beyond', 'above 599'],
    ['200 OK\r\nX-Evil: 1', 'CR LF'],
    ['200 O\nK', 'LF'],
    ['200 O\0K', 'NUL'],
    ['200 \u2603', 'above U+00FF'],
    [200, 'a number'],
    [undefined, 'missing'],
  ];
  for (const [status, why] of bad) {
    it(`refuses ${JSON.stringify(status)} (${why})`, () => {
      assert.throws(() => parseStatus(status), { code: 'GATEWAY_ERR_BAD_STATUS' });
    });
  }
});

describe('validateHeaders', () => {
  it('returns a copy of a good list, order and case kept', () => {
    const input: [string, string][] = [
      ['Content-Type', 'text/html; charset=utf-8'],
      ['set-cookie', 'a=1'],
      ['Set-Cookie', 'b=2'],
      ['X-Latin1', 'caf\u00e9'],
      ['X-Empty', ''],
      ['Content-Length', '12'],
    ];
    const out = validateHeaders(input);
    assert.deepEqual(out, input);
    assert.notEqual(out, input);
  });

  const bad: [unknown, string, string][] = [
    ['not a list', 'GATEWAY_ERR_BAD_HEADER', 'not an array'],
    [[['A']], 'GATEWAY_ERR_BAD_HEADER', 'one-element pair'],
    [[['A', 'b', 'c']], 'GATEWAY_ERR_BAD_HEADER', 'three-element pair'],
    [[['A', 1]], 'GATEWAY_ERR_BAD_HEADER', 'number value'],
    [['A: b'], 'GATEWAY_ERR_BAD_HEADER', 'a string instead of a pair'],
    [[['', 'x']], 'GATEWAY_ERR_BAD_HEADER', 'empty name'],
    [[['X Name', 'x']], 'GATEWAY_ERR_BAD_HEADER', 'space in name'],
    [[['X:Name', 'x']], 'GATEWAY_ERR_BAD_HEADER', 'colon in name'],
    [[['X\rName', 'x']], 'GATEWAY_ERR_BAD_HEADER', 'CR in name'],
    [[['X\nName', 'x']], 'GATEWAY_ERR_BAD_HEADER', 'LF in name'],
    [[['X\0Name', 'x']], 'GATEWAY_ERR_BAD_HEADER', 'NUL in name'],
    [[['X-A', 'a\rb']], 'GATEWAY_ERR_BAD_HEADER', 'CR in value'],
    [[['X-A', 'a\nb']], 'GATEWAY_ERR_BAD_HEADER', 'LF in value'],
    [[['X-A', 'a\0b']], 'GATEWAY_ERR_BAD_HEADER', 'NUL in value'],
    [[['X-A', 'a\x7fb']], 'GATEWAY_ERR_BAD_HEADER', 'DEL in value'],
    [[['X-A', '\u2603']], 'GATEWAY_ERR_BAD_HEADER', 'char above U+00FF in value'],
    [[['Status', '404 Not Found']], 'GATEWAY_ERR_BAD_HEADER', 'a Status header'],
    [[['status', '200 OK']], 'GATEWAY_ERR_BAD_HEADER', 'a status header, any case'],
    [[['Content-Length', '-1']], 'GATEWAY_ERR_BAD_HEADER', 'negative Content-Length'],
    [[['Content-Length', '1 2']], 'GATEWAY_ERR_BAD_HEADER', 'Content-Length not a number'],
    [
      [
        ['Content-Length', '1'],
        ['content-length', '1'],
      ],
      'GATEWAY_ERR_BAD_HEADER',
      'two Content-Length headers',
    ],
    [[['Connection', 'close']], 'GATEWAY_ERR_HOP_BY_HOP', 'Connection'],
    [[['Keep-Alive', 'timeout=5']], 'GATEWAY_ERR_HOP_BY_HOP', 'Keep-Alive'],
    [[['Transfer-Encoding', 'chunked']], 'GATEWAY_ERR_HOP_BY_HOP', 'Transfer-Encoding'],
    [[['TE', 'trailers']], 'GATEWAY_ERR_HOP_BY_HOP', 'TE'],
    [[['Trailer', 'X']], 'GATEWAY_ERR_HOP_BY_HOP', 'Trailer'],
    [[['Upgrade', 'websocket']], 'GATEWAY_ERR_HOP_BY_HOP', 'Upgrade'],
    [[['Proxy-Authenticate', 'x']], 'GATEWAY_ERR_HOP_BY_HOP', 'Proxy-Authenticate'],
    [[['Proxy-Authorization', 'x']], 'GATEWAY_ERR_HOP_BY_HOP', 'Proxy-Authorization'],
    [[['proxy-connection', 'x']], 'GATEWAY_ERR_HOP_BY_HOP', 'Proxy-Connection, lower case'],
  ];
  for (const [headers, code, why] of bad) {
    it(`refuses ${why}`, () => {
      assert.throws(() => validateHeaders(headers), { code });
    });
  }
});

describe('findHeader', () => {
  it('finds the first header by name, ignoring case', () => {
    const h: [string, string][] = [
      ['x-a', '1'],
      ['X-A', '2'],
    ];
    assert.equal(findHeader(h, 'X-a'), '1');
    assert.equal(findHeader(h, 'x-b'), undefined);
  });
});
