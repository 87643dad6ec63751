// gateway.input (BodyInput): byte-exact reads over sources split at every byte and in odd sizes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BodyInput, type ByteSource } from '../../src/gateway/input.js';
import { splitSource } from './gateway-helpers.js';

const enc = new TextEncoder();
const dec = (b: Uint8Array): string => Buffer.from(b).toString('latin1');

// Every way a transport may cut the body: byte by byte, odd sizes, all at once.
const SPLITS: [string, number[]][] = [
  ['every byte', [1]],
  ['odd sizes 3,7,2', [3, 7, 2]],
  ['odd sizes 5,1,11', [5, 1, 11]],
  ['one chunk', [1 << 20]],
];

const TEXT = 'first line\r\nsecond\nthird line is longer\n\nlast without newline';
const BINARY = new Uint8Array(300).map((_, i) => (i * 7) % 256);

function input(
  data: Uint8Array | string,
  sizes: number[],
  length: number | null = null,
): BodyInput {
  const bytes = typeof data === 'string' ? enc.encode(data) : data;
  return new BodyInput(splitSource(bytes, sizes), length === null ? bytes.length : length);
}

async function* gated(first: string, gate: Promise<void>, second: string): ByteSource {
  yield enc.encode(first);
  await gate;
  yield enc.encode(second);
}

for (const [name, sizes] of SPLITS) {
  describe(`BodyInput, source split at ${name}`, () => {
    it('read(size) is byte-exact across chunk boundaries', async () => {
      const inp = input(BINARY, sizes);
      const parts: Uint8Array[] = [];
      for (const n of [1, 4, 0, 13, 64, 2, 100, 1000]) {
        const before = inp.consumed;
        const got = await inp.read(n);
        assert.equal(got.length, Math.min(n, BINARY.length - before));
        parts.push(got);
      }
      assert.deepEqual([...Buffer.concat(parts)], [...BINARY]);
      assert.equal((await inp.read(10)).length, 0);
    });

    it('read() returns everything that is left', async () => {
      const inp = input(BINARY, sizes);
      const head = await inp.read(10);
      const rest = await inp.read();
      assert.deepEqual([...head, ...rest], [...BINARY]);
      const end = await inp.read();
      assert.equal(end instanceof Uint8Array, true);
      assert.equal(end.length, 0);
    });

    it('readline() returns lines with their \\n, CRLF kept, the last one without', async () => {
      const inp = input(TEXT, sizes);
      const lines: string[] = [];
      for (;;) {
        const l = await inp.readline();
        if (l.length === 0) break;
        lines.push(dec(l));
      }
      assert.deepEqual(lines, [
        'first line\r\n',
        'second\n',
        'third line is longer\n',
        '\n',
        'last without newline',
      ]);
    });

    it('readline(limit) returns at most limit bytes and continues the line after', async () => {
      const inp = input('abcdefghij\nxy\n', sizes);
      assert.equal(dec(await inp.readline(4)), 'abcd');
      assert.equal(dec(await inp.readline(4)), 'efgh');
      assert.equal(dec(await inp.readline(4)), 'ij\n');
      assert.equal(dec(await inp.readline(3)), 'xy\n');
      assert.equal((await inp.readline(3)).length, 0);
    });

    it('readlines() returns every line; readlines(hint) stops once hint bytes were read', async () => {
      const all = await input(TEXT, sizes).readlines();
      assert.deepEqual(all.map(dec), [
        'first line\r\n',
        'second\n',
        'third line is longer\n',
        '\n',
        'last without newline',
      ]);
      const inp = input(TEXT, sizes);
      const some = await inp.readlines(15); // 12 bytes, then 7 more crosses the hint
      assert.deepEqual(some.map(dec), ['first line\r\n', 'second\n']);
      assert.equal(dec(await inp.readline()), 'third line is longer\n');
    });

    it('for await yields every byte, in order', async () => {
      const inp = input(BINARY, sizes);
      const got: number[] = [];
      for await (const chunk of inp) {
        assert.equal(chunk.length > 0, true);
        got.push(...chunk);
      }
      assert.deepEqual(got, [...BINARY]);
    });

    it('never returns bytes past CONTENT_LENGTH', async () => {
      const inp = input('0123456789EXTRA', sizes, 10);
      assert.equal(dec(await inp.read()), '0123456789');
      assert.equal((await inp.read()).length, 0);
      const it = input('line\nEXTRA\n', sizes, 5);
      assert.deepEqual((await it.readlines()).map(dec), ['line\n']);
      const chunks: string[] = [];
      for await (const c of input('abcdefEXTRA', sizes, 6)) chunks.push(dec(c));
      assert.equal(chunks.join(''), 'abcdef');
    });

    it('a source that ends early fails with GATEWAY_ERR_INPUT_TRUNCATED, and keeps failing', async () => {
      const inp = input('short', sizes, 50);
      await assert.rejects(inp.read(), { code: 'GATEWAY_ERR_INPUT_TRUNCATED', status: 400 });
      await assert.rejects(inp.read(), { code: 'GATEWAY_ERR_INPUT_TRUNCATED' });
    });

    it('concurrent reads are served in call order', async () => {
      const inp = input('abcdefgh\nijklmnop\nqrst', sizes);
      const [a, b, line, rest] = await Promise.all([
        inp.read(3),
        inp.read(2),
        inp.readline(),
        inp.read(),
      ]);
      assert.deepEqual([a, b, line, rest].map(dec), ['abc', 'de', 'fgh\n', 'ijklmnop\nqrst']);
    });
  });
}

