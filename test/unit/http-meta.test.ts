// Tests for src/cgi/http-meta.ts: raw HTTP requests over a socket to a real node:http server on
// loopback, one table row per request, checking the meta-variables the translator builds.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { bodyLength, buildEnviron, type MetaVariables } from '../../src/cgi/environ.js';
import {
  metaVariablesFromHttp,
  requestPath,
  splitTarget,
  type HttpMetaOptions,
} from '../../src/cgi/http-meta.js';
import { isBridgeError } from '../../src/errors.js';

type Reply =
  { vars: MetaVariables; length: number | null } | { error: { code: string; status: number } };

// One server per listen address; each request says which options to use by its row.
interface Harness {
  server: Server;
  port: number;
  options: HttpMetaOptions;
}

async function startHarness(host: string): Promise<Harness> {
  const h: Harness = { server: createServer(), port: 0, options: {} };
  h.server.on('request', (req, res) => {
    let reply: Reply;
    try {
      const vars = metaVariablesFromHttp(req, h.options);
      const length = bodyLength(vars);
      // buildEnviron must accept whatever metaVariablesFromHttp produced.
      buildEnviron(vars, {
        input: null,
        errors: { write() {}, writelines() {}, flush() {} },
        signal: new AbortController().signal,
        multithread: true,
        multiprocess: false,
        runOnce: false,
      });
      reply = { vars, length };
    } catch (e) {
      if (!isBridgeError(e)) throw e;
      reply = { error: { code: e.code, status: e.status } };
    }
    req.resume();
    req.on('end', () => {
      res.setHeader('Content-Type', 'application/json; charset=utf-8');
      res.end(JSON.stringify(reply));
    });
  });
  await new Promise<void>((resolve) => h.server.listen(0, host, resolve));
  h.port = (h.server.address() as AddressInfo).port;
  return h;
}

// Sends raw bytes (latin-1 string: one char per byte) and returns the whole response.
function send(port: number, request: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const sock = connect(port, '127.0.0.1', () => sock.end(Buffer.from(request, 'latin1')));
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('error', reject);
    sock.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0);
      resolve({ status, body: text.slice(text.indexOf('\r\n\r\n') + 4) });
    });
  });
}

function request(line: string, headers: string[] = ['Host: 127.0.0.1'], body = ''): string {
  return [line, ...headers, 'Connection: close', '', body].join('\r\n');
}

interface Row {
  name: string;
  raw: string;
  options?: HttpMetaOptions;
  /** want: variables that must hold these values (undefined: absent). */
  want?: Record<string, string | undefined>;
  length?: number | null;
  error?: { code: string; status: number };
  /** status: node:http itself answers (the translator never runs). */
  status?: number;
}

