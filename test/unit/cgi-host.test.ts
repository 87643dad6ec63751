// fromCgi({ script }) with real programs (sh, Perl, a C program compiled here): the environment,
// argv, cwd, the response kinds, streaming both ways, and one line per failure (Go's host_test).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  childEnvironment,
  inheritedEnvironment,
  searchArguments,
} from '../../src/cgi/child-env.js';
import { fromCgi } from '../../src/cgi/host.js';
import { BridgeError } from '../../src/errors.js';
import type { GatewayApp } from '../../src/gateway/types.js';
import { LEGACY, legacy, parseLines, serveCgi, tempDir, waitFor } from './cgi-host-helpers.js';
import { makeEnviron, RecordingWriter } from './gateway-helpers.js';

const markers = tempDir('host');
after(() => markers.remove());
// timeoutMs is a safety net: a failing test must not leave a program (and this file) hanging.
const ENV = { env: { MARKER_DIR: markers.dir }, timeoutMs: 20_000 };
const script = (name: string): ReturnType<typeof fromCgi> => fromCgi({ script: legacy(name) }, ENV);

describe('fromCgi: the program environment', { timeout: 60_000 }, () => {
  test('meta-variables, SCRIPT_FILENAME, SCRIPT_NAME, PATH_INFO, fixed values', async () => {
    const r = await serveCgi(script('dump.sh'), {
      scriptName: '/cgi-bin/dump.sh',
      pathInfo: '/extra/path',
      query: 'a=b&c=d',
      vars: { HTTP_COOKIE: 'x=1', HTTP_X_FOO: 'bar' },
    });
    assert.equal(r.status, 200);
    assert.equal(r.header('X-Fixture'), 'dump.sh');
    const m = parseLines(r.text);
    const want: Record<string, string> = {
      'env-GATEWAY_INTERFACE': 'CGI/1.1',
      'env-REQUEST_METHOD': 'GET',
      'env-SCRIPT_FILENAME': legacy('dump.sh'),
      'env-SCRIPT_NAME': '/cgi-bin/dump.sh',
      'env-PATH_INFO': '/extra/path',
      'env-QUERY_STRING': 'a=b&c=d',
      'env-REQUEST_URI': '/cgi-bin/dump.sh/extra/path?a=b&c=d',
      'env-SERVER_NAME': 'example.com',
      'env-SERVER_PORT': '80',
      'env-SERVER_PROTOCOL': 'HTTP/1.1',
      'env-SERVER_SOFTWARE': 'cgi-bridge',
      'env-REMOTE_ADDR': '1.2.3.4',
      'env-HTTP_HOST': 'example.com',
      'env-HTTP_COOKIE': 'x=1',
      'env-HTTP_X_FOO': 'bar',
      'env-REDIRECT_STATUS': '200',
      'env-PATH': process.env.PATH!,
      'env-MARKER_DIR': markers.dir,
      cwd: LEGACY,
      argc: '0',
    };
    for (const [k, v] of Object.entries(want)) assert.equal(m.get(k), v, k);
  });

  test('only the allow-list of the bridge environment passes', async () => {
    const hostEnv = { PATH: '/usr/bin:/bin', HOME: '/root', SECRET: 's3cret', LANG: 'C.UTF-8' };
    const app = fromCgi(
      { script: legacy('dump.sh') },
      { hostEnv, inheritEnv: ['LANG', 'MISSING'], env: ['K=V=W'] },
    );
    const m = parseLines((await serveCgi(app)).text);
    const names = [...m.keys()].filter((k) => k.startsWith('env-')).map((k) => k.slice(4));
    assert.equal(m.get('env-PATH'), '/usr/bin:/bin');
    assert.equal(m.get('env-LANG'), 'C.UTF-8');
    assert.equal(m.get('env-K'), 'V=W');
    for (const name of ['HOME', 'SECRET', 'MISSING', 'NODE_OPTIONS', 'PWD_OF_BRIDGE']) {
      assert.ok(!names.includes(name), `${name} leaked`);
    }
    // Everything else is a meta-variable (sh itself adds PWD, SHLVL, _ and OLDPWD).
    const shell = new Set(['PWD', 'SHLVL', '_', 'OLDPWD']);
    for (const n of names) {
      if (shell.has(n) || ['PATH', 'LANG', 'K'].includes(n)) continue;
      assert.match(
        n,
        /^(HTTP_|SERVER_|REQUEST_|REMOTE_|SCRIPT_|PATH_INFO|QUERY_STRING|GATEWAY_INTERFACE|REDIRECT_STATUS)/,
        n,
      );
    }
  });

  test('httpoxy: HTTP_PROXY from the request never reaches the program', async () => {
    const m = parseLines(
      (await serveCgi(script('dump.sh'), { vars: { HTTP_PROXY: 'http://evil:1/' } })).text,
    );
    assert.equal(m.get('env-HTTP_PROXY'), undefined);
  });

  test('a request cannot replace PATH; options.env can', async () => {
    const m = parseLines((await serveCgi(script('dump.sh'), { vars: { PATH: '/evil' } })).text);
    assert.equal(m.get('env-PATH'), process.env.PATH);
    const app = fromCgi({ script: legacy('dump.sh') }, { env: { PATH: '/wibble:/usr/bin:/bin' } });
    assert.equal(parseLines((await serveCgi(app)).text).get('env-PATH'), '/wibble:/usr/bin:/bin');
  });

  test('PATH_TRANSLATED from documentRoot + PATH_INFO; absent without PATH_INFO', async () => {
    const app = fromCgi({ script: legacy('dump.sh') }, { documentRoot: '/srv/www/' });
    assert.equal(
      parseLines((await serveCgi(app, { pathInfo: '/a/b' })).text).get('env-PATH_TRANSLATED'),
      '/srv/www/a/b',
    );
    assert.equal(parseLines((await serveCgi(app)).text).get('env-PATH_TRANSLATED'), undefined);
  });

  test("script mode keeps the web server's PATH_TRANSLATED (its PATH_INFO is unchanged)", async () => {
    const r = await serveCgi(script('dump.sh'), {
      pathInfo: '/p',
      vars: { PATH_TRANSLATED: '/srv/www/p', DOCUMENT_ROOT: '/srv/www' },
    });
    assert.equal(parseLines(r.text).get('env-PATH_TRANSLATED'), '/srv/www/p');
  });

  test("the web server's SERVER_SOFTWARE is kept", async () => {
    const m = parseLines(
      (await serveCgi(script('dump.sh'), { vars: { SERVER_SOFTWARE: 'nginx/1.24' } })).text,
    );
    assert.equal(m.get('env-SERVER_SOFTWARE'), 'nginx/1.24');
  });

  test('argv per RFC 3875 §4.4: a search query becomes the arguments', async () => {
    const m = parseLines(
      (await serveCgi(script('dump.sh'), { query: 'hello+w%C3%B6rld+a%20b++;x' })).text,
    );
    assert.equal(m.get('argc'), '5');
    assert.deepEqual(
      [1, 2, 3, 4, 5].map((i) => m.get(`arg${i}`)),
      ['hello', 'wörld', 'a b', '', ';x'],
    );
  });

  test('argv: a query with = gives no arguments; no shell ever sees them', async () => {
    assert.equal(
      parseLines((await serveCgi(script('dump.sh'), { query: 'a=b' })).text).get('argc'),
      '0',
    );
    const m = parseLines(
      (await serveCgi(script('dump.sh'), { query: '%24(touch+x)+%60id%60+%3B' })).text,
    );
    assert.deepEqual([m.get('arg1'), m.get('arg2'), m.get('arg3')], ['$(touch', 'x)', '`id`']);
    assert.equal(m.get('arg4'), ';');
  });

  test('searchArgs: false gives no arguments', async () => {
    const app = fromCgi({ script: legacy('dump.sh') }, { searchArgs: false });
    assert.equal(parseLines((await serveCgi(app, { query: 'word' })).text).get('argc'), '0');
  });
});

