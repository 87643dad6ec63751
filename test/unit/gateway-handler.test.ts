// The response pipeline (runApp) against a recording ResponseWriter: one test group per rule of
// DESIGN.md "The gateway interface" and docs/gateway-interface.md.
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { BridgeError } from '../../src/errors.js';
import { runApp } from '../../src/gateway/handler.js';
import type { Body, GatewayApp, Header, Write } from '../../src/gateway/types.js';
import { makeEnviron, RecordingWriter, sleep, tick } from './gateway-helpers.js';

const TEXT: Header[] = [['Content-Type', 'text/plain']];

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** respond is an app that starts a 200 and returns `body`. */
function respond(body: Body, headers: Header[] = TEXT, status = '200 OK'): GatewayApp {
  return (_env, startResponse) => {
    startResponse(status, headers);
    return body;
  };
}

/** closable counts close() calls on a body. */
function closable<T extends object>(
  body: T,
): { body: T & { close(): void }; closes: () => number } {
  let n = 0;
  return {
    body: Object.assign(body, {
      close() {
        n++;
      },
    }),
    closes: () => n,
  };
}

async function run(
  app: GatewayApp,
  options: Parameters<typeof makeEnviron>[0] = {},
  w?: RecordingWriter,
) {
  const writer = w ?? new RecordingWriter();
  const { environ, errors } = makeEnviron(options);
  const result = await runApp(app, environ, writer);
  return { writer, errors, result };
}

function codeOf(e: unknown): unknown {
  return e instanceof BridgeError ? e.code : e;
}

describe('headers are held until the first non-empty chunk', () => {
  it('an empty chunk does not send headers; the next non-empty one does', async () => {
    const gate = deferred();
    const writer = new RecordingWriter();
    let afterEmpty: string[] = [];
    async function* gen() {
      yield '';
      afterEmpty = [...writer.kinds];
      await gate.promise;
      yield 'x';
    }
    const { environ } = makeEnviron();
    const p = runApp(respond(gen()), environ, writer);
    await tick();
    assert.deepEqual(afterEmpty, []);
    assert.deepEqual(writer.kinds, []);
    gate.resolve();
    const r = await p;
    assert.equal(r.ok, true);
    assert.deepEqual(writer.kinds, ['head', 'write', 'end']);
    assert.equal(writer.body.toString(), 'x');
  });

  it('an app that awaits 200 ms before its first chunk has not sent headers yet', async () => {
    const writer = new RecordingWriter();
    async function* gen() {
      await sleep(200);
      yield 'late';
    }
    const { environ } = makeEnviron();
    const p = runApp(respond(gen()), environ, writer);
    await sleep(100);
    assert.deepEqual(writer.kinds, []);
    await p;
    assert.deepEqual(writer.kinds, ['head', 'write', 'end']);
  });

  it('headers of a body that ends without a non-empty chunk go out at the end, with Content-Length 0', async () => {
    function* gen() {
      yield '';
      yield new Uint8Array(0);
    }
    const { writer } = await run(respond(gen()));
    assert.deepEqual(writer.kinds, ['head', 'end']);
    assert.equal(writer.header('content-length'), '0');
  });
});

