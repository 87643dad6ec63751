// Table tests of the translator over the parameter sets real servers sent (test/fixtures/params,
// captured by scripts/capture-params.sh): one row per server per request, each fed the way its
// front end receives it (FastCGI: encoded and decoded params; CGI: an environment block).
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  buildEnviron,
  metaVariablesFromPairs,
  metaVariablesFromProcessEnv,
  type MetaVariables,
} from '../../src/cgi/environ.js';
import { decodeBytes } from '../../src/cgi/decode.js';
import { decodeParams, encodeParams } from '../../src/fastcgi/params.js';
import type { Environ } from '../../src/gateway/types.js';

const DIR = fileURLToPath(new URL('../fixtures/params/', import.meta.url));
const R = '\uFFFD';
const ROOT = '/tmp/cgi-bridge-params'; // the capture's work directory, kept in the data

type FixtureValue = string | { base64: string };

function loadRaw(file: string): [Buffer, Buffer][] {
  const data = JSON.parse(readFileSync(join(DIR, file), 'utf8')) as [FixtureValue, FixtureValue][];
  const bytes = (v: FixtureValue): Buffer =>
    typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v.base64, 'base64');
  return data.map(([k, v]) => [bytes(k), bytes(v)]);
}

interface Server {
  kind: 'fcgi' | 'cgi';
  port: string;
  serverName: string;
  scriptFilename: string;
}

const FCGI_FILE = `${ROOT}/root/app.x`;
const CGI_FILE = `${ROOT}/cgi-bin/app.x`;
const servers: Record<string, Server> = {
  'nginx-fastcgi': {
    kind: 'fcgi',
    port: '18471',
    serverName: 'localhost',
    scriptFilename: FCGI_FILE,
  },
  'nginx-fastcgi-conf': {
    kind: 'fcgi',
    port: '18475',
    serverName: 'localhost',
    scriptFilename: FCGI_FILE,
  },
  'nginx-fcgiwrap': {
    kind: 'cgi',
    port: '18471',
    serverName: 'localhost',
    scriptFilename: CGI_FILE,
  },
  'apache-proxy-fcgi-generic': {
    kind: 'fcgi',
    port: '18472',
    serverName: '127.0.0.1',
    scriptFilename: FCGI_FILE,
  },
  'apache-proxy-fcgi-fpm': {
    kind: 'fcgi',
    port: '18473',
    serverName: '127.0.0.1',
    // ProxyFCGIBackendType FPM: passed through unchanged (php-fpm strips the prefix itself).
    scriptFilename: `proxy:fcgi://127.0.0.1:18470${FCGI_FILE}`,
  },
  'apache-cgid': { kind: 'cgi', port: '18472', serverName: '127.0.0.1', scriptFilename: CGI_FILE },
  'apache-cgi': { kind: 'cgi', port: '18473', serverName: '127.0.0.1', scriptFilename: CGI_FILE },
  'lighttpd-fastcgi': {
    kind: 'fcgi',
    port: '18474',
    serverName: '127.0.0.1',
    scriptFilename: FCGI_FILE,
  },
  'lighttpd-cgi': { kind: 'cgi', port: '18474', serverName: '127.0.0.1', scriptFilename: CGI_FILE },
};

interface Case {
  method: string;
  pathInfo: string;
  query: string;
  /** uri is REQUEST_URI after the route prefix and /app.x. */
  uri: string;
  body: string;
}

const PQR: Omit<Case, 'method' | 'body'> = {
  pathInfo: '/p q/r',
  query: 'a=1&b=%20',
  uri: '/p%20q/r?a=1&b=%20',
};
const P: Omit<Case, 'method' | 'body'> = { pathInfo: '/p', query: '', uri: '/p' };
const BYTES = { method: 'GET', query: '', body: '', pathInfo: `/café/${R}` };
const cases: Record<string, Case> = {
  get: { method: 'GET', ...PQR, body: '' },
  post: { method: 'POST', ...PQR, body: 'abc' },
  chunked: { method: 'POST', ...PQR, body: 'abc' },
  bytes: { ...BYTES, uri: '/caf%C3%A9/%FF' },
  bytes80: { ...BYTES, uri: '/caf%C3%A9/%80' },
  proxy: { method: 'GET', ...P, body: '' },
  underscore: { method: 'GET', ...P, body: '' },
  dupheader: { method: 'GET', ...P, body: '' },
};