describe('searchArguments (RFC 3875 §4.4)', () => {
  const cases: [string, string[]][] = [
    ['', []],
    ['a', ['a']],
    ['a+b', ['a', 'b']],
    ['a=b', []],
    ['a+b=c', []],
    ['%3D', ['=']],
    ['caf%C3%A9', ['café']],
    ['%ZZ', []],
    ['a+%zz', []],
    ['%00', []],
    ['%FF', []],
    ['-s', ['-s']],
  ];
  for (const [q, want] of cases) {
    test(JSON.stringify(q), () => assert.deepEqual(searchArguments(q), want));
  }
  test('more words than the limit: none', () => assert.deepEqual(searchArguments('a+b+c', 2), []));
});

describe('inheritedEnvironment and childEnvironment', () => {
  test('PATH default when the bridge has none', () => {
    assert.deepEqual(inheritedEnvironment({}), { PATH: '/usr/local/bin:/usr/bin:/bin' });
  });
  test('a bad env entry is CGI_ERR_BAD_OPTION', () => {
    for (const env of [['NOEQUALS'], ['=x'], { 'A=B': 'c' }, { A: 'x\0y' }]) {
      assert.throws(
        () => inheritedEnvironment({}, { env: env as string[] }),
        (e: unknown) => e instanceof BridgeError && e.code === 'CGI_ERR_BAD_OPTION',
      );
    }
  });
  test('PATH_TRANSLATED: null removes, a string sets, undefined keeps', () => {
    const { environ } = makeEnviron({ extra: { PATH_TRANSLATED: '/from/server' } });
    const base = { SCRIPT_FILENAME: '/x', SCRIPT_NAME: '/x', PATH_INFO: '' };
    assert.equal(childEnvironment(environ, base, {}, 's').PATH_TRANSLATED, '/from/server');
    assert.equal(
      childEnvironment(environ, { ...base, PATH_TRANSLATED: null }, {}, 's').PATH_TRANSLATED,
      undefined,
    );
    assert.equal(
      childEnvironment(environ, { ...base, PATH_TRANSLATED: '/t' }, {}, 's').PATH_TRANSLATED,
      '/t',
    );
  });
  test('gateway keys and lower-case keys never pass', () => {
    const { environ } = makeEnviron({ extra: { 'cgi-bridge.x': 'y', lower: 'z' } });
    const env = childEnvironment(
      environ,
      { SCRIPT_FILENAME: '/x', SCRIPT_NAME: '', PATH_INFO: '' },
      {},
      's',
    );
    assert.ok(
      Object.keys(env).every((k) => /^[A-Z][A-Z0-9_]*$/.test(k)),
      Object.keys(env).join(),
    );
  });
});

