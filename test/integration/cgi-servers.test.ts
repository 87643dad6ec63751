// Integration: gateway apps bundled by bundleApp (`cgi-bridge bundle`) run as CGI scripts under
// real Apache (event MPM + mod_cgid, prefork + mod_cgi), lighttpd mod_cgi and nginx + fcgiwrap,
// each started once on 127.0.0.1 by the project's harness and given every case in turn; then
// one table of requests that all four must answer alike. Where the servers differ, the test
// asserts what each was measured to do (cgi-servers-setups.ts; docs/deploy-cgi.md).
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, test, type TestContext } from 'node:test';
import { BINARY_SIZE, binaryPayload } from '../fixtures/apps/cgi-binary.js';
import type { EchoReport } from '../fixtures/apps/cgi-echo.js';
import { STREAM_CHUNKS, STREAM_INTERVAL_MS } from '../fixtures/apps/cgi-stream.js';
import { THROW_MARKER } from '../fixtures/apps/cgi-throw.js';
import {
  httpRequest,
  makeWorld,
  requireTool,
  sleep,
  type HttpRequestOptions,
  type RunningServer,
  type World,
} from '../harness/servers.js';
import {
  normalizeResponse,
  sha256,
  timedGet,
  uploadBody,
  type UploadBody,
} from './cgi-servers-probes.js';
import {
  CGI_SCRIPTS,
  CGI_SETUPS,
  bundleCgiScripts,
  type CgiSetup,
  type Streaming,
} from './cgi-servers-setups.js';

const MiB = 1024 * 1024;
const UPLOAD_SIZE = 10 * MiB;
const RSS_UPLOAD_SIZE = 32 * MiB;
const SUBTEST_CONCURRENCY = 4;

let world: World | undefined;
let scripts: Promise<string> | undefined;
let bundleMs = 0;

/** cgiDir bundles the scripts on first use (not at all when every server is missing). */
function cgiDir(w: World): Promise<string> {
  scripts ??= (async () => {
    const t0 = performance.now();
    const dir = await bundleCgiScripts(w);
    bundleMs = performance.now() - t0;
    return dir;
  })();
  return scripts;
}

async function theWorld(): Promise<World> {
  world ??= await makeWorld();
  return world;
}

after(() => world?.cleanup());

/** The servers that started, for the cross-server table at the end. */
const running: { setup: CgiSetup; server: RunningServer }[] = [];
/** What each server did (reported as diagnostics after its cases). */
const findings = new Map<string, Map<string, string>>();

function note(setup: CgiSetup, key: string, value: string): void {
  let m = findings.get(setup.name);
  if (m === undefined) findings.set(setup.name, (m = new Map()));
  m.set(key, value);
}

const mib = (bytes: number): string => (bytes / MiB).toFixed(1);

async function echo(url: string, opts: HttpRequestOptions = {}): Promise<EchoReport> {
  const res = await httpRequest(url, { timeoutMs: 30_000, ...opts });
  assert.equal(res.status, 200, res.text());
  assert.equal(res.headers['content-type'], 'application/json');
  return JSON.parse(res.text()) as EchoReport;
}

/** post sends `body` with a Content-Length, generated piece by piece while it is sent. */
function post(url: string, body: UploadBody): Promise<EchoReport> {
  return echo(url, {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', 'content-length': body.size },
    body: body.chunks(),
  });
}

/** firstArrivalLead is how long before the last line was produced the first byte arrived. */
async function firstArrivalLead(url: string): Promise<number> {
  const res = await timedGet(url);
  assert.equal(res.status, 200);
  const produced = [...res.body.toString('utf8').matchAll(/^chunk (\d+) produced-at (\d+)\.*$/gm)];
  assert.deepEqual(
    produced.map((m) => Number(m[1])),
    Array.from({ length: STREAM_CHUNKS }, (_, i) => i),
    res.body.toString('utf8'),
  );
  return Number(produced.at(-1)![2]) - res.arrivals[0]!.at;
}

/** rawGet sends an HTTP/1.0 GET with `lines` as header lines and returns the response body. */
function rawGet(base: string, path: string, lines: string[]): Promise<string> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const parts: Buffer[] = [];
    socket.setTimeout(30_000, () => socket.destroy(new Error(`GET ${path}: no answer`)));
    socket.on('data', (b: Buffer) => parts.push(b));
    socket.on('error', reject);
    socket.on('end', () => {
      const text = Buffer.concat(parts).toString('utf8');
      const at = text.indexOf('\r\n\r\n');
      if (!/^HTTP\/1\.[01] 200 /.test(text) || at < 0) reject(new Error(`GET ${path}: ${text}`));
      else resolve(text.slice(at + 4));
    });
    socket.write(`GET ${path} HTTP/1.0\r\nHost: ${hostname}\r\n${lines.join('\r\n')}\r\n\r\n`);
  });
}

