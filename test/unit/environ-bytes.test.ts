// The one rule for bytes that are not UTF-8 ("decode as UTF-8, an invalid sequence becomes
// U+FFFD"), checked through all three front ends with the same bytes: a real CGI child process
// (raw bytes in its environment), FastCGI params, and a raw HTTP request to a node:http server.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { buildEnviron, metaVariablesFromPairs, type MetaVariables } from '../../src/cgi/environ.js';
import { decodeBytes } from '../../src/cgi/decode.js';
import { metaVariablesFromHttp } from '../../src/cgi/http-meta.js';
import { decodeParams, encodeParams } from '../../src/fastcgi/params.js';
import type { Environ } from '../../src/gateway/types.js';

const R = '\uFFFD';
const CHILD_TS = fileURLToPath(new URL('../../src/cgi/child.ts', import.meta.url));
const ENVIRON_TS = fileURLToPath(new URL('../../src/cgi/environ.ts', import.meta.url));

// Byte patterns, each in a header X-B<i> (HTTP_X_B<i>); the first is also the path's last segment.
const patterns: { name: string; bytes: number[]; want: string }[] = [
  {
    name: 'UTF-8 then a lone 0xFF',
    bytes: [0x63, 0x61, 0x66, 0xc3, 0xa9, 0x20, 0xff],
    want: `café ${R}`,
  },
  { name: 'lone continuation 0x80', bytes: [0x80], want: R },
  { name: 'truncated sequence', bytes: [0xe2, 0x82, 0x41], want: `${R}A` },
  { name: 'overlong', bytes: [0xc0, 0xaf], want: R + R },
  { name: 'surrogate', bytes: [0xed, 0xa0, 0x80], want: R + R + R },
  { name: 'four-byte emoji', bytes: [0xf0, 0x9f, 0x98, 0x80], want: '😀' },
  { name: 'latin-1 é', bytes: [0x63, 0x61, 0x66, 0xe9], want: `caf${R}` },
];
const PATH_BYTES = [
  0x2f, 0x61, 0x70, 0x70, 0x2e, 0x78, 0x2f, 0x63, 0x61, 0x66, 0xc3, 0xa9, 0x2f, 0xff,
]; // /app.x/café/\xff
const PATH_ENCODED = '/app.x/caf%C3%A9/%FF';
const KEYS = ['PATH_INFO', 'SCRIPT_NAME', 'REQUEST_URI', ...patterns.map((_, i) => `HTTP_X_B${i}`)];

function pick(env: Environ): Record<string, unknown> {
  return Object.fromEntries(KEYS.map((k) => [k, env[k]]));
}

const expected: Record<string, unknown> = {
  PATH_INFO: `/café/${R}`,
  SCRIPT_NAME: '/app.x',
  REQUEST_URI: PATH_ENCODED,
  ...Object.fromEntries(patterns.map((p, i) => [`HTTP_X_B${i}`, p.want])),
};

// The meta-variables as a web server passes them: decoded path bytes, raw header bytes.
const rawPairs: [Buffer, Buffer][] = [
  [Buffer.from('REQUEST_METHOD'), Buffer.from('GET')],
  [Buffer.from('SCRIPT_NAME'), Buffer.from('/app.x')],
  [Buffer.from('PATH_INFO'), Buffer.from(PATH_BYTES.slice(6))],
  [Buffer.from('REQUEST_URI'), Buffer.from(PATH_ENCODED)],
  [Buffer.from('QUERY_STRING'), Buffer.from('')],
  ...patterns.map((p, i): [Buffer, Buffer] => [Buffer.from(`HTTP_X_B${i}`), Buffer.from(p.bytes)]),
];

function environOf(vars: MetaVariables): Environ {
  return buildEnviron(vars, {
    input: null,
    errors: { write() {}, writelines() {}, flush() {} },
    signal: new AbortController().signal,
    multithread: true,
    multiprocess: true,
    runOnce: false,
  });
}

function octal(bytes: Uint8Array): string {
  return [...bytes].map((b) => `\\${b.toString(8).padStart(3, '0')}`).join('');
}

