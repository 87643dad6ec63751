// Integration: `cgi-bridge fastcgi` behind real web servers (nginx over TCP and unix sockets,
// with and without kept-alive FastCGI connections; Apache mod_proxy_fcgi and mod_fcgid;
// lighttpd mod_fastcgi and bin-path; spawn-fcgi) and under libfcgi's own client `cgi-fcgi`.
// Every deployment gets the same cases: GET, PATH_INFO, a 10 MiB POST with its hash, status
// codes, a 10 MiB streaming echo, 2,000 requests over kept-alive connections, and then not one
// error line in any log. A table of what each deployment did is printed at the end.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, test, type TestContext } from 'node:test';
import {
  findTool,
  freePort,
  httpRequest,
  makeWorld,
  requireTool,
  sleep,
  type HttpResponse,
  type ListenTarget,
  type World,
} from '../harness/servers.js';
import { sha256, uploadBody, type UploadBody } from './cgi-servers-probes.js';
import { runLoad, summarize } from './fastcgi-servers-load.js';
import {
  BUFFERING_WARNINGS,
  FCGI_SETUPS,
  cliAddress,
  errorLines,
  installRuntime,
  openConnections,
  startBridge,
  type Deployment,
  type FcgiSetup,
  type Runtime,
} from './fastcgi-servers-setups.js';

const MiB = 1024 * 1024;
const UPLOAD_SIZE = 10 * MiB;
const LOAD_REQUESTS = 2000;
const LOAD_CONCURRENCY = 8;
/** STATUS_CODES are answered by the app's `status` route and must reach the client as they are. */
const STATUS_CODES = [200, 201, 204, 301, 400, 404, 418, 500, 503];

interface EchoReport {
  bytes: number;
  chunks: number;
  sha256: string;
  CONTENT_LENGTH: string | null;
}

interface EnvReport {
  pid: number;
  REQUEST_METHOD: string;
  SCRIPT_NAME: string;
  PATH_INFO: string;
  QUERY_STRING: string;
  CONTENT_LENGTH: string | null;
  big?: { length: number; sha256: string } | null;
}

/** findings are what each deployment did, printed as a table at the end. */
const findings = new Map<string, Map<string, string>>();

function note(setup: string, key: string, value: string): void {
  let m = findings.get(setup);
  if (m === undefined) findings.set(setup, (m = new Map()));
  m.set(key, value);
}

let shared: Promise<{ world: World; rt: Runtime }> | undefined;

/** theRuntime makes one world with one copy of the CLI for every test (on first use). */
function theRuntime(): Promise<{ world: World; rt: Runtime }> {
  shared ??= (async () => {
    const world = await makeWorld();
    return { world, rt: await installRuntime(world) };
  })();
  return shared;
}

after(async () => {
  if (shared !== undefined) await (await shared).world.cleanup();
  if (findings.size > 0) {
    const cols = [...new Set([...findings.values()].flatMap((m) => [...m.keys()]))];
    const rows = [...findings].map(
      ([name, m]) => `| ${name} | ${cols.map((c) => m.get(c) ?? '').join(' | ')} |`,
    );
    process.stdout.write(
      `\n| deployment | ${cols.join(' | ')} |\n|${'---|'.repeat(cols.length + 1)}\n${rows.join('\n')}\n`,
    );
  }
});

function json<T>(res: HttpResponse): T {
  assert.equal(res.status, 200, res.text());
  return JSON.parse(res.text()) as T;
}

function post(url: string, body: UploadBody, timeoutMs = 60_000): Promise<HttpResponse> {
  return httpRequest(url, {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', 'content-length': body.size },
    body: body.chunks(),
    timeoutMs,
  });
}

