// validate(): every rule fires on a deliberately broken environ or app, and correct apps pass
// through runApp unchanged.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { BridgeError } from '../../src/errors.js';
import { runApp } from '../../src/gateway/handler.js';
import type {
  Body,
  Environ,
  GatewayApp,
  Header,
  InputStream,
  StartResponse,
} from '../../src/gateway/types.js';
import { validate, VALIDATION_RULES, type ValidationRule } from '../../src/gateway/validate.js';
import { makeEnviron, RecordingWriter, sleep, splitSource } from './gateway-helpers.js';

const TEXT: Header[] = [['Content-Type', 'text/plain']];
const fired = new Set<string>();
const noopStart: StartResponse = () => () => undefined;

function respond(body: Body, headers: Header[] = TEXT, status = '200 OK'): GatewayApp {
  return (_env, sr) => {
    sr(status, headers);
    return body;
  };
}

function isRule(rule: ValidationRule) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof BridgeError, `not a BridgeError: ${String(e)}`);
    assert.equal(e.code, 'GATEWAY_ERR_VALIDATION');
    assert.match(e.message, new RegExp(`^gateway: validate \\[${rule}\\]: `));
    fired.add(rule);
    return true;
  };
}

/** firesSync asserts that calling the validated app throws the rule at once. */
function firesSync(rule: ValidationRule, call: () => unknown): void {
  assert.throws(call, isRule(rule));
}

/** fires asserts that `work` (the call and its use of the body) fails with the rule. */
async function fires(rule: ValidationRule, work: () => unknown): Promise<void> {
  await assert.rejects(async () => work(), isRule(rule));
}

/** env builds a good environ and changes it. */
function env(
  change: (e: Record<string, unknown>) => void = () => undefined,
  options = {},
): Environ {
  const { environ } = makeEnviron(options);
  change(environ as Record<string, unknown>);
  return environ;
}

/** drain iterates a body the way the pipeline does and closes it. */
async function drain(body: Body | Promise<Body>): Promise<void> {
  const b = await body;
  if (typeof b === 'object' && b !== null && Symbol.asyncIterator in b) {
    for await (const _ of b as AsyncIterable<unknown>);
  } else if (typeof b === 'object' && b !== null && Symbol.iterator in b) {
    for (const _ of b as Iterable<unknown>);
  }
  await b.close?.();
}

const ok = validate(respond(['ok']));

