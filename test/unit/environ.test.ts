// Tests for src/cgi/environ.ts: each translator rule as a table (CONTENT_LENGTH, scheme, defaults,
// REQUEST_URI, duplicates, environment blocks), with synthetic meta-variables.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  bodyLength,
  buildEnviron,
  environBlockPairs,
  hostWithoutPort,
  metaVariablesFromEnviron,
  metaVariablesFromPairs,
  metaVariablesFromProcessEnv,
  portOfHost,
  requestUri,
  urlScheme,
  type EnvironOptions,
  type MetaVariables,
} from '../../src/cgi/environ.js';
import { isBridgeError } from '../../src/errors.js';
import type { Environ } from '../../src/gateway/types.js';

function options(input: AsyncIterable<Uint8Array> | null = null): EnvironOptions {
  return {
    input,
    errors: { write() {}, writelines() {}, flush() {} },
    signal: new AbortController().signal,
    multithread: false,
    multiprocess: true,
    runOnce: true,
  };
}

const GET: MetaVariables = { REQUEST_METHOD: 'GET' };

function build(vars: MetaVariables, opts: Partial<EnvironOptions> = {}): Environ {
  return buildEnviron(vars, { ...options(), ...opts });
}

function assertCoded(fn: () => unknown, code: string, status: number): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isBridgeError(e), `not a BridgeError: ${String(e)}`);
    assert.equal(e.code, code);
    assert.equal(e.status, status);
    assert.match(e.message, /^cgi: /);
    return true;
  });
}

async function* bytes(...chunks: string[]): AsyncGenerator<Uint8Array> {
  for (const c of chunks) yield Buffer.from(c);
}

describe('bodyLength', () => {
  // undefined in `te` / `cl` means the variable is absent.
  const tests: { name: string; cl?: string; te?: string; hcl?: string; want: number | null }[] = [
    { name: 'absent', want: 0 },
    { name: 'empty (nginx on a GET)', cl: '', want: 0 },
    { name: 'zero (lighttpd on a GET)', cl: '0', want: 0 },
    { name: 'a number', cl: '3', want: 3 },
    { name: 'leading zeros', cl: '007', want: 7 },
    { name: 'spaces around (OWS)', cl: ' 12 ', want: 12 },
    { name: 'tab before (OWS)', cl: '\t12', want: 12 },
    { name: '15 digits', cl: '999999999999999', want: 999999999999999 },
    { name: 'chunked without CONTENT_LENGTH (mod_cgid)', te: 'chunked', want: null },
    { name: 'chunked, any case', te: 'Chunked', want: null },
    { name: 'gzip then chunked', te: 'gzip, chunked', want: null },
    { name: 'chunked not last is not a length', te: 'chunked, gzip', want: 0 },
    { name: 'CONTENT_LENGTH wins over chunked (nginx)', cl: '3', te: 'chunked', want: 3 },
    { name: 'empty CONTENT_LENGTH with chunked', cl: '', te: 'chunked', want: null },
    { name: 'HTTP_CONTENT_LENGTH is not the body length', hcl: '3', want: 0 },
    { name: 'HTTP_CONTENT_LENGTH next to CONTENT_LENGTH', cl: '5', hcl: '3', want: 5 },
  ];
  for (const t of tests) {
    it(t.name, () => {
      const vars: MetaVariables = {
        CONTENT_LENGTH: t.cl,
        HTTP_TRANSFER_ENCODING: t.te,
        HTTP_CONTENT_LENGTH: t.hcl,
      };
      assert.equal(bodyLength(vars), t.want);
    });
  }

  const bad = [
    '-1',
    '+12',
    '1e3',
    '12abc',
    '0x10',
    '1.0',
    '1 2',
    ' ',
    '\n12',
    '\u00a012', // not OWS
    '１２', // fullwidth digits
    '9999999999999999', // 16 digits
    '99999999999999999999999',
  ];
  for (const cl of bad) {
    it(`refuses ${JSON.stringify(cl)} with a 400`, () => {
      assertCoded(() => bodyLength({ CONTENT_LENGTH: cl }), 'CGI_ERR_BAD_CONTENT_LENGTH', 400);
      assertCoded(() => build({ ...GET, CONTENT_LENGTH: cl }), 'CGI_ERR_BAD_CONTENT_LENGTH', 400);
    });
  }
});

