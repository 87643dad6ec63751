// The master's sockets: bound, not accepted on, handed to workers by fd. TCP with an ephemeral
// port, unix sockets with their mode (stale replaced, live and non-socket refused), fd:N taken
// as inherited, and the errors.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { holdSocket } from '../../src/server/master-sockets.js';
import { inspectFd } from '../../src/server/inherited.js';

const dir = mkdtempSync(join(tmpdir(), 'cgi-bridge-held-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('holdSocket', () => {
  test('TCP :0 is bound to a real port, and the master does not accept on it', async () => {
    const held = await holdSocket({ kind: 'tcp', host: '127.0.0.1', port: 0 });
    try {
      const port = Number(/^127\.0\.0\.1:(\d+)$/.exec(held.label)?.[1]);
      assert.ok(port > 0, held.label);
      assert.notEqual(inspectFd(held.fd), 'listening-socket');
      // Bound, not listening (each worker calls listen(2) on its duplicate): nobody answers.
      const client = connect(port, '127.0.0.1');
      const [error] = (await once(client, 'error').catch((e: unknown) => [e])) as [
        NodeJS.ErrnoException,
      ];
      assert.equal(error.code, 'ECONNREFUSED');
    } finally {
      held.close();
    }
  });

  test('a TCP port in use is SERVER_ERR_ADDRESS_IN_USE', async () => {
    const busy = createServer().listen(0, '127.0.0.1');
    await once(busy, 'listening');
    const { port } = busy.address() as { port: number };
    await assert.rejects(holdSocket({ kind: 'tcp', host: '127.0.0.1', port }), {
      code: 'SERVER_ERR_ADDRESS_IN_USE',
      message: `cgi-bridge: cannot listen on 127.0.0.1:${port}: the address is already in use`,
    });
    busy.close();
  });

  test('a host name is resolved once', async () => {
    const held = await holdSocket({ kind: 'tcp', host: 'localhost', port: 0 });
    assert.match(held.label, /^(127\.0\.0\.1|\[::1\]):\d+$/);
    held.close();
  });

  test('a unix socket gets the mode, replaces a stale socket, and its path goes with close()', async () => {
    const path = join(dir, 'stale.sock');
    // A stale socket: bound by a server that is gone.
    const old = await holdSocket({ kind: 'unix', path });
    assert.ok(statSync(path).isSocket());
    const held = await holdSocket({ kind: 'unix', path }, { socketMode: 0o640 });
    assert.equal(statSync(path).mode & 0o777, 0o640);
    assert.equal(held.label, `unix:${path}`);
    held.close();
    old.close();
    await new Promise((r) => setImmediate(r));
    assert.equal(existsSync(path), false);
  });

  test('a live unix socket and a regular file are refused', async () => {
    const path = join(dir, 'live.sock');
    const live = createServer().listen(path);
    await once(live, 'listening');
    await assert.rejects(holdSocket({ kind: 'unix', path }), { code: 'SERVER_ERR_ADDRESS_IN_USE' });
    live.close();
    const file = join(dir, 'file.sock');
    writeFileSync(file, 'keep me');
    await assert.rejects(holdSocket({ kind: 'unix', path: file }), {
      code: 'SERVER_ERR_NOT_A_SOCKET',
    });
    assert.ok(statSync(file).isFile());
  });

  test('fd:N is taken as inherited and never closed by the master', async () => {
    const held = await holdSocket({ kind: 'fd', fd: 0 });
    assert.deepEqual([held.fd, held.label], [0, 'fd:0']);
    held.close();
    assert.notEqual(inspectFd(0), 'closed');
  });
});