describe('validate: the environ a server passes', () => {
  const cases: [ValidationRule, string, (e: Record<string, unknown>) => void][] = [
    ['environ-required', 'REQUEST_METHOD missing', (e) => delete e.REQUEST_METHOD],
    ['environ-required', 'QUERY_STRING missing', (e) => delete e.QUERY_STRING],
    ['environ-required', 'REQUEST_URI missing', (e) => delete e.REQUEST_URI],
    ['environ-strings', 'SERVER_PORT a number', (e) => (e.SERVER_PORT = 8080)],
    ['environ-strings', 'an HTTP_ key undefined', (e) => (e.HTTP_X_A = undefined)],
    ['environ-method', 'method with a space', (e) => (e.REQUEST_METHOD = 'GE T')],
    ['environ-method', 'empty method', (e) => (e.REQUEST_METHOD = '')],
    ['environ-script-name', 'relative SCRIPT_NAME', (e) => (e.SCRIPT_NAME = 'app')],
    ['environ-script-name', "SCRIPT_NAME '/'", (e) => (e.SCRIPT_NAME = '/')],
    ['environ-path-info', 'relative PATH_INFO', (e) => (e.PATH_INFO = 'x/y')],
    ['environ-server-port', 'SERVER_PORT not digits', (e) => (e.SERVER_PORT = '80a')],
    ['environ-protocol', 'SERVER_PROTOCOL without version', (e) => (e.SERVER_PROTOCOL = 'HTTP')],
    ['environ-content-length', 'empty CONTENT_LENGTH', (e) => (e.CONTENT_LENGTH = '')],
    ['environ-content-length', 'negative CONTENT_LENGTH', (e) => (e.CONTENT_LENGTH = '-1')],
    ['environ-httpoxy', 'HTTP_PROXY present', (e) => (e.HTTP_PROXY = 'http://evil:3128')],
    ['environ-version', 'version [1, 1]', (e) => (e['gateway.version'] = [1, 1])],
    ['environ-version', 'version a string', (e) => (e['gateway.version'] = '1.0')],
    ['environ-url-scheme', 'scheme ftp', (e) => (e['gateway.url_scheme'] = 'ftp')],
    ['environ-input', 'no input', (e) => delete e['gateway.input']],
    [
      'environ-input',
      'input without for await',
      (e) => (e['gateway.input'] = { read() {}, readline() {}, readlines() {} }),
    ],
    [
      'environ-errors',
      'errors without flush',
      (e) => (e['gateway.errors'] = { write() {}, writelines() {} }),
    ],
    ['environ-flags', 'run_once a string', (e) => (e['gateway.run_once'] = 'false')],
    ['environ-flags', 'multithread missing', (e) => delete e['gateway.multithread']],
    ['environ-signal', 'signal a plain object', (e) => (e['gateway.signal'] = { aborted: false })],
    ['environ-file-wrapper', 'file_wrapper a string', (e) => (e['gateway.file_wrapper'] = 'x')],
  ];
  for (const [rule, why, change] of cases) {
    it(`${rule}: ${why}`, () => firesSync(rule, () => ok(env(change), noopStart)));
  }

  it('environ-object: environ is null', () => {
    firesSync('environ-object', () => ok(null as unknown as Environ, noopStart));
  });

  it('app-arguments: startResponse missing or not a function', () => {
    const call = ok as unknown as (...a: unknown[]) => unknown;
    firesSync('app-arguments', () => call(env()));
    firesSync('app-arguments', () => call(env(), 'start'));
  });

  it('accepts what real front ends send: dotted middleware keys, INCLUDED, chunked bodies', () => {
    const e = env((x) => {
      x['myapp.session'] = { user: 1 };
      x.SERVER_PROTOCOL = 'INCLUDED';
      x.HTTP_TRANSFER_ENCODING = 'chunked';
      x.SCRIPT_NAME = '/cgi-bin/app';
      x.PATH_INFO = '';
    });
    assert.doesNotThrow(() => ok(e, noopStart));
  });
});

/** fakeInput is a broken gateway.input a buggy front end might pass. */
function fakeInput(parts: Partial<InputStream>): InputStream {
  return {
    read: async () => new Uint8Array(0),
    readline: async () => new Uint8Array(0),
    readlines: async () => [],
    async *[Symbol.asyncIterator]() {},
    ...parts,
  };
}

function withInput(input: InputStream, length = 10): Environ {
  return env((e) => {
    e['gateway.input'] = input;
    e.CONTENT_LENGTH = String(length);
  });
}

function reading(use: (input: InputStream) => Promise<unknown>): GatewayApp {
  return async (environ, sr) => {
    await use(environ['gateway.input']);
    sr('200 OK', TEXT);
    return [];
  };
}

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