async function waitForLog(server: RunningServer, pattern: RegExp, ms = 3000): Promise<string> {
  const until = Date.now() + ms;
  for (;;) {
    const log = await server.errorLog();
    if (pattern.test(log) || Date.now() > until) return log;
    await sleep(100);
  }
}

/** cases runs every per-server case as a subtest against one running server. */
async function cases(t: TestContext, setup: CgiSetup, server: RunningServer): Promise<void> {
  const url = (path: string): string => `${server.url}/cgi-bin/${path}`;
  const seen = setup.observed;
  // the Content-Length the client got for a script that sent `sent`
  const checkLength = (got: string | undefined, sent: number): void => {
    if (seen.contentLength === 'kept' || got !== undefined) assert.equal(got, String(sent));
  };
  // The cases are independent (each script run is its own process), so they run side by side,
  // SUBTEST_CONCURRENCY at a time; the streaming case's thresholds leave room for that.
  const pending: Promise<void>[] = [];
  const sub = (name: string, fn: () => Promise<void>): void => {
    pending.push(
      t.test(name, async (st) => {
        try {
          await fn();
        } catch (e) {
          st.diagnostic(`${server.name} logs:\n${await server.errorLog()}`);
          throw e;
        }
      }),
    );
  };

  sub('GET with a query string', async () => {
    const query = 'a=1&b=two%20words&c=caf%C3%A9&d';
    const r = await echo(url(`cgi-echo?${query}`));
    assert.equal(r.REQUEST_METHOD, 'GET');
    assert.equal(r.QUERY_STRING, query, 'QUERY_STRING stays percent-encoded (RFC 3875 §4.1.7)');
    assert.equal(r.PATH_INFO, '');
    assert.equal(r.bytes, 0);
    assert.equal(r.server?.SCRIPT_NAME, '/cgi-bin/cgi-echo');
    assert.equal(r.server?.REQUEST_URI, `/cgi-bin/cgi-echo?${query}`);
  });

  sub('two Cookie lines reach the app, both', async () => {
    // Node's client joins cookies into one line, so the request is written by hand.
    const r = JSON.parse(
      await rawGet(server.url, '/cgi-bin/cgi-echo', ['Cookie: a=1', 'Cookie: b=2']),
    ) as EchoReport;
    const cookie = r.server?.HTTP_COOKIE ?? '';
    note(setup, 'two Cookie lines: HTTP_COOKIE', cookie);
    // Apache joins repeated fields with ', ', lighttpd and nginx 1.23+ with '; '; nginx 1.22 +
    // fcgiwrap passes two HTTP_COOKIE variables, which the script merges with '; ' (RFC 6265).
    assert.match(cookie, /^a=1(; |, )b=2$/);
  });

  sub(`POST of ${UPLOAD_SIZE / MiB} MiB, streamed: read in chunks, hash intact`, async () => {
    const body = uploadBody(UPLOAD_SIZE);
    const r = await post(url('cgi-echo'), body);
    assert.equal(r.bytes, body.size);
    assert.equal(r.sha256, body.sha256);
    assert.equal(r.server?.CONTENT_LENGTH, String(body.size));
    assert.ok(r.server!.chunks > 1, `read in ${r.server!.chunks} chunk(s)`);
    note(
      setup,
      `${UPLOAD_SIZE / MiB} MiB POST: peak RSS MiB (chunks read)`,
      `${mib(r.server!.maxRssBytes)} (${r.server!.chunks})`,
    );
  });

  sub(`POST of ${RSS_UPLOAD_SIZE / MiB} MiB: peak RSS below baseline + body`, async () => {
    const body = uploadBody(RSS_UPLOAD_SIZE);
    // three script processes, each measuring its own peak: running them side by side saves time
    const [empty, streamed, whole] = await Promise.all([
      post(url('cgi-echo'), uploadBody(0)),
      post(url('cgi-echo'), body),
      post(url('cgi-echo?buffer=1'), body),
    ]);
    assert.equal(streamed.sha256, body.sha256);
    assert.equal(whole.sha256, body.sha256);
    // Holding the body whole needs baseline + body at least: that is the bound. The body is big
    // enough for V8 to have collected spent read buffers; with 10 MiB it has not yet (a
    // streamed 10 MiB body peaks 6 to 11 MiB over the baseline), past ~30 MiB the peak levels
    // off 20 to 27 MiB over it whatever the size (a 200 MB body peaked at 68 MiB).
    const baseline = empty.server!.maxRssBytes;
    const bound = baseline + body.size;
    note(
      setup,
      `${RSS_UPLOAD_SIZE / MiB} MiB POST: peak RSS MiB (empty / streamed / read whole)`,
      `${mib(baseline)} / ${mib(streamed.server!.maxRssBytes)} / ${mib(whole.server!.maxRssBytes)}`,
    );
    assert.ok(
      streamed.server!.maxRssBytes < bound,
      `streamed: peak RSS ${mib(streamed.server!.maxRssBytes)} MiB >= baseline ${mib(baseline)} + body ${mib(body.size)} MiB`,
    );
    // The control: the same body read whole must cross the bound, or the bound proves nothing.
    assert.ok(
      whole.server!.maxRssBytes > bound,
      `read whole: peak RSS ${mib(whole.server!.maxRssBytes)} MiB <= ${mib(bound)} MiB`,
    );
  });

  sub('chunked POST (no Content-Length) is read to its end', async () => {
    const body = uploadBody(300_000, 10_000);
    const r = await echo(url('cgi-echo'), { method: 'POST', body: body.chunks() });
    assert.equal(r.bytes, body.size);
    assert.equal(r.sha256, body.sha256);
    // mod_cgi(d) stream the chunked body and pass no CONTENT_LENGTH (the script reads to EOF);
    // lighttpd and nginx spool it first and pass its length.
    assert.equal(r.server?.CONTENT_LENGTH, seen.chunkedBodyLength ? String(body.size) : null);
    assert.equal(r.server?.HTTP_TRANSFER_ENCODING, seen.chunkedTransferEncoding);
    note(setup, 'chunked request: CONTENT_LENGTH', r.server?.CONTENT_LENGTH ?? '(absent)');
  });

  sub('PATH_INFO with encoded characters and UTF-8', async () => {
    const [utf8, slash, invalid] = await Promise.all([
      httpRequest(url('cgi-echo/a%20b/caf%C3%A9')),
      httpRequest(url('cgi-echo/a%2Fb')),
      httpRequest(url('cgi-echo/%FF')),
    ]);
    assert.equal(utf8.status, 200, utf8.text());
    const r = JSON.parse(utf8.text()) as EchoReport;
    assert.equal(r.PATH_INFO, '/a b/café', 'PATH_INFO is decoded (RFC 3875 §4.1.5)');
    assert.equal(r.server?.SCRIPT_NAME, '/cgi-bin/cgi-echo');
    assert.equal(r.server?.REQUEST_URI, '/cgi-bin/cgi-echo/a%20b/caf%C3%A9');

    if (seen.encodedSlash === 'decoded') {
      assert.equal(slash.status, 200, slash.text());
      assert.equal((JSON.parse(slash.text()) as EchoReport).PATH_INFO, '/a/b');
    } else {
      assert.equal(slash.status, seen.encodedSlash, 'Apache: AllowEncodedSlashes Off');
    }
    if (seen.invalidUtf8 === 'replaced') {
      assert.equal(invalid.status, 200, invalid.text());
      // the byte 0xFF reaches the script; the translator turns it into U+FFFD
      assert.equal((JSON.parse(invalid.text()) as EchoReport).PATH_INFO, '/\uFFFD');
    } else {
      assert.equal(invalid.status, seen.invalidUtf8);
    }
    note(setup, '/a%2Fb', slash.status === 200 ? 'PATH_INFO=/a/b' : String(slash.status));
    note(setup, '/%FF', invalid.status === 200 ? 'PATH_INFO=/\\uFFFD' : String(invalid.status));
  });

  sub('status codes from the app: 404, 418, 500', async () => {
    const cases: [string, number, string, string][] = [
      // [query, status, body, reason phrase on the wire]
      ['code=404&reason=Nope%20Not%20Here', 404, '404 Nope Not Here\n', 'Nope Not Here'],
      ['code=418', 418, "418 I'm a teapot\n", "I'm a teapot"],
      ['code=500', 500, '500 Internal Server Error\n', 'Internal Server Error'],
    ];
    const answers = await Promise.all(cases.map(([q]) => httpRequest(url(`cgi-status?${q}`))));
    // a server that does not keep the app's reason sends its own ('' for 418: lighttpd)
    const ownReasons: Record<number, string> = {
      404: 'Not Found',
      418: '',
      500: cases[2]![3],
    };
    cases.forEach(([q, status, body, reason], i) => {
      const res = answers[i]!;
      assert.equal(res.status, status, q);
      assert.equal(res.text(), body, q);
      assert.equal(res.headers['content-type'], 'text/plain; charset=utf-8', q);
      assert.equal(res.statusMessage, seen.keepsReason ? reason : ownReasons[status], q);
    });
    note(
      setup,
      'reason phrases (404 "Nope Not Here", 418)',
      answers
        .slice(0, 2)
        .map((r) => JSON.stringify(r.statusMessage))
        .join(', '),
    );
  });

  sub('Location redirect: 302 with an absolute URL', async () => {
    const target = 'http://example.com/there?a=1&b=caf%C3%A9';
    const res = await httpRequest(url(`cgi-status?location=${encodeURIComponent(target)}`));
    assert.equal(res.status, 302);
    assert.equal(res.headers.location, target);
    assert.equal(
      res.text(),
      `moved to ${target}\n`,
      'a client redirect may carry a body (RFC 3875 §6.2.4)',
    );
  });

  sub('HEAD: no body, the same headers as GET', async () => {
    const [get, head] = await Promise.all([
      httpRequest(url('hello')),
      httpRequest(url('hello'), { method: 'HEAD' }),
    ]);
    assert.equal(get.text(), 'Hello, world!\n');
    assert.equal(head.body.length, 0);
    const g = normalizeResponse(get);
    const h = normalizeResponse(head, 'HEAD');
    assert.equal(h.status, g.status);
    assert.deepEqual(h.headers, g.headers);
    // The script always sends Content-Length: 14
    checkLength(get.headers['content-length'], 14);
    checkLength(head.headers['content-length'], 14);
  });

  sub('binary download of 1 MiB is byte-exact', async () => {
    const res = await httpRequest(url('cgi-binary'));
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'application/octet-stream');
    assert.equal(res.headers['content-disposition'], 'attachment; filename="payload.bin"');
    assert.equal(res.body.length, BINARY_SIZE);
    const payload = binaryPayload();
    assert.equal(new Set(payload).size, 256, 'the payload holds every byte value');
    assert.equal(sha256(res.body), sha256(payload));
    checkLength(res.headers['content-length'], BINARY_SIZE);
  });

  sub('an app that throws: generic 500, the stack in the error log', async () => {
    const tag = `tag-${process.pid}-${Date.now()}`;
    const res = await httpRequest(url(`cgi-throw?${tag}`));
    assert.equal(res.status, 500);
    assert.equal(res.headers['content-type'], 'text/plain; charset=utf-8');
    assert.equal(res.text(), '500 Internal Server Error\n');
    const found = new RegExp(`${THROW_MARKER} ${tag}[\\s\\S]*?\\bat .*cgi-throw:\\d+:\\d+`);
    const log = await waitForLog(server, found);
    assert.match(log, found, 'message and stack reach the error log through stderr');
  });

  sub('a body written over time (5 lines, 300 ms apart)', async () => {
    // small lines, the same with X-Accel-Buffering: no, and lines padded past fcgiwrap's buffer
    const [small, accel, padded] = await Promise.all([
      firstArrivalLead(url('cgi-stream')),
      firstArrivalLead(url('cgi-stream?accel=no')),
      firstArrivalLead(url('cgi-stream?pad=8200')),
    ]);
    const passes = (lead: number): boolean => lead >= STREAM_INTERVAL_MS;
    const expected: Record<Streaming, [boolean, boolean]> = {
      chunks: [true, true],
      blocks: [false, true],
      whole: [false, false],
    };
    note(
      setup,
      'first byte before last line (ms): small / accel=no / 8200 B',
      `${small} / ${accel} / ${padded}`,
    );
    const [smallPasses, paddedPasses] = expected[seen.streaming];
    for (const [what, lead, want] of [
      ['34-byte lines', small, smallPasses],
      ['34-byte lines, X-Accel-Buffering: no', accel, smallPasses],
      ['8200-byte lines', padded, paddedPasses],
    ] as const) {
      if (want) {
        assert.ok(passes(lead), `${what}: first byte only ${lead} ms before the last line`);
      } else {
        assert.ok(
          lead <= 0,
          `${what}: expected held until the end, first byte came ${lead} ms early`,
        );
      }
    }
  });

  await Promise.all(pending);
}