async function cases(t: TestContext, setup: FcgiSetup, d: Deployment): Promise<void> {
  const sub = (name: string, fn: () => Promise<void>): Promise<void> =>
    t.test(name, async (st) => {
      try {
        await fn();
      } catch (e) {
        st.diagnostic(`${d.server.name} logs:\n${await d.server.errorLog()}`);
        if (d.bridge !== undefined) st.diagnostic(`cgi-bridge:\n${d.bridge.lines.join('\n')}`);
        throw e;
      }
    });
  const pidsBefore = await d.responderPids();

  await sub('GET', async () => {
    const res = await httpRequest(`${d.base}/hello`);
    assert.equal(res.status, 200, res.text());
    assert.equal(res.text(), 'hello world\n');
    assert.equal(res.headers['content-type'], 'text/plain');
    const env = json<EnvReport>(await httpRequest(`${d.base}/env?a=1&b=two%20words`));
    assert.equal(env.REQUEST_METHOD, 'GET');
    assert.equal(env.QUERY_STRING, 'a=1&b=two%20words');
    assert.equal(env.SCRIPT_NAME, '/fcgi/env');
    assert.equal(env.PATH_INFO, '');
  });

  await sub('PATH_INFO', async () => {
    const plain = json<EnvReport>(await httpRequest(`${d.base}/env/a/b/c.txt`));
    assert.equal(plain.SCRIPT_NAME, '/fcgi/env');
    assert.equal(plain.PATH_INFO, '/a/b/c.txt');
    const encoded = json<EnvReport>(await httpRequest(`${d.base}/env/a%20b/caf%C3%A9`));
    assert.equal(encoded.PATH_INFO, '/a b/café', 'PATH_INFO is decoded (RFC 3875 §4.1.5)');
  });

  await sub(`POST ${UPLOAD_SIZE / MiB} MiB`, async () => {
    const body = uploadBody(UPLOAD_SIZE);
    const r = json<EchoReport>(await post(`${d.base}/echo`, body));
    assert.equal(r.bytes, body.size);
    assert.equal(r.sha256, body.sha256);
    assert.equal(r.CONTENT_LENGTH, String(body.size));
    note(setup.name, 'POST 10 MiB: chunks read', String(r.chunks));
  });

  await sub('status codes', async () => {
    for (const code of STATUS_CODES) {
      const res = await httpRequest(`${d.base}/status?code=${code}`);
      assert.equal(res.status, code, `asked for ${code}: ${res.text()}`);
      assert.equal(res.headers['x-status'], String(code));
      if (code !== 204) assert.equal(res.text(), `status ${code}\n`);
      else assert.equal(res.body.length, 0);
    }
  });

  await sub(`streaming echo of ${UPLOAD_SIZE / MiB} MiB (write per chunk read)`, async () => {
    // The app writes each piece as it reads it; nginx stops sending a body once the reply
    // starts, so without the responder's hold this hangs (issue 3): the timeout fails it.
    const body = uploadBody(UPLOAD_SIZE);
    const t0 = performance.now();
    const res = await post(`${d.base}/stream`, body, 60_000);
    assert.equal(res.status, 200, res.text().slice(0, 500));
    assert.equal(res.body.length, body.size);
    assert.equal(sha256(res.body), body.sha256);
    note(setup.name, 'stream echo ms', (performance.now() - t0).toFixed(0));
  });

  await sub(
    `${LOAD_REQUESTS} requests over ${LOAD_CONCURRENCY} kept-alive connections`,
    async () => {
      const small = Buffer.alloc(1024, 'x');
      const smallHash = sha256(small);
      const load = await runLoad(
        d.base,
        (i) =>
          i % 2 === 0
            ? {
                path: '/hello',
                check: (s, b) =>
                  s === 200 && b.toString() === 'hello world\n'
                    ? undefined
                    : `${s} ${b.toString().slice(0, 200)}`,
              }
            : {
                path: '/echo',
                method: 'POST',
                body: small,
                check: (s, b) =>
                  s === 200 && (JSON.parse(b.toString()) as EchoReport).sha256 === smallHash
                    ? undefined
                    : `${s} ${b.toString().slice(0, 200)}`,
              },
        { count: LOAD_REQUESTS, concurrency: LOAD_CONCURRENCY },
      );
      note(
        setup.name,
        `${LOAD_REQUESTS} req/s`,
        (load.requests / (load.elapsedMs / 1000)).toFixed(0),
      );
      note(setup.name, 'errors', String(load.failures.length));
      assert.equal(load.requests, LOAD_REQUESTS);
      assert.equal(load.failures.length, 0, summarize(load.failures));
      // Apache closes a client connection after 100 requests (MaxKeepAliveRequests); the others
      // keep all 8 for the whole run.
      note(setup.name, 'client connections', String(load.sockets));
      assert.ok(load.sockets <= LOAD_REQUESTS / 50, `${load.sockets} client connections`);
      if (d.listen !== undefined) {
        // Idle kept-alive connections stay open at the responder (FCGI_KEEP_CONN honoured);
        // without keep_conn each request's connection is closed once it ends.
        let open = openConnections(d.listen);
        for (let i = 0; i < 20 && !setup.keepsConnections && open > 0; i++) {
          await sleep(100);
          open = openConnections(d.listen);
        }
        note(setup.name, 'FastCGI connections open after', String(open));
        if (setup.keepsConnections) assert.ok(open > 0, 'no FastCGI connection was kept open');
        else assert.equal(open, 0, 'FastCGI connections left open without keep_conn');
      }
    },
  );

  await sub('no process of the responder died', async () => {
    const now = await d.responderPids();
    assert.deepEqual(
      pidsBefore.filter((p) => !now.includes(p)),
      [],
      `before: ${pidsBefore.join(',')}; now: ${now.join(',')}`,
    );
  });

  await sub('no error lines in any log', async () => {
    const log = await d.server.errorLog();
    note(
      setup.name,
      'nginx spool warnings',
      String(log.split('\n').filter((l) => BUFFERING_WARNINGS.test(l)).length),
    );
    const lines = await d.errorLines();
    note(setup.name, 'error lines', String(lines.length));
    assert.deepEqual(lines, []);
  });
}