describe('validate: the input stream a server passes', () => {
  it('input-result: read() resolves to a string', async () => {
    const input = fakeInput({ read: async () => 'abc' as unknown as Uint8Array });
    await fires('input-result', () =>
      validate(reading((i) => i.read()))(withInput(input), noopStart),
    );
  });

  it('input-result: readlines() gives a non-Uint8Array line; for await yields an empty chunk', async () => {
    const lines = fakeInput({ readlines: async () => ['x\n' as unknown as Uint8Array] });
    await fires('input-result', () =>
      validate(reading((i) => i.readlines()))(withInput(lines), noopStart),
    );
    const empty = fakeInput({
      async *[Symbol.asyncIterator]() {
        yield new Uint8Array(0);
      },
    });
    const loop = reading(async (i) => {
      for await (const _ of i);
    });
    await fires('input-result', () => validate(loop)(withInput(empty), noopStart));
  });

  it('input-bounded: more bytes than CONTENT_LENGTH, or any without it', async () => {
    const five = fakeInput({ read: async () => bytes('12345') });
    await fires('input-bounded', () =>
      validate(reading((i) => i.read()))(withInput(five, 3), noopStart),
    );
    const noLength = env((e) => (e['gateway.input'] = five));
    await fires('input-bounded', () => validate(reading((i) => i.read()))(noLength, noopStart));
  });

  it('input-exact: read(n) returns fewer bytes than due, or bytes after a short read', async () => {
    const short = fakeInput({ read: async () => bytes('ab') });
    await fires('input-exact', () =>
      validate(reading((i) => i.read(4)))(withInput(short), noopStart),
    );
    const chunked = env((e) => {
      e['gateway.input'] = short;
      e.HTTP_TRANSFER_ENCODING = 'chunked';
    });
    const twice = reading(async (i) => {
      await i.read(4); // 2 bytes: the end of a chunked body
      await i.read(4); // more bytes after the end
    });
    await fires('input-exact', () => validate(twice)(chunked, noopStart));
  });

  it('input-line: a line with an inner newline or over its limit', async () => {
    const inner = fakeInput({ readline: async () => bytes('a\nb') });
    await fires('input-line', () =>
      validate(reading((i) => i.readline()))(withInput(inner), noopStart),
    );
    const long = fakeInput({ readline: async () => bytes('abc') });
    await fires('input-line', () =>
      validate(reading((i) => i.readline(2)))(withInput(long), noopStart),
    );
  });

  it('passes a real BodyInput read every way', async () => {
    const data = bytes('line one\nline two\nthe rest');
    for (const use of [
      (i: InputStream) => i.read(),
      async (i: InputStream) => [await i.read(3), await i.read(100), await i.read()],
      (i: InputStream) => i.readlines(),
      async (i: InputStream) => [await i.readline(4), await i.readline(), await i.readline()],
      async (i: InputStream) => {
        for await (const _ of i);
      },
    ]) {
      const e = env(() => undefined, { body: splitSource(data, [1, 4]), length: data.length });
      await drain(await validate(reading(use))(e, noopStart));
    }
  });
});

