// The fork servers (src/cgi/fork-server.ts + fork-server.c or fork-server.pl): their protocol
// (body bytes pass as they are; backpressure both ways; big bodies and outputs; concurrent
// programs; exec errors as node reports them) and lifecycle (they end their programs when the
// Node side dies; a fork server's death fails only the requests in flight), each suite once per
// kind; which one `auto` picks, and its fallback to direct spawning without perl.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { currentForkServer, forkServer, type ForkServer } from '../../src/cgi/fork-server.js';
import { fromCgi } from '../../src/cgi/host.js';
import type { ForkServerKind } from '../../src/cgi/spawn-options.js';
import { checkTargetChoice, cgiTargetSpec, parseCgiTargetSpec } from '../../src/cli/cgi-target.js';
import { readProcStat } from '../harness/process-utils.js';
import { findTool, requireTool } from '../harness/tools.js';
import { allGone, legacy, serveCgi, sleep, tempDir, waitFor } from './cgi-host-helpers.js';
import { RecordingWriter } from './gateway-helpers.js';

const markers = tempDir('fork');
after(() => markers.remove());
const ENV = { env: { MARKER_DIR: markers.dir }, timeoutMs: 30_000, spawn: 'helper' as const };
const script = (name: string): ReturnType<typeof fromCgi> => fromCgi({ script: legacy(name) }, ENV);

async function pidsOf(file: string): Promise<number[]> {
  const path = join(markers.dir, file);
  assert.ok(
    await waitFor(() => existsSync(path) && /\d+ \d+/.test(readFileSync(path, 'utf8')), 10_000),
    `${file} was never written`,
  );
  return readFileSync(path, 'utf8').trim().split(/\s+/).map(Number);
}

async function server(): Promise<ForkServer> {
  const s = await forkServer('helper');
  assert.ok(s, 'no fork server');
  return s;
}

// run starts argv (argv[0] an absolute path) through the fork server, in /, with a PATH only.
async function run(argv: string[], stdin: boolean): ReturnType<ForkServer['spawn']> {
  const s = await server();
  const [executable, ...args] = argv as [string, ...string[]];
  return s.spawn({ executable, args, cwd: '/', env: { PATH: '/usr/bin:/bin' }, stdin });
}

// collect reads a stream to its end.
async function collect(stream: NodeJS.ReadableStream | null): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream ?? []) parts.push(Buffer.from(c as Buffer));
  return Buffer.concat(parts);
}

