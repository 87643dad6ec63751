// Smoke test of the integration harness itself: every real server starts, runs the fixture CGI
// scripts, and stops without leaving a live process behind.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  findTool,
  httpRequest,
  isProcessAlive,
  makeWorld,
  requireTool,
  startApache,
  startLighttpd,
  startNginx,
  startSpawnFcgi,
  type RunningServer,
  type World,
} from '../harness/servers.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'cgi');

async function newWorld(t: TestContext): Promise<{ world: World; cgiDir: string }> {
  const world = await makeWorld();
  t.after(() => world.cleanup());
  return { world, cgiDir: await world.copyFixtures(FIXTURES) };
}

/** envLines returns the `--- env` section of env.sh's output as lines. */
function envLines(text: string): string[] {
  const i = text.indexOf('--- env\n');
  assert.notEqual(i, -1, `no env section in:\n${text}`);
  return text.slice(i + '--- env\n'.length).split('\n');
}

/** bodySection returns what env.sh echoed of the request body. */
function bodySection(text: string): string {
  const m = /^--- body\n([\s\S]*)\n--- env\n/m.exec(text);
  assert.ok(m, `no body section in:\n${text}`);
  return m[1] as string;
}

async function checkCgiRoutes(t: TestContext, server: RunningServer): Promise<void> {
  try {
    const get = await httpRequest(`${server.url}/cgi-bin/env.sh/extra?a=1`);
    assert.equal(get.status, 200, get.text());
    assert.equal(get.headers['x-fixture'], 'env.sh');
    const env = envLines(get.text());
    assert.ok(env.includes('PATH_INFO=/extra'), env.join('\n'));
    assert.ok(env.includes('QUERY_STRING=a=1'), env.join('\n'));
    assert.ok(env.includes('SCRIPT_NAME=/cgi-bin/env.sh'), env.join('\n'));
    assert.ok(env.includes('REQUEST_METHOD=GET'), env.join('\n'));

    const payload = 'hello from the harness\nline 2';
    const post = await httpRequest(`${server.url}/cgi-bin/env.sh`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: Buffer.from(payload),
    });
    assert.equal(post.status, 200, post.text());
    assert.equal(bodySection(post.text()), payload);
    assert.ok(envLines(post.text()).includes(`CONTENT_LENGTH=${payload.length}`));

    // a streamed (chunked) body: mod_cgid passes no CONTENT_LENGTH, env.sh then reads to EOF
    const chunked = await httpRequest(`${server.url}/cgi-bin/env.sh`, {
      method: 'POST',
      body: (async function* () {
        yield Buffer.from('chunk one,');
        yield Buffer.from('chunk two');
      })(),
    });
    assert.equal(chunked.status, 200, chunked.text());
    assert.equal(bodySection(chunked.text()), 'chunk one,chunk two');

    const teapot = await httpRequest(`${server.url}/cgi-bin/status.sh`);
    assert.equal(teapot.status, 418);
    assert.equal(teapot.text(), 'teapot\n');

    const missing = await httpRequest(`${server.url}/cgi-bin/no-such-script.sh`);
    assert.equal(missing.status, 404);
  } catch (e) {
    t.diagnostic(`${server.name} logs:\n${await server.errorLog()}`);
    throw e;
  }
}

async function stopAndCheckGone(server: RunningServer): Promise<void> {
  const pids = await server.processes();
  assert.ok(pids.includes(server.pid), `master ${server.pid} not among ${pids.join(',')}`);
  await server.stop();
  const alive = pids.filter(isProcessAlive);
  assert.deepEqual(alive, [], `${server.name}: still alive after stop: ${alive.join(',')}`);
  await server.stop(); // a second stop is a no-op
}

test('apache event (mod_cgid) runs CGI scripts', async (t) => {
  if (!requireTool(t, 'apache2')) return;
  const { world, cgiDir } = await newWorld(t);
  const server = await startApache(world, { mpm: 'event', cgiDir });
  assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  await checkCgiRoutes(t, server);
  await stopAndCheckGone(server);
});