describe('validate: the app', () => {
  it('input-argument: read() with a string, a fraction or two arguments', async () => {
    for (const use of [
      (i: InputStream) => i.read('3' as unknown as number),
      (i: InputStream) => i.readline(1.5),
      (i: InputStream) => (i.readlines as (...a: unknown[]) => unknown)(1, 2),
    ]) {
      await fires('input-argument', () => validate(reading(async (i) => use(i)))(env(), noopStart));
    }
  });

  it('errors-argument: gateway.errors.write() with a number, writelines() with a number in it', () => {
    const app = (f: (e: Environ) => void): GatewayApp =>
      validate((environ, sr) => {
        f(environ);
        sr('200 OK', TEXT);
        return [];
      });
    firesSync('errors-argument', () =>
      app((e) => e['gateway.errors'].write(5 as unknown as string))(env(), noopStart),
    );
    firesSync('errors-argument', () =>
      app((e) => e['gateway.errors'].writelines(['a', 5 as unknown as string]))(env(), noopStart),
    );
  });

  it('start-response-arguments: one argument', () => {
    const app = validate((_e, sr) => {
      (sr as (...a: unknown[]) => unknown)('200 OK');
      return [];
    });
    firesSync('start-response-arguments', () => app(env(), noopStart));
  });

  it('start-response-twice: a second call without excInfo', () => {
    const app = validate((_e, sr) => {
      sr('200 OK', TEXT);
      sr('500 Oops', TEXT);
      return [];
    });
    firesSync('start-response-twice', () => app(env(), noopStart));
  });

  for (const [rule, status, headers] of [
    ['status', '200', TEXT],
    ['status', '100 Continue', TEXT],
    ['headers', '200 OK', [['X-A', 'a\r\nb']]],
    ['headers', '200 OK', [['Status', '200 OK']]],
    ['headers', '200 OK', [['X-A', '\u2603']]],
    ['hop-by-hop', '200 OK', [['Connection', 'close']]],
  ] as [ValidationRule, string, Header[]][]) {
    it(`${rule}: ${JSON.stringify(status)} ${JSON.stringify(headers)}`, () => {
      firesSync(rule, () => validate(respond([], headers, status))(env(), noopStart));
    });
  }

  it('content-type: a body without Content-Type (but a bodyless redirect or 204 is fine)', async () => {
    firesSync('content-type', () => validate(respond(['x'], []))(env(), noopStart));
    const viaWrite = validate((_e, sr) => {
      sr('200 OK', [])('x');
      return [];
    });
    firesSync('content-type', () => viaWrite(env(), noopStart));
    await drain(validate(respond([], [['Location', '/there']], '302 Found'))(env(), noopStart));
    await drain(validate(respond(['dropped'], [], '204 No Content'))(env(), noopStart));
  });

  it('body: undefined, a number, a plain object', () => {
    for (const body of [undefined, 42, { a: 1 }]) {
      firesSync('body', () => validate(respond(body as unknown as Body))(env(), noopStart));
    }
  });

  it('body: a single string or Uint8Array chunk is allowed', async () => {
    await drain(validate(respond('one chunk'))(env(), noopStart));
    await drain(validate(respond(bytes('one chunk')))(env(), noopStart));
  });

  it('chunk: a number in an array, a null from a generator, a number to write()', async () => {
    firesSync('chunk', () => validate(respond([5] as unknown as Body))(env(), noopStart));
    const gen = validate(
      respond(
        (function* () {
          yield null;
        })() as unknown as Body,
      ),
    );
    await fires('chunk', () => drain(gen(env(), noopStart)));
    const w = validate((_e, sr) => {
      void sr('200 OK', TEXT)(5 as unknown as string);
      return [];
    });
    firesSync('chunk', () => w(env(), noopStart));
  });

  it('start-response-first: an array returned, or a chunk yielded, before startResponse', async () => {
    firesSync('start-response-first', () => validate(() => ['x'])(env(), noopStart));
    const early: GatewayApp = (_e, sr) =>
      (function* () {
        yield 'too early';
        sr('200 OK', TEXT);
      })();
    await fires('start-response-first', () => drain(validate(early)(env(), noopStart)));
    const never: GatewayApp = () => (function* () {})();
    await fires('start-response-first', () => drain(validate(never)(env(), noopStart)));
  });

  it('start-response-first: startResponse inside the generator before the first chunk is fine', async () => {
    const lazy: GatewayApp = (_e, sr) =>
      (function* () {
        sr('200 OK', TEXT);
        yield 'x';
      })();
    await drain(validate(lazy)(env(), noopStart));
  });

  it('content-length: a declared length the body does not match', async () => {
    const declared: Header[] = [...TEXT, ['Content-Length', '10']];
    firesSync('content-length', () => validate(respond(['abc'], declared))(env(), noopStart));
    const gen = validate(
      respond(
        (async function* () {
          yield 'a'.repeat(11);
        })(),
        declared,
      ),
    );
    await fires('content-length', () => drain(gen(env(), noopStart)));
    // HEAD: the body is not sent, so its length is not checked.
    await drain(
      validate(respond([], declared))(
        env(() => undefined, { method: 'HEAD' }),
        noopStart,
      ),
    );
  });
});

describe('validate: the server side of the body', () => {
  it('close-once: close() called twice', async () => {
    const body = (await ok(env(), noopStart)) as Body;
    await body.close?.();
    await fires('close-once', () => body.close?.());
  });

  it("close() calls the app's own close()", async () => {
    let closes = 0;
    const app = validate(respond(Object.assign(['x'], { close: () => void closes++ })));
    const body = (await app(env(), noopStart)) as Body;
    await body.close?.();
    assert.equal(closes, 1);
  });

  it('iterate-after-close: next() after close()', async () => {
    const app = validate(
      respond(
        (async function* () {
          yield 'a';
          yield 'b';
        })(),
      ),
    );
    const body = (await app(env(), noopStart)) as AsyncIterable<unknown> & { close(): void };
    const it = body[Symbol.asyncIterator]();
    await it.next();
    body.close();
    await fires('iterate-after-close', () => it.next());
  });

  it('close-called: a body garbage-collected unclosed is reported to gateway.errors', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const { environ, errors } = makeEnviron();
    ((): void => {
      void validate(respond(['never closed']))(environ, noopStart);
    })();
    for (let i = 0; i < 20 && !errors.join('').includes('[close-called]'); i++) {
      gc();
      await sleep(5);
    }
    assert.match(errors.join(''), /gateway: validate \[close-called\]/);
    fired.add('close-called');
  });
});

