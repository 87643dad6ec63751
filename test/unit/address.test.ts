// The listen-address parser (one line per form and per kind of junk) and listen(): TCP, unix
// sockets (fresh, stale, live, not a socket, mode, removed on close) and an inherited fd.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, statSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { BridgeError } from '../../src/errors.js';
import {
  DEFAULT_SOCKET_MODE,
  formatListenAddress,
  listen,
  parseListenAddress,
  parseSocketMode,
  type ListenAddress,
} from '../../src/server/address.js';

const good: [string, ListenAddress][] = [
  ['127.0.0.1:8080', { kind: 'tcp', host: '127.0.0.1', port: 8080 }],
  ['localhost:80', { kind: 'tcp', host: 'localhost', port: 80 }],
  ['example.org.:443', { kind: 'tcp', host: 'example.org.', port: 443 }],
  [':9000', { kind: 'tcp', host: '', port: 9000 }],
  ['127.0.0.1:0', { kind: 'tcp', host: '127.0.0.1', port: 0 }],
  ['0.0.0.0:65535', { kind: 'tcp', host: '0.0.0.0', port: 65535 }],
  ['[::1]:8080', { kind: 'tcp', host: '::1', port: 8080 }],
  ['[::]:1', { kind: 'tcp', host: '::', port: 1 }],
  ['[fe80::1%eth0]:80', { kind: 'tcp', host: 'fe80::1%eth0', port: 80 }],
  [' 127.0.0.1:80 ', { kind: 'tcp', host: '127.0.0.1', port: 80 }],
  ['unix:/run/app.sock', { kind: 'unix', path: '/run/app.sock' }],
  ['/run/app.sock', { kind: 'unix', path: '/run/app.sock' }],
  ['/tmp/x', { kind: 'unix', path: '/tmp/x' }],
  ['fd:0', { kind: 'fd', fd: 0 }],
  ['fd:3', { kind: 'fd', fd: 3 }],
];

const junk: [string, RegExp][] = [
  ['', /it is empty/],
  ['   ', /it is empty/],
  ['8080', /did you mean ":8080"/],
  ['localhost', /no port/],
  ['127.0.0.1:', /port "" is not a number/],
  ['127.0.0.1:http', /port "http" is not a number/],
  ['127.0.0.1:65536', /out of range/],
  ['127.0.0.1:-1', /not a number/],
  ['127.0.0.1:999999', /not a number/],
  ['::1:8080', /IPv6 address must be written in brackets/],
  ['[::1]', /followed by :port/],
  ['[::1]8080', /followed by :port/],
  ['[127.0.0.1]:80', /not an IPv6 address/],
  ['[::1]:99999', /out of range/],
  ['bad host:80', /not a host name/],
  ['-x:80', /not a host name/],
  ['unix:', /socket path is empty/],
  ['unix:app.sock', /must be absolute/],
  ['unix:./app.sock', /must be absolute/],
  ['unix:/run/', /names a directory/],
  ['unix:/a\0b', /NUL/],
  [`unix:/${'x'.repeat(200)}`, /limited to \d+ bytes/],
  ['fd:', /fd "" is not a number/],
  ['fd:x', /is not a number/],
  ['fd:-1', /is not a number/],
];

describe('parseListenAddress', () => {
  for (const [input, want] of good) {
    test(`parses ${JSON.stringify(input)}`, () => {
      assert.deepEqual(parseListenAddress(input), want);
    });
  }
  for (const [input, why] of junk) {
    test(`refuses ${JSON.stringify(input.slice(0, 30))}`, () => {
      assert.throws(
        () => parseListenAddress(input),
        (e: unknown) =>
          e instanceof BridgeError &&
          e.code === 'CLI_ERR_BAD_ADDRESS' &&
          why.test(e.message) &&
          e.message.startsWith('cgi-bridge: bad listen address'),
      );
    });
  }
  test('formatListenAddress writes ADDR notation back', () => {
    for (const s of ['127.0.0.1:80', '[::1]:8080', ':9000', 'unix:/run/a.sock', 'fd:3']) {
      assert.equal(formatListenAddress(parseListenAddress(s)), s);
    }
  });
});

describe('parseSocketMode', () => {
  const cases: [string | number, number][] = [
    ['660', 0o660],
    ['0660', 0o660],
    ['0o600', 0o600],
    ['777', 0o777],
    ['0', 0],
    [660, 0o660],
  ];
  for (const [input, want] of cases) {
    test(`parses ${JSON.stringify(input)}`, () => assert.equal(parseSocketMode(input), want));
  }
  for (const input of ['', '8', '1777', 'rw-rw----', '0x1b6', '66 0']) {
    test(`refuses ${JSON.stringify(input)}`, () => {
      assert.throws(
        () => parseSocketMode(input),
        (e: unknown) => e instanceof BridgeError && e.code === 'CLI_ERR_BAD_SOCKET_MODE',
      );
    });
  }
});

const dir = mkdtempSync(join(tmpdir(), 'cgi-bridge-address-'));
after(() => rmSync(dir, { recursive: true, force: true }));

// echoServer answers every connection with `tag` and closes it: tells which server accepted.
function echoServer(tag: string): Server {
  // A probing client (listen's liveness check) hangs up at once: ignore its reset.
  return createServer((c) => c.on('error', () => undefined).end(tag));
}

function readFrom(opts: { path: string } | { host: string; port: number }): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = connect(opts);
    let data = '';
    c.setEncoding('utf8');
    c.on('data', (d: string) => (data += d));
    c.on('end', () => resolve(data));
    c.on('error', reject);
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

const code = (want: string) => (e: unknown) => e instanceof BridgeError && e.code === want;

