// gateway.file_wrapper (FileBody) and gateway.errors (createErrorStream).
import assert from 'node:assert/strict';
import {
  appendFileSync,
  fstatSync,
  mkdtempSync,
  openSync,
  readSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createErrorStream } from '../../src/gateway/error-stream.js';
import { fileWrapper, kBodyLength } from '../../src/gateway/file-wrapper.js';

const tmp = mkdtempSync(join(tmpdir(), 'gateway-file-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

async function collect(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of it) parts.push(c);
  return Buffer.concat(parts);
}

function isOpen(fd: number): boolean {
  try {
    fstatSync(fd);
    return true;
  } catch {
    return false;
  }
}

describe('fileWrapper', () => {
  it('a path: the size is known and the bytes are exact, in blocks', async () => {
    const data = Buffer.from(Array.from({ length: 10_000 }, (_, i) => (i * 31) % 256));
    const path = join(tmp, 'a.bin');
    writeFileSync(path, data);
    const body = fileWrapper(path, 4096);
    assert.equal(await body[kBodyLength](), 10_000);
    const sizes: number[] = [];
    const parts: Uint8Array[] = [];
    for await (const c of body) {
      sizes.push(c.length);
      parts.push(c);
    }
    assert.deepEqual(sizes, [4096, 4096, 1808]);
    assert.equal(Buffer.concat(parts).toString('hex'), data.toString('hex'));
    await body.close();
    await body.close(); // a second close does nothing
  });

  it('a path whose file grows after its size was taken sends only that size', async () => {
    const path = join(tmp, 'grows.txt');
    writeFileSync(path, '12345');
    const body = fileWrapper(path);
    assert.equal(await body[kBodyLength](), 5);
    appendFileSync(path, 'MORE');
    assert.equal((await collect(body)).toString(), '12345');
    await body.close();
  });

  it('a device has no known length', async () => {
    const body = fileWrapper('/dev/null');
    assert.equal(await body[kBodyLength](), undefined);
    assert.equal((await collect(body)).length, 0);
    await body.close();
  });

  it('an fd: no known length, sent from its current position, closed by close()', async () => {
    const path = join(tmp, 'fd.txt');
    writeFileSync(path, 'skipped|sent');
    const fd = openSync(path, 'r');
    readSync(fd, Buffer.alloc(8), 0, 8, null); // the app already read 'skipped|'
    const body = fileWrapper(fd, 3);
    assert.equal(await body[kBodyLength](), undefined);
    assert.equal((await collect(body)).toString(), 'sent');
    assert.equal(isOpen(fd), true);
    await body.close();
    assert.equal(isOpen(fd), false);
  });

  it('an fd never iterated is still closed by close()', async () => {
    const path = join(tmp, 'unused.txt');
    writeFileSync(path, 'x');
    const fd = openSync(path, 'r');
    await fileWrapper(fd).close();
    assert.equal(isOpen(fd), false);
  });

  it('after close() iteration yields nothing', async () => {
    const path = join(tmp, 'closed.txt');
    writeFileSync(path, 'data');
    const body = fileWrapper(path);
    await body.close();
    assert.equal((await collect(body)).length, 0);
  });

  it('a missing file fails when its length is asked for; close() still works', async () => {
    const body = fileWrapper(join(tmp, 'missing'));
    await assert.rejects(body[kBodyLength](), { code: 'ENOENT' });
    await body.close();
  });

  it('refuses a bad file or block size', () => {
    for (const [file, size] of [
      [-1, undefined],
      [1.5, undefined],
      [{}, undefined],
      ['/x', 0],
      ['/x', 2.5],
    ] as [unknown, number | undefined][]) {
      assert.throws(() => fileWrapper(file as string, size), { code: 'GATEWAY_ERR_BAD_ARGUMENT' });
    }
  });
});

describe('createErrorStream', () => {
  it('write, writelines and flush reach the sink', () => {
    const out: string[] = [];
    let flushed = 0;
    const s = createErrorStream(
      (t) => out.push(t),
      () => void flushed++,
    );
    s.write('one\n');
    s.writelines(['two', 'three\n']);
    s.flush();
    assert.deepEqual(out, ['one\n', 'two', 'three\n']);
    assert.equal(flushed, 1);
  });

  it('a failing sink never reaches the app', () => {
    const s = createErrorStream(
      () => {
        throw new Error('EPIPE');
      },
      () => {
        throw new Error('EPIPE');
      },
    );
    assert.doesNotThrow(() => {
      s.write('x');
      s.writelines(['y']);
      s.flush();
    });
  });
});