describe('buildEnviron', () => {
  it('refuses a missing or empty REQUEST_METHOD', () => {
    assertCoded(() => build({}), 'CGI_ERR_BAD_ENVIRONMENT', 400);
    assertCoded(() => build({ REQUEST_METHOD: '' }), 'CGI_ERR_BAD_ENVIRONMENT', 400);
  });

  it('refuses a REQUEST_METHOD that is not a token', () => {
    for (const m of ['GET /', 'G\r\nET', '(GET)']) {
      assertCoded(() => build({ REQUEST_METHOD: m }), 'CGI_ERR_BAD_ENVIRONMENT', 400);
    }
  });

  it('keeps an extension method', () => {
    assert.equal(build({ REQUEST_METHOD: 'PROPFIND' }).REQUEST_METHOD, 'PROPFIND');
  });

  // Each row: meta-variables in, the variables that must come out (undefined: absent).
  const tests: { name: string; vars: MetaVariables; want: Record<string, string | undefined> }[] = [
    {
      name: 'RFC 3875 defaults',
      vars: GET,
      want: {
        SCRIPT_NAME: '',
        PATH_INFO: '',
        QUERY_STRING: '',
        SERVER_NAME: 'localhost',
        SERVER_PORT: '80',
        SERVER_PROTOCOL: 'HTTP/1.0',
        GATEWAY_INTERFACE: 'CGI/1.1',
        REQUEST_URI: '/',
        REQUEST_SCHEME: 'http',
        HTTPS: undefined,
      },
    },
    {
      name: 'empty CONTENT_LENGTH, CONTENT_TYPE, REMOTE_USER mean absent (nginx GET)',
      vars: { ...GET, CONTENT_LENGTH: '', CONTENT_TYPE: '', REMOTE_USER: '' },
      want: { CONTENT_LENGTH: undefined, CONTENT_TYPE: undefined, REMOTE_USER: undefined },
    },
    {
      name: 'CONTENT_LENGTH=0 stays (lighttpd GET)',
      vars: { ...GET, CONTENT_LENGTH: '0' },
      want: { CONTENT_LENGTH: '0' },
    },
    {
      name: 'CONTENT_LENGTH loses its whitespace',
      vars: { REQUEST_METHOD: 'POST', CONTENT_LENGTH: ' 12\t' },
      want: { CONTENT_LENGTH: '12' },
    },
    {
      name: 'HTTP_PROXY is dropped (httpoxy)',
      vars: { ...GET, HTTP_PROXY: 'http://evil:3128' },
      want: { HTTP_PROXY: undefined },
    },
    {
      name: 'HTTPS=on means https',
      vars: { ...GET, HTTPS: 'on' },
      want: { HTTPS: 'on', REQUEST_SCHEME: 'https', SERVER_PORT: '443' },
    },
    {
      name: 'HTTPS=1 means https',
      vars: { ...GET, HTTPS: '1' },
      want: { HTTPS: '1', REQUEST_SCHEME: 'https' },
    },
    {
      name: 'HTTPS=ON (any case) means https',
      vars: { ...GET, HTTPS: 'ON' },
      want: { REQUEST_SCHEME: 'https' },
    },
    {
      name: 'REQUEST_SCHEME=https alone sets HTTPS=on',
      vars: { ...GET, REQUEST_SCHEME: 'https' },
      want: { HTTPS: 'on', REQUEST_SCHEME: 'https' },
    },
    {
      name: 'HTTPS=off (IIS) is http',
      vars: { ...GET, HTTPS: 'off' },
      want: { HTTPS: 'off', REQUEST_SCHEME: 'http' },
    },
    {
      name: 'SERVER_NAME and SERVER_PORT from the Host header',
      vars: { ...GET, HTTP_HOST: 'example.com:8080' },
      want: { SERVER_NAME: 'example.com', SERVER_PORT: '8080' },
    },
    {
      name: 'IPv6 Host keeps its brackets in SERVER_NAME',
      vars: { ...GET, HTTP_HOST: '[::1]:8443', HTTPS: 'on' },
      want: { SERVER_NAME: '[::1]', SERVER_PORT: '8443' },
    },
    {
      name: 'empty SERVER_NAME and SERVER_PORT count as absent',
      vars: { ...GET, SERVER_NAME: '', SERVER_PORT: '', HTTP_HOST: 'h' },
      want: { SERVER_NAME: 'h', SERVER_PORT: '80' },
    },
    {
      name: "the server's SERVER_NAME wins over Host (nginx server_name)",
      vars: { ...GET, SERVER_NAME: 'localhost', SERVER_PORT: '8081', HTTP_HOST: '127.0.0.1' },
      want: { SERVER_NAME: 'localhost', SERVER_PORT: '8081' },
    },
    {
      name: 'REQUEST_URI rebuilt, percent-encoded',
      vars: { ...GET, SCRIPT_NAME: '/app.x', PATH_INFO: '/p q/r', QUERY_STRING: 'a=1&b=%20' },
      want: { REQUEST_URI: '/app.x/p%20q/r?a=1&b=%20' },
    },
    {
      name: 'REQUEST_URI rebuilt from UTF-8 and U+FFFD',
      vars: { ...GET, SCRIPT_NAME: '/app.x', PATH_INFO: '/café/\uFFFD' },
      want: { REQUEST_URI: '/app.x/caf%C3%A9/%EF%BF%BD' },
    },
    {
      name: 'empty REQUEST_URI is rebuilt',
      vars: { ...GET, REQUEST_URI: '', SCRIPT_NAME: '/a' },
      want: { REQUEST_URI: '/a' },
    },
    {
      name: 'a server REQUEST_URI stays raw',
      vars: { ...GET, REQUEST_URI: '/a%2Fb?x', SCRIPT_NAME: '/a', PATH_INFO: '/b' },
      want: { REQUEST_URI: '/a%2Fb?x' },
    },
    {
      name: 'Apache FPM-type SCRIPT_FILENAME passes through',
      vars: { ...GET, SCRIPT_FILENAME: 'proxy:fcgi://127.0.0.1:9000/srv/app.x' },
      want: { SCRIPT_FILENAME: 'proxy:fcgi://127.0.0.1:9000/srv/app.x' },
    },
    {
      name: 'other variables pass through',
      vars: { ...GET, PATH: '/usr/bin', FCGI_ROLE: 'RESPONDER', HTTP_X_A: '1' },
      want: { PATH: '/usr/bin', FCGI_ROLE: 'RESPONDER', HTTP_X_A: '1' },
    },
  ];
  for (const t of tests) {
    it(t.name, () => {
      const env = build(t.vars);
      for (const [k, v] of Object.entries(t.want)) assert.equal(env[k], v, k);
    });
  }

  it('urlScheme option wins over the variables, and REQUEST_SCHEME/HTTPS follow it', () => {
    const https = build({ ...GET, REQUEST_SCHEME: 'http' }, { urlScheme: 'https' });
    assert.equal(https['gateway.url_scheme'], 'https');
    assert.equal(https.REQUEST_SCHEME, 'https');
    assert.equal(https.HTTPS, 'on');
    const http = build({ ...GET, HTTPS: 'on' }, { urlScheme: 'http' });
    assert.equal(http['gateway.url_scheme'], 'http');
    assert.equal(http.REQUEST_SCHEME, 'http');
    assert.equal(http.HTTPS, undefined);
  });

  it('adds the gateway keys', () => {
    const o = options();
    const env = buildEnviron(GET, o);
    assert.deepEqual(env['gateway.version'], [1, 0]);
    assert.equal(env['gateway.url_scheme'], 'http');
    assert.equal(env['gateway.errors'], o.errors);
    assert.equal(env['gateway.signal'], o.signal);
    assert.equal(env['gateway.multithread'], false);
    assert.equal(env['gateway.multiprocess'], true);
    assert.equal(env['gateway.run_once'], true);
    assert.equal(typeof env['gateway.file_wrapper'], 'function');
  });

  it('does not change the meta-variables it was given', () => {
    const vars: MetaVariables = { ...GET, CONTENT_LENGTH: '', HTTP_PROXY: 'x' };
    build(vars);
    assert.deepEqual(vars, { ...GET, CONTENT_LENGTH: '', HTTP_PROXY: 'x' });
  });

  // gateway.input is bounded by bodyLength: the source may hold more than the body.
  const inputTests: { name: string; vars: MetaVariables; source: string[]; want: string }[] = [
    { name: 'no CONTENT_LENGTH reads nothing', vars: GET, source: ['abc'], want: '' },
    {
      name: 'CONTENT_LENGTH=0 reads nothing',
      vars: { ...GET, CONTENT_LENGTH: '0' },
      source: ['abc'],
      want: '',
    },
    {
      name: 'CONTENT_LENGTH bounds the body',
      vars: { REQUEST_METHOD: 'POST', CONTENT_LENGTH: '3' },
      source: ['ab', 'cdef'],
      want: 'abc',
    },
    {
      name: 'chunked without CONTENT_LENGTH reads to EOF',
      vars: { REQUEST_METHOD: 'POST', HTTP_TRANSFER_ENCODING: 'chunked' },
      source: ['ab', 'cdef'],
      want: 'abcdef',
    },
    {
      name: 'HTTP_CONTENT_LENGTH does not bound the body',
      vars: { REQUEST_METHOD: 'POST', CONTENT_LENGTH: '4', HTTP_CONTENT_LENGTH: '2' },
      source: ['abcdef'],
      want: 'abcd',
    },
  ];
  for (const t of inputTests) {
    it(`gateway.input: ${t.name}`, async () => {
      const env = buildEnviron(t.vars, options(bytes(...t.source)));
      assert.equal(Buffer.from(await env['gateway.input'].read()).toString(), t.want);
    });
  }
});

