// The pipeline's synchronous path (startApp) and the lazily made gateway.signal (RequestSignal):
// the same responses as the general path, with no promise when nothing has to wait.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BridgeError } from '../../src/errors.js';
import { runApp, startApp, type RunResult } from '../../src/gateway/handler.js';
import { RequestSignal, kRequestSignal, requestSignalOf } from '../../src/gateway/signal.js';
import type { Body, GatewayApp, Header } from '../../src/gateway/types.js';
import { makeEnviron, RecordingWriter } from './gateway-helpers.js';

const TEXT: Header[] = [['Content-Type', 'text/plain']];

function respond(body: Body, headers: Header[] = TEXT, status = '200 OK'): GatewayApp {
  return (_environ, start) => {
    start(status, headers);
    return body;
  };
}

// both runs the app through startApp and through runApp and returns the two writers.
async function both(
  app: GatewayApp,
  method = 'GET',
  writerOptions = {},
): Promise<{ fast: RecordingWriter; general: RecordingWriter; result: RunResult }> {
  const fast = new RecordingWriter(writerOptions);
  const result = await startApp(app, makeEnviron({ method }).environ, fast);
  const general = new RecordingWriter(writerOptions);
  await runApp(app, makeEnviron({ method }).environ, general);
  return { fast, general, result };
}

describe('startApp: an array body returned synchronously', () => {
  it('completes before startApp returns, with Content-Length, like runApp', async () => {
    const writer = new RecordingWriter();
    const result = startApp(respond(['hello ', 'world']), makeEnviron().environ, writer);
    assert.ok(!(result instanceof Promise), 'no promise for a synchronous response');
    assert.deepEqual(result, { status: 200, ok: true, aborted: false, bytes: 11 });
    assert.deepEqual(writer.kinds, ['head', 'write', 'write', 'end']);
    assert.equal(writer.header('content-length'), '11');
    const { fast, general } = await both(respond(['hello ', 'world']));
    assert.deepEqual(fast.events, general.events);
  });

  it('skips empty chunks; an empty array is Content-Length 0', async () => {
    for (const body of [['', 'x', ''], [], ['']]) {
      const { fast, general } = await both(respond(body));
      assert.deepEqual(fast.events, general.events, JSON.stringify(body));
    }
  });

  it('HEAD, 204 and 304 send no body', async () => {
    for (const [method, status] of [
      ['HEAD', '200 OK'],
      ['GET', '204 No Content'],
      ['GET', '304 Not Modified'],
    ] as const) {
      const { fast, general } = await both(respond(['abc'], TEXT, status), method);
      assert.deepEqual(fast.kinds, ['head', 'end'], `${method} ${status}`);
      assert.deepEqual(fast.events, general.events, `${method} ${status}`);
    }
  });

  it('a declared Content-Length that does not match goes the general way: cut off', async () => {
    const app = respond(['abc'], [...TEXT, ['Content-Length', '5']]);
    const { fast, general, result } = await both(app);
    assert.deepEqual(fast.kinds, ['head', 'write', 'abort']);
    assert.equal(result.ok, false);
    assert.deepEqual(fast.kinds, general.kinds);
  });

  it('a bad chunk goes the general way: a coded 500', async () => {
    const { fast, result } = await both(respond(['ok', 42 as unknown as string]));
    assert.equal(fast.head?.code, 500);
    assert.equal(result.ok, false);
    assert.ok(result.error instanceof BridgeError);
  });

  it('a writer that waits: the rest of the response goes on after it', async () => {
    const writer = new RecordingWriter({ writeDelayMs: 5 });
    const result = startApp(respond(['a', 'b', 'c']), makeEnviron().environ, writer);
    assert.ok(result instanceof Promise);
    assert.deepEqual(await result, { status: 200, ok: true, aborted: false, bytes: 3 });
    assert.deepEqual(writer.kinds, ['head', 'write', 'write', 'write', 'end']);
    assert.equal(writer.overlapped, false);
  });

  it('a writer that fails: the response is cut off (abort), reported as aborted', async () => {
    const { fast, general, result } = await both(respond(['a', 'b']), 'GET', { failWriteAt: 0 });
    assert.equal(result.aborted, true);
    assert.equal(result.ok, false);
    assert.deepEqual(fast.kinds, ['head', 'abort']);
    assert.deepEqual(fast.kinds, general.kinds);
  });

  it('a write() queued by the app, or a body with close(), takes the general path', async () => {
    const queued: GatewayApp = (_e, start) => {
      void start('200 OK', TEXT)('first ');
      return ['then'];
    };
    const writer = new RecordingWriter();
    const result = startApp(queued, makeEnviron().environ, writer);
    assert.ok(result instanceof Promise);
    await result;
    assert.equal(writer.body.toString(), 'first then');
    let closed = 0;
    const withClose = Object.assign(['x'], { close: () => void closed++ });
    await startApp(respond(withClose), makeEnviron().environ, new RecordingWriter());
    assert.equal(closed, 1);
  });
});

describe('RequestSignal: gateway.signal made only when read', () => {
  it('no AbortController until read; an abort before the read is seen after it', () => {
    const source = new RequestSignal();
    const environ: Record<string | symbol, unknown> = {};
    source.install(environ);
    assert.equal(requestSignalOf(environ), source);
    assert.equal(environ[kRequestSignal], source);
    assert.ok(Object.keys(environ).includes('gateway.signal'), 'an own, enumerable key');
    source.abort(new Error('gone'));
    const signal = environ['gateway.signal'] as AbortSignal;
    assert.equal(signal.aborted, true);
    assert.equal((signal.reason as Error).message, 'gone');
    assert.equal(source.aborted, true);
  });

  it('a linked source fires the app signal but not the front end own one', () => {
    const source = new RequestSignal();
    const environ: Record<string | symbol, unknown> = {};
    source.install(environ);
    const timeout = new AbortController();
    let made = 0;
    source.link(() => {
      made++;
      return timeout.signal;
    });
    assert.equal(made, 0, 'the linked source is not made before a read');
    const app = environ['gateway.signal'] as AbortSignal;
    assert.equal(made, 1);
    timeout.abort(new Error('timed out'));
    assert.equal(app.aborted, true);
    assert.equal(source.own.aborted, false);
    assert.equal(source.aborted, false);
  });

  it('one getter for every environ (so environs share a shape), found through the environ', () => {
    const a: Record<string | symbol, unknown> = {};
    const b: Record<string | symbol, unknown> = {};
    const sa = new RequestSignal();
    const sb = new RequestSignal();
    sa.install(a);
    sb.install(b);
    const da = Object.getOwnPropertyDescriptor(a, 'gateway.signal')!;
    const db = Object.getOwnPropertyDescriptor(b, 'gateway.signal')!;
    assert.equal(da.get, db.get);
    assert.equal(da.set, db.set);
    sb.abort(new Error('b only'));
    assert.equal((a['gateway.signal'] as AbortSignal).aborted, false);
    assert.equal((b['gateway.signal'] as AbortSignal).aborted, true);
    // Read through an object made from the environ, the getter still finds the environ's source.
    const child = Object.create(b) as Record<string, unknown>;
    assert.equal(child['gateway.signal'], b['gateway.signal']);
  });

  it('a copy of the environ has the signal itself; assigning replaces the property', () => {
    const source = new RequestSignal();
    const environ: Record<string | symbol, unknown> = {};
    source.install(environ);
    const copy = { ...environ };
    assert.ok(copy['gateway.signal'] instanceof AbortSignal);
    const other = new AbortController().signal;
    environ['gateway.signal'] = other;
    assert.equal(environ['gateway.signal'], other);
  });
});
