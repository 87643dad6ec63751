// The CLI's value parsers (sizes, seconds, --env pairs) and config files (.json, .ini; no YAML).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { BridgeError } from '../../src/errors.js';
import { loadConfigFile, parseIni } from '../../src/cli/config-file.js';
import { parseEnvPairs, parseSeconds, parseSize } from '../../src/cli/options.js';

const code = (want: string) => (e: unknown) => e instanceof BridgeError && e.code === want;

describe('parseSize', () => {
  const good: [string | number, number][] = [
    ['0', 0],
    ['1048576', 1048576],
    [1000, 1000],
    ['512k', 512 * 1024],
    ['512K', 512 * 1024],
    ['512KiB', 512 * 1024],
    ['10M', 10 * 1024 ** 2],
    ['10mb', 10 * 1024 ** 2],
    ['1G', 1024 ** 3],
    ['1.5k', 1536],
    [' 2M ', 2 * 1024 ** 2],
  ];
  for (const [input, want] of good) {
    test(`${JSON.stringify(input)} is ${want} bytes`, () => assert.equal(parseSize(input), want));
  }
  for (const input of ['', 'ten', '10Q', '-1', '1T', 'k', '1e9', '99999999999999999999']) {
    test(`refuses ${JSON.stringify(input)}`, () => {
      assert.throws(
        () => parseSize(input, 'max-body'),
        (e: unknown) =>
          code('CLI_ERR_BAD_SIZE')(e) && (e as Error).message.startsWith('cgi-bridge: --max-body'),
      );
    });
  }
});

describe('parseSeconds', () => {
  for (const [input, want] of [
    ['10', 10_000],
    ['0', 0],
    ['2.5', 2500],
    [3, 3000],
  ] as const) {
    test(`${JSON.stringify(input)} is ${want} ms`, () => assert.equal(parseSeconds(input), want));
  }
  for (const input of ['', '-1', '1s', 'soon', '1e3', '9999999999']) {
    test(`refuses ${JSON.stringify(input)}`, () => {
      assert.throws(() => parseSeconds(input), code('CLI_ERR_BAD_DURATION'));
    });
  }
});

describe('parseEnvPairs', () => {
  test('NAME=VALUE pairs, the value may hold = and be empty', () => {
    assert.deepEqual(parseEnvPairs(['A=1', 'B=x=y', 'C=', '_D9=z']), [
      ['A', '1'],
      ['B', 'x=y'],
      ['C', ''],
      ['_D9', 'z'],
    ]);
  });
  test('one value alone (from a config file) is a list of one', () => {
    assert.deepEqual(parseEnvPairs('A=1'), [['A', '1']]);
  });
  test('nothing is no pairs', () => assert.deepEqual(parseEnvPairs(undefined), []));
  for (const bad of ['NOEQUALS', '=x', '1A=x', 'A-B=x', 'A B=x']) {
    test(`refuses ${JSON.stringify(bad)}`, () => {
      assert.throws(() => parseEnvPairs([bad]), code('CLI_ERR_BAD_ENV'));
    });
  }
});

describe('parseIni', () => {
  test('keys, comments, quotes, a [cgi-bridge] section and repeated keys as lists', () => {
    const text = [
      '# a comment',
      '; another',
      'listen = 127.0.0.1:9000',
      '[cgi-bridge]',
      'max-body=10M',
      'label = "quoted value"',
      'env = A=1',
      'env = B=2',
      'chdir[] = /one',
      '',
    ].join('\r\n');
    assert.deepEqual(parseIni(text), {
      listen: '127.0.0.1:9000',
      'max-body': '10M',
      label: 'quoted value',
      env: ['A=1', 'B=2'],
      chdir: ['/one'],
    });
  });
  for (const [text, why] of [
    ['[uwsgi]\nx = 1', /unknown section \[uwsgi\]/],
    ['listen', /line 1: expected "key = value"/],
    ['= 1', /expected "key = value"/],
    ['a b = 1', /not an option name/],
  ] as const) {
    test(`refuses ${JSON.stringify(text)}`, () => {
      assert.throws(
        () => parseIni(text, 'x.ini'),
        (e: unknown) => code('CLI_ERR_BAD_CONFIG')(e) && why.test((e as Error).message),
      );
    });
  }
});

describe('loadConfigFile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cgi-bridge-config-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string): string => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };

  test('.json: an object of option names', () => {
    const p = file(
      'a.json',
      '{"listen": ":9000", "max-body": 1000, "env": ["A=1"], "debug": true}',
    );
    assert.deepEqual(loadConfigFile(p), {
      listen: ':9000',
      'max-body': 1000,
      env: ['A=1'],
      debug: true,
    });
  });
  test('.ini', () => {
    assert.deepEqual(loadConfigFile(file('a.ini', 'listen = :9000\n')), { listen: ':9000' });
  });
  for (const [name, text, why] of [
    ['b.yaml', 'listen: x', /YAML is not supported/],
    ['b.yml', 'listen: x', /YAML is not supported/],
    ['b.toml', 'listen = 1', /must end in \.json or \.ini/],
    ['b.json', '{nope', /not valid JSON/],
    ['c.json', '[1, 2]', /top level must be an object/],
    ['d.json', '{"env": [1]}', /"env" must be a string/],
    ['e.json', '{"listen": null}', /"listen" must be a string/],
  ] as const) {
    test(`refuses ${name} (${why.source})`, () => {
      assert.throws(
        () => loadConfigFile(file(name, text)),
        (e: unknown) => code('CLI_ERR_BAD_CONFIG')(e) && why.test((e as Error).message),
      );
    });
  }
  test('a missing file', () => {
    assert.throws(
      () => loadConfigFile(join(dir, 'missing.json')),
      (e: unknown) => code('CLI_ERR_BAD_CONFIG')(e) && /ENOENT/.test((e as Error).message),
    );
  });
});