for (const setup of CGI_SETUPS) {
  test(setup.name, { concurrency: SUBTEST_CONCURRENCY }, async (t) => {
    if (!requireTool(t, ...setup.tools)) return;
    const w = await theWorld();
    const dir = await cgiDir(w);
    const t0 = performance.now();
    const server = await setup.start(w, dir);
    const started = performance.now();
    running.push({ setup, server });
    await cases(t, setup, server);
    note(
      setup,
      'start / cases (s)',
      `${((started - t0) / 1000).toFixed(1)} / ${((performance.now() - started) / 1000).toFixed(1)}`,
    );
    t.diagnostic(`${setup.name} (${setup.harness}):`);
    for (const [k, v] of findings.get(setup.name) ?? []) t.diagnostic(`  ${k}: ${v}`);
  });
}

/** One row of the cross-server table: a request every server must answer alike. */
interface Row {
  name: string;
  path: string;
  opts?: HttpRequestOptions;
  /** status the answers must have (so that a common failure does not pass as agreement). */
  status: number;
  /** check looks at the body the answers share, for the same reason. */
  check?: (body: string) => void;
}

/** echoed checks a portable cgi-echo answer: the fields that must arrive the same everywhere. */
const echoed =
  (method: string, pathInfo: string, query: string, body = '') =>
  (text: string): void => {
    const r = JSON.parse(text) as EchoReport;
    assert.deepEqual(r, {
      REQUEST_METHOD: method,
      PATH_INFO: pathInfo,
      QUERY_STRING: query,
      bytes: Buffer.byteLength(body),
      sha256: sha256(Buffer.from(body)),
    });
  };

