// CgiBinDirectory: request path or SCRIPT_FILENAME -> script, SCRIPT_NAME, PATH_INFO, with every
// refusal (traversal, symlink escape, hidden, directory, not executable, not regular) as a table.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { CgiBinDirectory } from '../../src/cgi/script-path.js';
import { BridgeError } from '../../src/errors.js';
import { makeCgiTree } from './cgi-host-helpers.js';

const tree = makeCgiTree();
after(() => tree.remove());
const dir = new CgiBinDirectory(tree.root);

async function refused(p: Promise<unknown>, status: number, code: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof BridgeError, String(e));
    assert.equal(e.code, code, e.message);
    assert.equal(e.status, status, e.message);
    return true;
  });
}

describe('CgiBinDirectory.resolvePath: found', () => {
  const cases: [string, string, { filename: string; scriptName: string; pathInfo: string }][] = [
    [
      'a script',
      '/hello.sh',
      { filename: 'hello.sh', scriptName: '/cgi-bin/hello.sh', pathInfo: '' },
    ],
    [
      'with PATH_INFO',
      '/dump.sh/extra/path',
      { filename: 'dump.sh', scriptName: '/cgi-bin/dump.sh', pathInfo: '/extra/path' },
    ],
    [
      'PATH_INFO kept exactly (trailing /, //, dots)',
      '/dump.sh/a//b/../',
      { filename: 'dump.sh', scriptName: '/cgi-bin/dump.sh', pathInfo: '/a//b/../' },
    ],
    [
      'in a subdirectory',
      '/sub/deeper/dump.sh/x',
      { filename: 'sub/deeper/dump.sh', scriptName: '/cgi-bin/sub/deeper/dump.sh', pathInfo: '/x' },
    ],
    [
      'empty segments skipped',
      '//sub///deeper/dump.sh',
      { filename: 'sub/deeper/dump.sh', scriptName: '/cgi-bin/sub/deeper/dump.sh', pathInfo: '' },
    ],
    [
      'a symlink inside the directory',
      '/link-in.sh',
      { filename: 'link-in.sh', scriptName: '/cgi-bin/link-in.sh', pathInfo: '' },
    ],
    [
      'a hidden segment after the script is PATH_INFO',
      '/hello.sh/.git/x',
      { filename: 'hello.sh', scriptName: '/cgi-bin/hello.sh', pathInfo: '/.git/x' },
    ],
  ];
  for (const [name, pathInfo, want] of cases) {
    test(name, async () => {
      const r = await dir.resolvePath('/cgi-bin', pathInfo);
      assert.deepEqual(
        { filename: r.filename, scriptName: r.scriptName, pathInfo: r.pathInfo },
        { ...want, filename: join(tree.root, want.filename) },
      );
    });
  }

  test('the executable is the real path (a symlink inside is resolved)', async () => {
    const r = await dir.resolvePath('', '/link-in.sh');
    assert.equal(r.executable, join(tree.root, 'hello.sh'));
    assert.equal(r.scriptName, '/link-in.sh');
  });

  test('a mount with a trailing slash', async () => {
    assert.equal((await dir.resolvePath('/cgi-bin/', '/hello.sh')).scriptName, '/cgi-bin/hello.sh');
  });
});

describe('CgiBinDirectory.resolvePath: refused (one line each)', () => {
  const nf = 'CGI_ERR_SCRIPT_NOT_FOUND';
  const fb = 'CGI_ERR_SCRIPT_FORBIDDEN';
  const cases: [string, string, number, string][] = [
    ['missing', '/nope.sh', 404, nf],
    ['missing below a script-less dir', '/sub/nope.sh/x', 404, nf],
    ['a .. segment', '/../outside/canary-out.sh', 404, nf],
    ['a .. segment inside', '/sub/../hello.sh', 404, nf],
    ['a . segment', '/./hello.sh', 404, nf],
    ['a NUL', '/hello.sh\0.txt', 404, nf],
    ['a relative path', 'hello.sh', 404, nf],
    ['a hidden file', '/.canary-hidden.sh', 404, nf],
    ['a hidden file in a subdirectory', '/sub/.git-canary.sh', 404, nf],
    ['a name too long', `/${'a'.repeat(300)}`, 404, nf],
    ['the directory itself (empty)', '', 403, fb],
    ['the directory itself (/)', '/', 403, fb],
    ['a subdirectory', '/sub/deeper/', 403, fb],
    ['a directory named like a script', '/dir.sh', 403, fb],
    ['a file that is not executable', '/canary-noexec.sh', 403, fb],
    ['a FIFO', '/fifo.sh', 403, fb],
    ['a symlink to a file outside', '/link-out.sh', 403, fb],
    ['a symlink to a directory outside', '/linkdir/canary-out.sh', 403, fb],
  ];
  for (const [name, pathInfo, status, code] of cases) {
    test(name, () => refused(dir.resolvePath('/cgi-bin', pathInfo), status, code));
  }

  test('a cgi directory that does not exist: 403, and it is retried later', async () => {
    const missing = new CgiBinDirectory(join(tree.base, 'not-yet'));
    await refused(missing.resolvePath('', '/x'), 403, 'CGI_ERR_SCRIPT_FORBIDDEN');
    await refused(missing.resolvePath('', '/x'), 403, 'CGI_ERR_SCRIPT_FORBIDDEN');
  });
});

describe('CgiBinDirectory.resolveFilename (SCRIPT_FILENAME from the web server)', () => {
  test('a script inside', async () => {
    const r = await dir.resolveFilename(join(tree.root, 'sub/deeper/dump.sh'));
    assert.equal(r.filename, join(tree.root, 'sub/deeper/dump.sh'));
  });

  test('a path below a script is shortened to it (ENOTDIR, as fcgiwrap)', async () => {
    const r = await dir.resolveFilename(join(tree.root, 'hello.sh/extra/more'));
    assert.equal(r.filename, join(tree.root, 'hello.sh'));
  });

  test('a .. that stays inside is fine', async () => {
    const r = await dir.resolveFilename(`${tree.root}/sub/../hello.sh`);
    assert.equal(r.executable, join(tree.root, 'hello.sh'));
  });

  const nf = 'CGI_ERR_SCRIPT_NOT_FOUND';
  const fb = 'CGI_ERR_SCRIPT_FORBIDDEN';
  const cases: [string, () => string, number, string][] = [
    ['a file outside', () => join(tree.outside, 'canary-out.sh'), 403, fb],
    ['.. out of the directory', () => `${tree.root}/../outside/canary-out.sh`, 403, fb],
    ['a symlink out of the directory', () => join(tree.root, 'link-out.sh'), 403, fb],
    ['through a directory symlink', () => join(tree.root, 'linkdir/canary-out.sh'), 403, fb],
    ['the directory itself', () => tree.root, 403, fb],
    ['a directory', () => join(tree.root, 'dir.sh'), 403, fb],
    ['not executable', () => join(tree.root, 'canary-noexec.sh'), 403, fb],
    ['a FIFO', () => join(tree.root, 'fifo.sh'), 403, fb],
    ['hidden', () => join(tree.root, '.canary-hidden.sh'), 404, nf],
    ['missing', () => join(tree.root, 'nope.sh'), 404, nf],
    ['relative', () => 'hello.sh', 404, nf],
    ['empty', () => '', 404, nf],
    ['a NUL', () => `${tree.root}/hello.sh\0`, 404, nf],
  ];
  for (const [name, filename, status, code] of cases) {
    test(name, () => refused(dir.resolveFilename(filename()), status, code));
  }
});
