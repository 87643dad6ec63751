// The hold policy (issue 3: nginx stops sending a request body once the reply starts): the
// HoldBuffer itself, and a 10 MB streaming echo through the responder driven by an nginx-like
// client that stops sending the body at the first FCGI_STDOUT record.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readlinkSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { HoldBuffer } from '../../src/fastcgi/hold-buffer.js';
import { encodeParams } from '../../src/fastcgi/params.js';
import {
  FCGI_KEEP_CONN,
  FCGI_PARAMS,
  FCGI_RESPONDER,
  FCGI_STDIN,
} from '../../src/fastcgi/protocol.js';
import { encodeBeginRequest, encodeRecord, encodeStream } from '../../src/fastcgi/records.js';
import type { GatewayApp } from '../../src/gateway/types.js';
import {
  defaultParams,
  settled,
  splitHead,
  type TestClient,
  withClient,
} from './fastcgi-responder-helpers.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

// The descriptors of this process that point at deleted files in `dir` (a spilled hold).
function deletedFilesIn(dir: string): string[] {
  const out: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith(dir) && target.endsWith('(deleted)')) out.push(target);
    } catch {
      // the descriptor closed meanwhile
    }
  }
  return out;
}

describe('HoldBuffer', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hold-test-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('holds in memory up to the bound, synchronously, and drains the chunks in order as they came', async () => {
    const hold = new HoldBuffer({ maxMemoryBytes: 100, tmpDir: dir, blockSize: 16 });
    const parts = ['ab', 'cdef', 'g', 'hijklmnopqrstuvwxyz0123456789'];
    for (const p of parts) assert.equal(hold.append(Buffer.from(p)), undefined);
    assert.equal(hold.size, 36);
    assert.equal(hold.spilled, false);
    const got: Buffer[] = [];
    await hold.drain((b) => void got.push(Buffer.from(b)));
    assert.deepEqual(
      got.map((b) => b.toString()),
      parts,
    );
    assert.equal(hold.size, 0);
  });

  test('past the bound it spills to an unlinked temp file; bytes come back identical and the file is closed', async () => {
    const hold = new HoldBuffer({ maxMemoryBytes: 1000, tmpDir: dir, blockSize: 4096 });
    const data = Buffer.alloc(50_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    for (let at = 0; at < data.length; at += 700) await hold.append(data.subarray(at, at + 700));
    assert.equal(hold.spilled, true);
    assert.equal(hold.size, data.length);
    assert.ok(hold.memoryBytes <= 1000);
    assert.deepEqual(await readdir(dir), [], 'the temp file is unlinked at once');
    assert.equal(deletedFilesIn(dir).length, 1, 'only our descriptor keeps it');
    const got: Buffer[] = [];
    await hold.drain(async (b) => {
      assert.ok(b.length <= 4096);
      got.push(Buffer.from(b));
      await sleep(0);
    });
    assert.ok(Buffer.concat(got).equals(data));
    assert.equal(hold.size, 0);
    assert.deepEqual(deletedFilesIn(dir), [], 'the temp file is closed after the drain');
  });

  test('dispose drops everything and closes the file; later appends throw', async () => {
    const hold = new HoldBuffer({ maxMemoryBytes: 10, tmpDir: dir });
    await hold.append(Buffer.alloc(100, 1));
    assert.equal(deletedFilesIn(dir).length, 1);
    hold.dispose();
    await sleep(20);
    assert.deepEqual(deletedFilesIn(dir), []);
    assert.throws(() => hold.append(Buffer.from('x')), { code: 'FCGI_ERR_HOLD_FAILED' });
  });

  test('a temp directory that cannot be used fails with FCGI_ERR_HOLD_FAILED', async () => {
    const hold = new HoldBuffer({ maxMemoryBytes: 0, tmpDir: join(dir, 'missing') });
    await assert.rejects(async () => hold.append(Buffer.from('x')), {
      code: 'FCGI_ERR_HOLD_FAILED',
    });
  });
});

