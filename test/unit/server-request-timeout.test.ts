// --timeout as an app wrapper, through the real response pipeline: 504 before headers, a cut
// response after them, gateway.signal fired, one log line, and no effect on requests in time.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { runApp } from '../../src/gateway/handler.js';
import type { Body, GatewayApp } from '../../src/gateway/types.js';
import { fileWrapper } from '../../src/gateway/file-wrapper.js';
import { withRequestTimeout } from '../../src/server/request-timeout.js';
import { makeEnviron, RecordingWriter, sleep } from './gateway-helpers.js';

const T = 50; // the timeout of these tests, in ms

async function run(app: GatewayApp, signal?: AbortSignal) {
  const log: string[] = [];
  const { environ, errors } = makeEnviron({ signal });
  const writer = new RecordingWriter();
  const started = Date.now();
  const result = await runApp(
    withRequestTimeout(app, T, (l) => log.push(l)),
    environ,
    writer,
  );
  return { result, writer, log, errors, took: Date.now() - started };
}

const never = <T>(): Promise<T> => new Promise<T>(() => undefined);

describe('withRequestTimeout', () => {
  test('an app that never answers: its signal fires, 504 Gateway Timeout, one log line', async () => {
    let seen: AbortSignal | undefined;
    const { result, writer, log, errors, took } = await run((environ) => {
      seen = environ['gateway.signal'];
      return never<Body>();
    });
    assert.equal(result.status, 504);
    assert.equal(writer.head?.code, 504);
    assert.equal(writer.head?.reason, 'Gateway Timeout');
    assert.equal(writer.body.toString(), '504 Gateway Timeout\n');
    assert.deepEqual(writer.kinds, ['head', 'write', 'end']);
    assert.equal(seen?.aborted, true);
    assert.equal((seen?.reason as { code?: string }).code, 'SERVER_ERR_REQUEST_TIMEOUT');
    assert.deepEqual(log, ['cgi-bridge: request timed out after 0.05 s (--timeout): GET /test']);
    assert.match(errors.join(''), /request timed out/); // the pipeline's line for gateway.errors
    assert.ok(took >= T - 5 && took < T + 500, `took ${took} ms`);
  });

  test('an async body that stalls before its first chunk: 504 and close() is called', async () => {
    let closed = 0;
    const { writer } = await run((_environ, start) => {
      start('200 OK', [['Content-Type', 'text/plain']]);
      return {
        [Symbol.asyncIterator]: () => ({ next: () => never<IteratorResult<string>>() }),
        close: () => void closed++,
      };
    });
    assert.equal(writer.head?.code, 504);
    assert.equal(closed, 1);
  });

  test('an async body that stalls after headers went out: the response is cut off', async () => {
    const { result, writer } = await run(async function* (_environ, start) {
      start('200 OK', [['Content-Type', 'text/plain']]);
      yield 'first chunk\n';
      await never();
    });
    assert.equal(writer.head?.code, 200);
    assert.equal(writer.body.toString(), 'first chunk\n');
    assert.equal(writer.kinds.at(-1), 'abort');
    assert.equal(result.ok, false);
  });

  test('requests within the time are untouched, and the timer does not fire later', async () => {
    const log: string[] = [];
    let signal: AbortSignal | undefined;
    const apps: GatewayApp[] = [
      (environ, start) => {
        signal = environ['gateway.signal'];
        start('200 OK', []);
        return ['array body'];
      },
      async function* (environ, start) {
        signal = environ['gateway.signal'];
        start('200 OK', []);
        await sleep(T / 5);
        yield 'generated';
      },
      async (environ, start) => {
        signal = environ['gateway.signal'];
        await sleep(T / 5);
        start('200 OK', []);
        return fileWrapper(new URL(import.meta.url).pathname);
      },
    ];
    for (const app of apps) {
      const { environ } = makeEnviron();
      const writer = new RecordingWriter();
      const result = await runApp(
        withRequestTimeout(app, T, (l) => log.push(l)),
        environ,
        writer,
      );
      assert.equal(result.ok, true);
      assert.equal(writer.head?.code, 200);
      await sleep(T * 2);
      assert.equal(signal?.aborted, false);
    }
    assert.deepEqual(log, []);
  });

  test("the client's own abort still reaches the app, and stops the clock", async () => {
    const client = new AbortController();
    const log: string[] = [];
    const { environ } = makeEnviron({ signal: client.signal });
    let inner: AbortSignal | undefined;
    const app = withRequestTimeout(
      (env) => {
        inner = env['gateway.signal'];
        return never<Body>();
      },
      T,
      (l) => log.push(l),
    );
    const running = runApp(app, environ, new RecordingWriter());
    client.abort();
    const result = await running;
    assert.equal(inner?.aborted, true);
    assert.equal(result.aborted, true);
    await sleep(T * 2);
    assert.deepEqual(log, []);
  });

  test('0 means no limit: the app itself is returned', () => {
    const app: GatewayApp = () => [];
    assert.equal(
      withRequestTimeout(app, 0, () => undefined),
      app,
    );
  });
});