for (const setup of FCGI_SETUPS) {
  test(setup.name, { timeout: 300_000 }, async (t) => {
    if (!requireTool(t, ...setup.tools)) return;
    const { world, rt } = await theRuntime();
    const d = await setup.start(world, rt);
    try {
      await cases(t, setup, d);
    } finally {
      await d.server.stop();
      await d.spawned?.stop();
      if (d.bridge !== undefined) {
        await d.bridge.stop();
        assert.equal(
          await d.bridge.exited,
          0,
          `cgi-bridge exit after SIGTERM:\n${d.bridge.lines.join('\n')}`,
        );
      }
    }
  });
}

/** CgiFcgiResult is what `cgi-fcgi -bind` printed: the CGI response, split. */
interface CgiFcgiResult {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/**
 * cgiFcgi runs `cgi-fcgi -bind -connect ADDR` with exactly `env` as its environment (it sends
 * its whole environment as FCGI_PARAMS, like `env -i`), `stdin` as the body.
 */
function cgiFcgi(
  connect: string,
  env: Record<string, string>,
  stdin?: AsyncIterable<Buffer>,
): Promise<CgiFcgiResult> {
  const bin = findTool('cgi-fcgi');
  assert.ok(bin);
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['-bind', '-connect', connect], { env, stdio: 'pipe' });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      const raw = Buffer.concat(out);
      if (code !== 0)
        return reject(new Error(`cgi-fcgi exited with ${code}: ${err}\n${raw.toString()}`));
      const split = raw.indexOf('\r\n\r\n');
      if (split < 0)
        return reject(
          new Error(`no header end in ${JSON.stringify(raw.toString().slice(0, 500))}`),
        );
      const headers: Record<string, string> = {};
      for (const line of raw.subarray(0, split).toString('latin1').split('\r\n')) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({
        status: Number((headers.status ?? '200').split(' ')[0]),
        headers,
        body: raw.subarray(split + 4),
      });
    });
    child.stdin.on('error', () => undefined); // the process may exit before it read everything
    if (stdin === undefined) {
      child.stdin.end();
    } else {
      void (async () => {
        for await (const chunk of stdin) {
          if (!child.stdin.write(chunk)) await new Promise((r) => child.stdin.once('drain', r));
        }
        child.stdin.end();
      })();
    }
  });
}

