// --allowed-clients and FCGI_WEB_SERVER_ADDRS: parsing, IPv4/IPv6 CIDR matching, IPv4-mapped
// peers, the flag-over-environment rule, and the accept-time guard.
import assert from 'node:assert/strict';
import { Socket } from 'node:net';
import { describe, test } from 'node:test';
import {
  allowedClientsFrom,
  guardConnections,
  parseAllowedClients,
} from '../../src/server/allowed-clients.js';

// [rules, peer, allowed]
const MATCHES: [string, string, boolean][] = [
  ['127.0.0.1', '127.0.0.1', true],
  ['127.0.0.1', '127.0.0.2', false],
  ['10.0.0.0/8', '10.255.1.2', true],
  ['10.0.0.0/8', '11.0.0.1', false],
  ['192.168.1.0/24', '192.168.1.255', true],
  ['192.168.1.0/24', '192.168.2.0', false],
  ['192.168.1.77/24', '192.168.1.3', true], // host bits in the rule are ignored
  ['0.0.0.0/0', '203.0.113.9', true],
  ['0.0.0.0/0', '::1', false], // an IPv4 range never matches a real IPv6 peer
  ['172.16.0.0/12', '172.31.255.255', true],
  ['172.16.0.0/12', '172.32.0.0', false],
  // A dual-stack socket (listening on ::) reports IPv4 peers as IPv4-mapped IPv6.
  ['127.0.0.1', '::ffff:127.0.0.1', true],
  ['10.0.0.0/8', '::ffff:10.1.2.3', true],
  ['10.0.0.0/8', '::ffff:11.1.2.3', false],
  ['::ffff:10.0.0.0/104', '10.9.9.9', true], // a mapped rule matches the plain IPv4 peer
  ['::1', '::1', true],
  ['::1', '0:0:0:0:0:0:0:1', true],
  ['::1', '::2', false],
  ['[::1]', '::1', true],
  ['fd00::/8', 'fd12:3456::1', true],
  ['fd00::/8', 'fe80::1', false],
  ['2001:db8::/32', '2001:db8:ffff::1', true],
  ['2001:db8::/32', '2001:db9::1', false],
  ['fe80::/10', 'fe80::1%eth0', true], // a zone does not matter
  ['::/0', '2001:db8::1', true],
  ['::/0', '127.0.0.1', true], // ::/0 covers the mapped block too
  ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8', true],
  ['1::8', '1:0:0:0:0:0:0:8', true],
  ['64:ff9b::192.0.2.1', '64:ff9b::c000:201', true], // an embedded IPv4 tail
  ['127.0.0.1, ::1', '::1', true],
  ['127.0.0.1, ::1', '10.0.0.1', false],
  ['10.0.0.1,,10.0.0.2', '10.0.0.2', true], // empty entries are skipped
];

describe('parseAllowedClients matching', () => {
  for (const [rules, peer, allowed] of MATCHES) {
    test(`${rules} ${allowed ? 'allows' : 'refuses'} ${peer}`, () => {
      assert.equal(parseAllowedClients(rules).allows(peer), allowed);
    });
  }

  test('a peer that is not an address is refused', () => {
    assert.equal(parseAllowedClients('0.0.0.0/0,::/0').allows('localhost'), false);
    assert.equal(parseAllowedClients('0.0.0.0/0,::/0').allows(''), false);
  });

  test('an array of entries, each possibly comma-separated', () => {
    const f = parseAllowedClients(['10.0.0.1', '10.0.0.2, 10.0.0.3']);
    assert.deepEqual(f.rules, ['10.0.0.1', '10.0.0.2', '10.0.0.3']);
    assert.equal(f.allows('10.0.0.3'), true);
    assert.equal(f.source, '--allowed-clients');
  });
});

describe('parseAllowedClients refuses junk with CLI_ERR_BAD_ALLOWED_CLIENTS', () => {
  const BAD: [string, RegExp][] = [
    ['', /the list is empty/],
    [' , ', /the list is empty/],
    ['localhost', /"localhost" is not an IP address/],
    ['10.0.0.0/33', /prefix length outside 0-32/],
    ['::/129', /prefix length outside 0-128/],
    ['10.0.0.0/', /prefix length/],
    ['10.0.0.0/x', /prefix length/],
    ['10.0.0.256', /not an IP address/],
    ['1.2.3', /not an IP address/],
    ['::1::2', /not an IP address/],
    ['10.0.0.1;10.0.0.2', /not an IP address/],
  ];
  for (const [spec, re] of BAD) {
    test(JSON.stringify(spec), () => {
      assert.throws(
        () => parseAllowedClients(spec, 'FCGI_WEB_SERVER_ADDRS'),
        (e: Error & { code?: string }) =>
          e.code === 'CLI_ERR_BAD_ALLOWED_CLIENTS' &&
          e.message.startsWith('cgi-bridge: FCGI_WEB_SERVER_ADDRS: ') &&
          re.test(e.message),
      );
    });
  }
});

describe('allowedClientsFrom', () => {
  test('the flag wins over FCGI_WEB_SERVER_ADDRS', () => {
    const f = allowedClientsFrom('10.0.0.1', { FCGI_WEB_SERVER_ADDRS: '127.0.0.1' });
    assert.equal(f?.source, '--allowed-clients');
    assert.equal(f?.allows('127.0.0.1'), false);
    assert.equal(f?.allows('10.0.0.1'), true);
  });

  test('FCGI_WEB_SERVER_ADDRS applies without the flag (FastCGI spec §3.2)', () => {
    const f = allowedClientsFrom(undefined, { FCGI_WEB_SERVER_ADDRS: '127.0.0.1,192.168.0.1' });
    assert.equal(f?.source, 'FCGI_WEB_SERVER_ADDRS');
    assert.equal(f?.allows('192.168.0.1'), true);
    assert.equal(f?.allows('192.168.0.2'), false);
  });

  test('neither (or an empty variable): everyone is allowed', () => {
    assert.equal(allowedClientsFrom(undefined, {}), undefined);
    assert.equal(allowedClientsFrom(undefined, { FCGI_WEB_SERVER_ADDRS: '  ' }), undefined);
    assert.equal(allowedClientsFrom([], {}), undefined);
  });
});

describe('guardConnections', () => {
  function fakeSocket(remoteAddress: string | undefined): Socket & { destroyed: boolean } {
    const s = new Socket();
    Object.defineProperty(s, 'remoteAddress', { value: remoteAddress });
    return s as Socket & { destroyed: boolean };
  }

  test('an allowed peer reaches the handler; others are destroyed with one log line', () => {
    const handled: Socket[] = [];
    const log: string[] = [];
    const guard = guardConnections(
      (s) => handled.push(s),
      parseAllowedClients('10.0.0.0/8'),
      (l) => log.push(l),
    );
    const good = fakeSocket('::ffff:10.1.1.1');
    const bad = fakeSocket('192.0.2.7');
    const gone = fakeSocket(undefined); // reset before it was accepted: no address to check
    guard(good);
    guard(bad);
    guard(gone);
    assert.deepEqual(handled, [good]);
    assert.equal(good.destroyed, false);
    assert.equal(bad.destroyed, true);
    assert.equal(gone.destroyed, true);
    assert.deepEqual(log, [
      'fcgi: refused a connection from 192.0.2.7: not in --allowed-clients',
      'fcgi: refused a connection from an unknown peer: not in --allowed-clients',
    ]);
  });
});
