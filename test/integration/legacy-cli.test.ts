// `cgi-bridge serve --cgi-bin DIR` / `--cgi-script FILE` as a real process (the built CLI):
// shell, Perl and a C program compiled here, the mount point, the environment allow-list,
// --timeout, the security refusals over HTTP (each with a canary that proves the program never
// ran), and the usage errors. The path-resolution rules themselves are tested at library level
// in test/unit/cgi-host-dir.test.ts and script-path.test.ts; this is the CLI-level subset.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import { symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { httpRequest } from '../harness/http-client.js';
import { identify, type ProcessIdentity } from '../harness/process-utils.js';
import {
  FIXTURES,
  canaries,
  compileC,
  rawGet,
  runCli,
  startCli,
  waitGone,
  type CliProcess,
} from './legacy-helpers.js';

const base = mkdtempSync(join(tmpdir(), 'cgi-bridge-legacy-cli-'));
after(() => rmSync(base, { recursive: true, force: true }));
const cgi = join(base, 'cgi');
const outside = join(base, 'outside');
const markers = join(base, 'markers');
let haveC = false;

before(async () => {
  cpSync(join(FIXTURES, 'legacy-cli'), cgi, { recursive: true });
  mkdirSync(outside);
  mkdirSync(markers);
  mkdirSync(join(cgi, 'dir.sh'));
  copyFileSync(join(cgi, 'canary.sh'), join(outside, 'canary.sh'));
  chmodSync(join(outside, 'canary.sh'), 0o755);
  copyFileSync(join(cgi, 'canary.sh'), join(cgi, 'noexec.sh'));
  chmodSync(join(cgi, 'noexec.sh'), 0o644);
  copyFileSync(join(cgi, 'canary.sh'), join(cgi, '.hidden.sh'));
  chmodSync(join(cgi, '.hidden.sh'), 0o755);
  symlinkSync(join(outside, 'canary.sh'), join(cgi, 'link-out.sh'));
  symlinkSync(outside, join(cgi, 'linkdir'));
  haveC = await compileC(join(FIXTURES, 'legacy-c/hello.c'), join(cgi, 'hello-c'));
});

const TIMEOUT = { timeout: 120_000 };

describe('cgi-bridge serve --cgi-bin DIR', TIMEOUT, () => {
  let server: CliProcess;
  before(async () => {
    server = await startCli(null, [
      'serve',
      '--cgi-bin',
      cgi,
      '--listen',
      '127.0.0.1:0',
      '--env',
      `CANARY_DIR=${markers}`,
    ]);
  });
  after(async () => {
    assert.equal(await server.stop(), 0, server.lines.join('\n'));
  });

  test('a shell program: SCRIPT_NAME, PATH_INFO and the query as Apache splits them', async () => {
    const r = await httpRequest(`${server.url}/cgi-bin/hello.sh/a%20b/c?x=1&y=%20`);
    assert.equal(r.status, 200, r.text());
    assert.equal(r.headers['x-program'], 'sh');
    assert.equal(
      r.text(),
      'hello from sh: SCRIPT_NAME=/cgi-bin/hello.sh PATH_INFO=/a b/c QUERY_STRING=x=1&y=%20\n',
    );
  });

  test('a program in a subdirectory runs in its own directory', async () => {
    const r = await httpRequest(`${server.url}/cgi-bin/sub/deep.sh/more`);
    assert.equal(r.text(), 'deep: /cgi-bin/sub/deep.sh /more sub\n');
  });

  test('Perl: a 1 MiB POST body goes in whole and comes back byte for byte', async () => {
    const body = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7 + (i >> 12)) & 0xff;
    const r = await httpRequest(`${server.url}/cgi-bin/echo.pl`, {
      method: 'POST',
      body,
      timeoutMs: 60_000,
    });
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-length'], String(body.length));
    assert.equal(r.headers['x-md5'], createHash('md5').update(body).digest('hex'));
    assert.ok(r.body.equals(body), 'the body came back changed');
  });

  test('C (compiled by the test): Status with its reason, search words as argv', async (t) => {
    if (!haveC) {
      t.skip('gcc is not installed');
      return;
    }
    const r = await httpRequest(`${server.url}/cgi-bin/hello-c?two+words%21`);
    assert.deepEqual([r.status, r.statusMessage], [200, 'OK From C']);
    assert.equal(r.text(), 'hello from C: query=two+words%21 body=0 argc=3 [two] [words!]\n');
    const post = await httpRequest(`${server.url}/cgi-bin/hello-c?q=1`, {
      method: 'POST',
      body: 'x'.repeat(10_000),
    });
    assert.equal(post.text(), 'hello from C: query=q=1 body=10000 argc=1\n');
  });

  test('a path outside the mount point is a 404 and runs nothing', async () => {
    const r = await httpRequest(`${server.url}/hello.sh`);
    assert.equal(r.status, 404);
  });

  describe('refusals over HTTP, each with a canary that must not run', () => {
    // [name, raw request path, status]
    const cases: [string, string, number][] = [
      ['`..` out of the directory', '/cgi-bin/../outside/canary.sh', 404],
      ['`..` below the mount point', '/cgi-bin/sub/../../outside/canary.sh', 404],
      ['`%2e%2e` out of the directory', '/cgi-bin/%2e%2e/outside/canary.sh', 404],
      ['`..%2f` out of the directory', '/cgi-bin/..%2foutside/canary.sh', 404],
      ['`%2f` inside a segment that walks out', '/cgi-bin/linkdir%2fcanary.sh', 403],
      ['`%00` after a canary name', '/cgi-bin/canary.sh%00.txt', 400],
      ['a symlink to a program outside', '/cgi-bin/link-out.sh', 403],
      ['a symlink to a directory outside', '/cgi-bin/linkdir/canary.sh', 403],
      ['the directory itself', '/cgi-bin/', 403],
      ['a directory named like a program', '/cgi-bin/dir.sh', 403],
      ['a file that is not executable', '/cgi-bin/noexec.sh', 403],
      ['a hidden program', '/cgi-bin/.hidden.sh', 404],
      ['a hidden program, encoded dot', '/cgi-bin/%2ehidden.sh', 404],
    ];
    for (const [name, path, status] of cases) {
      test(`${name} → ${status}`, async () => {
        const r = await rawGet(server.url, path);
        assert.equal(r.status, status, `${path}: ${r.body}`);
        assert.doesNotMatch(r.body, /canary ran/);
        assert.deepEqual(canaries(markers), [], 'a canary ran');
      });
    }

    test('the canary itself works (it runs where it may)', async () => {
      const r = await rawGet(server.url, '/cgi-bin/canary.sh');
      assert.equal(r.body, 'canary ran\n');
      assert.deepEqual(canaries(markers), ['canary-canary.sh-ran']);
      rmSync(join(markers, 'canary-canary.sh-ran'));
    });
  });
});

