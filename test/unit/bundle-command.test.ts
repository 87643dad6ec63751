// The `bundle` yargs command module (src/cli/bundle-command.ts), parsed by yargs on its own.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import yargs from 'yargs';
import { bundleCommand } from '../../src/cli/bundle-command.js';

const dir = mkdtempSync(join(tmpdir(), 'bundle-cmd-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const app = join(dir, 'app.mjs');
writeFileSync(app, "export default (e, start) => { start('200 OK', []); return ['hi']; };\n");

async function parse(argv: string[]): Promise<unknown> {
  return yargs()
    .command(bundleCommand)
    .exitProcess(false)
    .strict()
    .fail((msg: string | null, err: Error | null) => {
      throw err ?? new Error(msg ?? 'failed');
    })
    .parseAsync(argv);
}

describe('bundle command', { timeout: 30_000 }, () => {
  test('bundle APP -o FILE --node PATH --no-minify writes the script', async () => {
    const out = join(dir, 'sub', 'app.cgi');
    await parse(['bundle', app, '-o', out, '--node', '/usr/bin/node', '--no-minify']);
    const text = readFileSync(out, 'utf8');
    assert.equal(text.split('\n')[0], '#!/usr/bin/node');
    assert.match(text, /\n {2}\S/, 'not minified: indented lines');
    assert.equal(statSync(out).mode & 0o777, 0o755);
  });

  test('-o is required', async () => {
    await assert.rejects(parse(['bundle', app]), /Missing required argument: o|out-file/);
  });

  test('a relative --node is a usage error before anything is built', async () => {
    const out = join(dir, 'never');
    await assert.rejects(
      parse(['bundle', app, '-o', out, '--node', 'node']),
      /--node must be an absolute path/,
    );
    assert.throws(() => statSync(out), /ENOENT/);
  });

  test('a build failure rejects with the one-line summary first', async () => {
    const bad = join(dir, 'bad.mjs');
    writeFileSync(bad, "import 'missing-dep';\n");
    await assert.rejects(parse(['bundle', bad, '-o', join(dir, 'bad')]), (e: Error) => {
      assert.match(e.message.split('\n')[0]!, /cannot bundle .*Could not resolve "missing-dep"/);
      return true;
    });
  });
});
