// A differential test: the same legacy CGI programs and the same requests, answered by real
// Apache mod_cgi (prefork MPM) and by `cgi-bridge serve --cgi-bin`, must give the same status
// and reason phrase, the same meaningful headers (Content-Type, Location, the programs' own
// X-*) and the same body. Framing headers (Date, Server, Connection, Keep-Alive,
// Transfer-Encoding, Content-Length) are not compared: each server frames its own responses.
//
// Every intended difference is a case's `differs`, with its reason, and is asserted exactly on
// both sides: a difference that is not listed fails the test, and so does a listed one that
// went away. Canaries (each server with its own marker directory) show which programs ran.
import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, mkdirSync, readdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  CLEAN_PATH,
  findTool,
  makeWorld,
  startApache,
  type RunningServer,
  type World,
} from '../harness/servers.js';
import { FIXTURES, rawGet, startCli, type CliProcess, type RawResponse } from './legacy-helpers.js';

/** Side is one server's answer, reduced to what is compared. */
interface Side {
  status: number;
  reason: string;
  headers: Record<string, string>;
  body: string;
  /** ran lists the canaries that ran for this request. */
  ran: string[];
}

interface Request {
  path: string;
  method?: string;
  headers?: Record<string, string>;
  body?: string;
}

/** Want is what one server must answer: the named parts of a Side (a body may be a pattern). */
type Want = Partial<Omit<Side, 'body'>> & { body?: string | RegExp };

/** Difference is a meant difference: what each server answers, and why they differ. */
interface Difference {
  reason: string;
  apache: Want;
  bridge: Want;
}

interface Case extends Request {
  name: string;
  differs?: Difference;
}

// Apache's own error and redirect pages are HTML that names the server; cgi-bridge answers
// errors with one line of text/plain. Neither body matters to a program or a client.
const APACHE_PAGE = /^<!DOCTYPE HTML PUBLIC /;
const ERROR_PAGES =
  "error pages: Apache's are HTML naming the server, cgi-bridge's one line of text/plain";

const COMPARED = /^(content-type|location|x-.*)$/;

const FORM = 'application/x-www-form-urlencoded';

