// CgiResponseParser: a CGI program's head (RFC 3875 §6) as raw bytes in, a head or a coded
// error out; every case is replayed whole, byte by byte and in odd chunk sizes (gunicorn's treq).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BridgeError } from '../../src/errors.js';
import {
  CgiResponseParser,
  type CgiResponseHead,
  type CgiResponseOptions,
} from '../../src/cgi/cgi-response.js';

interface Parsed {
  head: CgiResponseHead;
  rest: Buffer;
}

// feed pushes `input` in pieces of `sizes` (cycled); it returns the head and every byte after it.
function feed(input: Buffer, sizes: number[], options?: CgiResponseOptions): Parsed {
  const p = new CgiResponseParser(options);
  const rest: Buffer[] = [];
  let at = 0;
  let i = 0;
  let done = false;
  while (at < input.length) {
    const n = sizes[i++ % sizes.length]!;
    const piece = input.subarray(at, at + n);
    at += n;
    if (done) rest.push(piece);
    else {
      const r = p.push(Uint8Array.from(piece));
      if (r !== undefined) {
        done = true;
        rest.push(Buffer.from(r));
      }
    }
  }
  if (!done) p.end();
  return { head: p.head!, rest: Buffer.concat(rest) };
}

const BAD = 'CGI_ERR_BAD_HEADER';
const NO_TYPE = 'CGI_ERR_NO_CONTENT_TYPE';
const CUT = 'CGI_ERR_HEADERS_INCOMPLETE';

// refuses is a one-line test case: the input must fail with `code` at every split.
function refuses(text: string, code: string, options?: CgiResponseOptions): () => void {
  return () => {
    fails(text, code, options);
  };
}

const SPLITS: [string, number[]][] = [
  ['whole', [1 << 20]],
  ['byte by byte', [1]],
  ['odd sizes', [3, 7, 2, 11]],
];

// parse checks that every split gives the same head and body, and returns it.
function parse(text: string, options?: CgiResponseOptions): Parsed {
  const input = Buffer.from(text, 'latin1');
  const results = SPLITS.map(([, sizes]) => feed(input, sizes, options));
  for (let i = 1; i < results.length; i++) {
    assert.deepEqual(results[i], results[0], `split "${SPLITS[i]![0]}" differs`);
  }
  return results[0]!;
}

// fails checks that every split throws the same coded error, and returns its message.
function fails(text: string, code: string, options?: CgiResponseOptions): string {
  const input = Buffer.from(text, 'latin1');
  let message = '';
  for (const [name, sizes] of SPLITS) {
    assert.throws(
      () => feed(input, sizes, options),
      (e: unknown) => {
        assert.ok(e instanceof BridgeError, `${name}: not a BridgeError: ${String(e)}`);
        assert.equal(e.code, code, `${name}: ${e.message}`);
        assert.equal(e.status, 502);
        assert.match(e.message, /^cgi: /);
        message = e.message;
        return true;
      },
    );
  }
  return message;
}