describe('cgi-bridge serve: mount point, --cgi-script, environment, --timeout', TIMEOUT, () => {
  test('--cgi-prefix moves the directory; /cgi-bin/ is then nothing', async (t) => {
    const s = await startCli(t, [
      'serve',
      '--cgi-bin',
      cgi,
      '--cgi-prefix',
      '/legacy/',
      '--listen',
      '127.0.0.1:0',
    ]);
    assert.match(s.lines.join('\n'), /serving --cgi-bin \S+ at \/legacy\/ on http/);
    const r = await httpRequest(`${s.url}/legacy/hello.sh/p`);
    assert.equal(
      r.text(),
      'hello from sh: SCRIPT_NAME=/legacy/hello.sh PATH_INFO=/p QUERY_STRING=\n',
    );
    assert.equal((await httpRequest(`${s.url}/cgi-bin/hello.sh`)).status, 404);
    assert.equal(await s.stop(), 0);
  });

  test('--cgi-script: one program for every path; SCRIPT_NAME is the mount point', async (t) => {
    const s = await startCli(t, [
      'serve',
      '--cgi-script',
      join(cgi, 'hello.sh'),
      '--listen',
      '127.0.0.1:0',
    ]);
    const r = await httpRequest(`${s.url}/any/path?q`);
    assert.equal(r.text(), 'hello from sh: SCRIPT_NAME= PATH_INFO=/any/path QUERY_STRING=q\n');
    const p = await startCli(t, [
      'serve',
      '--cgi-script',
      join(cgi, 'hello.sh'),
      '--cgi-prefix',
      '/app',
      '--listen',
      '127.0.0.1:0',
    ]);
    const q = await httpRequest(`${p.url}/app/x`);
    assert.equal(q.text(), 'hello from sh: SCRIPT_NAME=/app PATH_INFO=/x QUERY_STRING=\n');
    assert.equal((await httpRequest(`${p.url}/other`)).status, 404);
  });

  test("a program gets PATH, --env and --inherit-env, never the bridge's own environment", async (t) => {
    const s = await startCli(
      t,
      [
        'serve',
        '--cgi-bin',
        cgi,
        '--listen',
        '127.0.0.1:0',
        '--inherit-env',
        'KEEP_ME',
        '--env',
        'ADDED=by --env',
      ],
      { env: { PATH: '/usr/bin:/bin', SECRET_TOKEN: 'hunter2', KEEP_ME: 'kept', HOME: '/root' } },
    );
    const r = await httpRequest(`${s.url}/cgi-bin/env.sh`, {
      headers: { proxy: 'http://evil.example/', 'x-custom': 'c' },
    });
    const env = new Map(
      r
        .text()
        .trim()
        .split('\n')
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    assert.equal(env.get('PATH'), '/usr/bin:/bin');
    assert.equal(env.get('KEEP_ME'), 'kept');
    assert.equal(env.get('ADDED'), 'by --env');
    assert.equal(env.get('HTTP_X_CUSTOM'), 'c');
    assert.equal(env.get('GATEWAY_INTERFACE'), 'CGI/1.1');
    for (const hidden of ['SECRET_TOKEN', 'HOME', 'HTTP_PROXY']) {
      assert.equal(env.get(hidden), undefined, `${hidden} reached the program`);
    }
  });

  test('--timeout: 504, and the program and its background child are gone', async (t) => {
    const s = await startCli(t, [
      'serve',
      '--cgi-bin',
      cgi,
      '--listen',
      '127.0.0.1:0',
      '--timeout',
      '1',
      '--env',
      `CANARY_DIR=${markers}`,
    ]);
    const t0 = Date.now();
    const r = await httpRequest(`${s.url}/cgi-bin/slow.sh`, { timeoutMs: 30_000 });
    const ms = Date.now() - t0;
    assert.equal(r.status, 504);
    assert.ok(ms >= 900 && ms < 10_000, `answered after ${ms} ms`);
    const pids = readFileSync(join(markers, 'slow.pids'), 'utf8').trim().split(' ').map(Number);
    rmSync(join(markers, 'slow.pids'));
    const ids = pids.map(identify).filter((id): id is ProcessIdentity => id !== undefined);
    assert.deepEqual(
      await waitGone(ids, 10_000),
      [],
      'a process of the program outlived --timeout',
    );
    assert.ok(
      s.lines.some((l) => /slow\.sh/.test(l) && /1000 ms/.test(l)),
      s.lines.join('\n'),
    );
  });
});

describe('cgi-bridge serve|fastcgi: usage errors are one line and exit 2', TIMEOUT, () => {
  const cases: [string, () => string[], RegExp][] = [
    [
      'no TARGET at all',
      () => ['serve'],
      /no TARGET: give TARGET \(app\.js\[:export\]\), --cgi-bin DIR/,
    ],
    [
      'TARGET and --cgi-bin',
      () => ['serve', 'app.js', '--cgi-bin', cgi],
      /TARGET and --cgi-bin exclude each other/,
    ],
    [
      '--cgi-bin and --cgi-script',
      () => ['fastcgi', '--cgi-bin', cgi, '--cgi-script', join(cgi, 'hello.sh')],
      /--cgi-bin and --cgi-script exclude each other/,
    ],
    ['--cgi-root with serve', () => ['serve', '--cgi-root', cgi], /Unknown arguments?: cgi-root/],
    [
      '--cgi-prefix with an app',
      () => ['serve', 'app.js', '--cgi-prefix', '/x'],
      /--cgi-prefix needs --cgi-bin or --cgi-script/,
    ],
    [
      'a relative --cgi-prefix',
      () => ['serve', '--cgi-bin', cgi, '--cgi-prefix', 'x'],
      /--cgi-prefix "x" is not an absolute URL path/,
    ],
    [
      'a bad --inherit-env',
      () => ['serve', '--cgi-bin', cgi, '--inherit-env', 'A=B'],
      /--inherit-env "A=B"/,
    ],
    [
      'a missing directory',
      () => ['serve', '--cgi-bin', join(base, 'nope')],
      /--cgi-bin \S+nope: ENOENT/,
    ],
    [
      'a file as --cgi-bin',
      () => ['serve', '--cgi-bin', join(cgi, 'hello.sh')],
      /is not a directory/,
    ],
    [
      'a program that is not executable',
      () => ['fastcgi', '--cgi-script', join(cgi, 'noexec.sh'), '--listen', '127.0.0.1:0'],
      /noexec\.sh is not executable/,
    ],
  ];
  for (const [name, argv, pattern] of cases) {
    test(name, async () => {
      const r = await runCli(argv());
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /^cgi-bridge: [^\n]*\n$/, `one line, got ${JSON.stringify(r.stderr)}`);
      assert.match(r.stderr, pattern);
      assert.equal(r.code, 2);
    });
  }
});
