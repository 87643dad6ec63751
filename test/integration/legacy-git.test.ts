// `git http-backend`, a real legacy CGI program, served by cgi-bridge: a real `git clone` and
// `git push` (smart HTTP, a 2 MiB blob so the push body is large and, over plain HTTP, chunked)
// through `cgi-bridge serve --cgi-script`, and through nginx + `cgi-bridge fastcgi --cgi-script`
// with two pre-forked workers.
//
// Who runs what: as root, nginx's workers run as www-data (the harness), but `cgi-bridge
// fastcgi` is started by this test, as the test's own user, the way a service manager would
// start a responder; git-http-backend therefore runs as that user and writes the bare repo,
// which stays the test's. The unix socket gets mode 0666 (--socket-mode) so that nginx's
// www-data workers may connect to it.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { makeWorld, requireTool, startNginx, type World } from '../harness/servers.js';
import { startCli } from './legacy-helpers.js';

const execFileP = promisify(execFile);

let world: World | undefined;
after(() => world?.cleanup());

/** git runs git with a clean environment: no user config, no prompts, no proxy. */
async function git(cwd: string, home: string, ...args: string[]): Promise<string> {
  const { stdout } = await execFileP('git', args, {
    cwd,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: home,
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_TERMINAL_PROMPT: '0',
      GIT_AUTHOR_NAME: 'Legacy Test',
      GIT_AUTHOR_EMAIL: 'legacy@example.invalid',
      GIT_COMMITTER_NAME: 'Legacy Test',
      GIT_COMMITTER_EMAIL: 'legacy@example.invalid',
    },
    maxBuffer: 16 * 1024 * 1024,
    timeout: 120_000,
  });
  return stdout;
}

interface Repos {
  /** root is GIT_PROJECT_ROOT, holding the bare repo `project.git`. */
  root: string;
  bare: string;
  home: string;
  work: string;
  first: string;
}

/** makeRepos creates a bare repo that accepts pushes, with one commit in it. */
async function makeRepos(w: World, name: string): Promise<Repos> {
  const dir = join(w.dir, name);
  const root = join(dir, 'git');
  const bare = join(root, 'project.git');
  const home = join(dir, 'home');
  const work = join(dir, 'work');
  mkdirSync(root, { recursive: true });
  mkdirSync(home);
  mkdirSync(work);
  await git(root, home, 'init', '--quiet', '--bare', '--initial-branch=main', bare);
  // Pushing over smart HTTP needs http.receivepack (or REMOTE_USER, which nobody sets here).
  await git(bare, home, 'config', 'http.receivepack', 'true');
  const seed = join(dir, 'seed');
  await git(dir, home, 'init', '--quiet', '--initial-branch=main', seed);
  writeFileSync(join(seed, 'README'), 'served by a legacy CGI program\n');
  await git(seed, home, 'add', 'README');
  await git(seed, home, 'commit', '--quiet', '-m', 'first');
  await git(seed, home, 'push', '--quiet', bare, 'main');
  const first = (await git(bare, home, 'rev-parse', 'main')).trim();
  return { root, bare, home, work, first };
}

function backendPath(): Promise<string> {
  return execFileP('git', ['--exec-path']).then(({ stdout }) =>
    join(stdout.trim(), 'git-http-backend'),
  );
}

/** cloneAndPush clones `url`, checks the first commit, pushes a new one with a 2 MiB blob. */
async function cloneAndPush(repos: Repos, url: string, label: string): Promise<void> {
  const clone = join(repos.work, label);
  await git(repos.work, repos.home, 'clone', '--quiet', url, clone);
  assert.equal(readFileSync(join(clone, 'README'), 'utf8'), 'served by a legacy CGI program\n');
  assert.equal((await git(clone, repos.home, 'rev-parse', 'HEAD')).trim(), repos.first);

  const blob = randomBytes(2 * 1024 * 1024);
  writeFileSync(join(clone, 'blob.bin'), blob);
  await git(clone, repos.home, 'add', 'blob.bin');
  await git(clone, repos.home, 'commit', '--quiet', '-m', `pushed through ${label}`);
  const pushed = (await git(clone, repos.home, 'rev-parse', 'HEAD')).trim();
  await git(clone, repos.home, 'push', '--quiet', 'origin', 'main');

  // The bare repo has the commit and the exact bytes.
  assert.equal((await git(repos.bare, repos.home, 'rev-parse', 'main')).trim(), pushed);
  const stored = await execFileP('git', ['cat-file', 'blob', `${pushed}:blob.bin`], {
    cwd: repos.bare,
    encoding: 'buffer',
    maxBuffer: 8 * 1024 * 1024,
  });
  assert.ok(Buffer.from(stored.stdout).equals(blob), 'the pushed blob differs');
  repos.first = pushed;

  // A second clone sees what was pushed.
  const again = join(repos.work, `${label}-again`);
  await git(repos.work, repos.home, 'clone', '--quiet', url, again);
  assert.ok(readFileSync(join(again, 'blob.bin')).equals(blob));
}

describe('git http-backend behind cgi-bridge', { timeout: 300_000 }, () => {
  test('git clone and git push through `cgi-bridge serve --cgi-script`', async (t) => {
    if (!requireTool(t, 'git')) return;
    world ??= await makeWorld();
    const repos = await makeRepos(world, 'serve');
    const server = await startCli(t, [
      'serve',
      '--cgi-script',
      await backendPath(),
      '--cgi-prefix',
      '/git',
      '--env',
      `GIT_PROJECT_ROOT=${repos.root}`,
      '--env',
      'GIT_HTTP_EXPORT_ALL=1',
      '--listen',
      '127.0.0.1:0',
    ]);
    try {
      await cloneAndPush(repos, `${server.url}/git/project.git`, 'serve');
    } catch (e) {
      t.diagnostic(server.lines.join('\n'));
      throw e;
    }
    assert.equal(await server.stop(), 0);
  });

  test('git clone and git push through nginx + `cgi-bridge fastcgi --cgi-script`', async (t) => {
    if (!requireTool(t, 'git', 'nginx')) return;
    world ??= await makeWorld();
    const repos = await makeRepos(world, 'fastcgi');
    const socket = world.socketPath('git-backend');
    const responder = await startCli(t, [
      'fastcgi',
      '--cgi-script',
      await backendPath(),
      // nginx splits /git/project.git/info/refs after the first segment; git-http-backend
      // wants PATH_INFO=/project.git/info/refs: the prefix makes cgi-bridge split it anew.
      '--cgi-prefix',
      '/git',
      '--env',
      `GIT_PROJECT_ROOT=${repos.root}`,
      '--env',
      'GIT_HTTP_EXPORT_ALL=1',
      '--listen',
      `unix:${socket}`,
      '--socket-mode',
      '666',
      '--processes',
      '2',
    ]);
    const nginx = await startNginx(world, {
      fcgi: [{ prefix: '/git', target: `unix:${socket}` as `unix:/${string}` }],
      // git pushes the 2 MiB pack in one POST; nginx's default limit is 1 MiB.
      extraConfig: 'client_max_body_size 64m;',
    });
    try {
      await cloneAndPush(repos, `${nginx.url}/git/project.git`, 'nginx');
    } catch (e) {
      t.diagnostic(`cgi-bridge:\n${responder.lines.join('\n')}\nnginx:\n${await nginx.errorLog()}`);
      throw e;
    }
    await nginx.stop();
    assert.equal(await responder.stop(), 0, responder.lines.join('\n'));
  });
});
