// `cgi-bridge fastcgi` as the fcgiwrap replacement behind a real nginx: the harness's nginx
// config (the one it uses for fcgiwrap: fastcgi_split_path_info, SCRIPT_FILENAME =
// root/NAME, PATH_INFO) in front of fcgiwrap x4 under spawn-fcgi at /cgi-bin/, cgi-bridge
// `--cgi-root DIR` (fcgiwrap's mode: nginx's SCRIPT_FILENAME) at /root/ and cgi-bridge
// `--cgi-bin DIR` (the path walked below DIR) at /bin/, both with 2 pre-forked workers. The
// same programs and requests go to all three.
//
// cgi-bridge runs as the test's user, started by the test (as a service manager would start
// it); nginx's and fcgiwrap's workers run as www-data when the test runs as root. The unix
// sockets get mode 0666 so that nginx's workers may connect.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  findTool,
  httpRequest,
  makeWorld,
  startNginx,
  type RunningServer,
  type World,
} from '../harness/servers.js';
import { identify, type ProcessIdentity } from '../harness/process-utils.js';
import { FIXTURES, canaries, startCli, waitGone, type CliProcess } from './legacy-helpers.js';

let world: World | undefined;
let nginx: RunningServer | undefined;
let byRoot: CliProcess | undefined;
let byBin: CliProcess | undefined;
let markers = '';
let skip: string | undefined;

before(async () => {
  const missing = ['nginx', 'fcgiwrap', 'spawn-fcgi'].filter((n) => findTool(n) === undefined);
  if (missing.length > 0) {
    skip = `${missing.join(', ')} not installed (apt-get install nginx fcgiwrap spawn-fcgi)`;
    if (process.env.CI === 'true') throw new Error(skip);
    return;
  }
  world = await makeWorld();
  const cgiDir = await world.copyFixtures(join(FIXTURES, 'legacy-cli'));
  const outside = join(world.dir, 'fixtures', 'outside');
  mkdirSync(outside);
  chmodSync(outside, 0o755);
  copyFileSync(join(cgiDir, 'canary.sh'), join(outside, 'canary.sh'));
  chmodSync(join(outside, 'canary.sh'), 0o755);
  for (const [name, mode] of [
    ['noexec.sh', 0o644],
    ['.hidden.sh', 0o755],
  ] as const) {
    copyFileSync(join(cgiDir, 'canary.sh'), join(cgiDir, name));
    chmodSync(join(cgiDir, name), mode);
  }
  symlinkSync(join(outside, 'canary.sh'), join(cgiDir, 'link-out.sh'));
  mkdirSync(join(cgiDir, 'dir.sh'));
  chmodSync(join(cgiDir, 'dir.sh'), 0o755);
  markers = join(world.dir, 'markers');
  mkdirSync(markers);
  chmodSync(markers, 0o1777); // fcgiwrap's programs run as www-data
  const common = ['--socket-mode', '666', '--processes', '2', '--env', `CANARY_DIR=${markers}`];
  const rootSock = world.socketPath('bridge-root');
  const binSock = world.socketPath('bridge-bin');
  byRoot = await startCli(null, [
    'fastcgi',
    '--cgi-root',
    cgiDir,
    '--listen',
    `unix:${rootSock}`,
    '--timeout',
    '2',
    ...common,
  ]);
  byBin = await startCli(null, [
    'fastcgi',
    '--cgi-bin',
    cgiDir,
    '--cgi-prefix',
    '/bin',
    '--listen',
    `unix:${binSock}`,
    ...common,
  ]);
  nginx = await startNginx(world, {
    cgiDir,
    cgiWorkers: 4,
    env: { CANARY_DIR: markers },
    fcgi: [
      { prefix: '/root', target: `unix:${rootSock}` as `unix:/${string}` },
      { prefix: '/bin', target: `unix:${binSock}` as `unix:/${string}` },
    ],
    fcgiRoot: cgiDir,
    extraConfig: 'client_max_body_size 16m;',
  });
});

after(async () => {
  await byRoot?.stop();
  await byBin?.stop();
  await world?.cleanup();
});

const PREFIXES = ['/cgi-bin', '/root', '/bin'] as const;