const CASES: Case[] = [
  {
    name: 'GET with PATH_INFO, query, a custom header and a Proxy header (httpoxy)',
    path: '/cgi-bin/echo.sh/a%20b/c?x=1&y=%20',
    headers: { 'X-Test': 'probe', Proxy: 'http://evil.example/' },
  },
  {
    name: 'a search query becomes argv (RFC 3875 §4.4)',
    path: '/cgi-bin/echo.sh/s?word1+two%20words',
  },
  {
    name: 'empty PATH_INFO',
    path: '/cgi-bin/echo.sh?q',
    differs: {
      reason:
        'an empty PATH_INFO: Apache leaves it unset, cgi-bridge passes it empty; RFC 3875 §4.1 ' +
        'allows both and a program must treat them alike',
      apache: {
        status: 200,
        body: echoBody({ PATH_INFO: '(unset)', QUERY_STRING: 'q', argv: 'q' }),
      },
      bridge: { status: 200, body: echoBody({ PATH_INFO: '', QUERY_STRING: 'q', argv: 'q' }) },
    },
  },
  {
    name: 'POST of a urlencoded form (Perl)',
    path: '/cgi-bin/form.pl',
    method: 'POST',
    headers: { 'Content-Type': FORM },
    body: 'name=Ada+Lovelace&amp=%26&utf=%C3%A9',
  },
  {
    name: 'POST of a text body (shell reads CONTENT_LENGTH bytes)',
    path: '/cgi-bin/echo.sh/post',
    method: 'POST',
    headers: { 'Content-Type': 'text/plain' },
    body: 'line one\nline two',
  },
  { name: 'Status: 418 with its own reason phrase', path: '/cgi-bin/teapot.sh' },
  { name: 'a local redirect is fetched by the server', path: '/cgi-bin/local-redirect.sh' },
  {
    name: 'a client redirect (absolute Location)',
    path: '/cgi-bin/client-redirect.sh',
    differs: {
      reason:
        "a redirect without a body: Apache adds its HTML 'moved' page, cgi-bridge sends the " +
        'empty body the program wrote',
      apache: { status: 302, body: APACHE_PAGE },
      bridge: { status: 302, body: '', headers: { location: 'http://example.com/elsewhere?x=1' } },
    },
  },
  { name: 'a client redirect with a document and Status 303', path: '/cgi-bin/see-other.sh' },
  {
    name: 'no Content-Type, Status or Location',
    path: '/cgi-bin/no-type.sh',
    differs: {
      reason:
        'RFC 3875 §6.2.1: a document response must have a Content-Type. Apache guesses one from ' +
        "the program's file name (.sh: text/x-sh) and sends the output; cgi-bridge refuses it (502)",
      apache: {
        status: 200,
        body: 'body without a type\n',
        headers: { 'content-type': 'text/x-sh' },
      },
      bridge: { status: 502, body: '502 Bad Gateway\n' },
    },
  },
  { name: 'an nph- program writes its own status line', path: '/cgi-bin/nph-raw.sh' },
  {
    name: 'a missing program',
    path: '/cgi-bin/missing.sh',
    differs: {
      reason: ERROR_PAGES,
      apache: { status: 404, body: APACHE_PAGE, ran: [] },
      bridge: { status: 404, body: '404 Not Found\n', ran: [] },
    },
  },
  {
    name: 'a file that is not executable',
    path: '/cgi-bin/noexec.sh',
    differs: {
      reason:
        'Apache forks, fails the exec and answers 500; cgi-bridge checks the file first and ' +
        'answers 403 without starting anything (DESIGN.md: non-executable 403)',
      apache: { status: 500, body: APACHE_PAGE, ran: [] },
      bridge: { status: 403, body: '403 Forbidden\n', ran: [] },
    },
  },
  {
    name: 'a directory',
    path: '/cgi-bin/',
    differs: {
      reason: ERROR_PAGES,
      apache: { status: 403, body: APACHE_PAGE, ran: [] },
      bridge: { status: 403, body: '403 Forbidden\n', ran: [] },
    },
  },
  {
    name: '`..` out of the directory',
    path: '/cgi-bin/../outside/canary.sh',
    differs: {
      reason: ERROR_PAGES,
      apache: { status: 404, body: APACHE_PAGE, ran: [] },
      bridge: { status: 404, body: '404 Not Found\n', ran: [] },
    },
  },
  {
    name: '`%2e%2e` out of the directory',
    path: '/cgi-bin/%2e%2e/outside/canary.sh',
    differs: {
      reason: ERROR_PAGES,
      apache: { status: 404, body: APACHE_PAGE, ran: [] },
      bridge: { status: 404, body: '404 Not Found\n', ran: [] },
    },
  },
  {
    name: 'an encoded NUL',
    path: '/cgi-bin/canary.sh%00.txt',
    differs: {
      reason:
        'an encoded NUL: Apache looks for the file and answers 404, cgi-bridge refuses the ' +
        'request target itself with 400 (as nginx does)',
      apache: { status: 404, body: APACHE_PAGE, ran: [] },
      bridge: { status: 400, body: '400 Bad Request\n', ran: [] },
    },
  },
  {
    name: 'a symlink to a program outside the directory',
    path: '/cgi-bin/link-out.sh',
    differs: {
      reason:
        'stricter: Apache follows the symlink (Options FollowSymLinks is its default) and runs ' +
        'the program outside; cgi-bridge never runs a program whose real path is outside (403)',
      apache: { status: 200, body: 'canary ran\n', ran: ['canary-link-out.sh-ran'] },
      bridge: { status: 403, body: '403 Forbidden\n', ran: [] },
    },
  },
  {
    name: 'a hidden program',
    path: '/cgi-bin/.hidden.sh',
    differs: {
      reason:
        'stricter: Apache runs a hidden file like any other; cgi-bridge never serves a name ' +
        'starting with a dot (.git, .htaccess …): 404',
      apache: { status: 200, body: 'canary ran\n', ran: ['canary-.hidden.sh-ran'] },
      bridge: { status: 404, body: '404 Not Found\n', ran: [] },
    },
  },
];