describe('BodyInput', () => {
  it('for await yields each chunk as it arrives, before the source produced the next', async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const inp = new BodyInput(gated('first', gate, 'second'), null);
    const seen: string[] = [];
    for await (const chunk of inp) {
      seen.push(dec(chunk));
      if (seen.length === 1) open(); // the second chunk exists only after the first was seen
    }
    assert.deepEqual(seen, ['first', 'second']);
  });

  it('an empty body: read() is an empty Uint8Array at once, the source untouched', async () => {
    let touched = false;
    async function* source(): ByteSource {
      touched = true;
      yield enc.encode('should not be read');
    }
    for (const inp of [
      new BodyInput(null, 0),
      new BodyInput(source(), 0),
      new BodyInput(null, null),
    ]) {
      const r = await inp.read();
      assert.equal(r instanceof Uint8Array, true);
      assert.equal(r.length, 0);
      assert.equal((await inp.readline()).length, 0);
      assert.deepEqual(await inp.readlines(), []);
      for await (const _ of inp) assert.fail('an empty body yields nothing');
    }
    assert.equal(touched, false);
  });

  it('length null reads to the end of the source', async () => {
    const data = new Uint8Array(1000).map((_, i) => i % 251);
    const inp = new BodyInput(splitSource(data, [7, 100]), null);
    assert.deepEqual([...(await inp.read())], [...data]);
  });

  it('a null source with a non-zero length is a truncated body', async () => {
    await assert.rejects(new BodyInput(null, 5).read(), { code: 'GATEWAY_ERR_INPUT_TRUNCATED' });
  });

  it('a failing source gives GATEWAY_ERR_INPUT_FAILED with the cause', async () => {
    const cause = new Error('ECONNRESET');
    async function* source(): ByteSource {
      yield enc.encode('ab');
      throw cause;
    }
    const inp = new BodyInput(source(), 10);
    assert.equal(dec(await inp.read(2)), 'ab');
    await assert.rejects(inp.read(), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'GATEWAY_ERR_INPUT_FAILED');
      assert.equal(e.cause, cause);
      return true;
    });
  });

  it('empty chunks from the source are skipped', async () => {
    async function* source(): ByteSource {
      yield new Uint8Array(0);
      yield enc.encode('a');
      yield new Uint8Array(0);
      yield enc.encode('b');
    }
    const chunks: string[] = [];
    for await (const c of new BodyInput(source(), 2)) chunks.push(dec(c));
    assert.deepEqual(chunks, ['a', 'b']);
  });

  it('does not pull from the source past CONTENT_LENGTH', async () => {
    let pulls = 0;
    async function* source(): ByteSource {
      for (;;) {
        pulls++;
        yield enc.encode('xxxx');
      }
    }
    const inp = new BodyInput(source(), 8);
    assert.equal((await inp.read()).length, 8);
    assert.equal(pulls, 2);
    await inp.discard();
    assert.equal(pulls, 2);
  });

  it('discard() drains the rest of the body from the source', async () => {
    let finished = false;
    async function* source(): ByteSource {
      yield* splitSource(BINARY, [9]);
      finished = true;
    }
    const inp = new BodyInput(source(), null);
    assert.equal((await inp.read(5)).length, 5);
    await inp.discard();
    assert.equal(finished, true);
    assert.equal(inp.done, true);
    assert.equal((await inp.read()).length, 0);
  });

  it('counts consumed bytes', async () => {
    const inp = input(BINARY, [13]);
    await inp.read(20);
    await inp.readline();
    assert.equal(inp.consumed > 20, true);
    await inp.read();
    assert.equal(inp.consumed, BINARY.length);
  });

  it('refuses sizes that are not integers; negative and null mean "all"', async () => {
    for (const bad of [1.5, NaN, Infinity, '3', {}]) {
      const inp = input('abcdef', [2]);
      await assert.rejects(inp.read(bad as number), { code: 'GATEWAY_ERR_BAD_ARGUMENT' });
      await assert.rejects(inp.readline(bad as number), { code: 'GATEWAY_ERR_BAD_ARGUMENT' });
      await assert.rejects(inp.readlines(bad as number), { code: 'GATEWAY_ERR_BAD_ARGUMENT' });
      assert.equal(dec(await inp.read()), 'abcdef'); // nothing was consumed by the bad calls
    }
    assert.equal(dec(await input('abc', [1]).read(-1)), 'abc');
    assert.equal(dec(await input('abc', [1]).read(null as unknown as number)), 'abc');
  });
});
