// fromCgi and process lifetimes: timeouts (504 before headers, a cut response after them), the
// client going away, SIGTERM then SIGKILL, background processes, lingering programs, and
// /proc checks that no process of a request outlives it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fromCgi } from '../../src/cgi/host.js';
import { ProcessGroup } from '../../src/cgi/process-group.js';
import { readProcStat } from '../harness/process-utils.js';
import { allGone, legacy, serveCgi, sleep, tempDir, waitFor } from './cgi-host-helpers.js';
import { makeEnviron, RecordingWriter } from './gateway-helpers.js';

const markers = tempDir('proc');
after(() => markers.remove());

function host(
  name: string,
  options: Parameters<typeof fromCgi>[1] = {},
): ReturnType<typeof fromCgi> {
  // The 15 s bound is a safety net: a failing test must not leave a program hanging.
  return fromCgi(
    { script: legacy(name) },
    { env: { MARKER_DIR: markers.dir }, timeoutMs: 15_000, ...options },
  );
}

// pidsOf waits for a fixture's pid file and returns [program, background child, …].
async function pidsOf(file: string): Promise<number[]> {
  const path = join(markers.dir, file);
  let pids: number[] = [];
  const read = (): boolean => {
    try {
      pids = readFileSync(path, 'utf8')
        .split(/\s+/)
        .filter((s) => /^\d+$/.test(s))
        .map(Number);
    } catch {
      pids = [];
    }
    return pids.length > 0;
  };
  assert.ok(await waitFor(read), `${file} was never written`);
  return pids;
}

// assertAllEnded checks that the program itself left no zombie (the host reaped it) and that
// every process of its group is gone (a re-parented child may linger as a zombie of PID 1).
async function assertAllEnded(pids: number[]): Promise<void> {
  assert.ok(
    await waitFor(() => allGone(pids), 5000),
    `still alive: ${pids.filter((p) => !allGone([p]))}`,
  );
  assert.ok(
    await waitFor(() => readProcStat(pids[0]!) === undefined, 2000),
    `${pids[0]} is a zombie`,
  );
}

describe('fromCgi: timeouts', { timeout: 30_000 }, () => {
  test('no headers in time → 504, the program and its background child are ended', async () => {
    const started = Date.now();
    const r = await serveCgi(host('hang.sh', { timeoutMs: 400, killGraceMs: 1000 }), {
      query: 'quiet',
    });
    assert.equal(r.status, 504);
    assert.ok(Date.now() - started < 3000, 'took too long');
    assert.ok(
      r.log.some((l) => l.includes(legacy('hang.sh')) && l.includes('within 400 ms')),
      r.log.join('\n'),
    );
    await assertAllEnded(await pidsOf('hang-quiet.pids'));
  });

  test('headers sent, then the timeout → the response is cut, the processes ended', async () => {
    const r = await serveCgi(host('hang.sh', { timeoutMs: 400 }), { query: 'headers' });
    assert.equal(r.status, 200);
    assert.equal(r.text, 'started\n');
    assert.equal(r.kinds.at(-1), 'abort');
    assert.ok(
      r.log.some((l) => l.includes('CGI_ERR_TIMEOUT')),
      r.log.join('\n'),
    );
    await assertAllEnded(await pidsOf('hang-headers.pids'));
  });

  test('a program that ignores SIGTERM gets SIGKILL after the grace period', async () => {
    const started = Date.now();
    const r = await serveCgi(host('stubborn.sh', { timeoutMs: 300, killGraceMs: 300 }));
    assert.equal(r.status, 504);
    const pids = await pidsOf('stubborn.pids');
    await assertAllEnded(pids);
    assert.ok(Date.now() - started < 4000);
  });
});

describe('fromCgi: the client going away', { timeout: 30_000 }, () => {
  test('gateway.signal kills the program before its headers', async () => {
    const controller = new AbortController();
    const done = serveCgi(host('hang.sh'), { query: 'abort1', signal: controller.signal });
    const pids = await pidsOf('hang-abort1.pids');
    controller.abort();
    const r = await done;
    assert.equal(r.result.aborted, true);
    await assertAllEnded(pids);
  });

  test('gateway.signal kills the program while its body streams', async () => {
    const controller = new AbortController();
    const writer = new RecordingWriter();
    const done = serveCgi(host('hang.sh'), {
      query: 'headers-abort2',
      signal: controller.signal,
      writer,
    });
    const pids = await pidsOf('hang-headers-abort2.pids');
    assert.ok(await waitFor(() => writer.body.length > 0));
    controller.abort();
    const r = await done;
    assert.equal(r.kinds.at(-1), 'abort');
    await assertAllEnded(pids);
  });

  test('a failing client write (EPIPE) ends the program too', async () => {
    const writer = new RecordingWriter({ failWriteAt: 0 });
    const r = await serveCgi(host('hang.sh'), { query: 'headers-epipe', writer });
    assert.equal(r.result.aborted, true);
    await assertAllEnded(await pidsOf('hang-headers-epipe.pids'));
  });
});