/**
 * APACHE_ONLY are the variables Apache gives a program that cgi-bridge does not, each with the
 * reason; BRIDGE_ONLY the other way round. Any other name must be in both environments.
 */
const APACHE_ONLY: Record<string, string> = {
  CONTEXT_DOCUMENT_ROOT: "Apache's alias mapping (mod_alias), nothing a CGI program needs",
  CONTEXT_PREFIX: "Apache's alias mapping (mod_alias)",
  DOCUMENT_ROOT: 'cgi-bridge serve has no document tree',
  PATH_TRANSLATED:
    'RFC 3875 §4.1.6 maps PATH_INFO into the document tree; without one (serve) it is left out',
  SERVER_ADMIN: "Apache's ServerAdmin: server configuration is not passed on (allow-list)",
  SERVER_SIGNATURE: "Apache's HTML signature: server configuration is not passed on (allow-list)",
};
const BRIDGE_ONLY: Record<string, string> = {
  REDIRECT_STATUS: "php-cgi's force-redirect check needs it; Apache sets it only on redirects",
};

function echoBody(v: { PATH_INFO: string; QUERY_STRING: string; argv: string }): string {
  return [
    'REQUEST_METHOD=GET',
    'SCRIPT_NAME=/cgi-bin/echo.sh',
    `PATH_INFO=${v.PATH_INFO}`,
    `QUERY_STRING=${v.QUERY_STRING}`,
    'CONTENT_LENGTH=(unset)',
    'CONTENT_TYPE=(unset)',
    'GATEWAY_INTERFACE=CGI/1.1',
    'SERVER_PROTOCOL=HTTP/1.1',
    'REMOTE_ADDR=127.0.0.1',
    'HTTP_X_TEST=(unset)',
    'HTTP_PROXY=(unset)',
    `argv=${v.argv}`,
    'cwd=legacy-diff-1',
    'body=',
    '',
  ].join('\n');
}

function reduce(r: RawResponse, ran: string[]): Side {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(r.headers)) {
    if (COMPARED.test(k) && v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
  }
  return { status: r.status, reason: r.reason, headers, body: r.body, ran };
}

/** matches asserts `side` has every property `want` names (a RegExp body is matched). */
function matches(side: Side, want: Want, who: string): void {
  for (const [k, v] of Object.entries(want) as [keyof Side, unknown][]) {
    if (v instanceof RegExp) assert.match(String(side[k]), v, `${who}: ${k}`);
    else if (k === 'headers') {
      for (const [h, hv] of Object.entries(v as Record<string, string>)) {
        assert.equal(side.headers[h], hv, `${who}: header ${h}`);
      }
    } else assert.deepEqual(side[k], v, `${who}: ${k}`);
  }
}

let world: World;
let apache: RunningServer | undefined;
let bridge: CliProcess | undefined;
let apacheMarkers = '';
let bridgeMarkers = '';
let skip: string | undefined;

function newMarkers(dir: string): string[] {
  return readdirSync(dir).filter((f) => f.startsWith('canary-'));
}

async function ask(base: string, markers: string, req: Request): Promise<Side> {
  const before = new Set(newMarkers(markers));
  const r = await rawGet(base, req.path, req);
  const ran = newMarkers(markers).filter((f) => !before.has(f));
  return reduce(r, ran);
}