interface Row {
  s: string; // server
  c: string; // case
  /** rawCl is CONTENT_LENGTH as the server sent it (undefined: not sent). */
  rawCl: string | undefined;
  /** len is bodyLength: null means read to EOF. */
  len: number | null;
  /** cl is CONTENT_LENGTH in the environ. */
  cl: string | undefined;
  /** want lists more variables the environ must hold (undefined: absent). */
  want?: Record<string, string | undefined>;
  /** raw lists variables the server's own set must hold, to show the row tests something. */
  raw?: Record<string, string | undefined>;
}

const FORM = 'application/x-www-form-urlencoded';
const XB = `café ${R}`; // X-Bytes: caf\xC3\xA9 \xFF (or \x80), by the UTF-8 rule
const APACHE_DUP = {
  HTTP_X_MULTI: '1, 2',
  HTTP_COOKIE: 'a=1, b=2',
  HTTP_X_FORWARDED_FOR: '192.0.2.1',
};
const NGINX_DUP = {
  HTTP_X_MULTI: '1, 2',
  HTTP_COOKIE: 'a=1; b=2',
  HTTP_X_FORWARDED_FOR: '192.0.2.1',
};
const LIGHTTPD_DUP = {
  HTTP_X_MULTI: '1, 2',
  HTTP_COOKIE: 'a=1; b=2',
  HTTP_X_FORWARDED_FOR: '192.0.2.1, 198.51.100.66', // lighttpd passes X_Forwarded_For too
};
const NGINX_DUP_RAW = { HTTP_COOKIE: 'a=1' }; // first of two HTTP_COOKIE params (the loader keeps the first)
const PROXY_SENT = { HTTP_PROXY: 'evil' };
const PROXY_GONE = { HTTP_PROXY: undefined };
const GET_NGINX = {
  want: { CONTENT_TYPE: undefined, REMOTE_USER: undefined },
  raw: { CONTENT_TYPE: '', REMOTE_USER: '' },
};
const CHUNKED_NGINX = { want: { HTTP_TRANSFER_ENCODING: 'chunked', CONTENT_TYPE: FORM } };
const CHUNKED_APACHE_CGI = { want: { HTTP_TRANSFER_ENCODING: 'chunked', CONTENT_TYPE: FORM } };
const UNDER_DROPPED = { want: { HTTP_X_UNDER: undefined, HTTP_X_DASH: '2' } };
const UNDER_PASSED = { want: { HTTP_X_UNDER: '1', HTTP_X_DASH: '2' } };
const NO_LEN = { rawCl: undefined, len: 0, cl: undefined };
const LEN3 = { rawCl: '3', len: 3, cl: '3' };

