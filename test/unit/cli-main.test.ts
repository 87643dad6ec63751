// The command line in-process (main with captured output): help, version, and the one failure
// handler: one `cgi-bridge: …` line and the exit code for each kind of mistake.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { EXIT, exitCodeFor, failureMessage, main } from '../../src/cli/main.js';
import { BridgeError } from '../../src/errors.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(...argv: string[]): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) });
  return { code, stdout, stderr };
}

// oneLine asserts the failure output is exactly one line starting with `cgi-bridge: `.
function oneLine(r: Run, pattern: RegExp): void {
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /^cgi-bridge: [^\n]*\n$/, `one line, got ${JSON.stringify(r.stderr)}`);
  assert.match(r.stderr, pattern);
}

const dir = mkdtempSync(join(tmpdir(), 'cgi-bridge-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('cgi-bridge --help / --version', () => {
  test('--help lists the commands', async () => {
    const r = await run('--help');
    assert.equal(r.code, EXIT.OK);
    assert.match(r.stdout, /cgi-bridge serve \[target\]/);
    assert.match(r.stdout, /cgi-bridge cgi <target>/);
    assert.equal(r.stderr, '');
  });
  test('serve --help shows the option groups', async () => {
    const r = await run('serve', '--help');
    assert.equal(r.code, EXIT.OK);
    for (const group of ['Application', 'Listening', 'Limits', 'Configuration']) {
      assert.match(r.stdout, new RegExp(`\\n${group}\\n +--`), `group ${group}`);
    }
    assert.match(r.stdout, /--listen [^]*?\[default: "127\.0\.0\.1:8080"\]/);
    assert.match(r.stdout, /--max-body/);
    assert.match(r.stdout, /--graceful-timeout/);
  });
  test('--version prints the package version', async () => {
    const r = await run('--version');
    assert.equal(r.code, EXIT.OK);
    assert.match(r.stdout, /^\d+\.\d+\.\d+\n$/);
  });
});

describe('cgi-bridge failures: one line, exit 2 for usage', () => {
  const cases: [string, string[], RegExp][] = [
    ['no command', [], /no command given \(see cgi-bridge --help\)/],
    ['an unknown command', ['frobnicate'], /Unknown argument: frobnicate/],
    ['serve without TARGET', ['serve'], /no TARGET: give TARGET \(app\.js\[:export\]\)/],
    ['an unknown option', ['serve', 'app.js', '--nope'], /Unknown argument: nope/],
    [
      'a bad --listen',
      ['serve', 'app.js', '--listen', 'localhost'],
      /bad listen address "localhost": no port/,
    ],
    ['a port out of range', ['serve', 'app.js', '--listen', ':70000'], /out of range/],
    ['a bad --socket-mode', ['serve', 'app.js', '--socket-mode', '999'], /bad socket mode "999"/],
    [
      'a bad --max-body',
      ['serve', 'app.js', '--max-body', '10Q'],
      /--max-body "10Q" is not a size/,
    ],
    [
      'a bad --graceful-timeout',
      ['serve', 'app.js', '--graceful-timeout', 'soon'],
      /--graceful-timeout "soon"/,
    ],
    [
      '--headers-timeout 0',
      ['serve', 'app.js', '--headers-timeout', '0'],
      /--headers-timeout must be above 0/,
    ],
    ['a bad --env', ['serve', 'app.js', '--env', 'NOPE'], /--env "NOPE" is not NAME=VALUE/],
    [
      'a YAML config',
      ['serve', 'app.js', '--config', join(dir, 'x.yaml')],
      /YAML is not supported/,
    ],
    ['a missing --chdir', ['serve', 'app.js', '--chdir', join(dir, 'nope')], /--chdir .*ENOENT/],
    ['a missing TARGET module', ['serve', join(dir, 'missing.js')], /cannot load .*missing\.js/],
    [
      'a TARGET without the export',
      ['cgi', `${join(dir, 'app.mjs')}:nope`],
      /has no export "nope"/,
    ],
  ];
  writeFileSync(join(dir, 'app.mjs'), 'export default () => [];\n');
  for (const [name, argv, pattern] of cases) {
    test(name, async () => {
      const r = await run(...argv);
      oneLine(r, pattern);
      assert.equal(r.code, EXIT.USAGE);
    });
  }

  test('an unknown key in a config file is refused like an unknown flag', async () => {
    const p = join(dir, 'bad-key.json');
    writeFileSync(p, '{"listn": ":8000"}');
    const r = await run('serve', 'app.js', '--config', p);
    oneLine(r, /Unknown argument: listn/);
    assert.equal(r.code, EXIT.USAGE);
  });
});

describe('the failure handler', () => {
  test('a BridgeError without CLI_ERR_ is exit 1, its message without a stack', () => {
    const e = new BridgeError('SERVER_ERR_LISTEN', 'cgi-bridge: cannot listen on unix:/x: EACCES');
    assert.equal(exitCodeFor(e), EXIT.FAILED);
    assert.equal(failureMessage(e, true), 'cgi-bridge: cannot listen on unix:/x: EACCES\n');
  });
  test('a message from another layer gets the cgi-bridge prefix', () => {
    const e = new BridgeError('CGI_ERR_BAD_ENVIRONMENT', 'cgi: REQUEST_METHOD is not set');
    assert.equal(failureMessage(e, false), 'cgi-bridge: cgi: REQUEST_METHOD is not set\n');
  });
  test('an unexpected error: its first line; the stack only with --debug', () => {
    const e = new TypeError('boom\nsecond line');
    assert.equal(exitCodeFor(e), EXIT.FAILED);
    assert.equal(failureMessage(e, false), 'cgi-bridge: boom\n');
    assert.match(failureMessage(e, true), /^cgi-bridge: boom\nTypeError: boom\n[^]*at /);
  });
});
