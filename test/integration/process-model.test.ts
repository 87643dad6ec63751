// The FastCGI process model as real processes (`node bin/cgi-bridge.js fastcgi`, built by
// `npm test`): a master and workers sharing one socket, replacement and backoff, boot errors,
// --max-requests, SIGHUP reload, graceful SIGTERM and its timeout, --timeout, stuck workers,
// the listening socket on fd 0 (spawn-fcgi, mod_fcgid) and from systemd, unix sockets,
// --allowed-clients. Every test ends with no process of it left running.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test, type TestContext } from 'node:test';
import { isProcessAlive, sleep } from '../harness/process-utils.js';
import {
  APP,
  ROOT,
  fcgiRequest,
  fdOf,
  killAll,
  pidOf,
  portOf,
  startFastcgi,
  waitUntil,
  type FcgiTarget,
  type RunningFastcgi,
} from './process-model-helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'cgi-bridge-pm-'));
after(async () => {
  await killAll();
  rmSync(dir, { recursive: true, force: true });
});

if (!existsSync(join(ROOT, 'dist/src/server/master.js'))) {
  throw new Error('dist/ is missing: run `npm run build` (npm test does) before this test');
}

const LOCAL = '127.0.0.1';

// serving starts `fastcgi APP ARGS` on an ephemeral loopback port and waits until it serves.
async function serving(
  t: TestContext,
  args: string[],
  env: Record<string, string> = {},
  app = APP,
): Promise<{ run: RunningFastcgi; target: FcgiTarget }> {
  const run = startFastcgi(t, [app, '--listen', `${LOCAL}:0`, ...args], { env });
  const line = await run.waitFor(/serving .* on /);
  await run.workerPids();
  return { run, target: { host: LOCAL, port: portOf(line) } };
}

// stopped sends SIGTERM and checks a clean exit with nothing left running.
async function stopped(run: RunningFastcgi, signal: NodeJS.Signals = 'SIGTERM'): Promise<number> {
  await run.workerPids();
  const sent = Date.now();
  run.child.kill(signal);
  const { code, at } = await run.exited;
  assert.equal(code, 0, run.lines.join('\n'));
  await waitUntil(
    () => [...run.seen].every((p) => !isProcessAlive(p)),
    3000,
    'the workers to exit',
  );
  return at - sent;
}

// distinctPids asks until `want` different workers answered (or `tries` requests were made).
async function distinctPids(target: FcgiTarget, want: number, tries = 60): Promise<Set<number>> {
  const pids = new Set<number>();
  for (let i = 0; i < tries && pids.size < want; i += 4) {
    const batch = await Promise.all([0, 1, 2, 3].map(() => pidOf(target)));
    for (const p of batch) pids.add(p);
  }
  return pids;
}