// runSpawnMode runs the spawn-mode fixture (two GETs of hello.sh in a fresh process) and
// returns its JSON line and its stderr; spawnMode the JSON line.
function runSpawnMode(
  env: Record<string, string>,
  ...args: string[]
): { out: unknown; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', legacy('spawn-mode.ts'), ...args], {
    env: { PATH: process.env.PATH, ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(r.status, 0, r.stderr);
  return { out: JSON.parse(r.stdout), stderr: r.stderr };
}

const spawnMode = (env: Record<string, string>, ...args: string[]): unknown =>
  runSpawnMode(env, ...args).out;

// refusesEnv checks that fromCgi refuses `value` in the environment variable `name`.
function refusesEnv(name: string, value: string): void {
  process.env[name] = value;
  try {
    assert.throws(() => fromCgi({ script: legacy('hello.sh') }), new RegExp(name));
  } finally {
    delete process.env[name];
  }
}

describe('fork server: which one', { timeout: 120_000 }, () => {
  test('the C fork server is built where there is a C compiler', (t) => {
    if (!requireTool(t, 'cc')) return;
    const built = fileURLToPath(new URL('../../src/cgi/fork-server', import.meta.url));
    assert.ok(existsSync(built), `${built} was not built (npm run build compiles it)`);
    assert.ok(statSync(built).mode & 0o111, `${built} is not executable`);
  });

  test('auto: the C fork server at any size; the Perl one (CGI_BRIDGE_FORK_SERVER=perl) only from a large process', (t) => {
    if (!requireTool(t, 'cc', 'perl')) return;
    const ok = [200, 200];
    assert.deepEqual(spawnMode({}, 'auto'), { statuses: ok, helper: 'c', big: false });
    const perl = { CGI_BRIDGE_FORK_SERVER: 'perl' };
    assert.deepEqual(spawnMode(perl, 'auto'), { statuses: ok, helper: false, big: false });
    assert.deepEqual(spawnMode(perl, 'auto', 'big'), { statuses: ok, helper: 'perl', big: true });
    assert.deepEqual(spawnMode({ CGI_BRIDGE_FORK_SERVER: 'c' }, 'helper'), {
      statuses: ok,
      helper: 'c',
      big: false,
    });
    assert.deepEqual(spawnMode({}, 'direct'), { statuses: ok, helper: false, big: false });
  });

  test('fromCgi refuses a bad CGI_BRIDGE_FORK_SERVER', () => {
    refusesEnv('CGI_BRIDGE_FORK_SERVER', 'rust');
  });
});

// useKind makes the suites that follow run against fork servers of `kind`: the running one is
// stopped (and gone), so that the next program starts one of that kind.
async function stopCurrent(): Promise<void> {
  const s = currentForkServer();
  s?.stop();
  if (s) assert.ok(await waitFor(() => s.exited, 10_000), 'the fork server did not stop');
}

function useKind(kind: ForkServerKind): void {
  before(async () => {
    await stopCurrent();
    // The pid files of the other kind's run: a test must only ever see its own programs'.
    for (const f of readdirSync(markers.dir)) rmSync(join(markers.dir, f), { force: true });
    process.env.CGI_BRIDGE_FORK_SERVER = kind;
  });
  after(async () => {
    await stopCurrent();
    delete process.env.CGI_BRIDGE_FORK_SERVER;
  });
}

for (const kind of ['c', 'perl'] as const) {
  // Without its tool these suites skip, but under CI, where the first test fails instead.
  const tool = kind === 'c' ? 'cc' : 'perl';
  const skip =
    findTool(tool) === undefined && process.env.CI !== 'true' ? `SKIP: no ${tool}` : false;
  describe(`fork server (${kind}): protocol`, { timeout: 120_000, skip }, () => {
    useKind(kind);
    test('it runs; a running program holds no file descriptor of this process', async (t) => {
      if (!requireTool(t, tool)) return;
      const r = await serveCgi(script('hello.sh'));
      assert.equal(r.text, 'hello from sh\n');
      const s = currentForkServer();
      assert.ok(s !== undefined, 'spawn: helper did not start the fork server');
      assert.equal(s.kind, kind);
      // Its stdio are pipes to the fork server, relayed as frames on the fork server's own.
      const fds = (): number => readdirSync('/proc/self/fd').length;
      const before = fds();
      const writer = new RecordingWriter();
      const running = serveCgi(script('hang.sh'), { query: 'headers-fds', body: 'x', writer });
      const pids = await pidsOf('hang-headers-fds.pids');
      assert.ok(await waitFor(() => writer.body.length > 0), 'no body arrived');
      assert.equal(fds(), before);
      for (const pid of pids) process.kill(pid, 'SIGKILL');
      await running;
    });

    test('body bytes reach the program as they are, frame-like ones too', async () => {
      // A body that looks like frames: an E and an R.
      const tricky = Buffer.concat([
        Buffer.from([0x45, 0, 0, 0, 1, 0, 0, 0, 0]),
        Buffer.from([0x52, 0, 0, 0, 9, 0, 0, 0, 2]),
        Buffer.from('1\x00'),
      ]);
      for (const body of [tricky, Buffer.from('x'), Buffer.alloc(70_000, 0x62)]) {
        const p = await run(['/bin/cat'], true);
        assert.ok(p.pid !== undefined);
        p.stdin!.end(body);
        const exited = new Promise((resolve) => p.once('exit', (code) => resolve(code)));
        assert.deepEqual(await collect(p.stdout), body);
        assert.equal(await exited, 0);
      }
    });

    test('stdout backpressure: output nobody reads stops the program; little piles up here', async () => {
      const p = await run(['/bin/sh', '-c', 'head -c 20000000 /dev/zero'], false);
      const exited = new Promise((resolve) => p.once('exit', (code) => resolve(code)));
      await sleep(500);
      assert.equal(p.exitCode, null, 'it finished though nobody read its output');
      const held = p.stdout!.readableLength;
      assert.ok(held <= 512 * 1024, `${held} bytes piled up`);
      let total = 0;
      for await (const c of p.stdout!) total += (c as Buffer).length;
      assert.equal(total, 20_000_000);
      assert.equal(await exited, 0);
    });

    test('stdin backpressure: a body is held back while the program does not read it', async () => {
      const p = await run(['/bin/sh', '-c', 'sleep 1; exec cat'], true);
      const body = Buffer.alloc(8 * 1024 * 1024);
      for (let i = 0; i < body.length; i += 4096) body.writeUInt32BE(i, i);
      const out = collect(p.stdout);
      // One write bigger than the window (and than any frame): not drained while it sleeps.
      assert.equal(p.stdin!.write(body), false);
      await sleep(300);
      assert.equal(p.stdin!.writableNeedDrain, true);
      p.stdin!.end();
      assert.ok((await out).equals(body), 'the body came back changed');
    });

    test('the stdin of a program that exited fails with EPIPE, as a pipe would', async () => {
      const p = await run(['/bin/true'], true);
      const failed = new Promise((resolve) =>
        p.stdin!.once('error', (e: NodeJS.ErrnoException) => resolve(e.code)),
      );
      await new Promise((resolve) => p.once('exit', resolve));
      // More than the window: without the EPIPE this write would wait for ever.
      p.stdin!.write(Buffer.alloc(1024 * 1024));
      assert.equal(await failed, 'EPIPE');
    });

    test('an environment too big for one frame: E2BIG, and the fork server carries on', async () => {
      const s = await server();
      const p = await s.spawn({
        executable: '/bin/true',
        args: [],
        cwd: '/',
        env: { BIG: 'x'.repeat(5 * 1024 * 1024) },
        stdin: false,
      });
      const e = await new Promise<NodeJS.ErrnoException>((resolve) => p.once('error', resolve));
      assert.equal(e.code, 'E2BIG');
      const q = await run(['/bin/sh', '-c', 'echo alive'], false);
      assert.equal((await collect(q.stdout)).toString(), 'alive\n');
      assert.equal(currentForkServer(), s);
    });

    test('10 MB in and 10 MB out, both with backpressure', async () => {
      const body = Buffer.alloc(10 * 1024 * 1024);
      for (let i = 0; i < body.length; i += 4096) body.writeUInt32BE(i, i);
      const parts: Buffer[] = [];
      for (let at = 0; at < body.length; at += 256 * 1024)
        parts.push(body.subarray(at, at + 262144));
      const r = await serveCgi(script('echo.pl'), {
        body: parts,
        writer: new RecordingWriter({ writeDelayMs: 0 }),
      });
      assert.equal(r.status, 200, r.log.join('\n'));
      const nl = r.body.indexOf(10);
      assert.equal(r.body.subarray(0, nl).toString(), `method=POST length=${body.length}`);
      assert.ok(r.body.subarray(nl + 1).equals(body), 'the echoed body differs');
    });

    test('concurrent requests each get their own program and output', async () => {
      const n = 24;
      const replies = await Promise.all(
        Array.from({ length: n }, (_, i) =>
          serveCgi(script(i % 2 ? 'echo.pl' : 'dump.sh'), {
            body: i % 2 ? `body of request ${i}` : undefined,
            query: i % 2 ? '' : `q${i}`,
          }),
        ),
      );
      replies.forEach((r, i) => {
        assert.equal(r.status, 200, r.log.join('\n'));
        if (i % 2) assert.ok(r.text.endsWith(`\nbody of request ${i}`), r.text);
        else assert.match(r.text, new RegExp(`^arg1=q${i}$`, 'm'));
      });
    });

    test('exec errors are what node reports: ENOENT (interpreter), EACCES; no #!: sh', async () => {
      const dir = tempDir('exec');
      try {
        const noShebang = join(dir.dir, 'no-shebang.sh');
        writeFileSync(noShebang, "printf 'Content-Type: text/plain\\n\\nran\\n'\n", {
          mode: 0o755,
        });
        const noInterp = join(dir.dir, 'no-interp.sh');
        writeFileSync(noInterp, '#!/nonexistent/interpreter\n', { mode: 0o755 });
        const notExec = join(dir.dir, 'not-exec.sh');
        writeFileSync(notExec, '#!/bin/sh\n', { mode: 0o644 });
        const cases: [string, number, string][] = [
          [noInterp, 404, 'ENOENT'],
          [notExec, 403, 'EACCES'],
        ];
        for (const spawnMode of ['helper', 'direct'] as const) {
          // execvp(3) runs a file of no known format with /bin/sh, under libuv and perl alike.
          const r = await serveCgi(fromCgi({ script: noShebang }, { spawn: spawnMode }));
          assert.deepEqual([r.status, r.text], [200, 'ran\n'], spawnMode);
          for (const [file, status, code] of cases) {
            const r = await serveCgi(fromCgi({ script: file }, { spawn: spawnMode }));
            assert.equal(r.status, status, `${spawnMode} ${file}: ${r.log.join('\n')}`);
            assert.ok(
              r.log.some((l) => l.includes(`could not be started (${code})`)),
              `${spawnMode}: ${r.log.join('\n')}`,
            );
          }
        }
      } finally {
        dir.remove();
      }
    });
  });

  describe(`fork server (${kind}): lifecycle`, { timeout: 120_000, skip }, () => {
    useKind(kind);
    test('the Node side SIGKILLed: the fork server kills the groups and exits', async () => {
      const child = spawn(process.execPath, ['--import', 'tsx', legacy('bridge-killed.ts')], {
        env: { PATH: process.env.PATH, MARKER_DIR: markers.dir, CGI_BRIDGE_FORK_SERVER: kind },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
      const exited = new Promise((resolve) => child.once('exit', resolve));
      try {
        assert.ok(await waitFor(() => out.includes('\n'), 20_000), 'the fixture never got ready');
        const { helper } = JSON.parse(out) as { helper: number };
        const pids = await pidsOf('hang-bridge-killed.pids');
        assert.ok(!allGone(pids), 'the program ended too early');
        child.kill('SIGKILL');
        await exited;
        assert.ok(await waitFor(() => allGone([helper]), 10_000), `fork server ${helper} lives`);
        assert.ok(await waitFor(() => allGone(pids), 10_000), `still alive: ${pids.join(' ')}`);
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
    });

    test('the fork server killed mid-request: those requests fail, the next one works', async () => {
      const before = await server();
      const beforeHeaders = serveCgi(script('hang.sh'), { query: 'fs-died-quiet' });
      const writer = new RecordingWriter();
      const afterHeaders = serveCgi(script('hang.sh'), { query: 'headers-fs-died', writer });
      const quiet = await pidsOf('hang-fs-died-quiet.pids');
      const started = await pidsOf('hang-headers-fs-died.pids');
      assert.ok(await waitFor(() => writer.body.length > 0), 'no body arrived');
      process.kill(before.pid!, 'SIGKILL');
      const [a, b] = await Promise.all([beforeHeaders, afterHeaders]);
      assert.equal(a.status, 502, a.log.join('\n'));
      assert.deepEqual([b.status, b.kinds.at(-1)], [200, 'abort']);
      assert.ok(await waitFor(() => allGone([...quiet, ...started])), 'programs survived');
      const next = await serveCgi(script('hello.sh'));
      assert.deepEqual([next.status, next.text], [200, 'hello from sh\n']);
      const now = currentForkServer();
      assert.ok(now !== undefined && now !== before && now.pid !== before.pid);
    });

    test('programs are reaped by the fork server: no zombies', async () => {
      const replies = await Promise.all(
        Array.from({ length: 8 }, () => serveCgi(script('background.sh'))),
      );
      for (const r of replies) assert.equal(r.text, 'done\n');
      const pids = await pidsOf('background.pids');
      assert.ok(await waitFor(() => allGone(pids)), `still alive: ${pids.join(' ')}`);
      assert.ok(await waitFor(() => readProcStat(pids[0]!) === undefined), 'a zombie is left');
    });
  });
}

describe('fork server: without one', { timeout: 120_000 }, () => {
  // CGI_BRIDGE_FORK_SERVER=perl: the C one (when built) would not need perl.
  const noPerl = { CGI_BRIDGE_PERL: '/nonexistent/perl', CGI_BRIDGE_FORK_SERVER: 'perl' };
  test('auto without perl (in a large process): one log line, then programs are started directly', () => {
    const r = runSpawnMode(noPerl, 'auto', 'big');
    assert.deepEqual(r.out, { statuses: [200, 200], helper: false, big: true });
    const lines = r.stderr.split('\n').filter((l) => l.includes('fork server could not start'));
    assert.equal(lines.length, 1, r.stderr);
  });

  test('helper without perl: 502, and nothing is started behind its back', () => {
    const r = runSpawnMode(noPerl, 'helper');
    assert.deepEqual(r.out, { statuses: [502, 502], helper: false, big: false });
    assert.match(r.stderr, /CGI_ERR_FORK_SERVER|fork server could not start/);
  });
});

describe('--cgi-spawn', () => {
  test('reaches the target spec, survives the JSON a worker gets, needs a CGI target', () => {
    const spec = cgiTargetSpec({ cgiBin: markers.dir, cgiSpawn: 'direct' }, 1000);
    assert.equal(spec?.spawn, 'direct');
    assert.equal(parseCgiTargetSpec(JSON.parse(JSON.stringify(spec))).spawn, 'direct');
    assert.throws(() => parseCgiTargetSpec({ ...spec, spawn: 'fork' }), /not a CGI target spec/);
    assert.throws(
      () => checkTargetChoice({ target: 'app.js', cgiSpawn: 'helper' }, false),
      /--cgi-spawn needs/,
    );
  });

  test('fromCgi refuses a bad CGI_BRIDGE_SPAWN', () => {
    refusesEnv('CGI_BRIDGE_SPAWN', 'fork');
  });
});