describe('startResponse', () => {
  it('a second call without excInfo throws GATEWAY_ERR_START_RESPONSE_TWICE', async () => {
    let thrown: unknown;
    const app: GatewayApp = (_env, sr) => {
      sr('200 OK', TEXT);
      try {
        sr('201 Created', TEXT);
      } catch (e) {
        thrown = e;
      }
      return ['ok'];
    };
    const { writer } = await run(app);
    assert.equal(codeOf(thrown), 'GATEWAY_ERR_START_RESPONSE_TWICE');
    assert.equal(writer.head?.code, 200);
  });

  it('with excInfo before headers went out, it replaces status and headers', async () => {
    const app: GatewayApp = (_env, sr) => {
      sr('200 OK', [['X-First', '1']]);
      sr('503 Busy', [['X-Second', '2']], new Error('backend down'));
      return ['sorry'];
    };
    const { writer } = await run(app);
    assert.equal(writer.head?.code, 503);
    assert.equal(writer.head?.reason, 'Busy');
    assert.equal(writer.header('x-first'), undefined);
    assert.equal(writer.header('x-second'), '2');
    assert.equal(writer.body.toString(), 'sorry');
  });

  it('excInfo counts as passed when it is null (not undefined)', async () => {
    const app: GatewayApp = (_env, sr) => {
      sr('200 OK', TEXT);
      sr('500 Oops', TEXT, null);
      return [];
    };
    const { writer } = await run(app);
    assert.equal(writer.head?.code, 500);
  });

  it('with excInfo after headers went out, it re-throws the given error and the response is cut', async () => {
    const original = new Error('failed mid-body');
    let rethrown: unknown;
    const app: GatewayApp = (_env, sr) => {
      sr('200 OK', TEXT);
      return (function* () {
        yield 'partial';
        try {
          sr('500 Oops', TEXT, original);
        } catch (e) {
          rethrown = e;
          throw e;
        }
      })();
    };
    const { writer, result } = await run(app);
    assert.equal(rethrown, original);
    assert.deepEqual(writer.kinds, ['head', 'write', 'abort']);
    assert.equal(result.error, original);
  });

  it('returns the write() callable', async () => {
    let write: unknown;
    await run((_env, sr) => {
      write = sr('200 OK', TEXT);
      return [];
    });
    assert.equal(typeof write, 'function');
  });

  it('a bad status or header from the app gives a 500 and a coded error in gateway.errors', async () => {
    for (const [status, headers, code] of [
      ['200', TEXT, 'GATEWAY_ERR_BAD_STATUS'],
      ['200 OK', [['X-Evil', 'a\r\nSet-Cookie: x=1']], 'GATEWAY_ERR_BAD_HEADER'],
      ['200 OK', [['Transfer-Encoding', 'chunked']], 'GATEWAY_ERR_HOP_BY_HOP'],
      ['200 OK', [['Status', '404 Not Found']], 'GATEWAY_ERR_BAD_HEADER'],
    ] as const) {
      const { writer, errors } = await run(respond(['x'], [...headers] as Header[], status));
      assert.equal(writer.head?.code, 500, status);
      assert.match(errors.join(''), new RegExp(code));
    }
  });
});

