// bundleApp (src/bundle/bundle.ts): one self-contained executable CGI script. Each test bundles a
// fixture app, copies the single output file alone into a fresh temp dir and runs it there as
// a web server would (a CGI environment, stdin, stdout).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { bundleApp, DEFAULT_NODE, shebangLine } from '../../src/bundle/bundle.js';
import { isBridgeError } from '../../src/errors.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/bundle-app/app.js', import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'bundle-test-'));
after(() => rmSync(root, { recursive: true, force: true }));

// project is the app's own directory: app.js plus a node_modules with the fake `tiny-dep`.
const project = join(root, 'project');
before(() => {
  mkdirSync(join(project, 'node_modules', 'tiny-dep'), { recursive: true });
  copyFileSync(FIXTURE, join(project, 'app.js'));
  writeFileSync(
    join(project, 'node_modules', 'tiny-dep', 'package.json'),
    JSON.stringify({ name: 'tiny-dep', version: '1.0.0', main: 'index.js' }),
  );
  writeFileSync(
    join(project, 'node_modules', 'tiny-dep', 'index.js'),
    "'use strict';\nexports.shout = (s) => `${String(s).toUpperCase()}!`;\n",
  );
});

let seq = 0;
// alone copies `script` into a new directory with nothing else in it (no node_modules).
function alone(script: string, packageJson?: object): string {
  const dir = join(root, `alone-${++seq}`);
  mkdirSync(dir);
  if (packageJson) writeFileSync(join(dir, 'package.json'), JSON.stringify(packageJson));
  const copy = join(dir, 'script');
  copyFileSync(script, copy);
  return copy;
}

function runScript(file: string, env: Record<string, string> = {}) {
  const r = spawnSync(file, [], {
    cwd: root,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      GATEWAY_INTERFACE: 'CGI/1.1',
      REQUEST_METHOD: 'GET',
      SCRIPT_NAME: '/cgi-bin/script',
      QUERY_STRING: 'q=1',
      SERVER_NAME: 'localhost',
      SERVER_PORT: '80',
      SERVER_PROTOCOL: 'HTTP/1.1',
      ...env,
    },
    encoding: 'utf8',
    timeout: 20_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function expectBridgeError(
  p: Promise<unknown>,
  code: string,
  pattern: RegExp,
): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isBridgeError(e), String(e));
    assert.equal(e.code, code);
    assert.match(e.message, pattern);
    return true;
  });
}