// A streaming echo: every chunk of the body is written back as soon as it is read.
const echo: GatewayApp = async (environ, start) => {
  const write = start('200 OK', [['Content-Type', 'application/octet-stream']]);
  for await (const chunk of environ['gateway.input']) await write(chunk);
  return [];
};

const BODY = (() => {
  const b = Buffer.alloc(10 * 1024 * 1024);
  for (let i = 0; i < b.length; i += 4) b.writeUInt32BE(i, i);
  return b;
})();

/**
 * nginxLikePost sends a POST the way nginx does with its request body, 32 KiB records as fast
 * as the socket takes them, but stops sending the body (for good) as soon as the first
 * FCGI_STDOUT record arrives, like nginx once the backend starts replying.
 */
async function nginxLikePost(c: TestClient, body: Buffer): Promise<{ stoppedAt: number }> {
  c.send(encodeBeginRequest(1, FCGI_RESPONDER, FCGI_KEEP_CONN));
  c.send(
    encodeStream(
      FCGI_PARAMS,
      1,
      encodeParams(defaultParams('POST', '/echo', [['CONTENT_LENGTH', String(body.length)]])),
      { end: true },
    ),
  );
  // Records are not kept for a 10 MB transfer: the reply's byte count tells.
  const replied = (): boolean => (c.reply(1)?.stdoutBytes ?? 0) > 0;
  let at = 0;
  while (at < body.length) {
    if (replied()) return { stoppedAt: at };
    const ok = c.socket.write(encodeRecord(FCGI_STDIN, 1, body.subarray(at, at + 32 * 1024)));
    at += 32 * 1024;
    if (!ok) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearInterval(poll);
          c.socket.off('drain', done);
          resolve();
        };
        const poll = setInterval(() => replied() && done(), 2);
        c.socket.once('drain', done);
      });
    }
  }
  if (replied()) return { stoppedAt: at };
  c.socket.write(encodeRecord(FCGI_STDIN, 1));
  return { stoppedAt: -1 };
}

describe('the nginx trap: a 10 MB streaming echo to a client that stops sending at the first reply', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hold-echo-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('hold on (the default): the whole body is read, then the echo comes back whole; memory spills to a temp file', async () => {
    await withClient(echo, { tmpDir: dir }, async (c, r) => {
      c.responses.keepRecords = false;
      c.keepRaw = false;
      let spilled = 0;
      const watch = setInterval(() => (spilled = Math.max(spilled, deletedFilesIn(dir).length)), 5);
      const sending = nginxLikePost(c, BODY);
      const reply = await c.ended(1, 15_000);
      clearInterval(watch);
      assert.equal((await sending).stoppedAt, -1, 'the client sent the whole body');
      const { status, body } = splitHead(reply.stdout);
      assert.equal(status, 200);
      assert.equal(body.length, BODY.length);
      assert.equal(sha(body), sha(BODY));
      assert.deepEqual(reply.end, { appStatus: 0, protocolStatus: 0 });
      assert.equal(spilled, 1, 'past maxHoldBytes the held echo went to an unlinked temp file');
      assert.deepEqual(deletedFilesIn(dir), []);
      c.close();
      await settled(r.counters);
    });
  });

  test('hold off: the first echoed bytes stop the client, and the request never completes (the trap is real)', async () => {
    await withClient(echo, { holdResponseUntilBodyRead: false }, async (c, r) => {
      c.responses.keepRecords = false;
      c.keepRaw = false;
      const { stoppedAt } = await nginxLikePost(c, BODY);
      assert.ok(stoppedAt > 0 && stoppedAt < BODY.length, `stopped at ${stoppedAt}`);
      await assert.rejects(c.ended(1, 1500), /timed out/);
      c.close();
      await settled(r.counters);
    });
  });
});
