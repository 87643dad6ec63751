// fromCgi({ dir }): cgi-bin directories the way Apache maps them, the fcgiwrap mode
// (SCRIPT_FILENAME from the web server), the security refusals each with a canary that proves
// the script never ran, and a few requests through the real HTTP server.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fromCgi } from '../../src/cgi/host.js';
import { createHttpServer } from '../../src/http/server.js';
import { httpRequest } from '../harness/http-client.js';
import {
  allGone,
  canaryMarkers,
  makeCgiTree,
  parseLines,
  serveCgi,
  waitFor,
  type CgiRequest,
} from './cgi-host-helpers.js';

const tree = makeCgiTree();
after(() => tree.remove());
const ENV = { env: { MARKER_DIR: tree.markers }, timeoutMs: 15_000 };
const app = fromCgi({ dir: tree.root }, ENV);
const fcgiwrap = fromCgi({ dir: tree.root }, { ...ENV, scriptFilenameFrom: 'environ' });

describe('fromCgi({ dir }): Apache-style mapping', { timeout: 60_000 }, () => {
  test('SCRIPT_NAME = mount + walked segments, the rest PATH_INFO, cwd the script directory', async () => {
    const r = await serveCgi(app, { pathInfo: '/sub/deeper/dump.sh/x/y/', query: 'a=1' });
    assert.equal(r.status, 200, r.log.join('\n'));
    const m = parseLines(r.text);
    assert.equal(m.get('env-SCRIPT_NAME'), '/cgi-bin/sub/deeper/dump.sh');
    assert.equal(m.get('env-PATH_INFO'), '/x/y/');
    assert.equal(m.get('env-SCRIPT_FILENAME'), join(tree.root, 'sub/deeper/dump.sh'));
    assert.equal(m.get('env-REQUEST_URI'), '/cgi-bin/sub/deeper/dump.sh/x/y/?a=1');
    assert.equal(m.get('cwd'), join(tree.root, 'sub/deeper'));
  });

  test("the web server's PATH_TRANSLATED does not fit the new PATH_INFO: dropped", async () => {
    const r = await serveCgi(app, {
      pathInfo: '/dump.sh/p',
      vars: { PATH_TRANSLATED: '/x/dump.sh/p' },
    });
    assert.equal(parseLines(r.text).get('env-PATH_TRANSLATED'), undefined);
  });

  test('with DOCUMENT_ROOT, PATH_TRANSLATED = DOCUMENT_ROOT + PATH_INFO', async () => {
    const r = await serveCgi(app, {
      pathInfo: '/dump.sh/p/q',
      vars: { DOCUMENT_ROOT: '/srv/www' },
    });
    assert.equal(parseLines(r.text).get('env-PATH_TRANSLATED'), '/srv/www/p/q');
  });

  test('a symlink inside the directory runs under its own name', async () => {
    const r = await serveCgi(app, { pathInfo: '/link-in.sh' });
    assert.equal(r.text, 'hello from sh\n');
  });

  test('a local redirect is re-resolved in the directory', async () => {
    const r = await serveCgi(app, { pathInfo: '/redirect.sh', query: '/cgi-bin/status.sh' });
    assert.deepEqual([r.status, r.reason, r.text], [418, "I'm a teapot", 'teapot\n']);
  });

  test('a local redirect to a missing script: 404 from the second resolution', async () => {
    const r = await serveCgi(app, { pathInfo: '/redirect.sh', query: '/cgi-bin/none.sh' });
    assert.equal(r.status, 404);
  });
});

describe(
  'fromCgi({ dir }): refusals, each with a canary that must not run',
  { timeout: 60_000 },
  () => {
    const cases: [string, string, number][] = [
      ['.. out of the directory', '/../outside/canary-out.sh', 404],
      ['.. inside a walk', '/sub/../../outside/canary-out.sh', 404],
      ['a symlink to a script outside', '/link-out.sh', 403],
      ['a symlink to a directory outside', '/linkdir/canary-out.sh', 403],
      ['a file that is not executable', '/canary-noexec.sh', 403],
      ['a hidden script', '/.canary-hidden.sh', 404],
      ['a hidden script in a subdirectory', '/sub/.git-canary.sh', 404],
      ['a NUL after a canary name', '/canary-ok.sh\0/x', 404],
      ['an encoded dot-dot that reached PATH_INFO undecoded', '/%2e%2e/outside/canary-out.sh', 404],
      ['the directory', '/', 403],
      ['a directory named like a script', '/dir.sh', 403],
    ];
    for (const [name, pathInfo, status] of cases) {
      test(`${name} → ${status}`, async () => {
        const r = await serveCgi(app, { pathInfo });
        assert.equal(r.status, status, r.log.join('\n'));
        assert.deepEqual(canaryMarkers(tree), [], 'a canary ran');
        assert.equal(r.log.length, 1, r.log.join('\n'));
      });
    }

    test('the canary works: an allowed one leaves its marker', async () => {
      const r = await serveCgi(app, { pathInfo: '/canary-ok.sh' });
      assert.equal(r.text, 'canary ran\n');
      assert.deepEqual(canaryMarkers(tree), ['canary-canary-ok.sh']);
      // Later cases expect no marker at all.
      rmSync(join(tree.markers, 'canary-canary-ok.sh'));
    });
  },
);