describe('Content-Length', () => {
  it('is the sum of UTF-8 bytes for an array body', async () => {
    const { writer } = await run(respond(['héllo ', '😀', new Uint8Array([0, 255])]));
    assert.equal(writer.header('content-length'), String(6 + 1 + 4 + 2));
    assert.equal(writer.body.length, 13);
  });

  it('is the chunk length for a single string or Uint8Array body', async () => {
    const s = await run(respond('naïve'));
    assert.equal(s.writer.header('content-length'), '6');
    const bytes = new Uint8Array([1, 2, 3, 0, 10, 13]);
    const b = await run(respond(bytes));
    assert.equal(b.writer.header('content-length'), '6');
    assert.deepEqual([...b.writer.body], [...bytes]);
  });

  it('is the file size for a file_wrapper body given a path', async () => {
    const data = Buffer.alloc(70_000, 'z');
    const path = join(tmp, 'cl.bin');
    writeFileSync(path, data);
    let closed = 0;
    const app: GatewayApp = (env, sr) => {
      sr('200 OK', [['Content-Type', 'application/octet-stream']]);
      const body = env['gateway.file_wrapper']!(path, 16_384);
      const close = body.close!.bind(body);
      return Object.assign(body, {
        close: async () => {
          closed++;
          await close();
        },
      });
    };
    const { writer, result } = await run(app);
    assert.equal(result.ok, true);
    assert.equal(writer.header('content-length'), '70000');
    assert.equal(writer.body.toString('hex'), data.toString('hex'));
    assert.equal(closed, 1);
  });

  it('is not added for a file_wrapper given an fd, a generator, or write()', async () => {
    const path = join(tmp, 'fd.txt');
    writeFileSync(path, 'from an fd');
    const fd = openSync(path, 'r');
    const f = await run((env, sr) => {
      sr('200 OK', TEXT);
      return env['gateway.file_wrapper']!(fd);
    });
    assert.equal(f.writer.header('content-length'), undefined);
    assert.equal(f.writer.body.toString(), 'from an fd');

    const g = await run(
      respond(
        (function* () {
          yield 'abc';
        })(),
      ),
    );
    assert.equal(g.writer.header('content-length'), undefined);

    const w = await run(async (_env, sr) => {
      await sr('200 OK', TEXT)('abc');
      return [];
    });
    assert.equal(w.writer.header('content-length'), undefined);
    assert.equal(w.writer.body.toString(), 'abc');
  });

  it("keeps the app's own Content-Length and does not add a second one", async () => {
    const { writer } = await run(respond(['abc'], [...TEXT, ['content-length', '3']]));
    assert.deepEqual(
      writer.head?.headers.filter(([n]) => n.toLowerCase() === 'content-length'),
      [['content-length', '3']],
    );
  });

  it('a body that overruns the declared Content-Length is cut off after headers', async () => {
    function* gen() {
      yield '12345';
      yield '67890';
    }
    const { writer, errors, result } = await run(
      respond(gen(), [...TEXT, ['Content-Length', '7']]),
    );
    assert.deepEqual(writer.kinds, ['head', 'write', 'abort']);
    assert.equal(writer.body.toString(), '12345');
    assert.equal(result.ok, false);
    assert.match(errors.join(''), /GATEWAY_ERR_CONTENT_LENGTH_MISMATCH/);
  });

  it('a body that underruns the declared Content-Length is cut off after headers', async () => {
    function* gen() {
      yield '12345';
    }
    const { writer, result } = await run(respond(gen(), [...TEXT, ['Content-Length', '10']]));
    assert.deepEqual(writer.kinds, ['head', 'write', 'abort']);
    assert.equal(codeOf(result.error), 'GATEWAY_ERR_CONTENT_LENGTH_MISMATCH');
  });

  it('an empty body under a non-zero declared Content-Length is a clean 500 (nothing was sent)', async () => {
    const { writer } = await run(respond([], [...TEXT, ['Content-Length', '10']]));
    assert.equal(writer.head?.code, 500);
    assert.deepEqual(writer.kinds, ['head', 'write', 'end']);
  });
});

describe('HEAD, 204 and 304 carry no body', () => {
  it('HEAD: a generator is not iterated when startResponse was already called; close() still runs', async () => {
    let iterated = false;
    const { body, closes } = closable(
      (function* () {
        iterated = true;
        yield 'x';
      })(),
    );
    const { writer, result } = await run(respond(body), { method: 'HEAD' });
    assert.equal(iterated, false);
    assert.equal(closes(), 1);
    assert.deepEqual(writer.kinds, ['head', 'end']);
    assert.equal(result.ok, true);
  });

  it('HEAD: an array body announces its Content-Length and sends no bytes', async () => {
    const { writer } = await run(respond(['hello']), { method: 'HEAD' });
    assert.deepEqual(writer.kinds, ['head', 'end']);
    assert.equal(writer.header('content-length'), '5');
  });

  it('HEAD: an app that starts the response inside its generator is stopped after the first chunk', async () => {
    let finallyRan = false;
    let produced = 0;
    const app: GatewayApp = (_env, sr) =>
      (function* () {
        try {
          sr('200 OK', TEXT);
          for (;;) {
            produced++;
            yield 'chunk';
          }
        } finally {
          finallyRan = true;
        }
      })();
    const { writer } = await run(app, { method: 'HEAD' });
    assert.deepEqual(writer.kinds, ['head', 'end']);
    assert.equal(produced, 1);
    assert.equal(finallyRan, true);
  });

  for (const status of ['204 No Content', '304 Not Modified']) {
    it(`${status}: the body is dropped and no Content-Length is added`, async () => {
      const { body, closes } = closable(['dropped']);
      const { writer } = await run(respond(body, [], status));
      assert.deepEqual(writer.kinds, ['head', 'end']);
      assert.equal(writer.header('content-length'), undefined);
      assert.equal(closes(), 1);
    });
  }

  it('a HEAD error response has headers only', async () => {
    const { writer } = await run(
      () => {
        throw new Error('boom');
      },
      { method: 'HEAD' },
    );
    assert.equal(writer.head?.code, 500);
    assert.deepEqual(writer.kinds, ['head', 'end']);
  });
});