describe('listen', () => {
  test('tcp: listens on 127.0.0.1:0 and gets a port', async () => {
    const s = echoServer('tcp');
    await listen(s, parseListenAddress('127.0.0.1:0'));
    const a = s.address();
    assert.ok(a !== null && typeof a === 'object' && a.port > 0);
    assert.equal(await readFrom({ host: '127.0.0.1', port: a.port }), 'tcp');
    await close(s);
  });

  test('tcp: a port in use is SERVER_ERR_ADDRESS_IN_USE', async () => {
    const s1 = echoServer('one');
    await listen(s1, parseListenAddress('127.0.0.1:0'));
    const port = (s1.address() as { port: number }).port;
    const s2 = echoServer('two');
    await assert.rejects(
      listen(s2, parseListenAddress(`127.0.0.1:${port}`)),
      code('SERVER_ERR_ADDRESS_IN_USE'),
    );
    await close(s1);
  });

  test('unix: a fresh path gets the default mode 0660 and is removed on close', async () => {
    const path = join(dir, 'fresh.sock');
    const s = echoServer('fresh');
    await listen(s, { kind: 'unix', path });
    assert.equal(statSync(path).mode & 0o777, DEFAULT_SOCKET_MODE);
    assert.equal(DEFAULT_SOCKET_MODE, 0o660);
    assert.equal(await readFrom({ path }), 'fresh');
    await close(s);
    assert.equal(existsSync(path), false);
  });

  test('unix: socketMode is applied', async () => {
    const path = join(dir, 'mode.sock');
    const s = echoServer('mode');
    await listen(s, { kind: 'unix', path }, { socketMode: 0o600 });
    assert.equal(statSync(path).mode & 0o777, 0o600);
    await close(s);
  });

  test('unix: a stale socket (its server was killed) is replaced', async () => {
    const path = join(dir, 'stale.sock');
    // A process that dies by SIGKILL while listening leaves its socket file behind.
    const r = spawnSync(process.execPath, [
      '-e',
      `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`,
    ]);
    assert.equal(r.signal, 'SIGKILL');
    assert.ok(statSync(path).isSocket(), 'the killed server left its socket file');
    await assert.rejects(readFrom({ path }), /ECONNREFUSED/);
    const s = echoServer('replaced');
    await listen(s, { kind: 'unix', path });
    assert.equal(await readFrom({ path }), 'replaced');
    await close(s);
  });

  test('unix: a live socket is refused and left alone', async () => {
    const path = join(dir, 'live.sock');
    const s1 = echoServer('first');
    await listen(s1, { kind: 'unix', path });
    const s2 = echoServer('second');
    await assert.rejects(
      listen(s2, { kind: 'unix', path }),
      (e: unknown) =>
        code('SERVER_ERR_ADDRESS_IN_USE')(e) &&
        /another server is accepting/.test((e as Error).message),
    );
    assert.equal(s2.listening, false);
    assert.equal(await readFrom({ path }), 'first');
    await close(s1);
  });

  test('unix: a regular file at the path is refused and kept', async () => {
    const path = join(dir, 'file.sock');
    writeFileSync(path, 'precious');
    await assert.rejects(
      listen(echoServer('x'), { kind: 'unix', path }),
      code('SERVER_ERR_NOT_A_SOCKET'),
    );
    assert.equal(readFileSync(path, 'utf8'), 'precious');
  });

  test('unix: a directory that does not exist is SERVER_ERR_LISTEN', async () => {
    const path = join(dir, 'missing', 'x.sock');
    await assert.rejects(
      listen(echoServer('x'), { kind: 'unix', path }),
      code('SERVER_ERR_LISTEN'),
    );
  });

  test('fd: a descriptor that is not open is SERVER_ERR_LISTEN', async () => {
    await assert.rejects(
      listen(echoServer('x'), { kind: 'fd', fd: 987 }),
      code('SERVER_ERR_LISTEN'),
    );
  });

  const python = spawnSync('python3', ['-c', 'pass']).status === 0;
  test(
    'fd: an inherited listening socket (as systemd passes fd 3) is used',
    { skip: !python && 'python3 not found' },
    async () => {
      const address = fileURLToPath(new URL('../../src/server/address.ts', import.meta.url));
      const script = `
      import { createServer } from 'node:net';
      import { listen } from ${JSON.stringify(address)};
      const s = createServer((c) => c.end('inherited'));
      await listen(s, { kind: 'fd', fd: 3 });
      process.stdout.write('ready\\n');
      setTimeout(() => process.exit(0), 5000).unref();
      process.stdin.on('data', () => process.exit(0));
    `;
      // python binds 127.0.0.1:0, prints the port, and execs node with the socket as fd 3.
      const py = [
        'import os, socket, sys',
        's = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(16)',
        'print(s.getsockname()[1], flush=True)',
        'os.dup2(s.fileno(), 3); os.set_inheritable(3, True)',
        'os.execv(sys.argv[1], sys.argv[1:])',
      ].join('\n');
      const child = spawn(
        'python3',
        ['-c', py, process.execPath, '--import', 'tsx', '--input-type=module', '-e', script],
        { stdio: ['pipe', 'pipe', 'inherit'] },
      );
      let out = '';
      child.stdout!.setEncoding('utf8');
      while (!out.includes('ready')) {
        const [d] = (await once(child.stdout!, 'data')) as [string];
        out += d;
      }
      const port = Number(out.split('\n')[0]);
      assert.ok(port > 0);
      assert.equal(await readFrom({ host: '127.0.0.1', port }), 'inherited');
      child.stdin!.end('x');
      await once(child, 'exit');
    },
  );
});