describe('fromCgi: programs that leave something behind', { timeout: 30_000 }, () => {
  test('a background child holding stdout does not hold the response; it is ended', async () => {
    const started = Date.now();
    const r = await serveCgi(host('background.sh'));
    assert.deepEqual([r.status, r.text, r.result.ok], [200, 'done\n', true]);
    assert.ok(Date.now() - started < 3000, 'the response waited for the background child');
    await assertAllEnded(await pidsOf('background.pids'));
  });

  test('a program that closes its output but keeps running: complete response, then ended', async () => {
    const r = await serveCgi(host('linger.sh'));
    assert.deepEqual([r.status, r.text, r.result.ok], [200, 'complete\n', true]);
    await assertAllEnded(await pidsOf('linger.pids'));
  });
});

describe('the bridge itself exiting', { timeout: 30_000 }, () => {
  test('process.exit mid-request: the exit hook kills the program and its child', async () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', legacy('bridge-exits.ts')], {
      env: { PATH: process.env.PATH, MARKER_DIR: markers.dir },
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.equal(r.status, 0, r.stderr);
    const pids = await pidsOf('hang-bridge-exits.pids');
    assert.ok(await waitFor(() => allGone(pids)), `still alive: ${pids.join(' ')}`);
  });
});

describe('CgiProgram', { timeout: 30_000 }, () => {
  test('a finished request leaves none of its long timers behind (one would keep it reachable)', async () => {
    // Timers of 1 s and more made while the request runs, until they fire or are cleared (the
    // short ones of earlier tests' process-group polls are not the request's).
    const pending = new Set<unknown>();
    const realSet = globalThis.setTimeout;
    const realClear = globalThis.clearTimeout;
    globalThis.setTimeout = ((fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) => {
      const t = realSet(() => {
        pending.delete(t);
        fn(...args);
      }, ms);
      if ((ms ?? 0) >= 1000) pending.add(t);
      return t;
    }) as typeof setTimeout;
    globalThis.clearTimeout = ((t?: Parameters<typeof clearTimeout>[0]) => {
      pending.delete(t);
      realClear(t);
    }) as typeof clearTimeout;
    try {
      const r = await serveCgi(host('hello.sh'));
      assert.equal(r.status, 200, r.log.join('\n'));
    } finally {
      globalThis.setTimeout = realSet;
      globalThis.clearTimeout = realClear;
    }
    assert.equal(pending.size, 0);
  });

  test('output written before the host reads is kept, even after the program exited', async () => {
    const { CgiProgram } = await import('../../src/cgi/cgi-program.js');
    const { environ } = makeEnviron();
    const program = new CgiProgram({
      executable: legacy('hello.sh'),
      args: [],
      cwd: markers.dir,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      stdin: false,
      label: 'hello.sh',
      errors: environ['gateway.errors'],
      signal: environ['gateway.signal'],
      timeoutMs: 0,
      killGraceMs: 1000,
    });
    // Node resume()s unread stdio of an exited child; nothing may be lost meanwhile.
    assert.ok(await waitFor(() => program.child.exitCode !== null));
    await sleep(100);
    const out: Buffer[] = [];
    for (let c = await program.read(); c !== null; c = await program.read()) out.push(c);
    assert.equal(Buffer.concat(out).toString(), 'Content-Type: text/plain\n\nhello from sh\n');
    const o = await program.outcome();
    assert.deepEqual([o.code, o.exited, o.stopReason], [0, true, undefined]);
    program.close();
  });
});

describe('ProcessGroup', () => {
  test('refuses pgid 0, 1 and negatives (kill(-1) would reach every process)', () => {
    for (const pgid of [0, 1, -5, 1.5]) assert.throws(() => new ProcessGroup(pgid), RangeError);
  });

  test('terminate on a gone group resolves true at once', async () => {
    // A pid that exists in no group of ours: our own would be wrong, so take a fresh dead one.
    const g = new ProcessGroup(2 ** 22 + 12345);
    assert.equal(g.alive, false);
    assert.equal(await g.terminate(), true);
  });

  test('a gone group costs no stack trace, and Error.stackTraceLimit is left as it was', () => {
    const before = Error.stackTraceLimit;
    const g = new ProcessGroup(2 ** 22 + 12346);
    assert.deepEqual([g.alive, g.signal('SIGTERM'), Error.stackTraceLimit], [false, false, before]);
    // Where the limit cannot be set (frozen intrinsics), the check still works.
    const url = new URL('../../src/cgi/process-group.ts', import.meta.url).href;
    const r = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        `Object.defineProperty(Error, 'stackTraceLimit', { value: 7, writable: false });
         const { ProcessGroup } = await import(${JSON.stringify(url)});
         const g = new ProcessGroup(${2 ** 22 + 12347});
         console.log(JSON.stringify([g.alive, g.signal('SIGTERM'), Error.stackTraceLimit]));`,
      ],
      { encoding: 'utf8', timeout: 20_000 },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), [false, false, 7]);
  });
});