const rows: Row[] = [
  // nginx fastcgi_pass (Debian fastcgi_params)
  { s: 'nginx-fastcgi', c: 'get', rawCl: '', len: 0, cl: undefined, ...GET_NGINX },
  {
    s: 'nginx-fastcgi',
    c: 'post',
    ...LEN3,
    want: { CONTENT_TYPE: FORM, HTTP_CONTENT_LENGTH: '3' },
  },
  { s: 'nginx-fastcgi', c: 'chunked', ...LEN3, ...CHUNKED_NGINX },
  { s: 'nginx-fastcgi', c: 'bytes', rawCl: '', len: 0, cl: undefined, want: { HTTP_X_BYTES: XB } },
  {
    s: 'nginx-fastcgi',
    c: 'bytes80',
    rawCl: '',
    len: 0,
    cl: undefined,
    want: { HTTP_X_BYTES: XB },
  },
  {
    s: 'nginx-fastcgi',
    c: 'proxy',
    rawCl: '',
    len: 0,
    cl: undefined,
    want: PROXY_GONE,
    raw: PROXY_SENT,
  },
  { s: 'nginx-fastcgi', c: 'underscore', rawCl: '', len: 0, cl: undefined, ...UNDER_DROPPED },
  {
    s: 'nginx-fastcgi',
    c: 'dupheader',
    rawCl: '',
    len: 0,
    cl: undefined,
    want: NGINX_DUP,
    raw: NGINX_DUP_RAW,
  },
  // nginx with `include fastcgi.conf` + its own SCRIPT_FILENAME: sent twice, the last wins
  {
    s: 'nginx-fastcgi-conf',
    c: 'get',
    rawCl: '',
    len: 0,
    cl: undefined,
    want: { HTTP_HOST: '127.0.0.1:18475' },
    raw: { SCRIPT_FILENAME: `${ROOT}/nginx-conf/htdocs/fcgi/app.x` },
  },
  {
    s: 'nginx-fastcgi-conf',
    c: 'dupheader',
    rawCl: '',
    len: 0,
    cl: undefined,
    want: NGINX_DUP,
    raw: NGINX_DUP_RAW,
  },
  // nginx + fcgiwrap (CGI): the same params in an environment block, plus fcgiwrap's own
  { s: 'nginx-fcgiwrap', c: 'get', rawCl: '', len: 0, cl: undefined, ...GET_NGINX },
  { s: 'nginx-fcgiwrap', c: 'post', ...LEN3, want: { CONTENT_TYPE: FORM, FCGI_ROLE: 'RESPONDER' } },
  { s: 'nginx-fcgiwrap', c: 'chunked', ...LEN3, ...CHUNKED_NGINX },
  { s: 'nginx-fcgiwrap', c: 'bytes', rawCl: '', len: 0, cl: undefined, want: { HTTP_X_BYTES: XB } },
  {
    s: 'nginx-fcgiwrap',
    c: 'bytes80',
    rawCl: '',
    len: 0,
    cl: undefined,
    want: { HTTP_X_BYTES: XB },
  },
  {
    s: 'nginx-fcgiwrap',
    c: 'proxy',
    rawCl: '',
    len: 0,
    cl: undefined,
    want: PROXY_GONE,
    raw: PROXY_SENT,
  },
  { s: 'nginx-fcgiwrap', c: 'underscore', rawCl: '', len: 0, cl: undefined, ...UNDER_DROPPED },
  {
    s: 'nginx-fcgiwrap',
    c: 'dupheader',
    rawCl: '',
    len: 0,
    cl: undefined,
    want: NGINX_DUP,
    raw: NGINX_DUP_RAW,
  },
  // Apache mod_proxy_fcgi, GENERIC backend type (event MPM)
  { s: 'apache-proxy-fcgi-generic', c: 'get', ...NO_LEN },
  {
    s: 'apache-proxy-fcgi-generic',
    c: 'post',
    ...LEN3,
    want: { CONTENT_TYPE: FORM, HTTP_CONTENT_LENGTH: undefined },
  },
  {
    s: 'apache-proxy-fcgi-generic',
    c: 'chunked',
    ...LEN3,
    want: { HTTP_TRANSFER_ENCODING: undefined },
  },
  { s: 'apache-proxy-fcgi-generic', c: 'bytes', ...NO_LEN, want: { HTTP_X_BYTES: XB } },
  { s: 'apache-proxy-fcgi-generic', c: 'bytes80', ...NO_LEN, want: { HTTP_X_BYTES: XB } },
  { s: 'apache-proxy-fcgi-generic', c: 'proxy', ...NO_LEN, want: PROXY_GONE, raw: PROXY_GONE },
  { s: 'apache-proxy-fcgi-generic', c: 'underscore', ...NO_LEN, ...UNDER_DROPPED },
  { s: 'apache-proxy-fcgi-generic', c: 'dupheader', ...NO_LEN, want: APACHE_DUP },
  // Apache mod_proxy_fcgi, FPM backend type (prefork MPM): SCRIPT_FILENAME proxy:fcgi://...
  { s: 'apache-proxy-fcgi-fpm', c: 'get', ...NO_LEN },
  { s: 'apache-proxy-fcgi-fpm', c: 'post', ...LEN3, want: { CONTENT_TYPE: FORM } },
  {
    s: 'apache-proxy-fcgi-fpm',
    c: 'chunked',
    ...LEN3,
    want: { HTTP_TRANSFER_ENCODING: undefined },
  },
  { s: 'apache-proxy-fcgi-fpm', c: 'bytes', ...NO_LEN, want: { HTTP_X_BYTES: XB } },
  { s: 'apache-proxy-fcgi-fpm', c: 'bytes80', ...NO_LEN, want: { HTTP_X_BYTES: XB } },
  { s: 'apache-proxy-fcgi-fpm', c: 'proxy', ...NO_LEN, want: PROXY_GONE, raw: PROXY_GONE },
  { s: 'apache-proxy-fcgi-fpm', c: 'underscore', ...NO_LEN, ...UNDER_DROPPED },
  { s: 'apache-proxy-fcgi-fpm', c: 'dupheader', ...NO_LEN, want: APACHE_DUP },
  // Apache mod_cgid (event MPM): a chunked body has no CONTENT_LENGTH -> read to EOF
  { s: 'apache-cgid', c: 'get', ...NO_LEN },
  { s: 'apache-cgid', c: 'post', ...LEN3, want: { CONTENT_TYPE: FORM } },
  {
    s: 'apache-cgid',
    c: 'chunked',
    rawCl: undefined,
    len: null,
    cl: undefined,
    ...CHUNKED_APACHE_CGI,
  },
  { s: 'apache-cgid', c: 'bytes', ...NO_LEN, want: { HTTP_X_BYTES: XB } },
  { s: 'apache-cgid', c: 'bytes80', ...NO_LEN, want: { HTTP_X_BYTES: XB } },
  { s: 'apache-cgid', c: 'proxy', ...NO_LEN, want: PROXY_GONE, raw: PROXY_GONE },
  { s: 'apache-cgid', c: 'underscore', ...NO_LEN, ...UNDER_DROPPED },
  { s: 'apache-cgid', c: 'dupheader', ...NO_LEN, want: APACHE_DUP },
  // Apache mod_cgi (prefork MPM): the same as mod_cgid
  { s: 'apache-cgi', c: 'get', ...NO_LEN },
  { s: 'apache-cgi', c: 'post', ...LEN3, want: { CONTENT_TYPE: FORM } },
  {
    s: 'apache-cgi',
    c: 'chunked',
    rawCl: undefined,
    len: null,
    cl: undefined,
    ...CHUNKED_APACHE_CGI,
  },
  { s: 'apache-cgi', c: 'bytes', ...NO_LEN, want: { HTTP_X_BYTES: XB } },
  { s: 'apache-cgi', c: 'bytes80', ...NO_LEN, want: { HTTP_X_BYTES: XB } },
  { s: 'apache-cgi', c: 'proxy', ...NO_LEN, want: PROXY_GONE, raw: PROXY_GONE },
  { s: 'apache-cgi', c: 'underscore', ...NO_LEN, ...UNDER_DROPPED },
  { s: 'apache-cgi', c: 'dupheader', ...NO_LEN, want: APACHE_DUP },
  // lighttpd mod_fastcgi: CONTENT_LENGTH=0 on a GET; %FF in a path is refused (refused.json)
  { s: 'lighttpd-fastcgi', c: 'get', rawCl: '0', len: 0, cl: '0' },
  {
    s: 'lighttpd-fastcgi',
    c: 'post',
    ...LEN3,
    want: { CONTENT_TYPE: FORM, HTTP_CONTENT_LENGTH: '3' },
  },
  { s: 'lighttpd-fastcgi', c: 'chunked', ...LEN3, want: { HTTP_TRANSFER_ENCODING: undefined } },
  { s: 'lighttpd-fastcgi', c: 'bytes80', rawCl: '0', len: 0, cl: '0', want: { HTTP_X_BYTES: XB } },
  {
    s: 'lighttpd-fastcgi',
    c: 'proxy',
    rawCl: '0',
    len: 0,
    cl: '0',
    want: PROXY_GONE,
    raw: PROXY_GONE,
  },
  { s: 'lighttpd-fastcgi', c: 'underscore', rawCl: '0', len: 0, cl: '0', ...UNDER_PASSED },
  { s: 'lighttpd-fastcgi', c: 'dupheader', rawCl: '0', len: 0, cl: '0', want: LIGHTTPD_DUP },
  // lighttpd mod_cgi
  { s: 'lighttpd-cgi', c: 'get', rawCl: '0', len: 0, cl: '0' },
  { s: 'lighttpd-cgi', c: 'post', ...LEN3, want: { CONTENT_TYPE: FORM } },
  { s: 'lighttpd-cgi', c: 'chunked', ...LEN3, want: { HTTP_TRANSFER_ENCODING: undefined } },
  { s: 'lighttpd-cgi', c: 'bytes80', rawCl: '0', len: 0, cl: '0', want: { HTTP_X_BYTES: XB } },
  { s: 'lighttpd-cgi', c: 'proxy', rawCl: '0', len: 0, cl: '0', want: PROXY_GONE, raw: PROXY_GONE },
  { s: 'lighttpd-cgi', c: 'underscore', rawCl: '0', len: 0, cl: '0', ...UNDER_PASSED },
  { s: 'lighttpd-cgi', c: 'dupheader', rawCl: '0', len: 0, cl: '0', want: LIGHTTPD_DUP },
];