describe('fromCgi: responses', { timeout: 60_000 }, () => {
  test('a document response', async () => {
    const r = await serveCgi(script('hello.sh'));
    assert.deepEqual(
      [r.status, r.reason, r.header('Content-Type'), r.text],
      [200, 'OK', 'text/plain', 'hello from sh\n'],
    );
    assert.deepEqual(r.kinds.at(-1), 'end');
    assert.deepEqual(r.log, []);
  });

  test("Status with the program's reason phrase", async () => {
    const r = await serveCgi(script('status.sh'));
    assert.deepEqual([r.status, r.reason, r.text], [418, "I'm a teapot", 'teapot\n']);
  });

  test('HEAD: no body, and the program is left to finish (its output is drained)', async () => {
    const r = await serveCgi(script('tail.sh'), { method: 'HEAD', query: 'head' });
    assert.deepEqual([r.status, r.body.length, r.result.ok], [200, 0, true]);
    assert.ok(await waitFor(() => existsSync(join(markers.dir, 'tail-head'))), 'it was killed');
  });

  test('nph-: the status line becomes the status, the rest the headers', async () => {
    const r = await serveCgi(script('nph-hello.sh'));
    assert.deepEqual(
      [r.status, r.reason, r.header('X-Nph'), r.text],
      [202, 'Taken Anyway', 'yes', 'nph body\n'],
    );
  });

  test('client redirect: absolute Location, 302', async () => {
    const r = await serveCgi(script('redirect.sh'), { query: 'http://example.org/away' });
    assert.deepEqual([r.status, r.header('Location')], [302, 'http://example.org/away']);
  });

  test('local redirect: fetched internally as a GET from the same app (script mode)', async () => {
    // redirect.sh answers `Location: $QUERY_STRING`. The first run redirects locally to
    // /cgi-bin/r/next?http://example.net/; the app runs the script again with that query, and
    // the second run's client redirect is what arrives: the first hop never reached the client.
    const r = await serveCgi(script('redirect.sh'), {
      scriptName: '/cgi-bin/r',
      query: '/cgi-bin/r/next?http://example.net/',
    });
    assert.deepEqual([r.status, r.header('Location')], [302, 'http://example.net/']);
  });

  test('local redirect to a path outside the app goes to the client', async () => {
    const r = await serveCgi(script('redirect.sh'), {
      scriptName: '/cgi-bin/r',
      query: '/elsewhere',
    });
    assert.deepEqual([r.status, r.header('Location')], [302, '/elsewhere']);
  });

  test('local redirect through options.dispatch: a GET, no body, the new path and query', async () => {
    const seen: Record<string, unknown>[] = [];
    const app = fromCgi(
      { script: legacy('redirect.sh') },
      {
        dispatch: async (environ, startResponse) => {
          seen.push({
            method: environ.REQUEST_METHOD,
            scriptName: environ.SCRIPT_NAME,
            pathInfo: environ.PATH_INFO,
            query: environ.QUERY_STRING,
            uri: environ.REQUEST_URI,
            length: environ.CONTENT_LENGTH,
            body: (await environ['gateway.input'].read()).length,
            cookie: environ.HTTP_COOKIE,
          });
          startResponse('200 OK', [['Content-Type', 'text/plain']]);
          return ['dispatched'];
        },
      },
    );
    const r = await serveCgi(app, {
      body: 'posted',
      query: '/a%20b/c?q=1',
      vars: { HTTP_COOKIE: 'k=v' },
    });
    assert.equal(r.text, 'dispatched');
    assert.deepEqual(seen, [
      {
        method: 'GET',
        scriptName: '',
        pathInfo: '/a b/c',
        query: 'q=1',
        uri: '/a%20b/c?q=1',
        length: undefined,
        body: 0,
        cookie: 'k=v',
      },
    ]);
  });

  test('a local redirect loop ends with 500 after maxRedirects', async () => {
    // The dispatcher runs the script again with the same query, so every run redirects to /loop.
    let runs = 0;
    const looping: GatewayApp = fromCgi(
      { script: legacy('redirect.sh') },
      {
        maxRedirects: 3,
        dispatch: (environ, startResponse) => {
          runs++;
          return looping({ ...environ, QUERY_STRING: '/loop' }, startResponse);
        },
      },
    );
    const r = await serveCgi(looping, { query: '/loop' });
    assert.equal(r.status, 500);
    assert.equal(runs, 3);
    assert.ok(
      r.log.some((l) => l.includes('more than 3 local redirects')),
      r.log.join('\n'),
    );
  });

  test('the body streams: the first part arrives while the program still runs', async () => {
    const go = join(markers.dir, 'go');
    const writer = new RecordingWriter();
    const done = serveCgi(script('stream.sh'), { writer });
    assert.ok(
      await waitFor(() => writer.body.toString().includes('part 2')),
      'parts 1-2 never arrived',
    );
    assert.equal(writer.kinds.includes('end'), false);
    writeFileSync(go, '');
    const r = await done;
    assert.equal(r.text, 'part 1\npart 2\npart 3\n');
  });
});