describe('errors', () => {
  it('an error before headers gives a generic 500; the stack goes to gateway.errors only', async () => {
    const { writer, errors, result } = await run(() => {
      throw new Error('secret database password wrong');
    });
    assert.equal(writer.head?.code, 500);
    assert.equal(writer.head?.reason, 'Internal Server Error');
    const body = writer.body.toString();
    assert.equal(body, '500 Internal Server Error\n');
    assert.equal(writer.header('content-length'), String(body.length));
    const log = errors.join('');
    assert.match(log, /secret database password wrong/);
    assert.match(log, /\n\s+at /); // a stack trace
    assert.match(log, /GET \/test/);
    assert.equal(result.ok, false);
    assert.equal(result.status, 500);
  });

  it('a rejected async app gives the same 500', async () => {
    const { writer, errors } = await run(async () => {
      await tick();
      throw new Error('async failure');
    });
    assert.equal(writer.head?.code, 500);
    assert.match(errors.join(''), /async failure/);
  });

  it('an error inside the generator before the first chunk gives a 500', async () => {
    const { writer } = await run(
      respond(
        (function* () {
          throw new Error('early');
          yield 'never';
        })(),
      ),
    );
    assert.equal(writer.head?.code, 500);
  });

  it('an error thrown by a generator after the first chunk aborts; end() is never called', async () => {
    const { writer, errors, result } = await run(
      respond(
        (async function* () {
          yield 'first';
          throw new Error('late failure');
        })(),
      ),
    );
    assert.deepEqual(writer.kinds, ['head', 'write', 'abort']);
    assert.equal(result.ok, false);
    assert.equal(result.aborted, false);
    assert.match(errors.join(''), /late failure/);
  });

  it('a coded error with a 4xx status (a truncated request body) answers with that status', async () => {
    const { writer } = await run(() => {
      throw new BridgeError('GATEWAY_ERR_INPUT_TRUNCATED', 'gateway: short body', { status: 400 });
    });
    assert.equal(writer.head?.code, 400);
    assert.equal(writer.body.toString(), '400 Bad Request\n');
  });

  it('a body that is not iterable is a 500 with GATEWAY_ERR_BAD_BODY', async () => {
    for (const body of [{}, undefined, 42]) {
      const { writer, errors } = await run(respond(body as unknown as Body));
      assert.equal(writer.head?.code, 500);
      assert.match(errors.join(''), /GATEWAY_ERR_BAD_BODY/);
    }
  });

  it('a chunk that is not a string or Uint8Array is a 500 with GATEWAY_ERR_BAD_CHUNK', async () => {
    for (const body of [
      [1],
      ['ok', null],
      (function* () {
        yield 42;
      })(),
    ]) {
      const { writer, errors } = await run(respond(body as unknown as Body));
      assert.equal(writer.head?.code, 500);
      assert.equal(writer.body.toString(), '500 Internal Server Error\n');
      assert.match(errors.join(''), /GATEWAY_ERR_BAD_CHUNK/);
    }
  });

  it('a body without startResponse is a 500 with GATEWAY_ERR_NO_START_RESPONSE', async () => {
    for (const body of [['x'], [], 'x']) {
      const { writer, errors } = await run(() => body);
      assert.equal(writer.head?.code, 500);
      assert.match(errors.join(''), /GATEWAY_ERR_NO_START_RESPONSE/);
    }
  });

  it('runApp does not throw when the writer itself throws', async () => {
    const writer = new RecordingWriter();
    writer.abort = () => {
      throw new Error('abort failed');
    };
    writer.writeHead = () => {
      throw new Error('socket gone');
    };
    const { result } = await run(respond(['x']), {}, writer);
    assert.equal(result.aborted, true);
  });
});