describe('nginx + cgi-bridge fastcgi, next to nginx + fcgiwrap', { timeout: 180_000 }, () => {
  test('the same answers as fcgiwrap: GET with PATH_INFO and query', async (t) => {
    if (skip !== undefined) return t.skip(skip);
    for (const prefix of PREFIXES) {
      const r = await httpRequest(`${nginx!.url}${prefix}/hello.sh/a%20b/c?x=1&y=%20`);
      assert.equal(r.status, 200, `${prefix}: ${r.text()}`);
      assert.equal(r.headers['x-program'], 'sh');
      assert.equal(
        r.text(),
        `hello from sh: SCRIPT_NAME=${prefix}/hello.sh PATH_INFO=/a b/c QUERY_STRING=x=1&y=%20\n`,
        prefix,
      );
    }
  });

  test('the same answers as fcgiwrap: a 1 MiB POST through Perl, byte for byte', async (t) => {
    if (skip !== undefined) return t.skip(skip);
    const body = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < body.length; i++) body[i] = (i * 13 + (i >> 9)) & 0xff;
    const md5 = createHash('md5').update(body).digest('hex');
    for (const prefix of PREFIXES) {
      const r = await httpRequest(`${nginx!.url}${prefix}/echo.pl`, {
        method: 'POST',
        body,
        timeoutMs: 60_000,
      });
      assert.equal(r.status, 200, prefix);
      assert.deepEqual([r.headers['x-length'], r.headers['x-md5']], [String(body.length), md5]);
      assert.ok(r.body.equals(body), `${prefix}: the body came back changed`);
    }
  });

  test('--cgi-bin walks the path below its directory; SCRIPT_FILENAME modes cannot', async (t) => {
    if (skip !== undefined) return t.skip(skip);
    const r = await httpRequest(`${nginx!.url}/bin/sub/deep.sh/more`);
    assert.equal(r.text(), 'deep: /bin/sub/deep.sh /more sub\n');
    // nginx's split names the directory `sub` as the script: both SCRIPT_FILENAME modes refuse
    // it (the harness's nginx answers 404 itself before fcgiwrap for anything not a file).
    const root = await httpRequest(`${nginx!.url}/root/sub/deep.sh/more`);
    assert.equal(root.status, 403);
    const wrap = await httpRequest(`${nginx!.url}/cgi-bin/sub/deep.sh/more`);
    assert.equal(wrap.status, 404);
  });

  // [path below the prefix, fcgiwrap's status, cgi-bridge's status (both modes), fcgiwrap runs it].
  // At /cgi-bin/ the harness's nginx answers 404 itself for anything that is not a file.
  const refusals: [string, number, number, boolean][] = [
    ['/link-out.sh', 200, 403, true], // fcgiwrap follows a symlink out of its directory
    ['/noexec.sh', 403, 403, false],
    ['/.hidden.sh', 200, 404, true], // fcgiwrap runs hidden files
    ['/dir.sh', 404, 403, false],
    ['/missing.sh', 404, 404, false],
  ];
  for (const [path, wrapStatus, bridgeStatus, wrapRuns] of refusals) {
    test(`${path}: fcgiwrap ${wrapStatus}, cgi-bridge ${bridgeStatus} and its canary never runs`, async (t) => {
      if (skip !== undefined) return t.skip(skip);
      for (const prefix of ['/root', '/bin']) {
        const r = await httpRequest(`${nginx!.url}${prefix}${path}`);
        assert.equal(r.status, bridgeStatus, `${prefix}${path}: ${r.text()}`);
        assert.deepEqual(canaries(markers), [], `${prefix}${path}: a canary ran`);
      }
      const w = await httpRequest(`${nginx!.url}/cgi-bin${path}`);
      assert.equal(w.status, wrapStatus, `fcgiwrap ${path}`);
      assert.equal(canaries(markers).length, wrapRuns ? 1 : 0, 'fcgiwrap');
      for (const m of canaries(markers)) rmSync(join(markers, m));
    });
  }

  test('--timeout: nginx gets a 504 and the program is gone (fcgiwrap has no timeout)', async (t) => {
    if (skip !== undefined) return t.skip(skip);
    const t0 = Date.now();
    const r = await httpRequest(`${nginx!.url}/root/slow.sh`, { timeoutMs: 30_000 });
    assert.equal(r.status, 504, r.text());
    assert.ok(Date.now() - t0 < 15_000);
    const pids = readFileSync(join(markers, 'slow.pids'), 'utf8').trim().split(' ').map(Number);
    rmSync(join(markers, 'slow.pids'));
    const ids = pids.map(identify).filter((id): id is ProcessIdentity => id !== undefined);
    assert.deepEqual(await waitGone(ids), [], 'a process of the program outlived --timeout');
  });

  test('two pre-forked workers each; a graceful stop leaves no process behind', async (t) => {
    if (skip !== undefined) return t.skip(skip);
    for (const p of [byRoot!, byBin!]) {
      await p.record();
      assert.ok(p.seen.size >= 3, `master + 2 workers, saw ${p.seen.size}`);
      assert.match(p.lines.join('\n'), /\(2 worker\(s\): \d+, \d+\)/);
    }
    await nginx!.stop();
    for (const p of [byRoot!, byBin!]) {
      assert.equal(await p.stop(), 0, p.lines.join('\n'));
      assert.deepEqual(await waitGone(p.seen.values(), 5000), []);
    }
  });
});