describe('pre-fork master', { concurrency: 2, timeout: 60_000 }, () => {
  test('--processes 2: two workers accept on one socket, hooks run once per worker, SIGTERM stops all', async (t) => {
    const { run, target } = await serving(t, ['--processes', '2']);
    const workers = await run.workerPids();
    assert.equal(workers.length, 2);
    const pids = await distinctPids(target, 2);
    assert.deepEqual([...pids].sort(), [...workers].sort());
    assert.equal((await fcgiRequest(target, '/multiprocess')).body, 'true\n');
    await stopped(run);
    for (const pid of workers) {
      assert.equal(run.lines.filter((l) => l === `process-model-app: startup ${pid}`).length, 1);
      assert.equal(run.lines.filter((l) => l === `process-model-app: shutdown ${pid}`).length, 1);
    }
  });

  test('a killed worker is replaced', async (t) => {
    const { run, target } = await serving(t, ['--processes', '1']);
    const [first] = await run.workerPids();
    process.kill(first!, 'SIGKILL');
    await run.waitFor(new RegExp(`worker ${first} was killed by SIGKILL; starting a new one`));
    const second = await pidOf(target);
    assert.notEqual(second, first);
    assert.equal(isProcessAlive(first!), false);
    await stopped(run);
  });

  test('--max-requests 5: the sixth request is served by a new worker, the old one exits', async (t) => {
    const { run, target } = await serving(t, ['--processes', '1', '--max-requests', '5']);
    const pids: number[] = [];
    for (let i = 0; i < 7; i++) pids.push(await pidOf(target));
    assert.deepEqual(pids.slice(0, 5), Array(5).fill(pids[0]));
    assert.notEqual(pids[5], pids[0]);
    assert.equal(pids[6], pids[5]);
    await waitUntil(() => !isProcessAlive(pids[0]!), 3000, 'the recycled worker to exit');
    assert.ok(run.lines.includes(`process-model-app: shutdown ${pids[0]}`));
    await stopped(run);
  });

  test('SIGHUP reloads with requests in flight: none fails, new workers take over', async (t) => {
    const { run, target } = await serving(t, ['--processes', '2']);
    const old = new Set(await run.workerPids());
    const slow = [0, 1, 2, 3].map(() => fcgiRequest(target, '/slow?ms=1500'));
    await sleep(300);
    run.child.kill('SIGHUP');
    // Requests keep coming during the reload.
    const during: Promise<number>[] = [];
    for (let i = 0; i < 15; i++) {
      during.push(pidOf(target));
      await sleep(100);
    }
    const slowResults = await Promise.all(slow);
    for (const r of slowResults) {
      assert.equal(r.status, 200);
      assert.ok(old.has(Number(r.body)), 'an in-flight request finished in its old worker');
    }
    await Promise.all(during); // every one answered
    await run.waitFor(/reload done: workers/);
    const fresh = await distinctPids(target, 2);
    for (const p of fresh) assert.ok(!old.has(p), `pid ${p} is a new worker`);
    await waitUntil(
      () => [...old].every((p) => !isProcessAlive(p)),
      5000,
      'the old workers to exit',
    );
    await stopped(run);
  });

  test('SIGTERM lets an in-flight slow request finish, then exits 0', async (t) => {
    const { run, target } = await serving(t, ['--processes', '1']);
    const started = Date.now();
    const slow = fcgiRequest(target, '/slow?ms=1500');
    await sleep(300);
    const took = stopped(run);
    const r = await slow;
    assert.equal(r.status, 200);
    assert.ok(Date.now() - started >= 1400);
    assert.ok((await took) < 5000);
  });

  test('--graceful-timeout: a request past it is cut, a worker that cannot exit is SIGKILLed', async (t) => {
    const { run, target } = await serving(t, ['--processes', '1', '--graceful-timeout', '1'], {
      PM_SHUTDOWN_HANG: '1',
    });
    const [worker] = await run.workerPids();
    const slow = fcgiRequest(target, '/slow?ms=20000').then(
      () => 'answered',
      (e: NodeJS.ErrnoException) => e.code,
    );
    await sleep(300);
    const took = await stopped(run);
    assert.equal(await slow, 'ECLOSED');
    assert.ok(took >= 1900 && took < 4500, `stopped after ${took} ms`);
    assert.ok(run.lines.some((l) => /graceful timeout \(1 s\): 1 connection\(s\) cut off/.test(l)));
    assert.ok(
      run.lines.some((l) => l.includes(`worker ${worker} was killed after the graceful timeout`)),
    );
  });

  test('--timeout: an app that never answers gets 504, and its worker keeps serving', async (t) => {
    const { run, target } = await serving(t, ['--processes', '1', '--timeout', '1']);
    const [worker] = await run.workerPids();
    const started = Date.now();
    const r = await fcgiRequest(target, '/hang');
    assert.equal(r.status, 504);
    assert.ok(Date.now() - started < 3000);
    await run.waitFor(/request timed out after 1 s \(--timeout\): GET \/hang/);
    await run.waitFor(new RegExp(`hang aborted in ${worker}`));
    assert.equal(await pidOf(target), worker);
    await stopped(run);
  });

  test('a worker stuck in synchronous code is killed and replaced', async (t) => {
    const { run, target } = await serving(t, ['--processes', '1', '--timeout', '1']);
    const [worker] = await run.workerPids();
    const blocked = fcgiRequest(target, '/block').then(
      () => 'answered',
      (e: NodeJS.ErrnoException) => e.code,
    );
    await run.waitFor(
      new RegExp(
        `worker ${worker} was stuck \\(no heartbeat for \\d+ s, --timeout 1 s\\) and was killed; starting a new one`,
      ),
    );
    assert.equal(await blocked, 'ECLOSED');
    assert.notEqual(await pidOf(target), worker);
    await stopped(run);
  });

  test('the master killed by SIGKILL leaves no worker behind', async (t) => {
    const { run } = await serving(t, ['--processes', '2']);
    const workers = await run.workerPids();
    run.child.kill('SIGKILL');
    await run.exited;
    await waitUntil(
      () => workers.every((p) => !isProcessAlive(p)),
      5000,
      'orphaned workers to exit',
    );
  });
});