const rows: Row[] = [
  {
    name: 'PATH_INFO is decoded, QUERY_STRING and REQUEST_URI stay raw',
    raw: request('GET /app.x/p%20q/r?a=1&b=%20 HTTP/1.1'),
    want: {
      REQUEST_METHOD: 'GET',
      SCRIPT_NAME: '',
      PATH_INFO: '/app.x/p q/r',
      QUERY_STRING: 'a=1&b=%20',
      REQUEST_URI: '/app.x/p%20q/r?a=1&b=%20',
      SERVER_PROTOCOL: 'HTTP/1.1',
      GATEWAY_INTERFACE: 'CGI/1.1',
      REQUEST_SCHEME: 'http',
      HTTPS: undefined,
      SERVER_SOFTWARE: 'cgi-bridge',
      CONTENT_LENGTH: undefined,
      CONTENT_TYPE: undefined,
    },
    length: 0,
  },
  {
    name: 'the mount point splits SCRIPT_NAME from PATH_INFO',
    raw: request('GET /app.x/p%20q/r?a=1 HTTP/1.1'),
    options: { scriptName: '/app.x' },
    want: { SCRIPT_NAME: '/app.x', PATH_INFO: '/p q/r', REQUEST_URI: '/app.x/p%20q/r?a=1' },
  },
  {
    name: 'the mount point itself has an empty PATH_INFO',
    raw: request('GET /app.x HTTP/1.1'),
    options: { scriptName: '/app.x' },
    want: { SCRIPT_NAME: '/app.x', PATH_INFO: '' },
  },
  {
    name: 'a mount point with a trailing slash',
    raw: request('GET /cgi-bin/env HTTP/1.1'),
    options: { scriptName: '/cgi-bin/' },
    want: { SCRIPT_NAME: '/cgi-bin', PATH_INFO: '/env' },
  },
  {
    name: 'the root mount is an empty SCRIPT_NAME',
    raw: request('GET /x HTTP/1.1'),
    options: { scriptName: '/' },
    want: { SCRIPT_NAME: '', PATH_INFO: '/x' },
  },
  {
    name: 'a mount point given decoded matches an encoded path',
    raw: request('GET /caf%C3%A9/x HTTP/1.1'),
    options: { scriptName: '/café' },
    want: { SCRIPT_NAME: '/café', PATH_INFO: '/x' },
  },
  {
    name: 'a path outside the mount is a 404',
    raw: request('GET /app.xy/p HTTP/1.1'),
    options: { scriptName: '/app.x' },
    error: { code: 'CGI_ERR_OUTSIDE_MOUNT', status: 404 },
  },
  {
    name: 'dot segments cannot leave the mount',
    raw: request('GET /app.x/../secret HTTP/1.1'),
    options: { scriptName: '/app.x' },
    error: { code: 'CGI_ERR_OUTSIDE_MOUNT', status: 404 },
  },
  {
    name: 'UTF-8 in the path',
    raw: request('GET /caf%C3%A9/%E2%98%95 HTTP/1.1'),
    want: { PATH_INFO: '/café/☕', REQUEST_URI: '/caf%C3%A9/%E2%98%95' },
  },
  {
    name: 'an invalid UTF-8 byte in the path becomes U+FFFD',
    raw: request('GET /caf%C3%A9/%FF HTTP/1.1'),
    want: { PATH_INFO: '/café/\uFFFD', REQUEST_URI: '/caf%C3%A9/%FF' },
  },
  {
    name: 'dot segments are removed',
    raw: request('GET /a/../b/./c HTTP/1.1'),
    want: { PATH_INFO: '/b/c', REQUEST_URI: '/a/../b/./c' },
  },
  {
    name: 'encoded dot segments are removed too',
    raw: request('GET /a/%2e%2e/%2E%2E/etc/passwd HTTP/1.1'),
    want: { PATH_INFO: '/etc/passwd' },
  },
  {
    name: 'a trailing dot segment keeps the slash',
    raw: request('GET /a/b/.. HTTP/1.1'),
    want: { PATH_INFO: '/a/' },
  },
  {
    name: '%2F is decoded to / (as nginx and lighttpd; Apache refuses it by default)',
    raw: request('GET /a%2Fb HTTP/1.1'),
    want: { PATH_INFO: '/a/b', REQUEST_URI: '/a%2Fb' },
  },
  {
    name: '%2F with dots cannot climb out',
    raw: request('GET /app.x/..%2F..%2Fetc HTTP/1.1'),
    options: { scriptName: '/app.x' },
    error: { code: 'CGI_ERR_OUTSIDE_MOUNT', status: 404 },
  },
  {
    name: 'runs of slashes are merged before the mount split',
    raw: request('GET //app.x//p///q HTTP/1.1'),
    options: { scriptName: '/app.x' },
    want: { SCRIPT_NAME: '/app.x', PATH_INFO: '/p/q', REQUEST_URI: '//app.x//p///q' },
  },
  {
    name: 'a bad percent escape is a 400',
    raw: request('GET /a%zz HTTP/1.1'),
    error: { code: 'CGI_ERR_BAD_REQUEST_TARGET', status: 400 },
  },
  {
    name: 'a truncated percent escape is a 400',
    raw: request('GET /a%4 HTTP/1.1'),
    error: { code: 'CGI_ERR_BAD_REQUEST_TARGET', status: 400 },
  },
  {
    name: 'an encoded NUL is a 400',
    raw: request('GET /a%00b HTTP/1.1'),
    error: { code: 'CGI_ERR_BAD_REQUEST_TARGET', status: 400 },
  },
  {
    name: 'OPTIONS * is not a path: 400',
    raw: request('OPTIONS * HTTP/1.1'),
    error: { code: 'CGI_ERR_BAD_REQUEST_TARGET', status: 400 },
  },
  {
    name: "the query is raw, a bad escape in it is the app's business",
    raw: request('GET /q?a=%20&b=+&c=%zz&d=caf%C3%A9 HTTP/1.1'),
    want: { QUERY_STRING: 'a=%20&b=+&c=%zz&d=caf%C3%A9', PATH_INFO: '/q' },
  },
  {
    name: 'an empty query after ? stays in REQUEST_URI',
    raw: request('GET /q? HTTP/1.1'),
    want: { QUERY_STRING: '', REQUEST_URI: '/q?' },
  },
  {
    name: 'absolute-form: path from the target, HTTP_HOST from its authority (RFC 9112 §3.2.2)',
    raw: request('GET http://example.com:81/a%20b?x=1 HTTP/1.1', ['Host: other']),
    want: {
      PATH_INFO: '/a b',
      QUERY_STRING: 'x=1',
      REQUEST_URI: '/a%20b?x=1',
      HTTP_HOST: 'example.com:81',
      SERVER_NAME: 'example.com',
    },
  },
  {
    name: 'absolute-form without a path, with userinfo',
    raw: request('GET http://user:pw@example.com?x HTTP/1.1', ['Host: other']),
    want: { PATH_INFO: '/', REQUEST_URI: '/?x', HTTP_HOST: 'example.com' },
  },
  {
    name: 'headers holding _ are dropped, - becomes _',
    raw: request('GET / HTTP/1.1', [
      'Host: h',
      'X_Under: 1',
      'X-Dash: 2',
      'X_Forwarded_For: 6.6.6.6',
    ]),
    want: { HTTP_X_UNDER: undefined, HTTP_X_DASH: '2', HTTP_X_FORWARDED_FOR: undefined },
  },
  {
    name: 'Proxy never becomes HTTP_PROXY (httpoxy)',
    raw: request('GET / HTTP/1.1', ['Host: h', 'Proxy: http://evil:3128']),
    want: { HTTP_PROXY: undefined },
  },
  {
    name: 'repeated headers are joined with ", ", Cookie with "; "',
    raw: request('GET / HTTP/1.1', [
      'Host: h',
      'X-Multi: 1',
      'X-Multi: 2',
      'Cookie: a=1',
      'Cookie: b=2',
      'Accept: text/html',
      'Accept: */*',
    ]),
    want: { HTTP_X_MULTI: '1, 2', HTTP_COOKIE: 'a=1; b=2', HTTP_ACCEPT: 'text/html, */*' },
  },
  {
    name: 'Content-Length and Content-Type are CONTENT_* only',
    raw: request(
      'POST /f HTTP/1.1',
      ['Host: h', 'Content-Type: text/plain', 'Content-Length: 3'],
      'abc',
    ),
    want: {
      REQUEST_METHOD: 'POST',
      CONTENT_LENGTH: '3',
      CONTENT_TYPE: 'text/plain',
      HTTP_CONTENT_LENGTH: undefined,
      HTTP_CONTENT_TYPE: undefined,
    },
    length: 3,
  },
  {
    name: 'a chunked body has no CONTENT_LENGTH: read to EOF',
    raw: request(
      'POST /f HTTP/1.1',
      ['Host: h', 'Transfer-Encoding: chunked'],
      '3\r\nabc\r\n0\r\n\r\n',
    ),
    want: { CONTENT_LENGTH: undefined, HTTP_TRANSFER_ENCODING: 'chunked' },
    length: null,
  },
  {
    name: 'header bytes are decoded by the UTF-8 rule',
    raw: request('GET / HTTP/1.1', ['Host: h', 'X-Bytes: caf\xc3\xa9 \xff']),
    want: { HTTP_X_BYTES: 'café \uFFFD' },
  },
  {
    name: 'SERVER_NAME from an IPv6 Host keeps the brackets; SERVER_PORT is the real port',
    raw: request('GET / HTTP/1.1', ['Host: [::1]:8080']),
    want: { SERVER_NAME: '[::1]', HTTP_HOST: '[::1]:8080' },
  },
  {
    name: 'SERVER_NAME from Host without the port',
    raw: request('GET / HTTP/1.1', ['Host: example.com:8080']),
    want: { SERVER_NAME: 'example.com' },
  },
  {
    name: 'no Host (HTTP/1.0): SERVER_NAME is the local address',
    raw: request('GET / HTTP/1.0', []),
    want: { SERVER_NAME: '127.0.0.1', HTTP_HOST: undefined, SERVER_PROTOCOL: 'HTTP/1.0' },
  },
  {
    name: 'https option',
    raw: request('GET / HTTP/1.1'),
    options: { https: true, serverSoftware: 'test/1' },
    want: { HTTPS: 'on', REQUEST_SCHEME: 'https', SERVER_SOFTWARE: 'test/1' },
  },
  {
    name: 'an extension method passes',
    raw: request('PROPFIND /d HTTP/1.1'),
    want: { REQUEST_METHOD: 'PROPFIND' },
  },
  {
    name: 'a raw non-ASCII byte in the target: node:http refuses it (400) before the translator',
    raw: request('GET /caf\xc3\xa9 HTTP/1.1'),
    status: 400,
  },
];