before(async () => {
  if (findTool('apache2') === undefined || findTool('mod_cgi') === undefined) {
    skip = 'apache2 with mod_cgi is not installed (apt-get install apache2)';
    if (process.env.CI === 'true') throw new Error(skip);
    return;
  }
  world = await makeWorld();
  const cgiDir = await world.copyFixtures(join(FIXTURES, 'legacy-diff'));
  // What a checkout cannot carry well is made here: a hidden program, one without the x bit,
  // a symlink to a program outside the directory.
  const outside = join(world.dir, 'fixtures', 'outside');
  mkdirSync(join(outside), { recursive: true });
  chmodSync(outside, 0o755);
  copyFileSync(join(cgiDir, 'canary.sh'), join(outside, 'canary.sh'));
  chmodSync(join(outside, 'canary.sh'), 0o755);
  copyFileSync(join(cgiDir, 'canary.sh'), join(cgiDir, '.hidden.sh'));
  chmodSync(join(cgiDir, '.hidden.sh'), 0o755);
  copyFileSync(join(cgiDir, 'canary.sh'), join(cgiDir, 'noexec.sh'));
  chmodSync(join(cgiDir, 'noexec.sh'), 0o644);
  symlinkSync(join(outside, 'canary.sh'), join(cgiDir, 'link-out.sh'));
  // Apache's programs run as www-data when the test runs as root: their markers dir is 1777.
  apacheMarkers = join(world.dir, 'markers-apache');
  bridgeMarkers = join(world.dir, 'markers-bridge');
  for (const d of [apacheMarkers, bridgeMarkers]) {
    mkdirSync(d);
    chmodSync(d, 0o1777);
  }
  apache = await startApache(world, {
    mpm: 'prefork',
    cgiDir,
    env: { CANARY_DIR: apacheMarkers },
  });
  bridge = await startCli(
    null,
    [
      'serve',
      '--cgi-bin',
      cgiDir,
      '--listen',
      '127.0.0.1:0',
      '--env',
      `CANARY_DIR=${bridgeMarkers}`,
    ],
    { env: { PATH: CLEAN_PATH } },
  );
});

after(async () => {
  await bridge?.stop();
  await world?.cleanup();
});

describe(
  'legacy CGI programs: Apache mod_cgi (prefork) and cgi-bridge serve answer alike',
  { timeout: 120_000 },
  () => {
    for (const c of CASES) {
      test(c.name, async (t) => {
        if (skip !== undefined) {
          t.skip(skip);
          return;
        }
        const a = await ask(apache!.url, apacheMarkers, c);
        const b = await ask(bridge!.url, bridgeMarkers, c);
        try {
          if (c.differs === undefined) {
            assert.deepEqual(b, a, 'cgi-bridge (actual) and Apache (expected) differ');
            assert.deepEqual(b.ran, []);
          } else {
            matches(a, c.differs.apache, 'Apache');
            matches(b, c.differs.bridge, 'cgi-bridge');
          }
        } catch (e) {
          t.diagnostic(`Apache: ${JSON.stringify(a)}\ncgi-bridge: ${JSON.stringify(b)}`);
          throw e;
        }
      });
    }

    test('the environment: the same meta-variables; what differs is listed with its reason', async (t) => {
      if (skip !== undefined) {
        t.skip(skip);
        return;
      }
      const req = { path: '/cgi-bin/names.sh/p?q=1', headers: { 'X-Test': 'names' } };
      const a = new Set((await ask(apache!.url, apacheMarkers, req)).body.trim().split('\n'));
      const b = new Set((await ask(bridge!.url, bridgeMarkers, req)).body.trim().split('\n'));
      const onlyA = [...a].filter((n) => !b.has(n)).sort();
      const onlyB = [...b].filter((n) => !a.has(n)).sort();
      t.diagnostic(`Apache only: ${onlyA.join(' ')}; cgi-bridge only: ${onlyB.join(' ')}`);
      assert.deepEqual(onlyA, Object.keys(APACHE_ONLY).sort(), 'variables only Apache sets');
      assert.deepEqual(onlyB, Object.keys(BRIDGE_ONLY).sort(), 'variables only cgi-bridge sets');
      for (const must of [
        'PATH',
        'SCRIPT_FILENAME',
        'SERVER_SOFTWARE',
        'HTTP_X_TEST',
        'REQUEST_URI',
      ]) {
        assert.ok(a.has(must) && b.has(must), must);
      }
    });
  },
);