describe('CgiResponseParser: responses', () => {
  test('document with LF line ends', () => {
    const { head, rest } = parse('Content-Type: text/plain\nX-A: 1\n\nbody\n');
    assert.deepEqual(head, {
      kind: 'response',
      code: 200,
      reason: 'OK',
      headers: [
        ['Content-Type', 'text/plain'],
        ['X-A', '1'],
      ],
    });
    assert.equal(rest.toString(), 'body\n');
  });

  test('CRLF and LF mixed, body bytes kept exactly (CR LF inside the body too)', () => {
    const { head, rest } = parse('Content-Type: a/b\r\nX-B: 2\n\r\n\r\nbin\x00\xff');
    assert.deepEqual(head.headers, [
      ['Content-Type', 'a/b'],
      ['X-B', '2'],
    ]);
    assert.deepEqual([...rest], [13, 10, 98, 105, 110, 0, 0xff]);
  });

  test('Status keeps its reason phrase', () => {
    const { head } = parse("Status: 418 I'm a teapot\nContent-Type: text/plain\n\n");
    assert.equal(head.code, 418);
    assert.equal(head.reason, "I'm a teapot");
    assert.deepEqual(head.headers, [['Content-Type', 'text/plain']]);
  });

  test('Status without a reason gets the standard one', () => {
    assert.equal(parse('Status: 404\nContent-Type: text/plain\n\n').head.reason, 'Not Found');
  });

  test('Status alone (no Content-Type) is enough', () => {
    const { head } = parse('Status: 204 No Content\n\n');
    assert.equal(head.code, 204);
  });

  test('field names keep their spelling, values lose surrounding blanks', () => {
    const { head } = parse('content-TYPE:text/html \t\nx-empty:\n\n');
    assert.deepEqual(head.headers, [
      ['content-TYPE', 'text/html'],
      ['x-empty', ''],
    ]);
  });

  test('a folded line continues the previous field (obs-fold)', () => {
    const { head } = parse('Content-Type: text/plain\nX-Long: one\n  two\n\tthree\n\n');
    assert.deepEqual(head.headers[1], ['X-Long', 'one two three']);
  });

  test('repeated ordinary fields (Set-Cookie) stay separate and in order', () => {
    const { head } = parse('Set-Cookie: a=1\nContent-Type: t/p\nSet-Cookie: b=2\n\n');
    assert.deepEqual(
      head.headers.filter(([n]) => n === 'Set-Cookie').map(([, v]) => v),
      ['a=1', 'b=2'],
    );
  });

  test('hop-by-hop fields are dropped', () => {
    const { head } = parse(
      'Content-Type: t/p\nConnection: close\nTransfer-Encoding: chunked\nKeep-Alive: 5\n\n',
    );
    assert.deepEqual(head.headers, [['Content-Type', 't/p']]);
  });

  test('obs-text (bytes 0x80-0xff) in a value passes as latin-1', () => {
    const { head } = parse('Content-Type: t/p\nX-U: caf\xc3\xa9\n\n');
    assert.equal(Buffer.from(head.headers[1]![1], 'latin1').toString('utf8'), 'café');
  });
});

describe('CgiResponseParser: redirects', () => {
  test('absolute Location without Status: client redirect 302', () => {
    const { head } = parse('Location: http://example.com/x\n\n');
    assert.equal(head.kind, 'response');
    assert.equal(head.code, 302);
    assert.equal(head.reason, 'Found');
    assert.deepEqual(head.headers, [['Location', 'http://example.com/x']]);
  });

  test('absolute Location with Status 301 keeps the status', () => {
    const { head } = parse('Status: 301 Moved\nLocation: https://e.org/\nContent-Type: t/h\n\nx');
    assert.equal(head.code, 301);
    assert.equal(head.reason, 'Moved');
  });

  test('local path Location: local redirect', () => {
    const { head } = parse('Location: /cgi-bin/other?a=b\n\nignored');
    assert.equal(head.kind, 'local-redirect');
    assert.equal(head.location, '/cgi-bin/other?a=b');
  });

  test('local path with Status 200 is still a local redirect (Apache)', () => {
    assert.equal(parse('Status: 200\nLocation: /x\n\n').head.kind, 'local-redirect');
  });

  test('local path with Status 303 goes to the client', () => {
    const { head } = parse('Status: 303 See Other\nLocation: /x\n\n');
    assert.equal(head.kind, 'response');
    assert.equal(head.code, 303);
  });

  test('a network path (//host/x) is not local', () => {
    const { head } = parse('Location: //evil.example/x\n\n');
    assert.equal(head.kind, 'response');
    assert.equal(head.code, 302);
  });
});

describe('CgiResponseParser: nph', () => {
  test('status line and headers', () => {
    const { head, rest } = parse('HTTP/1.1 202 Taken\r\nContent-Type: t/p\r\n\r\nbody', {
      nph: true,
    });
    assert.equal(head.code, 202);
    assert.equal(head.reason, 'Taken');
    assert.deepEqual(head.headers, [['Content-Type', 't/p']]);
    assert.equal(rest.toString(), 'body');
  });

  test('no Content-Type needed; a Status field is not a header', () => {
    const { head } = parse('HTTP/1.0 204 No Content\nStatus: 500\n\n', { nph: true });
    assert.equal(head.code, 204);
    assert.deepEqual(head.headers, []);
  });

  test('a bad status line', refuses('Content-Type: t/p\n\n', BAD, { nph: true }));
  test('a 1xx status line', refuses('HTTP/1.1 100 Continue\n\n', BAD, { nph: true }));
  test('only a blank line', refuses('\n', BAD, { nph: true }));
});