describe('close() is called exactly once', () => {
  it('on success', async () => {
    const { body, closes } = closable(['ok']);
    await run(respond(body));
    assert.equal(closes(), 1);
  });

  it('on an error inside iteration, after the generator was stopped', async () => {
    let finallyRan = false;
    const { body, closes } = closable(
      (function* () {
        try {
          yield 'a';
          yield 7 as unknown as string;
          yield 'never';
        } finally {
          finallyRan = true;
        }
      })(),
    );
    const { writer } = await run(respond(body));
    assert.equal(closes(), 1);
    assert.equal(finallyRan, true);
    assert.deepEqual(writer.kinds, ['head', 'write', 'abort']);
  });

  it('on an app error raised by startResponse inside the body', async () => {
    const app: GatewayApp = (_env, sr) =>
      closable(
        (function* () {
          sr('OK', TEXT);
          yield 'x';
        })(),
      ).body;
    let closes = 0;
    const counted: GatewayApp = (env, sr) => {
      const body = app(env, sr) as Body & { close(): void };
      const close = body.close;
      body.close = () => {
        closes++;
        close();
      };
      return body;
    };
    const { writer } = await run(counted);
    assert.equal(writer.head?.code, 500);
    assert.equal(closes, 1);
  });

  it('on abort through gateway.signal while the generator awaits', async () => {
    const ac = new AbortController();
    const waiting = deferred();
    const { body, closes } = closable(
      (async function* () {
        yield 'a';
        waiting.resolve();
        await new Promise(() => undefined); // never settles: only the abort can end this
      })(),
    );
    const writer = new RecordingWriter();
    const { environ } = makeEnviron({ signal: ac.signal });
    const p = runApp(respond(body), environ, writer);
    await waiting.promise;
    ac.abort();
    const result = await p;
    assert.equal(result.aborted, true);
    assert.equal(result.ok, false);
    assert.equal(closes(), 1);
    assert.deepEqual(writer.kinds, ['head', 'write', 'abort']);
    assert.equal(getEventListeners(ac.signal, 'abort').length, 0);
  });

  it('on abort before the async app returned: when its body arrives', async () => {
    const ac = new AbortController();
    const gate = deferred();
    let closes = 0;
    const app: GatewayApp = async (_env, sr) => {
      sr('200 OK', TEXT);
      await gate.promise;
      return Object.assign(['late'], { close: () => void closes++ });
    };
    const writer = new RecordingWriter();
    const { environ } = makeEnviron({ signal: ac.signal });
    const p = runApp(app, environ, writer);
    await tick();
    ac.abort();
    const result = await p;
    assert.equal(result.aborted, true);
    assert.deepEqual(writer.kinds, ['abort']);
    gate.resolve();
    await tick();
    assert.equal(closes, 1);
  });

  it('when writer.write rejects (the client went away)', async () => {
    let produced = 0;
    const { body, closes } = closable(
      (function* () {
        for (;;) {
          produced++;
          yield 'chunk';
        }
      })(),
    );
    const { writer, result } = await run(
      respond(body),
      {},
      new RecordingWriter({ failWriteAt: 1 }),
    );
    assert.equal(result.aborted, true);
    assert.equal(closes(), 1);
    assert.equal(produced, 2);
    assert.deepEqual(writer.kinds, ['head', 'write', 'abort']);
  });

  it('once even when close() throws; the failure is logged and cuts the response', async () => {
    let n = 0;
    const body = Object.assign(['x'], {
      close() {
        n++;
        throw new Error('close failed');
      },
    });
    const { writer, errors } = await run(respond(body));
    assert.equal(n, 1);
    assert.match(errors.join(''), /close failed/);
    assert.deepEqual(writer.kinds, ['head', 'write', 'abort']);
  });
});