async function* source(body: string): AsyncGenerator<Uint8Array> {
  if (body !== '') yield Buffer.from(body);
}

// What each front end does with what it receives, up to buildEnviron's input.
function frontEndVars(kind: 'fcgi' | 'cgi', raw: [Buffer, Buffer][]): MetaVariables {
  if (kind === 'fcgi') return metaVariablesFromPairs(decodeParams(encodeParams(raw)));
  const block = Buffer.concat(raw.flatMap(([k, v]) => [k, Buffer.from('='), v, Buffer.from([0])]));
  // process.env: each name's first entry, decoded by the same rule (environ-bytes.test.ts shows
  // node does exactly this with a real environment).
  const env: Record<string, string> = {};
  for (const [k, v] of raw) env[decodeBytes(k)] ??= decodeBytes(v);
  return metaVariablesFromProcessEnv(env, block);
}

function firstOf(raw: [Buffer, Buffer][], name: string): string | undefined {
  const hit = raw.find(([k]) => k.toString() === name);
  return hit === undefined ? undefined : decodeBytes(hit[1]);
}

function fixture(row: { s: string; c: string }): string {
  return `${row.s}-${row.c}.json`;
}

describe('translator over real server parameter sets', () => {
  it('has one row per fixture file, and no row without one', () => {
    const files = readdirSync(DIR).filter((f) => f.endsWith('.json') && f !== 'refused.json');
    assert.deepEqual(rows.map(fixture).sort(), files.sort());
    const refused = JSON.parse(readFileSync(join(DIR, 'refused.json'), 'utf8')) as Record<
      string,
      number
    >;
    assert.deepEqual(refused, { 'lighttpd-fastcgi-bytes': 400, 'lighttpd-cgi-bytes': 400 });
  });

  for (const row of rows) {
    it(`${row.s} ${row.c}`, async () => {
      const server = servers[row.s]!;
      const kase = cases[row.c]!;
      const raw = loadRaw(fixture(row));
      assert.equal(firstOf(raw, 'CONTENT_LENGTH'), row.rawCl, 'CONTENT_LENGTH as sent');
      for (const [k, v] of Object.entries(row.raw ?? {}))
        assert.equal(firstOf(raw, k), v, `${k} as sent`);

      const env: Environ = buildEnviron(frontEndVars(server.kind, raw), {
        input: source(kase.body),
        errors: { write() {}, writelines() {}, flush() {} },
        signal: new AbortController().signal,
        multithread: server.kind === 'fcgi',
        multiprocess: true,
        runOnce: server.kind === 'cgi',
      });
      const script = `${server.kind === 'fcgi' ? '/fcgi' : '/cgi-bin'}/app.x`;
      const want: Record<string, string | undefined> = {
        REQUEST_METHOD: kase.method,
        SCRIPT_NAME: script,
        PATH_INFO: kase.pathInfo,
        QUERY_STRING: kase.query,
        REQUEST_URI: `${script}${kase.uri}`,
        CONTENT_LENGTH: row.cl,
        SERVER_NAME: server.serverName,
        SERVER_PORT: server.port,
        SERVER_PROTOCOL: 'HTTP/1.1',
        GATEWAY_INTERFACE: 'CGI/1.1',
        REQUEST_SCHEME: 'http',
        HTTPS: undefined,
        REMOTE_ADDR: '127.0.0.1',
        SCRIPT_FILENAME: server.scriptFilename,
        HTTP_PROXY: undefined,
        ...row.want,
      };
      for (const [k, v] of Object.entries(want)) assert.equal(env[k], v, k);
      assert.equal(env['gateway.url_scheme'], 'http');
      const body = await env['gateway.input'].read();
      assert.equal(Buffer.from(body).toString(), kase.body, 'gateway.input');
      for (const [k, v] of Object.entries(env)) {
        if (!k.startsWith('gateway.')) assert.equal(typeof v, 'string', k);
      }
    });
  }

  // REQUEST_URI may be missing (a hand-written config, cgi-fcgi): the rebuilt one is what the
  // server would have sent, except for bytes that are not UTF-8 (they became U+FFFD).
  for (const row of rows.filter((r) => !r.c.startsWith('bytes'))) {
    it(`${row.s} ${row.c}: REQUEST_URI rebuilt when missing`, () => {
      const server = servers[row.s]!;
      const raw = loadRaw(fixture(row));
      const sent = firstOf(raw, 'REQUEST_URI');
      const vars = frontEndVars(
        server.kind,
        raw.filter(([k]) => k.toString() !== 'REQUEST_URI'),
      );
      assert.equal(vars.REQUEST_URI, undefined);
      const env = buildEnviron(vars, {
        input: null,
        errors: { write() {}, writelines() {}, flush() {} },
        signal: new AbortController().signal,
        multithread: false,
        multiprocess: true,
        runOnce: true,
      });
      assert.equal(env.REQUEST_URI, sent);
    });
  }

  // The same GET behind TLS: HTTPS=on (mod_ssl, nginx, lighttpd) or HTTPS=1.
  for (const row of rows.filter((r) => r.c === 'get')) {
    for (const https of ['on', '1']) {
      it(`${row.s} get with HTTPS=${https} is https`, () => {
        const server = servers[row.s]!;
        const raw = loadRaw(fixture(row));
        raw.push([Buffer.from('HTTPS'), Buffer.from(https)]);
        const env = buildEnviron(frontEndVars(server.kind, raw), {
          input: null,
          errors: { write() {}, writelines() {}, flush() {} },
          signal: new AbortController().signal,
          multithread: false,
          multiprocess: true,
          runOnce: true,
        });
        assert.equal(env['gateway.url_scheme'], 'https');
        assert.equal(env.REQUEST_SCHEME, 'https');
        assert.equal(env.HTTPS, https);
      });
    }
  }
});