describe('CgiResponseParser: failures (one line each)', () => {
  test('no output at all', refuses('', 'CGI_ERR_NO_OUTPUT'));
  test('a blank first line: no fields', refuses('\nbody', NO_TYPE));
  test('output ends before the blank line', refuses('Content-Type: t/p\n', CUT));
  test('output ends mid-line', refuses('Content-Ty', CUT));
  test('neither Status nor Content-Type nor Location', refuses('X-A: 1\n\n', NO_TYPE));
  test('a line without a colon', refuses('Content-Type: t/p\nnot a header\n\n', BAD));
  test('a name with a space before the colon', refuses('Content-Type : t/p\n\n', BAD));
  test('an empty name', refuses(': x\nContent-Type: t/p\n\n', BAD));
  test('a fold before any field', refuses(' x\nContent-Type: t/p\n\n', BAD));
  test('a NUL in a value', refuses('Content-Type: t/p\nX-A: a\x00b\n\n', BAD));
  test('a bare CR in a value', refuses('Content-Type: t/p\nX-A: a\rb\n\n', BAD));
  test('Status not a number', refuses('Status: OK\nContent-Type: t/p\n\n', BAD));
  test('Status with four digits', refuses('Status: 2000\nContent-Type: t/p\n\n', BAD));
  test('Status 1xx', refuses('Status: 101 Switching\nContent-Type: t/p\n\n', BAD));
  test('Status 600', refuses('Status: 600 Nope\nContent-Type: t/p\n\n', BAD));
  test('Status twice', refuses('Status: 200\nStatus: 404\nContent-Type: t/p\n\n', BAD));
  test('Content-Type twice', refuses('Content-Type: a/b\nContent-Type: c/d\n\n', BAD));
  test('Location twice', refuses('Location: /a\nLocation: /b\n\n', BAD));
  test('an empty Location', refuses('Location:\nContent-Type: t/p\n\n', BAD));
  test('Content-Length not a number', refuses('Content-Type: t/p\nContent-Length: 1e3\n\n', BAD));
  test(
    'Content-Length twice',
    refuses('Content-Type: t/p\nContent-Length: 1\nContent-Length: 1\n\n', BAD),
  );
  test(
    'a line over the limit',
    refuses(`X-A: ${'a'.repeat(100)}\n\n`, 'CGI_ERR_HEADER_TOO_LONG', { maxHeaderLine: 64 }),
  );
  test(
    'an unfinished line over the limit',
    refuses(`X-A: ${'a'.repeat(100)}`, 'CGI_ERR_HEADER_TOO_LONG', { maxHeaderLine: 64 }),
  );
  test(
    'too many lines',
    refuses('Content-Type: t/p\nA: 1\nB: 2\nC: 3\n\n', 'CGI_ERR_TOO_MANY_HEADERS', {
      maxHeaders: 3,
    }),
  );
});

describe('CgiResponseParser: limits are exact', () => {
  test('a line of exactly maxHeaderLine bytes passes, with LF or CRLF', () => {
    const line = `X-A: ${'a'.repeat(64 - 5)}`;
    assert.equal(line.length, 64);
    for (const eol of ['\n', '\r\n']) {
      const { head } = parse(`Content-Type: t/p${eol}${line}${eol}${eol}`, { maxHeaderLine: 64 });
      assert.equal(head.headers[1]![1].length, 59);
    }
  });

  test('exactly maxHeaders lines pass', () => {
    assert.equal(
      parse('Content-Type: t/p\nA: 1\nB: 2\n\n', { maxHeaders: 3 }).head.headers.length,
      3,
    );
  });

  test('the message names the bad line', () => {
    assert.match(fails('Content-Type: t/p\nGARBAGE\n\n', BAD), /"GARBAGE"/);
  });
});