/**
 * cgiFcgiLoop runs `env -i VARS cgi-fcgi -bind -connect ADDR` `count` times in one shell loop
 * and resolves with everything it printed; a failed run prints `FAILED CODE`.
 */
function cgiFcgiLoop(connect: string, env: Record<string, string>, count: number): Promise<string> {
  const bin = findTool('cgi-fcgi');
  assert.ok(bin);
  const vars = Object.entries(env).map(([k, v]) => {
    assert.match(`${k}=${v}`, /^[A-Za-z0-9_=/.:-]*$/, 'shell-safe variables only');
    return `${k}=${v}`;
  });
  const script =
    `i=0; while [ $i -lt ${count} ]; do ` +
    `env -i ${vars.join(' ')} ${bin} -bind -connect ${connect} </dev/null || echo "FAILED $?"; ` +
    'i=$((i+1)); done';
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => out.push(c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 240_000);
    child.once('error', reject);
    child.once('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(out).toString('latin1'));
    });
  });
}

/** cgiEnv is a minimal CGI environment for `cgi-fcgi` (nothing else: no PATH, no HOME). */
function cgiEnv(route: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    GATEWAY_INTERFACE: 'CGI/1.1',
    REQUEST_METHOD: 'GET',
    SCRIPT_NAME: `/fcgi/${route}`,
    PATH_INFO: '',
    QUERY_STRING: '',
    SERVER_NAME: 'localhost',
    SERVER_PORT: '80',
    SERVER_PROTOCOL: 'HTTP/1.1',
    REMOTE_ADDR: '127.0.0.1',
    ...extra,
  };
}

