// Inherited listening sockets: what fd 0 is (a listening TCP or unix socket is FastCGI; a
// connected socket, as Apache mod_cgid gives CGI scripts, a pipe, a file, /dev/null or a
// closed fd are not), and systemd's LISTEN_PID/LISTEN_FDS.
import assert from 'node:assert/strict';
import { spawn, type StdioOptions } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  inheritedListeners,
  inspectFd,
  isFastcgiListener,
  SD_LISTEN_FDS_START,
  systemdListenFds,
} from '../../src/server/inherited.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const INSPECT = join(ROOT, 'test/fixtures/server/inspect-fd.ts');
const dir = mkdtempSync(join(tmpdir(), 'cgi-bridge-inherited-'));
after(() => rmSync(dir, { recursive: true, force: true }));

type Seen = [string, boolean][];

// inspect runs the fixture with `stdio` and returns what it saw for `fds`.
async function inspect(stdio: StdioOptions, fds = [0], shell?: string): Promise<Seen> {
  const node = [process.execPath, '--import', 'tsx', INSPECT, ...fds.map(String)];
  const child = shell
    ? spawn('/bin/sh', ['-c', `${shell} "$@"`, 'sh', ...node], { cwd: ROOT, stdio })
    : spawn(node[0]!, node.slice(1), { cwd: ROOT, stdio });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
  const [code] = (await once(child, 'exit')) as [number];
  assert.equal(code, 0);
  return JSON.parse(out) as Seen;
}

function fdOf(owner: Server | Socket): number {
  const fd = (owner as unknown as { _handle?: { fd?: number } })._handle?.fd;
  assert.ok(typeof fd === 'number' && fd >= 0);
  return fd;
}

async function listening(where: { port: 0; host: string } | { path: string }): Promise<Server> {
  const server = createServer();
  if ('path' in where) server.listen(where.path);
  else server.listen(where.port, where.host);
  await once(server, 'listening');
  return server;
}

describe('inspectFd / isFastcgiListener', { concurrency: true }, () => {
  // This process's own descriptors: the kernel tables are the same for any fd number.
  test('a listening TCP socket, IPv4 and IPv6, is a FastCGI listener', async () => {
    const v4 = await listening({ port: 0, host: '127.0.0.1' });
    const v6 = await listening({ port: 0, host: '::1' }).catch(() => undefined);
    try {
      assert.equal(inspectFd(fdOf(v4)), 'listening-socket');
      assert.equal(isFastcgiListener(fdOf(v4)), true);
      if (v6) assert.equal(inspectFd(fdOf(v6)), 'listening-socket'); // /proc/net/tcp6
    } finally {
      v4.close();
      v6?.close();
    }
  });

  test('a listening unix socket is a FastCGI listener', async () => {
    const server = await listening({ path: join(dir, 'l.sock') });
    try {
      assert.equal(inspectFd(fdOf(server)), 'listening-socket');
    } finally {
      server.close();
    }
  });

  test('a connected TCP or unix socket is not', async () => {
    for (const where of [{ port: 0 as const, host: '127.0.0.1' }, { path: join(dir, 'c.sock') }]) {
      const server = await listening(where);
      const accepted = once(server, 'connection');
      const addr = server.address();
      const client = typeof addr === 'string' ? connect(addr) : connect(addr!.port, '127.0.0.1');
      const [peer] = (await accepted) as [Socket];
      try {
        assert.equal(inspectFd(fdOf(peer)), 'connected-socket');
        assert.equal(isFastcgiListener(fdOf(peer)), false);
        await once(client, 'connect');
        assert.equal(inspectFd(fdOf(client)), 'connected-socket');
      } finally {
        client.destroy();
        peer.destroy();
        server.close();
      }
    }
  });

  test('a file, a closed fd are not', () => {
    const file = join(dir, 'input.txt');
    writeFileSync(file, 'x');
    const fd = openSync(file, 'r');
    try {
      assert.equal(inspectFd(fd), 'file');
    } finally {
      closeSync(fd);
    }
    assert.equal(inspectFd(fd), 'closed');
    assert.equal(isFastcgiListener(fd), false);
  });

  // The real thing: fd 0 of a new process.
  test('fd 0 of a child: a listening socket is FastCGI', async () => {
    const server = await listening({ port: 0, host: '127.0.0.1' });
    try {
      assert.deepEqual(await inspect([fdOf(server), 'pipe', 'inherit'], [0]), [
        ['listening-socket', true],
      ]);
    } finally {
      server.close();
    }
  });

  test('fd 0 of a child: a connected socket pair (Apache mod_cgid stdin), a pipe, /dev/null are not', async () => {
    // node's 'pipe' stdio is a socketpair(2) on Unix.
    const [pair, pipe, devNull] = await Promise.all([
      inspect(['pipe', 'pipe', 'inherit']),
      inspect(['ignore', 'pipe', 'inherit'], [0], 'echo x | exec'),
      inspect(['ignore', 'pipe', 'inherit']),
    ]);
    assert.deepEqual(pair, [['connected-socket', false]]);
    assert.deepEqual(pipe, [['pipe', false]]);
    assert.deepEqual(devNull, [['other', false]]);
  });
});

describe('systemdListenFds (sd_listen_fds(3))', () => {
  test('LISTEN_PID is this process: LISTEN_FDS fds from 3, and the variables are consumed', () => {
    const env: NodeJS.ProcessEnv = {
      LISTEN_PID: '4242',
      LISTEN_FDS: '2',
      LISTEN_FDNAMES: 'a:b',
      KEEP: '1',
    };
    assert.deepEqual(systemdListenFds(env, 4242), [SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + 1]);
    assert.deepEqual(env, { KEEP: '1' });
  });

  test('LISTEN_PID of another process (a parent that forgot to unset it): none, still consumed', () => {
    const env: NodeJS.ProcessEnv = { LISTEN_PID: '1', LISTEN_FDS: '1' };
    assert.deepEqual(systemdListenFds(env, 4242), []);
    assert.deepEqual(env, {});
  });

  test('missing or malformed variables: none', () => {
    assert.deepEqual(systemdListenFds({}, 4242), []);
    assert.deepEqual(systemdListenFds({ LISTEN_PID: '4242' }, 4242), []);
    assert.deepEqual(systemdListenFds({ LISTEN_PID: '4242', LISTEN_FDS: 'x' }, 4242), []);
    assert.deepEqual(systemdListenFds({ LISTEN_PID: '42x', LISTEN_FDS: '1' }, 42), []);
    assert.deepEqual(systemdListenFds({ LISTEN_PID: '4242', LISTEN_FDS: '0' }, 4242), []);
  });

  test('inheritedListeners prefers systemd, as fd:N addresses', () => {
    const env: NodeJS.ProcessEnv = { LISTEN_PID: String(process.pid), LISTEN_FDS: '1' };
    assert.deepEqual(inheritedListeners(env), [{ kind: 'fd', fd: 3 }]);
    // This test process's fd 0 is never a listening socket.
    assert.deepEqual(inheritedListeners({}), []);
  });
});
