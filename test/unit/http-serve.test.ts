// serve(app), the library entry, as a real process (test/fixtures/apps/http-serve-script.js,
// from dist/): CGI when GATEWAY_INTERFACE is set, else the HTTP server; each path loads only
// its own front end (a module-resolution hook records what was loaded).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { httpRequest } from '../harness/http-client.js';
import { fcgiRequest } from '../integration/process-model-helpers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SCRIPT = join(ROOT, 'test/fixtures/apps/http-serve-script.js');
const LOAD_LOG_HOOK = join(ROOT, 'test/fixtures/apps/http-load-log-register.mjs');

const dir = mkdtempSync(join(tmpdir(), 'cgi-bridge-serve-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const loaded = (log: string): string[] => readFileSync(log, 'utf8').split('\n').filter(Boolean);
const loads = (urls: string[], part: string): boolean => urls.some((u) => u.includes(part));

before(() => {
  assert.ok(
    existsSync(join(ROOT, 'dist/src/serve.js')),
    'dist/ is missing: run `npm run build` (or npx tsc -p tsconfig.build.json) first',
  );
});

describe('serve(app)', () => {
  test('GATEWAY_INTERFACE set: one CGI request, without loading the HTTP server', () => {
    const log = join(dir, 'cgi.log');
    writeFileSync(log, '');
    const r = spawnSync(process.execPath, ['--import', LOAD_LOG_HOOK, SCRIPT], {
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        LOAD_LOG: log,
        GATEWAY_INTERFACE: 'CGI/1.1',
        REQUEST_METHOD: 'GET',
        PATH_INFO: '/array',
        SERVER_NAME: 'localhost',
        SERVER_PORT: '80',
        SERVER_PROTOCOL: 'HTTP/1.1',
      },
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^Status: 200 OK\r\n[^]*\r\n\r\nhello world\n$/);
    // The hooks ran around the one request.
    assert.equal(r.stderr, 'http-app: startup\nhttp-app: shutdown\n');
    const urls = loaded(log);
    assert.ok(loads(urls, '/dist/src/cgi/child.js'));
    assert.equal(loads(urls, '/dist/src/http/'), false, 'the HTTP server was loaded for CGI');
    assert.equal(loads(urls, 'node:http'), false);
  });

  test('no GATEWAY_INTERFACE: the HTTP server until SIGTERM, then exit 0', async () => {
    const log = join(dir, 'http.log');
    writeFileSync(log, '');
    const child = spawn(process.execPath, ['--import', LOAD_LOG_HOOK, SCRIPT], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LOAD_LOG: log },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const exited = once(child, 'exit');
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    let port = 0;
    const deadline = Date.now() + 10_000;
    while (port === 0) {
      assert.ok(child.exitCode === null && Date.now() < deadline, `no serving line: ${err}`);
      await new Promise((r) => setTimeout(r, 20));
      port = Number(/serving app on http:\/\/127\.0\.0\.1:(\d+)\//.exec(err)?.[1] ?? 0);
    }
    const r = await httpRequest(`http://127.0.0.1:${port}/array`);
    assert.equal(r.text(), 'hello world\n');
    child.kill('SIGTERM');
    assert.deepEqual(await exited, [0, null]);
    assert.match(
      err,
      /^http-app: startup\ncgi-bridge: serving app on http:\/\/127\.0\.0\.1:\d+\/\n/,
    );
    assert.match(err, /http-app: shutdown\n$/);
    const urls = loaded(log);
    assert.ok(loads(urls, '/dist/src/http/server.js'));
    assert.equal(loads(urls, '/dist/src/cgi/child.js'), false, 'the CGI child was loaded for HTTP');
  });

  test('the HTTP server cannot listen: one line and exit 1', async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = (taken.address() as AddressInfo).port;
    const r = spawnSync(process.execPath, [SCRIPT], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LISTEN: `127.0.0.1:${port}` },
      encoding: 'utf8',
      timeout: 20_000,
    });
    taken.close();
    assert.equal(r.status, 1);
    assert.equal(
      r.stderr,
      `http-app: startup\nhttp-app: shutdown\ncgi-bridge: cannot listen on 127.0.0.1:${port}: the address is already in use\n`,
    );
  });
  test('fd 0 a listening socket: a FastCGI responder on it; a connected fd 0 with GATEWAY_INTERFACE stays CGI', async () => {
    const listener = createServer();
    await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
    const port = (listener.address() as AddressInfo).port;
    const fd = (listener as unknown as { _handle: { fd: number } })._handle.fd;
    const child = spawn(process.execPath, [SCRIPT], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      stdio: [fd, 'ignore', 'pipe'],
    });
    listener.close();
    const exited = once(child, 'exit');
    let err = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    try {
      const deadline = Date.now() + 10_000;
      while (!/serving app on fd:0/.test(err)) {
        assert.ok(child.exitCode === null && Date.now() < deadline, `no serving line: ${err}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      const r = await fcgiRequest({ host: '127.0.0.1', port }, '/array');
      assert.equal(r.status, 200);
      assert.equal(r.body, 'hello world\n');
      assert.equal(r.appStatus, 0);
    } finally {
      child.kill('SIGTERM');
    }
    assert.deepEqual(await exited, [0, null]);
    assert.match(err, /http-app: shutdown\n$/);

    // Apache mod_cgid hands a CGI script a connected socket as stdin: that is CGI, not FastCGI.
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const accepted = once(server, 'connection');
    const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
    const [peer] = (await accepted) as [Socket];
    const peerFd = (peer as unknown as { _handle: { fd: number } })._handle.fd;
    const cgi = spawnSync(process.execPath, [SCRIPT], {
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        GATEWAY_INTERFACE: 'CGI/1.1',
        REQUEST_METHOD: 'GET',
        PATH_INFO: '/array',
      },
      stdio: [peerFd, 'pipe', 'pipe'],
      encoding: 'utf8',
      timeout: 20_000,
    });
    client.destroy();
    peer.destroy();
    server.close();
    assert.equal(cgi.status, 0, cgi.stderr);
    assert.match(cgi.stdout, /^Status: 200 OK\r\n[^]*\r\n\r\nhello world\n$/);
  });
});