describe('workers that cannot boot', { concurrency: 2, timeout: 60_000 }, () => {
  test('a bad app path: one line, exit 2, no respawn', async (t) => {
    const started = Date.now();
    const run = startFastcgi(t, [
      join(dir, 'missing.js'),
      '--listen',
      `${LOCAL}:0`,
      '--processes',
      '2',
    ]);
    const { code } = await run.exited;
    assert.equal(code, 2);
    assert.ok(Date.now() - started < 8000);
    assert.equal(run.lines.length, 1, run.lines.join('\n'));
    assert.match(run.lines[0]!, /^cgi-bridge: cannot load .*missing\.js: Cannot find module /);
  });

  test('a module that throws: one line, exit 2, exactly one spawn per worker slot', async (t) => {
    const log = join(dir, 'spawns.log');
    writeFileSync(log, '');
    const app = join(dir, 'throws.mjs');
    writeFileSync(
      app,
      `import { appendFileSync } from 'node:fs';\nappendFileSync(${JSON.stringify(log)}, process.pid + '\\n');\nthrow new Error('broken at import');\n`,
    );
    const run = startFastcgi(t, [app, '--listen', `${LOCAL}:0`, '--processes', '3']);
    const { code } = await run.exited;
    assert.equal(code, 2);
    assert.equal(run.lines.length, 1, run.lines.join('\n'));
    assert.match(run.lines[0]!, /^cgi-bridge: cannot load .*throws\.mjs: broken at import$/);
    await sleep(500);
    assert.equal(readFileSync(log, 'utf8').trim().split('\n').length, 3);
  });

  test('a module that exits while it loads: backoff, then the master gives up after 5', async (t) => {
    const log = join(dir, 'early.log');
    writeFileSync(log, '');
    const app = join(dir, 'exits.mjs');
    writeFileSync(
      app,
      `import { appendFileSync } from 'node:fs';\nappendFileSync(${JSON.stringify(log)}, Date.now() + '\\n');\nprocess.exit(7);\n`,
    );
    const run = startFastcgi(t, [app, '--listen', `${LOCAL}:0`, '--processes', '1']);
    const { code } = await run.exited;
    assert.equal(code, 1);
    assert.equal(
      run.lines.at(-1),
      'cgi-bridge: 5 workers in a row died before they were ready (the last one exited with code 7)',
    );
    const starts = readFileSync(log, 'utf8').trim().split('\n').map(Number);
    assert.equal(starts.length, 5);
    // Backoff: 100, 200, 400, 800 ms between deaths and the next start, at least.
    assert.ok(
      starts.at(-1)! - starts[0]! >= 1500,
      `spawned at ${starts.map((s) => s - starts[0]!).join(', ')} ms`,
    );
  });

  test('a startup hook that throws: one line, exit 1', async (t) => {
    const run = startFastcgi(t, [
      join(ROOT, 'test/fixtures/apps/process-model-bad-startup.js'),
      '--listen',
      `${LOCAL}:0`,
    ]);
    const { code } = await run.exited;
    assert.equal(code, 1);
    assert.deepEqual(run.lines, [
      "cgi-bridge: the app's startup hook failed: process-model-bad-startup: no database",
    ]);
  });
});

// refused: the connection was closed (or reset: the request was unread) with no response.
const refused = (e: NodeJS.ErrnoException): boolean =>
  e.code === 'ECLOSED' || e.code === 'ECONNRESET';

// A listening socket created here and handed to the child; this process then closes its own
// descriptor so that only the child accepts.
async function listeningSocket(): Promise<{ server: Server; port: number }> {
  const server = createServer();
  server.listen(0, LOCAL);
  await once(server, 'listening');
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  return { server, port: addr.port };
}