describe('bundleApp', { timeout: 60_000 }, () => {
  let script = '';
  before(async () => {
    script = join(root, 'out', 'app.cgi');
    const r = await bundleApp({ app: 'app.js', outFile: script, cwd: project });
    assert.equal(r.outFile, script);
    assert.equal(r.bytes, statSync(script).size);
    assert.deepEqual(r.warnings, []);
  });

  test('writes one executable file: shebang first, mode 0755', () => {
    const text = readFileSync(script, 'utf8');
    assert.equal(text.split('\n')[0], `#!${DEFAULT_NODE}`);
    assert.equal(statSync(script).mode & 0o777, 0o755);
  });

  test('inlines node_modules and this package, and leaves out yargs and server code', () => {
    const text = readFileSync(script, 'utf8');
    assert.ok(text.includes('toUpperCase'), 'tiny-dep is inlined');
    assert.ok(!/yargs/i.test(text), 'no yargs');
    assert.ok(!/esbuild/.test(text), 'no esbuild');
    for (const mod of ['http', 'https', 'net', 'child_process', 'cluster', 'dgram']) {
      assert.ok(!new RegExp(`require\\("(node:)?${mod}"\\)`).test(text), `no require of ${mod}`);
    }
    assert.ok(!/sourceMappingURL/.test(text), 'no source map');
  });

  test('runs alone in an empty directory: the response, and both hooks in the error log', () => {
    const r = runScript(alone(script));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      'Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 23\r\n\r\nHELLO! BridgeError q=1\n',
    );
    assert.equal(r.stderr, 'bundle-app startup\nbundle-app shutdown\n');
  });

  test('still runs when dropped under a "type": "module" package.json (parsed as ESM there)', (t) => {
    if (typeof (process as { getBuiltinModule?: unknown }).getBuiltinModule !== 'function') {
      t.skip('needs process.getBuiltinModule (Node >= 20.16)');
      return;
    }
    const r = runScript(alone(script, { type: 'module' }));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\r\n\r\nHELLO! BridgeError q=1\n$/);
  });

  test('a broken CGI environment: one line on stderr, nothing on stdout, non-zero exit', () => {
    const r = runScript(alone(script), { REQUEST_METHOD: '' });
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, 'cgi: REQUEST_METHOD is not set; this is not a CGI request\n');
  });

  test('APP:export picks a named export', async () => {
    const out = join(root, 'out', 'handler');
    await bundleApp({ app: 'app.js:handler', outFile: out, cwd: project });
    const r = runScript(alone(out), { REQUEST_METHOD: 'POST' });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\r\n\r\nhandler POST\n$/);
  });

  test('a CommonJS app (module.exports = fn) is its default export', async () => {
    const app = join(project, 'cjs-app.cjs');
    writeFileSync(
      app,
      "module.exports = (e, start) => { start('200 OK', [['Content-Type', 'text/plain']]); return ['cjs\\n']; };\n",
    );
    const out = join(root, 'out', 'cjs');
    await bundleApp({ app, outFile: out, minify: false });
    const r = runScript(alone(out));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\r\n\r\ncjs\n$/);
  });

  test('--node with an absolute path becomes the #! line', async () => {
    const out = join(root, 'out', 'pinned');
    await bundleApp({ app: 'app.js', outFile: out, cwd: project, node: process.execPath });
    assert.equal(readFileSync(out, 'utf8').split('\n')[0], `#!${process.execPath}`);
    const r = runScript(alone(out), { PATH: '/nonexistent' });
    assert.equal(r.code, 0, r.stderr);
  });

  test('a missing named export fails at bundle time', async () => {
    await expectBridgeError(
      bundleApp({ app: 'app.js:nope', outFile: join(root, 'out', 'x'), cwd: project }),
      'BUNDLE_ERR_BUILD_FAILED',
      /^cgi-bridge: bundle: cannot bundle app\.js:nope: .*"nope" will always be undefined/,
    );
  });

  test('an unresolvable import fails at bundle time, naming it on the first line', async () => {
    const app = join(project, 'broken.js');
    writeFileSync(app, "import 'no-such-package-here';\nexport default () => [];\n");
    await expectBridgeError(
      bundleApp({ app, outFile: join(root, 'out', 'y') }),
      'BUNDLE_ERR_BUILD_FAILED',
      /^cgi-bridge: bundle: cannot bundle .*broken\.js: .*broken\.js:1:7: Could not resolve "no-such-package-here"\n/,
    );
  });

  test('a module without an app: a 500 for the client, the reason in the error log', async () => {
    const app = join(project, 'no-app.js');
    writeFileSync(app, 'export const other = 1;\n');
    const out = join(root, 'out', 'no-app');
    await bundleApp({ app, outFile: out });
    const r = runScript(alone(out));
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^Status: 500 Internal Server Error\r\n/);
    assert.match(
      r.stderr,
      /Error: cgi: no-app\.js has no default export or "app" export that is a function, and does not call serve\(\)\n/,
    );
  });

  test('a module that calls serve(app) itself is served once, by its own call', async () => {
    const app = join(project, 'serves-itself.js');
    writeFileSync(
      app,
      `import { serve } from 'cgi-bridge';
export const startup = () => process.stderr.write('exported startup\\n');
export default function app(e, start) { start('200 OK', [['Content-Type', 'text/plain']]); return ['once\\n']; }
serve(app, { startup: () => process.stderr.write('serve startup\\n') });
`,
    );
    const out = join(root, 'out', 'serves-itself');
    await bundleApp({ app, outFile: out });
    const r = runScript(alone(out));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.match(/Status: /g)?.length, 1, r.stdout);
    assert.match(r.stdout, /\r\n\r\nonce\n$/);
    // serve() started first, with its own hooks; the stub's cgiMain call was a no-op.
    assert.equal(r.stderr, 'serve startup\n');
  });

  test("import.meta.url in a bundled module is the script's own file URL", async () => {
    const app = join(project, 'meta.mjs');
    writeFileSync(
      app,
      "export default (e, start) => { start('200 OK', [['Content-Type', 'text/plain']]); return [new URL('./data.json', import.meta.url).href]; };\n",
    );
    const out = join(root, 'out', 'meta');
    const r1 = await bundleApp({ app, outFile: out });
    assert.deepEqual(r1.warnings, []);
    const copy = alone(out);
    const r = runScript(copy);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`\\r\\n\\r\\nfile://${join(copy, '..', 'data.json')}$`));
  });

  test('an app file that does not exist is named in a coded error', async () => {
    await expectBridgeError(
      bundleApp({ app: 'missing.ts', outFile: join(root, 'out', 'z'), cwd: project }),
      'BUNDLE_ERR_NO_APP',
      /^cgi-bridge: bundle: .*\/project\/missing\.ts is not a file/,
    );
  });

  test('shebangLine refuses a relative interpreter, a newline and an over-long line', () => {
    assert.equal(shebangLine(), '#!/usr/bin/env node');
    assert.equal(shebangLine('/opt/node/bin/node'), '#!/opt/node/bin/node');
    for (const bad of ['node', '/usr/bin/node\nrm -rf /', `/${'x'.repeat(260)}`]) {
      assert.throws(
        () => shebangLine(bad),
        (e: unknown) => isBridgeError(e) && e.code === 'BUNDLE_ERR_BAD_NODE',
      );
    }
  });
});