test('apache prefork (mod_cgi) runs CGI scripts', async (t) => {
  if (!requireTool(t, 'apache2')) return;
  const { world, cgiDir } = await newWorld(t);
  const server = await startApache(world, { mpm: 'prefork', cgiDir });
  await checkCgiRoutes(t, server);
  await stopAndCheckGone(server);
});

test('lighttpd mod_cgi runs CGI scripts', async (t) => {
  if (!requireTool(t, 'lighttpd')) return;
  const { world, cgiDir } = await newWorld(t);
  const server = await startLighttpd(world, { cgiDir });
  await checkCgiRoutes(t, server);
  await stopAndCheckGone(server);
});

test('nginx + fcgiwrap runs CGI scripts', async (t) => {
  if (!requireTool(t, 'nginx', 'fcgiwrap', 'spawn-fcgi')) return;
  const { world, cgiDir } = await newWorld(t);
  const server = await startNginx(world, { cgiDir, cgiWorkers: 2 });
  const pids = await server.processes();
  assert.ok(pids.length >= 4, `nginx master + worker + 2 fcgiwrap, got ${pids.join(',')}`);
  await checkCgiRoutes(t, server);
  await stopAndCheckGone(server);
});

/** cgiFcgi sends one FastCGI request built from `env` with `cgi-fcgi -bind -connect`. */
function cgiFcgi(connect: string, env: Record<string, string>, stdin = ''): Promise<string> {
  const bin = findTool('cgi-fcgi');
  assert.ok(bin);
  return new Promise((resolve, reject) => {
    // only `env` (like `env -i`): cgi-fcgi sends its whole environment as params
    const child = spawn(bin, ['-bind', '-connect', connect], { env, stdio: 'pipe' });
    const out: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => out.push(c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      const text = Buffer.concat(out).toString('utf8');
      if (code === 0) resolve(text);
      else reject(new Error(`cgi-fcgi exited with ${code}:\n${text}`));
    });
    child.stdin.end(stdin);
  });
}

test('spawn-fcgi runs fcgiwrap on a unix socket (cgi-fcgi client)', async (t) => {
  if (!requireTool(t, 'spawn-fcgi', 'fcgiwrap', 'cgi-fcgi')) return;
  const { world, cgiDir } = await newWorld(t);
  const sock = world.socketPath('fcgiwrap');
  // a bare name: startSpawnFcgi must resolve it (spawn-fcgi itself does no PATH search)
  const app = await startSpawnFcgi(world, {
    listen: `unix:${sock}` as `unix:/${string}`,
    children: 2,
    command: ['fcgiwrap'],
    env: { HARNESS_MARK: 'spawned' },
  });
  assert.equal(app.pids.length, 2);
  assert.ok(app.pids.every(isProcessAlive));
  try {
    const get = await cgiFcgi(sock, {
      REQUEST_METHOD: 'GET',
      SCRIPT_FILENAME: join(cgiDir, 'env.sh'),
      SCRIPT_NAME: '/env.sh',
      PATH_INFO: '/extra',
      QUERY_STRING: 'a=1',
    });
    const env = envLines(get.replace(/\r\n/g, '\n'));
    assert.ok(env.includes('QUERY_STRING=a=1'), get);
    assert.ok(env.includes('PATH_INFO=/extra'), get);
    assert.ok(env.includes('FCGI_ROLE=RESPONDER'), get);
    assert.ok(env.includes('HARNESS_MARK=spawned'), get); // fcgiwrap passes its env on

    const post = await cgiFcgi(
      sock,
      {
        REQUEST_METHOD: 'POST',
        SCRIPT_FILENAME: join(cgiDir, 'env.sh'),
        SCRIPT_NAME: '/env.sh',
        CONTENT_LENGTH: '5',
      },
      'hello',
    );
    assert.equal(bodySection(post.replace(/\r\n/g, '\n').replace(/^[\s\S]*?\n\n/, '')), 'hello');
  } catch (e) {
    t.diagnostic(`spawn-fcgi log:\n${await app.errorLog()}`);
    throw e;
  }
  await app.stop();
  assert.deepEqual(app.pids.filter(isProcessAlive), []);
});