describe('inherited sockets', { concurrency: 2, timeout: 60_000 }, () => {
  for (const processes of ['0', '2']) {
    test(`fd 0 is a listening socket (spawn-fcgi, mod_fcgid), --processes ${processes}; SIGTERM ends it`, async (t) => {
      const { server, port } = await listeningSocket();
      const run = startFastcgi(t, [APP, '--processes', processes], { stdin: fdOf(server) });
      server.close();
      await run.waitFor(
        processes === '0' ? /serving .* on fd:0 .*\(one process\)/ : /serving .* on fd:0 /,
      );
      const target = { host: LOCAL, port };
      const pids = await distinctPids(target, Number(processes) || 1);
      if (processes === '0') assert.deepEqual([...pids], [run.pid]);
      else assert.equal(pids.size, 2);
      await stopped(run);
    });
  }

  test('fd 0 a connected socket (as Apache mod_cgid gives CGI scripts) is not a FastCGI listener', async (t) => {
    const { server, port } = await listeningSocket();
    const accepted = once(server, 'connection');
    const client = (await import('node:net')).connect(port, LOCAL);
    await once(client, 'connect');
    const [peer] = (await accepted) as [import('node:net').Socket];
    const run = startFastcgi(t, [APP], { stdin: fdOf(peer) });
    const { code } = await run.exited;
    client.destroy();
    peer.destroy();
    server.close();
    assert.equal(code, 2);
    assert.deepEqual(run.lines, [
      'cgi-bridge: no --listen given, and fd 0 is not a listening socket (it is a connected socket); ' +
        'pass --listen ADDR, or let the web server start this (mod_fcgid, lighttpd bin-path, spawn-fcgi, systemd)',
    ]);
  });

  test('systemd socket activation: LISTEN_FDS/LISTEN_PID, fd 3', async (t) => {
    const { server, port } = await listeningSocket();
    const run = startFastcgi(t, [APP, '--processes', '1'], {
      extra: [fdOf(server)],
      env: { LISTEN_FDS: '1' },
      listenPidFromShell: true,
    });
    server.close();
    await run.waitFor(/serving .* on fd:3 /);
    const r = await fcgiRequest({ host: LOCAL, port }, '/pid');
    assert.equal(r.status, 200);
    await stopped(run);
  });

  test('FCGI_WEB_SERVER_ADDRS applies to an inherited listener: others are closed at accept', async (t) => {
    const { server, port } = await listeningSocket();
    const run = startFastcgi(t, [APP, '--processes', '0'], {
      stdin: fdOf(server),
      env: { FCGI_WEB_SERVER_ADDRS: '192.0.2.1, 10.0.0.0/8' },
    });
    server.close();
    await run.waitFor(/serving/);
    await assert.rejects(fcgiRequest({ host: LOCAL, port }, '/pid'), refused);
    await run.waitFor(/fcgi: refused a connection from 127\.0\.0\.1: not in FCGI_WEB_SERVER_ADDRS/);
    await stopped(run);
  });
});

describe('listen addresses', { concurrency: 2, timeout: 60_000 }, () => {
  test('a unix socket gets --socket-mode and is removed at exit', async (t) => {
    const path = join(dir, 'app.sock');
    const run = startFastcgi(t, [
      APP,
      '--listen',
      `unix:${path}`,
      '--socket-mode',
      '600',
      '--processes',
      '2',
    ]);
    await run.waitFor(/serving .* on unix:/);
    const st = statSync(path);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o600);
    assert.equal((await fcgiRequest({ path }, '/pid')).status, 200);
    await stopped(run);
    assert.equal(existsSync(path), false);
  });

  test('IPv6 loopback [::1]', async (t) => {
    const probe = createServer();
    const ok = await new Promise<boolean>((resolve) => {
      probe.once('error', () => resolve(false));
      probe.listen(0, '::1', () => resolve(true));
    });
    probe.close();
    if (!ok) {
      t.skip('no IPv6 loopback on this machine');
      return;
    }
    const run = startFastcgi(t, [APP, '--listen', '[::1]:0', '--processes', '1']);
    const line = await run.waitFor(/serving .* on \[::1\]:\d+/);
    const port = Number(/\[::1\]:(\d+)/.exec(line)![1]);
    assert.equal((await fcgiRequest({ host: '::1', port }, '/pid')).status, 200);
    await stopped(run);
  });

  test('--allowed-clients refuses other TCP peers at accept, with a log line', async (t) => {
    const { run, target } = await serving(t, [
      '--processes',
      '1',
      '--allowed-clients',
      '10.0.0.0/8,::1',
    ]);
    await assert.rejects(fcgiRequest(target, '/pid'), refused);
    await run.waitFor(/fcgi: refused a connection from 127\.0\.0\.1: not in --allowed-clients/);
    await stopped(run);
    const allowed = await serving(t, ['--processes', '1', '--allowed-clients', '127.0.0.0/8']);
    assert.equal((await fcgiRequest(allowed.target, '/pid')).status, 200);
    await stopped(allowed.run);
  });
});
