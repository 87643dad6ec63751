// The streaming multipart/form-data reader (src/util/multipart.ts). Every body is replayed
// whole, byte by byte and in odd chunk sizes (gunicorn's treq habit): boundaries split across
// reads must parse the same.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  boundaryOf,
  parseParams,
  readMultipart,
  type MultipartLimits,
} from '../../src/util/multipart.js';
import { isBridgeError } from '../../src/errors.js';

const B = '----WebKitFormBoundaryX3y';

async function* chunked(data: Buffer, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

const SPLITS = [1, 2, 3, 7, 13, 64, 1000, Infinity];

interface Seen {
  name: string | undefined;
  filename: string | undefined;
  contentType: string | undefined;
  data: Buffer;
}

async function parse(body: Buffer, size: number, limits?: MultipartLimits): Promise<Seen[]> {
  const out: Seen[] = [];
  const src = chunked(body, size === Infinity ? body.length || 1 : size);
  for await (const p of readMultipart(src, B, limits)) {
    const chunks: Uint8Array[] = [];
    for await (const c of p.body) chunks.push(c);
    out.push({
      name: p.name,
      filename: p.filename,
      contentType: p.contentType,
      data: Buffer.concat(chunks),
    });
  }
  return out;
}

const crlf = (s: string): Buffer => Buffer.from(s.replace(/\n/g, '\r\n'), 'latin1');

// A binary file whose bytes include CR, LF, '-' and a near-miss of the delimiter.
const FILE = Buffer.concat([
  Buffer.from(Array.from({ length: 300 }, (_, i) => i % 256)),
  Buffer.from(`\r\n--${B.slice(0, -1)}Z\r\n--\r\n`),
]);

const CASES: { name: string; body: Buffer; want: Omit<Seen, 'data'>[]; data: Buffer[] }[] = [
  {
    name: 'a field and a binary file, with preamble and epilogue',
    body: Buffer.concat([
      crlf(
        `preamble to ignore\n--${B}\nContent-Disposition: form-data; name="title"\n\nHello, world\n`,
      ),
      crlf(
        `--${B}\nContent-Disposition: form-data; name="upload"; filename="a \\"b\\".bin"\nContent-Type: application/octet-stream\n\n`,
      ),
      FILE,
      crlf(`\n--${B}--\nepilogue\n`),
    ]),
    want: [
      { name: 'title', filename: undefined, contentType: undefined },
      { name: 'upload', filename: 'a "b".bin', contentType: 'application/octet-stream' },
    ],
    data: [Buffer.from('Hello, world'), FILE],
  },
  {
    name: 'an empty file, an empty field, UTF-8 names, filename* and transport padding',
    body: crlf(
      `--${B}  \nContent-Disposition: form-data; name="empty"; filename=""\n\n\n--${B}\n` +
        `Content-Disposition: form-data; name="f"; filename="x.txt"; filename*=UTF-8''%E2%82%AC.txt\n\n\n--${B}\n` +
        `Content-Disposition: form-data; name="caf\xc3\xa9"\n\nv\n--${B}--`,
    ),
    want: [
      { name: 'empty', filename: '', contentType: undefined },
      { name: 'f', filename: '€.txt', contentType: undefined },
      { name: 'café', filename: undefined, contentType: undefined },
    ],
    data: [Buffer.alloc(0), Buffer.alloc(0), Buffer.from('v')],
  },
  {
    name: 'a part without headers',
    body: crlf(`--${B}\n\nraw\n--${B}--\n`),
    want: [{ name: undefined, filename: undefined, contentType: undefined }],
    data: [Buffer.from('raw')],
  },
];

describe('readMultipart', () => {
  for (const c of CASES) {
    for (const size of SPLITS) {
      test(`${c.name} (chunks of ${size})`, async () => {
        const seen = await parse(c.body, size);
        assert.deepEqual(
          seen.map(({ data: _d, ...rest }) => rest),
          c.want,
        );
        assert.deepEqual(
          seen.map((s) => s.data),
          c.data,
        );
      });
    }
  }

  const BAD: [string, Buffer, RegExp, MultipartLimits?][] = [
    ['no boundary at all', crlf('just text\n'), /no boundary found/],
    [
      'no closing delimiter',
      crlf(`--${B}\nContent-Disposition: form-data; name="a"\n\nabc`),
      /no closing boundary/,
    ],
    ['cut off in the headers', crlf(`--${B}\nContent-Disposition: form-da`), /inside part headers/],
    ['cut off after a boundary', crlf(`--${B}`), /ends right after a boundary/],
    ['garbage after a boundary', crlf(`--${B}xyz\n\nv\n--${B}--`), /garbage after a boundary/],
    ['a header line without a colon', crlf(`--${B}\nbroken\n\nv\n--${B}--`), /without a colon/],
    [
      'headers over the limit',
      crlf(`--${B}\nX-Big: ${'a'.repeat(200)}\n\nv\n--${B}--`),
      /part headers over 100 bytes/,
      { maxHeaderBytes: 100 },
    ],
    [
      'too many parts',
      crlf(`--${B}\n\na\n--${B}\n\nb\n--${B}--`),
      /more than 1 parts/,
      { maxParts: 1 },
    ],
  ];
  for (const [name, body, pattern, limits] of BAD) {
    for (const size of [1, 5, Infinity]) {
      test(`refuses ${name} (chunks of ${size})`, async () => {
        await assert.rejects(parse(body, size, limits), (e: unknown) => {
          assert.ok(isBridgeError(e), String(e));
          assert.equal(e.code, 'MULTIPART_ERR_MALFORMED');
          assert.equal(e.status, 400);
          assert.match(e.message, pattern);
          return true;
        });
      });
    }
  }

  test('a part left unread, or read halfway, is skipped to the next boundary', async () => {
    const body = crlf(
      `--${B}\n\n${'x'.repeat(5000)}\n--${B}\n\n${'y'.repeat(5000)}\n--${B}\n\nlast\n--${B}--`,
    );
    const got: string[] = [];
    let i = 0;
    for await (const p of readMultipart(chunked(body, 100), B)) {
      i++;
      if (i === 1) continue; // not read at all
      if (i === 2) {
        for await (const _ of p.body) break; // one chunk, then stop
        continue;
      }
      for await (const c of p.body) got.push(Buffer.from(c).toString());
    }
    assert.equal(i, 3);
    assert.equal(got.join(''), 'last');
  });

  test('streams: a part begins before the body has fully arrived, held back by at most the delimiter', async () => {
    const head = crlf(`--${B}\nContent-Disposition: form-data; name="f"; filename="f"\n\n`);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    async function* source(): AsyncGenerator<Uint8Array> {
      yield head;
      yield Buffer.alloc(10_000, 97);
      await gate; // the rest only comes once the test has seen data
      yield crlf(`\n--${B}--`);
    }
    const it = readMultipart(source(), B)[Symbol.asyncIterator]();
    const part = (await it.next()).value!;
    const first = await part.body[Symbol.asyncIterator]().next();
    assert.equal(first.done, false);
    assert.ok(
      first.value!.length >= 10_000 - (B.length + 3),
      `got ${first.value!.length} bytes early`,
    );
    release();
    for await (const _ of part.body);
    assert.equal((await it.next()).done, true);
  });
});

describe('boundaryOf and parseParams', () => {
  test('boundaryOf reads the boundary of a multipart type only', () => {
    assert.equal(boundaryOf(`multipart/form-data; boundary=${B}`), B);
    assert.equal(boundaryOf('Multipart/Form-Data; charset=utf-8; boundary="a b:c"'), 'a b:c');
    assert.equal(boundaryOf('application/x-www-form-urlencoded'), undefined);
    assert.equal(boundaryOf('multipart/form-data'), undefined);
    assert.equal(boundaryOf(`multipart/form-data; boundary=${'b'.repeat(71)}`), undefined);
    assert.equal(boundaryOf('multipart/form-data; boundary="ends with space "'), undefined);
    assert.equal(boundaryOf(undefined), undefined);
  });

  test('parseParams handles quoted strings, escapes, bare values and RFC 5987', () => {
    assert.deepEqual(
      parseParams(`form-data; name="a;b"; filename="q\\"x"; size=12; title*=utf-8'en'%C3%A9`),
      {
        name: 'a;b',
        filename: 'q"x',
        size: '12',
        'title*': 'é',
      },
    );
  });
});