const TARGET = 'http://example.com/next?x=1';
const FORM = 'name=J%C3%BCrgen&comment=a+b%26c';
const IDENTICAL: Row[] = [
  {
    name: 'GET hello',
    path: 'hello',
    status: 200,
    check: (b) => assert.equal(b, 'Hello, world!\n'),
  },
  {
    name: 'HEAD hello',
    path: 'hello',
    opts: { method: 'HEAD' },
    status: 200,
    check: (b) => assert.equal(b, ''),
  },
  {
    name: 'GET with PATH_INFO and query',
    path: 'cgi-echo/a%20b/caf%C3%A9?portable=1&q=caf%C3%A9+x',
    status: 200,
    check: echoed('GET', '/a b/café', 'portable=1&q=caf%C3%A9+x'),
  },
  {
    name: 'POST urlencoded form',
    path: 'cgi-echo?portable=1',
    opts: {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: FORM,
    },
    status: 200,
    check: echoed('POST', '', 'portable=1', FORM),
  },
  { name: '404 from the app', path: 'cgi-status?code=404', status: 404 },
  { name: '418 from the app', path: 'cgi-status?code=418', status: 418 },
  { name: '500 from the app', path: 'cgi-status?code=500', status: 500 },
  { name: '302 redirect', path: `cgi-status?location=${encodeURIComponent(TARGET)}`, status: 302 },
  {
    name: '1 MiB binary',
    path: 'cgi-binary',
    status: 200,
    check: (b) => assert.equal(b, `${BINARY_SIZE} bytes, sha256 ${sha256(binaryPayload())}`),
  },
  {
    name: 'app that throws',
    path: 'cgi-throw?same',
    status: 500,
    check: (b) => assert.equal(b, '500 Internal Server Error\n'),
  },
];