describe('urlScheme', () => {
  const tests: [MetaVariables, 'http' | 'https'][] = [
    [{}, 'http'],
    [{ HTTPS: 'on' }, 'https'],
    [{ HTTPS: '1' }, 'https'],
    [{ HTTPS: 'On' }, 'https'],
    [{ HTTPS: 'off' }, 'http'],
    [{ HTTPS: '' }, 'http'],
    [{ HTTPS: 'yes' }, 'http'],
    [{ REQUEST_SCHEME: 'https' }, 'https'],
    [{ REQUEST_SCHEME: 'HTTPS' }, 'https'],
    [{ REQUEST_SCHEME: 'http' }, 'http'],
  ];
  for (const [vars, want] of tests) {
    it(`${JSON.stringify(vars)} -> ${want}`, () => assert.equal(urlScheme(vars), want));
  }
});

describe('hostWithoutPort and portOfHost', () => {
  const tests: [string | undefined, string | undefined, string | undefined][] = [
    [undefined, undefined, undefined],
    ['', undefined, undefined],
    ['example.com', 'example.com', undefined],
    ['example.com:8080', 'example.com', '8080'],
    ['127.0.0.1:18474', '127.0.0.1', '18474'],
    ['[::1]', '[::1]', undefined],
    ['[::1]:8080', '[::1]', '8080'],
    ['[fe80::1%25eth0]:80', '[fe80::1%25eth0]', '80'],
    ['::1', '::1', undefined], // not a valid Host: kept whole, no port guessed
    ['h:', 'h', undefined],
    ['h:abc', 'h', undefined],
  ];
  for (const [host, name, port] of tests) {
    it(`${JSON.stringify(host)} -> ${JSON.stringify(name)} ${JSON.stringify(port)}`, () => {
      assert.equal(hostWithoutPort(host), name);
      assert.equal(portOfHost(host), port);
    });
  }
});