for (const kind of ['unix', 'tcp'] as const) {
  test(`cgi-fcgi -bind -connect (${kind})`, { timeout: 300_000 }, async (t) => {
    if (!requireTool(t, 'cgi-fcgi')) return;
    const { world, rt } = await theRuntime();
    const listen: ListenTarget =
      kind === 'unix'
        ? (`unix:${world.socketPath(`cgi-fcgi-${kind}`)}` as ListenTarget)
        : `tcp:127.0.0.1:${await freePort()}`;
    const bridge = await startBridge(world, rt, { listen });
    const addr = kind === 'unix' ? listen.slice('unix:'.length) : cliAddress(listen);
    const name = `cgi-fcgi ${kind}`;
    try {
      await t.test('GET with PATH_INFO', async () => {
        const r = await cgiFcgi(
          addr,
          cgiEnv('env', { PATH_INFO: '/a b/café', QUERY_STRING: 'x=1' }),
        );
        assert.equal(r.status, 200, r.body.toString());
        const env = JSON.parse(r.body.toString()) as EnvReport;
        assert.equal(env.PATH_INFO, '/a b/café');
        assert.equal(env.SCRIPT_NAME, '/fcgi/env');
        assert.equal(env.QUERY_STRING, 'x=1');
      });

      await t.test('PARAMS over 8 KB, split across records by cgi-fcgi', async () => {
        // libfcgi flushes FCGI_PARAMS in records of at most 8 KiB: these params span several,
        // and single values cross record boundaries.
        const big = 'v'.repeat(20_000) + 'é'.repeat(1000);
        const extra: Record<string, string> = { HTTP_X_BIG: big };
        for (let i = 0; i < 200; i++) extra[`HTTP_X_FILL_${i}`] = `value-${i}-${'f'.repeat(40)}`;
        const r = await cgiFcgi(addr, cgiEnv('env', { ...extra, QUERY_STRING: 'big=HTTP_X_BIG' }));
        assert.equal(r.status, 200, r.body.toString());
        const env = JSON.parse(r.body.toString()) as EnvReport & { variables: number };
        assert.deepEqual(env.big, { length: big.length, sha256: sha256(Buffer.from(big)) });
        assert.ok(env.variables >= 200 + 9, `${env.variables} variables`);
        assert.equal(env.QUERY_STRING, 'big=HTTP_X_BIG');
      });

      await t.test(`POST ${UPLOAD_SIZE / MiB} MiB on stdin`, async () => {
        const body = uploadBody(UPLOAD_SIZE);
        const r = await cgiFcgi(
          addr,
          cgiEnv('echo', { REQUEST_METHOD: 'POST', CONTENT_LENGTH: String(body.size) }),
          body.chunks(),
        );
        assert.equal(r.status, 200, r.body.toString());
        const echo = JSON.parse(r.body.toString()) as EchoReport;
        assert.equal(echo.bytes, body.size);
        assert.equal(echo.sha256, body.sha256);
      });

      await t.test(`streaming echo of ${UPLOAD_SIZE / MiB} MiB`, async () => {
        const body = uploadBody(UPLOAD_SIZE);
        const once = (): Promise<CgiFcgiResult> =>
          cgiFcgi(
            addr,
            cgiEnv('stream', { REQUEST_METHOD: 'POST', CONTENT_LENGTH: String(body.size) }),
            body.chunks(),
          );
        // Known open question: once in four CI runs cgi-fcgi exited 254 (-2, libfcgi's
        // FCGX_UNSUPPORTED_VERSION: it read a record header it did not accept) mid-echo over
        // TCP; 12 direct runs did not reproduce it. It is retried once and reported, so a
        // failure that repeats still fails the test.
        const r = await once().catch(async (e: Error) => {
          if (!/exited with 254/.test(e.message)) throw e;
          t.diagnostic(`cgi-fcgi exited 254 on the first try; retrying once`);
          return once();
        });
        assert.equal(r.status, 200);
        assert.equal(r.body.length, body.size);
        assert.equal(sha256(r.body), body.sha256);
      });

      await t.test('status codes', async () => {
        for (const code of STATUS_CODES) {
          const r = await cgiFcgi(addr, cgiEnv('status', { QUERY_STRING: `code=${code}` }));
          assert.equal(r.status, code);
          assert.equal(r.headers['x-status'], String(code));
        }
      });

      await t.test(`${LOAD_REQUESTS} cgi-fcgi runs, ${LOAD_CONCURRENCY} at a time`, async () => {
        // cgi-fcgi opens one connection per run (no keep-alive there): the load is many short
        // connections, run from shell loops (a spawn from node per run would cost more than
        // the request).
        const t0 = performance.now();
        const perLoop = LOAD_REQUESTS / LOAD_CONCURRENCY;
        const outputs = await Promise.all(
          Array.from({ length: LOAD_CONCURRENCY }, () =>
            cgiFcgiLoop(addr, cgiEnv('hello'), perLoop),
          ),
        );
        const out = outputs.join('');
        note(
          name,
          `${LOAD_REQUESTS} req/s`,
          (LOAD_REQUESTS / ((performance.now() - t0) / 1000)).toFixed(0),
        );
        const answers = out.split('\r\n\r\nhello world\n').length - 1;
        const failed = [...out.matchAll(/^FAILED (\d+)$/gm)].length;
        note(name, 'errors', String(LOAD_REQUESTS - answers));
        assert.equal(failed, 0, out.slice(0, 2000));
        assert.equal(answers, LOAD_REQUESTS);
        assert.equal((out.match(/^Status: 200 OK\r$/gm) ?? []).length, LOAD_REQUESTS);
      });

      await t.test('no error lines in the responder log', () => {
        const lines = errorLines(bridge.lines.join('\n'));
        note(name, 'error lines', String(lines.length));
        assert.deepEqual(lines, []);
      });
    } finally {
      await bridge.stop();
    }
    assert.equal(await bridge.exited, 0, bridge.lines.join('\n'));
  });
}