describe('chunks', () => {
  it('strings are sent as UTF-8 and Uint8Arrays byte-exact', async () => {
    const all = new Uint8Array(256).map((_, i) => i);
    const { writer } = await run(respond(['😀 ü ✓', all]));
    const body = writer.body;
    assert.equal(
      body.subarray(0, 11).toString('hex'),
      Buffer.from('😀 ü ✓', 'utf8').toString('hex'),
    );
    assert.equal(body.subarray(11).toString('hex'), Buffer.from(all).toString('hex'));
  });

  it('an async app returning Promise<Body> works', async () => {
    const { writer } = await run(async (_env, sr) => {
      await tick();
      sr('200 OK', TEXT);
      return ['async'];
    });
    assert.equal(writer.body.toString(), 'async');
  });

  it('sync and async generator bodies stream chunk by chunk', async () => {
    function* syncGen() {
      yield 'a';
      yield 'b';
    }
    async function* asyncGen() {
      yield 'c';
      await tick();
      yield 'd';
    }
    for (const [gen, expected] of [
      [syncGen, 'ab'],
      [asyncGen, 'cd'],
    ] as const) {
      const { writer } = await run(respond(gen()));
      assert.deepEqual(writer.kinds, ['head', 'write', 'write', 'end']);
      assert.equal(writer.body.toString(), expected);
    }
  });
});

describe('the write() callable', () => {
  it('writes go out immediately, headers first', async () => {
    const writer = new RecordingWriter();
    let seen: string[] = [];
    const app: GatewayApp = async (_env, sr) => {
      const write = sr('200 OK', TEXT);
      await write('now');
      seen = [...writer.kinds];
      await sleep(5);
      return ['then'];
    };
    const { environ } = makeEnviron();
    await runApp(app, environ, writer);
    assert.deepEqual(seen, ['head', 'write']);
    assert.equal(writer.body.toString(), 'nowthen');
    assert.equal(writer.header('content-length'), undefined);
  });

  it("the promise it returns waits for the writer's write (backpressure)", async () => {
    let elapsed = 0;
    const app: GatewayApp = async (_env, sr) => {
      const write = sr('200 OK', TEXT);
      const t0 = performance.now();
      await write('slow');
      elapsed = performance.now() - t0;
      return [];
    };
    await run(app, {}, new RecordingWriter({ writeDelayMs: 40 }));
    assert.equal(elapsed >= 35, true, `write() resolved after ${elapsed} ms`);
  });

  it('writes that are not awaited keep their order and never overlap', async () => {
    const writer = new RecordingWriter({ writeDelayMs: 5 });
    const app: GatewayApp = (_env, sr) => {
      const write = sr('200 OK', TEXT);
      void write('a');
      void write('b');
      void write('c');
      return ['d'];
    };
    await run(app, {}, writer);
    assert.equal(writer.body.toString(), 'abcd');
    assert.equal(writer.overlapped, false);
    assert.deepEqual(writer.kinds, ['head', 'write', 'write', 'write', 'write', 'end']);
  });

  it('a failing write() that is not awaited does not become an unhandled rejection', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown): void => void unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    try {
      const app: GatewayApp = (_env, sr) => {
        const write = sr('200 OK', TEXT);
        void write('a');
        void write('b');
        return [];
      };
      const { result } = await run(app, {}, new RecordingWriter({ failWriteAt: 0 }));
      await sleep(10);
      assert.equal(result.aborted, true);
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('an awaited write() to a client that went away rejects with GATEWAY_ERR_ABORTED', async () => {
    let thrown: unknown;
    const app: GatewayApp = async (_env, sr) => {
      const write = sr('200 OK', TEXT);
      try {
        await write('a');
      } catch (e) {
        thrown = e;
      }
      return [];
    };
    const { result } = await run(app, {}, new RecordingWriter({ failWriteAt: 0 }));
    assert.equal(codeOf(thrown), 'GATEWAY_ERR_ABORTED');
    assert.equal(result.aborted, true);
  });

  it('write after the response ended throws GATEWAY_ERR_WRITE_AFTER_END', async () => {
    let write: Write | undefined;
    await run((_env, sr) => {
      write = sr('200 OK', TEXT);
      return ['done'];
    });
    assert.throws(() => write!('late'), { code: 'GATEWAY_ERR_WRITE_AFTER_END' });
  });

  it('a bad chunk given to write() throws at once', async () => {
    let thrown: unknown;
    await run((_env, sr) => {
      const write = sr('200 OK', TEXT);
      try {
        void write(5 as unknown as string);
      } catch (e) {
        thrown = e;
      }
      return [];
    });
    assert.equal(codeOf(thrown), 'GATEWAY_ERR_BAD_CHUNK');
  });
});

const tmp = mkdtempSync(join(tmpdir(), 'gateway-handler-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
