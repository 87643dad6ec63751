// bin/cgi-bridge.js as a process (from dist/): the `cgi TARGET` fast path answers a CGI request
// without loading yargs or server code (a module-resolution hook records every module loaded),
// a bad TARGET is one line and exit 2, and the yargs path serves `cgi` with options.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = join(ROOT, 'bin/cgi-bridge.js');
const APP = join(ROOT, 'test/fixtures/apps/http-app.js');

const dir = mkdtempSync(join(tmpdir(), 'cgi-bridge-bin-'));
after(() => rmSync(dir, { recursive: true, force: true }));

// Records every module the process resolves into $LOAD_LOG.
const LOAD_LOG_HOOK = join(ROOT, 'test/fixtures/apps/http-load-log-register.mjs');

const CGI_ENV = {
  GATEWAY_INTERFACE: 'CGI/1.1',
  REQUEST_METHOD: 'GET',
  SCRIPT_NAME: '/cgi-bin/app',
  SERVER_NAME: 'localhost',
  SERVER_PORT: '80',
  SERVER_PROTOCOL: 'HTTP/1.1',
};

interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
  loaded: string[];
}

function runBin(args: string[], env: Record<string, string> = {}, name = 'run'): Result {
  const log = join(dir, `${name}.log`);
  writeFileSync(log, '');
  const r = spawnSync(process.execPath, ['--import', LOAD_LOG_HOOK, BIN, ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LOAD_LOG: log, ...env },
    encoding: 'utf8',
    timeout: 20_000,
  });
  const loaded = readFileSync(log, 'utf8').split('\n').filter(Boolean);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, loaded };
}

const yargsLoaded = (r: Result): boolean => r.loaded.some((u) => /\/node_modules\/yargs\//.test(u));

before(() => {
  assert.ok(
    existsSync(join(ROOT, 'dist/src/cli/main.js')),
    'dist/ is missing: run `npm run build` (or npx tsc -p tsconfig.build.json) first',
  );
});

describe('bin/cgi-bridge.js', () => {
  test('control: the hook sees yargs when the yargs CLI runs', () => {
    const r = runBin(['--version'], {}, 'control');
    assert.equal(r.status, 0, r.stderr);
    assert.ok(yargsLoaded(r), 'the hook records yargs, so its absence below means something');
    assert.ok(r.loaded.some((u) => u.endsWith('/dist/src/cli/main.js')));
  });

  test('cgi TARGET: answers the request and loads neither yargs nor the CLI or HTTP server', () => {
    const r = runBin(['cgi', APP], { ...CGI_ENV, PATH_INFO: '/array' }, 'fast');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^Status: 200 OK\r\n/);
    assert.match(r.stdout, /\r\n\r\nhello world\n$/);
    assert.ok(
      r.loaded.some((u) => u.endsWith('/dist/src/cgi/child.js')),
      'the CGI child ran',
    );
    assert.equal(yargsLoaded(r), false, 'yargs was loaded on the CGI path');
    const extra = r.loaded.filter((u) => /\/dist\/src\/(cli|http)\/|node:http$/.test(u));
    assert.deepEqual(extra, []);
  });

  test('cgi with a bad TARGET: one line on stderr, exit 2, nothing on stdout', () => {
    const r = runBin(['cgi', join(dir, 'missing.js')], CGI_ENV, 'bad');
    assert.equal(r.status, 2);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^cgi-bridge: cannot load [^\n]*missing\.js[^\n]*\n$/);
  });

  test('cgi with options goes through yargs: --env reaches the app', () => {
    const r = runBin(
      ['cgi', '--env', 'GREETING=from-env', APP],
      { ...CGI_ENV, PATH_INFO: '/process-env', QUERY_STRING: 'name=GREETING' },
      'options',
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /\r\n\r\nfrom-env\n$/);
  });

  test('a usage error: one line, exit 2', () => {
    const r = runBin(['serve', APP, '--listen', 'nowhere'], {}, 'usage');
    assert.equal(r.status, 2);
    assert.match(r.stderr, /^cgi-bridge: bad listen address "nowhere"[^\n]*\n$/);
  });
});