describe('requestUri', () => {
  const tests: [string, string, string, string][] = [
    ['', '', '', '/'],
    ['/app.x', '', '', '/app.x'],
    ['/app.x', '/p q/r', 'a=1&b=%20', '/app.x/p%20q/r?a=1&b=%20'],
    ['/cgi-bin/app.x', '/100%/a?b#c', '', '/cgi-bin/app.x/100%25/a%3Fb%23c'],
    ['', '/café', 'q=caf%C3%A9', '/caf%C3%A9?q=caf%C3%A9'],
  ];
  for (const [s, p, q, want] of tests) {
    it(`${s} + ${p} + ${q} -> ${want}`, () => assert.equal(requestUri(s, p, q), want));
  }
});

describe('metaVariablesFromPairs', () => {
  const tests: { name: string; pairs: [string, string][]; want: Record<string, string> }[] = [
    {
      name: 'no duplicates',
      pairs: [
        ['A', '1'],
        ['B', '2'],
      ],
      want: { A: '1', B: '2' },
    },
    {
      name: 'a CGI variable: the last one wins (nginx fastcgi.conf + own SCRIPT_FILENAME)',
      pairs: [
        ['SCRIPT_FILENAME', '/docroot/fcgi/app.x'],
        ['SCRIPT_FILENAME', '/srv/app.x'],
      ],
      want: { SCRIPT_FILENAME: '/srv/app.x' },
    },
    {
      name: 'HTTP_HOST: the last one wins',
      pairs: [
        ['HTTP_HOST', '127.0.0.1'],
        ['HTTP_HOST', '127.0.0.1:8080'],
      ],
      want: { HTTP_HOST: '127.0.0.1:8080' },
    },
    {
      name: 'HTTP_COOKIE lines are joined with "; " (nginx 1.22)',
      pairs: [
        ['HTTP_COOKIE', 'a=1'],
        ['HTTP_COOKIE', 'b=2'],
        ['HTTP_COOKIE', 'c=3'],
      ],
      want: { HTTP_COOKIE: 'a=1; b=2; c=3' },
    },
    {
      name: 'other header lines are joined with ", " in order',
      pairs: [
        ['HTTP_X_MULTI', '1'],
        ['HTTP_ACCEPT', '*/*'],
        ['HTTP_X_MULTI', '2'],
        ['HTTP_X_MULTI', '2'],
      ],
      want: { HTTP_X_MULTI: '1, 2, 2', HTTP_ACCEPT: '*/*' },
    },
    {
      name: 'empty values are values',
      pairs: [
        ['CONTENT_LENGTH', ''],
        ['HTTP_X', ''],
        ['HTTP_X', 'a'],
      ],
      want: { CONTENT_LENGTH: '', HTTP_X: ', a' },
    },
    {
      name: 'prototype names are plain data',
      pairs: [
        ['__proto__', 'x'],
        ['constructor', 'y'],
      ],
      want: { ['__proto__']: 'x', constructor: 'y' },
    },
  ];
  for (const t of tests) {
    it(t.name, () => {
      const got = metaVariablesFromPairs(t.pairs);
      assert.deepEqual(Object.entries(got), Object.entries(t.want));
    });
  }

  it('takes { name, value } pairs (the FastCGI params decoder output)', () => {
    const got = metaVariablesFromPairs([
      { name: 'HTTP_COOKIE', value: 'a=1' },
      { name: 'HTTP_COOKIE', value: 'b=2' },
    ]);
    assert.equal(got.HTTP_COOKIE, 'a=1; b=2');
  });

  it('leaves nothing inherited to find', () => {
    const got = metaVariablesFromPairs([['REQUEST_METHOD', 'GET']]);
    assert.equal(got.toString, undefined);
    assert.equal(got.constructor, undefined);
  });
});