// Runs `script` (ESM, through tsx) in a node child whose environment holds exactly the raw
// pairs. node's spawn() takes only strings (sent as UTF-8), so /bin/sh puts the bytes in
// place with printf's octal escapes and execs node.
function runWithRawEnv(pairs: [Buffer, Buffer][], script: string): Promise<string> {
  const lines = pairs.map(
    ([k, v]) => `${k.toString()}="$(printf '${octal(v)}')"; export ${k.toString()}`,
  );
  lines.push('exec "$0" --import tsx --input-type=module -e "$1"');
  return new Promise((resolve, reject) => {
    execFile(
      '/bin/sh',
      ['-c', lines.join('\n'), process.execPath, script],
      { env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, encoding: 'buffer', timeout: 30_000 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${err.message}\n${stderr.toString()}`));
        else resolve(stdout.toString('utf8'));
      },
    );
  });
}

describe('non-UTF-8 bytes: one rule through every front end', () => {
  let server: Server;
  let port: number;

  before(async () => {
    server = createServer((req, res) => {
      try {
        const env = environOf(metaVariablesFromHttp(req, { scriptName: '/app.x' }));
        res.setHeader('Content-Type', 'application/json; charset=utf-8');
        res.end(JSON.stringify(pick(env)));
      } catch (e) {
        res.statusCode = 500;
        res.end(String(e));
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  async function viaHttp(): Promise<Record<string, unknown>> {
    const head = [
      `GET ${PATH_ENCODED} HTTP/1.1`,
      'Host: 127.0.0.1',
      ...patterns.map((p, i) => `X-B${i}: ${Buffer.from(p.bytes).toString('latin1')}`),
      'Connection: close',
      '',
      '',
    ].join('\r\n');
    const reply = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const sock = connect(port, '127.0.0.1', () => sock.end(Buffer.from(head, 'latin1')));
      sock.on('data', (d: Buffer) => chunks.push(d));
      sock.on('end', () => resolve(Buffer.concat(chunks)));
      sock.on('error', reject);
    });
    const text = reply.toString('utf8');
    assert.match(text, /^HTTP\/1\.1 200 /, text);
    return JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;
  }

  function viaFastcgi(): Record<string, unknown> {
    return pick(environOf(metaVariablesFromPairs(decodeParams(encodeParams(rawPairs)))));
  }

  async function viaCgiProcess(): Promise<Record<string, unknown>> {
    // The real CGI front end: runCgi reads the process environment and writes a CGI response.
    const script = `
      import { runCgi } from ${JSON.stringify(CHILD_TS)};
      const keys = ${JSON.stringify(KEYS)};
      process.exitCode = await runCgi((environ, start) => {
        start('200 OK', [['Content-Type', 'application/json']]);
        return [JSON.stringify(Object.fromEntries(keys.map((k) => [k, environ[k]])))];
      });`;
    const out = await runWithRawEnv(rawPairs, script);
    assert.match(out, /^Status: 200 OK\r\n/, out);
    return JSON.parse(out.slice(out.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;
  }

  it('FastCGI params give the expected strings', () => {
    assert.deepEqual(viaFastcgi(), expected);
  });

  it('an HTTP request gives the expected strings', async () => {
    assert.deepEqual(await viaHttp(), expected);
  });

  it('a CGI process environment gives the expected strings', async () => {
    assert.deepEqual(await viaCgiProcess(), expected);
  });

  it('the same bytes give the same environ strings through all three front ends', async () => {
    const [http, cgi] = await Promise.all([viaHttp(), viaCgiProcess()]);
    const fcgi = viaFastcgi();
    assert.deepEqual(http, fcgi);
    assert.deepEqual(cgi, fcgi);
    // ...and the same as decoding the bytes directly.
    for (const [i, p] of patterns.entries())
      assert.equal(fcgi[`HTTP_X_B${i}`], decodeBytes(Uint8Array.from(p.bytes)));
  });

  it('a real environment with a name twice: node shows the first, metaVariablesFromProcessEnv applies the rule', async () => {
    // spawn() writes `${key}=${value}`: a key holding '=' makes a second entry for the same name
    // (HTTP_COOKIE: 'a=1' and 'HTTP_COOKIE=b': '2' give HTTP_COOKIE=a=1 and HTTP_COOKIE=b=2),
    // as nginx 1.22 + fcgiwrap does for two Cookie lines (test/fixtures/params).
    const script = `
      import { readFileSync } from 'node:fs';
      import { metaVariablesFromProcessEnv } from ${JSON.stringify(ENVIRON_TS)};
      const merged = metaVariablesFromProcessEnv(process.env, readFileSync('/proc/self/environ'));
      console.log(JSON.stringify({ env: process.env.HTTP_COOKIE, merged: merged.HTTP_COOKIE,
        token: merged.HTTP_X_TOKEN, query: merged.QUERY_STRING }));`;
    const out = await new Promise<string>((resolve, reject) => {
      execFile(
        process.execPath,
        ['--import', 'tsx', '--input-type=module', '-e', script],
        {
          env: {
            PATH: process.env.PATH ?? '/usr/bin:/bin',
            HTTP_COOKIE: 'a=1',
            'HTTP_COOKIE=b': '2',
            HTTP_X_TOKEN: 'k=1',
            'HTTP_X_TOKEN=k': '2',
            QUERY_STRING: 'b=2',
            'QUERY_STRING=a': '1',
          },
          timeout: 30_000,
        },
        (err, stdout, stderr) =>
          err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
      );
    });
    assert.deepEqual(JSON.parse(out), {
      env: 'a=1', // node (getenv) sees the first entry only
      merged: 'a=1; b=2',
      token: 'k=1, k=2',
      query: 'a=1', // not an HTTP_* name: the last one wins
    });
  });
});