describe(
  "fromCgi({ dir }, { scriptFilenameFrom: 'environ' }): fcgiwrap's mode",
  { timeout: 60_000 },
  () => {
    const nginx = (scriptFilename: string, extra: CgiRequest = {}): CgiRequest => ({
      scriptName: '/cgi-bin/x',
      pathInfo: '/info',
      ...extra,
      vars: { SCRIPT_FILENAME: scriptFilename, DOCUMENT_ROOT: tree.base, ...extra.vars },
    });

    test('runs the SCRIPT_FILENAME nginx sends; SCRIPT_NAME and PATH_INFO as given', async () => {
      const r = await serveCgi(fcgiwrap, nginx(join(tree.root, 'dump.sh')));
      const m = parseLines(r.text);
      assert.equal(m.get('env-SCRIPT_FILENAME'), join(tree.root, 'dump.sh'));
      assert.equal(m.get('env-SCRIPT_NAME'), '/cgi-bin/x');
      assert.equal(m.get('env-PATH_INFO'), '/info');
    });

    test('without SCRIPT_FILENAME: DOCUMENT_ROOT + SCRIPT_NAME', async () => {
      const r = await serveCgi(fcgiwrap, {
        scriptName: '/cgi-bin/hello.sh',
        vars: { DOCUMENT_ROOT: `${tree.base}/` },
      });
      assert.equal(r.text, 'hello from sh\n');
    });

    test('a local redirect goes to the client in this mode', async () => {
      const r = await serveCgi(fcgiwrap, nginx(join(tree.root, 'redirect.sh'), { query: '/x' }));
      assert.deepEqual([r.status, r.header('Location')], [302, '/x']);
    });

    const refused: [string, () => string, number][] = [
      ['a script outside the root', () => join(tree.outside, 'canary-out.sh'), 403],
      ['.. out of the root', () => `${tree.root}/../outside/canary-out.sh`, 403],
      ['a symlink out of the root', () => join(tree.root, 'link-out.sh'), 403],
      ['not executable', () => join(tree.root, 'canary-noexec.sh'), 403],
      ['hidden', () => join(tree.root, '.canary-hidden.sh'), 404],
    ];
    for (const [name, filename, status] of refused) {
      test(`${name} → ${status}`, async () => {
        const r = await serveCgi(fcgiwrap, nginx(filename()));
        assert.equal(r.status, status, r.log.join('\n'));
        assert.deepEqual(canaryMarkers(tree), [], 'a canary ran');
      });
    }
  },
);

describe('fromCgi({ dir }) behind the real HTTP server', { timeout: 60_000 }, () => {
  let base = '';
  let port = 0;
  const logLines: string[] = [];
  const server = createHttpServer(app, { scriptName: '/cgi-bin', log: (l) => logLines.push(l) });
  before(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
    base = `http://127.0.0.1:${port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  test('GET: status line, reason phrase and headers as the program wrote them', async () => {
    const r = await httpRequest(`${base}/cgi-bin/status.sh`);
    assert.deepEqual([r.status, r.statusMessage, r.text()], [418, "I'm a teapot", 'teapot\n']);
  });

  test('PATH_INFO arrives decoded, the query raw', async () => {
    const r = await httpRequest(`${base}/cgi-bin/dump.sh/a%20b/%C3%A9?x=%20y`);
    const m = parseLines(r.text());
    assert.deepEqual([m.get('env-PATH_INFO'), m.get('env-QUERY_STRING')], ['/a b/é', 'x=%20y']);
  });

  test('POST: the body streams to Perl and back, chunked both ways', async () => {
    async function* body(): AsyncGenerator<Buffer> {
      for (let i = 0; i < 50; i++) yield Buffer.alloc(10_000, 65 + (i % 26));
    }
    const r = await httpRequest(`${base}/cgi-bin/echo.pl`, { method: 'POST', body: body() });
    const text = r.text();
    assert.equal(text.slice(0, text.indexOf('\n')), 'method=POST length=500000');
    assert.equal(r.body.length - text.indexOf('\n') - 1, 500_000);
  });

  test('nph-: its status line becomes the response status', async () => {
    const r = await httpRequest(`${base}/cgi-bin/nph-hello.sh`);
    assert.deepEqual([r.status, r.statusMessage, r.headers['x-nph']], [202, 'Taken Anyway', 'yes']);
  });

  test('an encoded ../ in the URL never reaches outside (canary)', async () => {
    for (const path of [
      '/cgi-bin/%2e%2e/outside/canary-out.sh',
      '/cgi-bin/..%2foutside/canary-out.sh',
    ]) {
      const r = await httpRequest(`${base}${path}`);
      assert.equal(r.status, 404, path);
    }
    assert.deepEqual(canaryMarkers(tree), []);
  });

  test('a raw ../ (not normalized by the client) never reaches outside (canary)', async () => {
    const raw = await new Promise<string>((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => {
        s.end(
          'GET /cgi-bin/../outside/canary-out.sh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
        );
      });
      let out = '';
      s.setEncoding('latin1').on('data', (d: string) => (out += d));
      s.on('end', () => resolve(out)).on('error', reject);
    });
    assert.match(raw, /^HTTP\/1\.1 404 /);
    assert.deepEqual(canaryMarkers(tree), []);
  });

  test('the client going away mid-body ends the program and its children', async () => {
    const pidFile = join(tree.markers, 'hang-headers-http.pids');
    await new Promise<void>((resolve, reject) => {
      const req = request(`${base}/cgi-bin/hang.sh?headers-http`, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => undefined);
      req.end();
      setTimeout(() => reject(new Error('no body')), 10_000).unref();
    });
    let pids: number[] = [];
    assert.ok(
      await waitFor(() => {
        if (!existsSync(pidFile)) return false;
        pids = readFileSync(pidFile, 'utf8').trim().split(' ').map(Number);
        return pids.length === 2;
      }),
    );
    assert.ok(await waitFor(() => allGone(pids)), `still alive: ${pids.join(' ')}`);
  });
});