describe('validate through runApp', () => {
  it('a violation becomes a 500 with GATEWAY_ERR_VALIDATION and the rule in gateway.errors', async () => {
    const { environ, errors } = makeEnviron();
    const writer = new RecordingWriter();
    await runApp(validate(respond(['x'], [])), environ, writer);
    assert.equal(writer.head?.code, 500);
    assert.match(errors.join(''), /GATEWAY_ERR_VALIDATION[\s\S]*\[content-type\]/);
  });

  const tmp = mkdtempSync(join(tmpdir(), 'gateway-validate-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));
  const file = join(tmp, 'f.bin');
  writeFileSync(file, Buffer.alloc(5000, 7));

  const correct: [string, GatewayApp, Parameters<typeof makeEnviron>[0]?][] = [
    ['array', respond(['a', 'b'])],
    ['single string', respond('héllo')],
    ['single Uint8Array', respond(bytes('bytes'))],
    [
      'sync generator',
      respond(
        (function* () {
          yield 'a';
          yield '';
          yield 'b';
        })(),
      ),
    ],
    [
      'async generator with startResponse inside',
      (_e, sr) =>
        (async function* () {
          sr('201 Created', TEXT);
          yield 'x';
        })(),
    ],
    ['file_wrapper', (e, sr) => (sr('200 OK', TEXT), e['gateway.file_wrapper']!(file, 1000))],
    [
      'write() then an array',
      async (_e, sr) => {
        const write = sr('200 OK', TEXT);
        await write('first ');
        void write('second ');
        return ['third'];
      },
    ],
    ['declared Content-Length', respond(['abc'], [...TEXT, ['Content-Length', '3']])],
    ['HEAD', respond(['abc']), { method: 'HEAD' }],
    ['204', respond([], [], '204 No Content')],
    [
      'excInfo error page',
      (_e, sr) => {
        sr('200 OK', TEXT);
        sr('503 Service Unavailable', TEXT, new Error('db down'));
        return ['try later'];
      },
    ],
    [
      'echo of the request body',
      async (e, sr) => {
        const line = await e['gateway.input'].readline();
        const rest: Uint8Array[] = [];
        for await (const c of e['gateway.input']) rest.push(c);
        sr('200 OK', TEXT);
        return [line, ...rest];
      },
      { body: splitSource(bytes('first\nsecond\nthird'), [3]), length: 18 },
    ],
    ['app error', () => Promise.reject(new Error('app failed'))],
  ];
  for (const [name, app, options] of correct) {
    it(`passes unchanged: ${name}`, async () => {
      const outcome = async (a: GatewayApp) => {
        // Each run needs its own body source.
        const opts = options?.body
          ? { ...options, body: splitSource(bytes('first\nsecond\nthird'), [3]) }
          : options;
        const { environ, errors } = makeEnviron(opts);
        const writer = new RecordingWriter();
        const result = await runApp(a, environ, writer);
        return { events: writer.events, result: { ...result, error: undefined }, errors };
      };
      // A generator body can be iterated once: build the app anew for each run.
      const plain = await outcome(app);
      const checked = await outcome(validate(rebuild(name, app)));
      assert.deepEqual(checked.events, plain.events);
      assert.deepEqual(checked.result, plain.result);
      assert.doesNotMatch(checked.errors.join(''), /VALIDATION/);
    });
  }

  // rebuild returns a fresh copy of a table app whose body is a one-shot generator.
  function rebuild(name: string, app: GatewayApp): GatewayApp {
    if (name === 'sync generator') {
      return respond(
        (function* () {
          yield 'a';
          yield '';
          yield 'b';
        })(),
      );
    }
    return app;
  }
});

describe('validate: coverage', () => {
  it('every rule in VALIDATION_RULES was seen firing above', () => {
    const missing = Object.keys(VALIDATION_RULES).filter((r) => !fired.has(r));
    assert.deepEqual(missing, []);
  });
});