describe('fromCgi: request bodies', { timeout: 60_000 }, () => {
  test('Perl: CONTENT_LENGTH bytes in, echoed out', async () => {
    const body = Buffer.from('a\x00b\r\nc'.repeat(1000), 'latin1');
    const r = await serveCgi(script('echo.pl'), {
      body: [body.subarray(0, 10), body.subarray(10)],
    });
    assert.equal(r.status, 200);
    const nl = r.body.indexOf(10);
    assert.equal(r.body.subarray(0, nl).toString(), `method=POST length=${body.length}`);
    assert.deepEqual(r.body.subarray(nl + 1), body);
  });

  test('Perl: a body of unknown length is piped to EOF, then stdin closes', async () => {
    const r = await serveCgi(script('echo.pl'), {
      body: ['chunk1-', 'chunk2'].map((s) => Buffer.from(s)),
      chunked: true,
    });
    assert.equal(r.text, 'method=POST length=13\nchunk1-chunk2');
  });

  test('a program that never reads its body: fine (EPIPE is not an error)', async () => {
    const big = Buffer.alloc(4 * 1024 * 1024, 0x61);
    const r = await serveCgi(script('ignore-body.sh'), { body: big });
    assert.deepEqual([r.status, r.text, r.result.ok], [200, 'not reading\n', true]);
    assert.deepEqual(r.log, []);
  });

  describe(
    'C: a program that writes 1 MiB before it reads 1 MiB (no deadlock)',
    { timeout: 60_000 },
    () => {
      const build = tempDir('cc');
      const exe = join(build.dir, 'write-first');
      before(() => {
        execFileSync('gcc', ['-O2', '-o', exe, legacy('write-first.c')]);
      });
      after(() => build.remove());

      test('both directions flow, with a slow client', async () => {
        const body = Buffer.alloc(1024 * 1024);
        for (let i = 0; i < body.length; i++) body[i] = (i * 7) & 0xff;
        let sum = 0n;
        for (const b of body) sum = (sum * 31n + BigInt(b)) & 0xffffffffffffffffn;
        const parts: Buffer[] = [];
        for (let at = 0; at < body.length; at += 50_000) parts.push(body.subarray(at, at + 50_000));
        const app = fromCgi({ script: exe }, { timeoutMs: 20_000 });
        const r = await serveCgi(app, {
          body: parts,
          query: String(1024 * 1024),
          writer: new RecordingWriter({ writeDelayMs: 1 }),
        });
        assert.equal(r.status, 200, r.log.join('\n'));
        assert.equal(r.body.length, 1024 * 1024 + `\nread=${body.length} sum=${sum}\n`.length);
        assert.equal(r.body.subarray(1024 * 1024).toString(), `\nread=${body.length} sum=${sum}\n`);
      });
    },
  );
});