describe('environBlockPairs', () => {
  it('splits a block in order, duplicates kept, by the UTF-8 rule', () => {
    const block = Buffer.from('A=1\0B=x=y\0A=2\0E=\0P=/caf\xc3\xa9/\xff\0', 'latin1');
    assert.deepEqual(environBlockPairs(block), [
      ['A', '1'],
      ['B', 'x=y'],
      ['A', '2'],
      ['E', ''],
      ['P', '/café/\uFFFD'],
    ]);
  });

  it('skips an entry without "=" and a missing final NUL is fine', () => {
    assert.deepEqual(environBlockPairs(Buffer.from('NOEQ\0=v\0A=1')), [['A', '1']]);
  });
});

describe('metaVariablesFromProcessEnv', () => {
  // process.env shows the first of two entries (getenv(3)); the block shows both.
  const block = Buffer.from(
    'HTTP_COOKIE=a=1\0PATH=/bin\0HTTP_COOKIE=b=2\0SCRIPT_NAME=/x\0SCRIPT_NAME=/y\0',
  );
  const env = { HTTP_COOKIE: 'a=1', PATH: '/bin', SCRIPT_NAME: '/x', EXTRA: 'set later' };

  it('applies the duplicate rule to repeated names only', () => {
    assert.deepEqual(metaVariablesFromProcessEnv(env, block), {
      HTTP_COOKIE: 'a=1; b=2',
      PATH: '/bin',
      SCRIPT_NAME: '/y',
      EXTRA: 'set later',
    });
  });

  it('is a copy of env when there is no block or no repeat', () => {
    assert.deepEqual(metaVariablesFromProcessEnv(env, null), env);
    assert.deepEqual(metaVariablesFromProcessEnv(env, Buffer.from('PATH=/bin\0')), env);
    assert.notEqual(metaVariablesFromProcessEnv(env, null), env);
  });
});

describe('metaVariablesFromEnviron', () => {
  it('keeps CGI variables, drops gateway keys, lower-case keys, HTTP_PROXY and NUL values', () => {
    const env = build({
      ...GET,
      HTTP_X_A: '1',
      'middleware.key': 'x',
      lower: 'x',
      HTTP_X_NUL: 'a\0b',
    });
    env.HTTP_PROXY = 'evil'; // set after buildEnviron, by middleware
    const out = metaVariablesFromEnviron(env);
    assert.equal(out.HTTP_X_A, '1');
    assert.equal(out.REQUEST_METHOD, 'GET');
    assert.equal(out.SERVER_PORT, '80');
    for (const k of ['middleware.key', 'lower', 'HTTP_X_NUL', 'HTTP_PROXY', 'gateway.url_scheme']) {
      assert.equal(k in out, false, k);
    }
    for (const v of Object.values(out)) assert.equal(typeof v, 'string');
  });
});
