// The CGI child as a real process (test/fixtures/cgi-child/app.ts under tsx): streaming out as the
// body is produced, EPIPE, SIGTERM, a read of stdin left in flight, and the lifecycle hooks.
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, test } from 'node:test';

const FIXTURE = fileURLToPath(new URL('../fixtures/cgi-child/app.ts', import.meta.url));

interface Child {
  proc: ChildProcessWithoutNullStreams;
  stdout: () => string;
  stderr: () => string;
  /** exited resolves to [code, signal] once the process is gone. */
  exited: Promise<[number | null, NodeJS.Signals | null]>;
  /** waitStdout resolves once stdout contains `s`. */
  waitStdout: (s: string) => Promise<void>;
}

// Every child is killed after its test, so a failing test never leaves one waiting on stdin.
const live = new Set<ChildProcessWithoutNullStreams>();
afterEach(() => {
  for (const p of live) {
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    p.stdin.destroy();
  }
  live.clear();
});

function start(pathInfo: string, extra: Record<string, string> = {}): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', FIXTURE], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      GATEWAY_INTERFACE: 'CGI/1.1',
      REQUEST_METHOD: 'POST',
      SCRIPT_NAME: '/cgi-bin/app',
      PATH_INFO: pathInfo,
      SERVER_NAME: 'localhost',
      SERVER_PORT: '80',
      SERVER_PROTOCOL: 'HTTP/1.1',
      HTTP_TRANSFER_ENCODING: 'chunked',
      ...extra,
    },
  });
  live.add(proc);
  let out = '';
  let err = '';
  const waiters: (() => void)[] = [];
  proc.stdout.setEncoding('latin1').on('data', (d: string) => {
    out += d;
    for (const w of waiters.splice(0)) w();
  });
  proc.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = once(proc, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const waitStdout = async (s: string): Promise<void> => {
    while (!out.includes(s)) {
      const more = new Promise<void>((r) => waiters.push(r));
      const gone = exited.then(() => {
        throw new Error(
          `exited before stdout had ${JSON.stringify(s)}; stdout ${out}; stderr ${err}`,
        );
      });
      await Promise.race([more, gone]);
    }
  };
  return { proc, stdout: () => out, stderr: () => err, exited, waitStdout };
}

const withTimeout = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
  Promise.race([
    p,
    new Promise<T>((_, reject) =>
      setTimeout(() => reject(new Error(`timeout: ${what}`)), ms).unref(),
    ),
  ]);

describe('CGI child process', { timeout: 30_000 }, () => {
  test('streams: a chunk leaves the process before the app produces the next', async () => {
    const c = start('/stream');
    // The app makes chunk N+1 only after reading a byte from stdin; the test sends that byte
    // only after chunk N came through the pipe, so nothing can be buffered up to the end.
    await withTimeout(c.waitStdout('chunk 1\n'), 10_000, 'chunk 1');
    assert.ok(!c.stdout().includes('chunk 2'));
    c.proc.stdin.write('x');
    await withTimeout(c.waitStdout('chunk 2\n'), 5_000, 'chunk 2');
    assert.ok(!c.stdout().includes('chunk 3'));
    c.proc.stdin.write('y');
    await withTimeout(c.waitStdout('chunk 3\n'), 5_000, 'chunk 3');
    c.proc.stdin.end();
    const [code] = await c.exited;
    assert.equal(code, 0, c.stderr());
    assert.match(c.stdout(), /^Status: 200 OK\r\nContent-Type: text\/plain\r\n\r\nchunk 1\n/);
    assert.ok(!/content-length/i.test(c.stdout()));
  });

  test('EPIPE (the web server closed stdout): close() is called, exit 0, no stack trace', async () => {
    const c = start('/forever', { REQUEST_METHOD: 'GET', HTTP_TRANSFER_ENCODING: '' });
    await withTimeout(c.waitStdout('xxxx'), 10_000, 'first body bytes');
    c.proc.stdout.destroy();
    const [code, signal] = await withTimeout(c.exited, 10_000, 'exit after EPIPE');
    assert.equal(signal, null);
    assert.equal(code, 0, c.stderr());
    assert.match(c.stderr(), /signal aborted\nclose called\nshutdown hook\n$/);
    assert.ok(!/\n\s+at |EPIPE|Error/.test(c.stderr()), c.stderr());
  });

  test('SIGTERM aborts gateway.signal, close() runs, the process ends by SIGTERM', async () => {
    const c = start('/hang');
    await withTimeout(c.waitStdout('waiting\n'), 10_000, 'headers');
    c.proc.kill('SIGTERM');
    // stdin stays open: a read of it is in flight, which exit(3) would wait for.
    const [code, signal] = await withTimeout(c.exited, 5_000, 'exit after SIGTERM');
    assert.equal(code, null);
    assert.equal(signal, 'SIGTERM');
    assert.match(c.stderr(), /signal aborted\nclose called\nshutdown hook\n$/);
  });

  test('a read of stdin left in flight does not hold the process after the response', async () => {
    const c = start('/race');
    const [, signal] = await withTimeout(c.exited, 5_000, 'exit with stdin open');
    assert.equal(signal, 'SIGTERM');
    assert.match(c.stdout(), /\r\n\r\ngave up\n$/);
  });

  test('a missing CGI environment: one line on stderr, nothing on stdout, non-zero exit', async () => {
    const c = start('/hello', { REQUEST_METHOD: '' });
    const [code] = await c.exited;
    assert.equal(code, 2);
    assert.equal(c.stdout(), '');
    assert.equal(c.stderr(), 'cgi: REQUEST_METHOD is not set; this is not a CGI request\n');
  });

  test('startup and shutdown hooks run around the request', async () => {
    const c = start('/hello', { REQUEST_METHOD: 'GET' });
    const [code] = await c.exited;
    assert.equal(code, 0);
    assert.equal(c.stderr(), 'startup hook\napp ran\nshutdown hook\n');
    assert.match(c.stdout(), /\r\n\r\nhello\n$/);
  });

  test('a failing startup hook answers a generic 500 and skips the app', async () => {
    const c = start('/hello', { REQUEST_METHOD: 'GET', FIXTURE_STARTUP_FAIL: '1' });
    const [code] = await c.exited;
    assert.equal(code, 1);
    assert.match(c.stdout(), /^Status: 500 Internal Server Error\r\n/);
    assert.ok(!c.stdout().includes('exploded'));
    assert.match(c.stderr(), /^startup hook\ncgi: startup failed: Error: startup exploded\n/);
    assert.match(c.stderr(), /shutdown hook\n$/);
    assert.ok(!c.stderr().includes('app ran'));
  });
});