// Rows run three at a time (each row sends its request to every server at once).
test('the same request answered identically by all four servers', { concurrency: 3 }, async (t) => {
  if (running.length < 2) {
    t.skip(`SKIP: ${running.length} server(s) ran; nothing to compare`);
    return;
  }
  if (running.length < CGI_SETUPS.length) {
    t.diagnostic(`comparing only ${running.map((r) => r.setup.name).join(', ')}`);
  }
  const rows = IDENTICAL.map((row) =>
    t.test(row.name, async () => {
      const answers = await Promise.all(
        running.map(async ({ setup, server }) => {
          const res = await httpRequest(`${server.url}/cgi-bin/${row.path}`, row.opts);
          return { name: setup.name, normalized: normalizeResponse(res, row.opts?.method) };
        }),
      );
      const first = answers[0]!;
      assert.equal(first.normalized.status, row.status, JSON.stringify(first.normalized));
      row.check?.(first.normalized.body);
      for (const a of answers.slice(1)) {
        assert.deepEqual(a.normalized, first.normalized, `${a.name} differs from ${first.name}`);
      }
    }),
  );
  await Promise.all(rows);
  t.diagnostic(
    `bundling the ${Object.keys(CGI_SCRIPTS).length} scripts took ${(bundleMs / 1000).toFixed(1)} s`,
  );
});