describe('fromCgi: failures (one line each)', { timeout: 60_000 }, () => {
  const fails = async (name: string, status: number, logPattern: RegExp): Promise<void> => {
    const r = await serveCgi(script(name));
    assert.equal(r.status, status, r.log.join('\n'));
    assert.ok(
      r.log.some((l) => l.includes(legacy(name)) && logPattern.test(l)),
      `no log line for ${name}: ${r.log.join('\n')}`,
    );
  };
  test('no output at all → 502', () =>
    fails('no-output.sh', 502, /wrote no output \(exit code 0\)/));
  test('neither Status nor Content-Type nor Location → 502', () =>
    fails('no-content-type.sh', 502, /neither Content-Type/));
  test('a malformed header line → 502', () =>
    fails('malformed.sh', 502, /malformed header line "this is not a header"/));
  test('exit (code 0) before the end of the headers → 502', () =>
    fails('incomplete.sh', 502, /before the blank line.*exit code 0/));
  test('a script that does not exist → 404', () =>
    fails('missing.sh', 404, /could not be started \(ENOENT\)/));
  test('a file that is not executable → 403', () =>
    fails('write-first.c', 403, /could not be started \(EACCES\)/));

  test('a non-zero exit after the headers cuts the response, and is logged', async () => {
    const r = await serveCgi(script('fail-after-headers.sh'));
    assert.equal(r.status, 200);
    assert.equal(r.text, 'partial body\n');
    assert.equal(r.kinds.at(-1), 'abort');
    assert.ok(
      r.log.some((l) => /CGI_ERR_PROGRAM_FAILED/.test(l) && l.includes('exit code 3')),
      r.log.join('\n'),
    );
  });

  test('a request body that ends short of CONTENT_LENGTH stops the program: 400', async () => {
    const r = await serveCgi(script('echo.pl'), {
      body: 'only this',
      vars: { CONTENT_LENGTH: '1000' },
    });
    assert.equal(r.status, 400);
    assert.ok(
      r.log.some((l) => l.includes('the request body failed')),
      r.log.join('\n'),
    );
  });

  test('stderr goes to gateway.errors line by line, prefixed with the script', async () => {
    const r = await serveCgi(script('stderr.sh'));
    assert.equal(r.text, 'ok\n');
    const p = `${legacy('stderr.sh')}: `;
    assert.deepEqual(r.log, [
      `${p}first warning`,
      `${p}second warning`,
      `${p}third without newline`,
    ]);
  });

  test('a head over the line limit → 502', async () => {
    const app = fromCgi({ script: legacy('dump.sh') }, { maxHeaderLine: 10 });
    const r = await serveCgi(app);
    assert.equal(r.status, 502);
    assert.ok(r.log.some((l) => l.includes('longer than 10 bytes')));
  });

  test('options: exactly one of script and dir', () => {
    assert.throws(() => fromCgi({} as { dir: string }), /exactly one/);
    assert.throws(() => fromCgi({ dir: '/x', script: '/y' } as { dir: string }), /exactly one/);
  });
});