async function check(h: Harness, row: Row): Promise<MetaVariables | undefined> {
  h.options = row.options ?? {};
  const res = await send(h.port, row.raw);
  if (row.status !== undefined) {
    assert.equal(res.status, row.status);
    return undefined;
  }
  assert.equal(res.status, 200, res.body);
  const reply = JSON.parse(res.body) as Reply;
  if (row.error !== undefined) {
    assert.deepEqual(reply, { error: row.error });
    return undefined;
  }
  assert.ok('vars' in reply, JSON.stringify(reply));
  for (const [k, v] of Object.entries(row.want ?? {})) assert.equal(reply.vars[k], v, k);
  if (row.length !== undefined) assert.equal(reply.length, row.length, 'bodyLength');
  return reply.vars;
}

describe('metaVariablesFromHttp over a real node:http server', () => {
  let v4: Harness;
  let mapped: Harness;

  before(async () => {
    v4 = await startHarness('127.0.0.1');
    // An IPv6 socket bound to an IPv4-mapped loopback address: node reports ::ffff:127.0.0.1,
    // as on a dual-stack listener.
    mapped = await startHarness('::ffff:127.0.0.1');
  });

  after(async () => {
    await Promise.all(
      [v4, mapped].map((h) => new Promise<void>((resolve) => h.server.close(() => resolve()))),
    );
  });

  for (const row of rows) {
    it(row.name, async () => {
      await check(v4, row);
    });
  }

  it('REMOTE_ADDR, SERVER_ADDR, ports', async () => {
    const vars = await check(v4, { name: '', raw: request('GET / HTTP/1.1') });
    assert.equal(vars?.REMOTE_ADDR, '127.0.0.1');
    assert.equal(vars?.SERVER_ADDR, '127.0.0.1');
    assert.equal(vars?.SERVER_PORT, String(v4.port));
    assert.match(vars?.REMOTE_PORT ?? '', /^[0-9]+$/);
  });

  it("REMOTE_ADDR and SERVER_ADDR lose node's ::ffff: on an IPv6 socket", async () => {
    const vars = await check(mapped, { name: '', raw: request('GET / HTTP/1.0', []) });
    assert.equal(vars?.REMOTE_ADDR, '127.0.0.1');
    assert.equal(vars?.SERVER_ADDR, '127.0.0.1');
    assert.equal(vars?.SERVER_NAME, '127.0.0.1');
    assert.equal(vars?.SERVER_PORT, String(mapped.port));
  });

  it('every value is a string', async () => {
    const vars = await check(v4, rows[0]!);
    for (const [k, v] of Object.entries(vars ?? {})) assert.equal(typeof v, 'string', k);
  });
});

describe('splitTarget', () => {
  const tests: [string, ReturnType<typeof splitTarget>][] = [
    ['/a?b', { path: '/a', query: 'b' }],
    ['/a', { path: '/a', query: '' }],
    ['/a?b?c', { path: '/a', query: 'b?c' }],
    ['http://h:81/a?b', { path: '/a', query: 'b', authority: 'h:81' }],
    ['HTTPS://u@h', { path: '/', query: '', authority: 'h' }],
    ['http://[::1]:8080/x', { path: '/x', query: '', authority: '[::1]:8080' }],
    ['*', { path: '*', query: '' }],
  ];
  for (const [url, want] of tests) {
    it(url, () => assert.deepEqual(splitTarget(url), want));
  }
});

describe('requestPath', () => {
  const tests: [string, string][] = [
    ['/plain/path.js', '/plain/path.js'],
    ['/p%20q', '/p q'],
    ['/a//b', '/a/b'],
    ['/a/.//../b', '/b'],
    ['/.well-known/x', '/.well-known/x'],
  ];
  for (const [raw, want] of tests) {
    it(`${raw} -> ${want}`, () => assert.equal(requestPath(raw), want));
  }
});
