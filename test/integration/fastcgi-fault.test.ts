// Integration, fault injection: nginx in front of `cgi-bridge fastcgi --processes 4` under a
// steady load of 8 kept-alive clients for about 6 s, while the test SIGKILLs one worker every
// second and sends the master one SIGHUP (a graceful reload) half-way between two kills.
// Every failed request must be explained by a kill that happened while it was in flight
// (issue 3: none beyond the requests in the killed worker itself, none at all for the reload).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  httpRequest,
  isProcessAlive,
  makeWorld,
  requireTool,
  sleep,
  startNginx,
  type ListenTarget,
} from '../harness/servers.js';
import { runLoad, summarize, type LoadFailure } from './fastcgi-servers-load.js';
import { installRuntime, startBridge } from './fastcgi-servers-setups.js';

const WORKERS = 4;
const CONCURRENCY = 8;
const DURATION_MS = 6000;
/** KILL_AT are the kill times (ms into the load); the reload comes half-way between two. */
const KILL_AT = [1000, 2000, 3000, 4000, 5000];
const RELOAD_AT = 3500;
/**
 * KILL_SLACK_MS: a request that started this soon after the killed worker was seen dead may
 * still have gone to it: nginx hands out a kept-alive connection of the dead worker until it
 * has processed that connection's close, or until it next picks that idle connection from its
 * pool (231 ms after the kill was seen in one CI run). The reload comes 500 ms after a kill, so
 * this slack still leaves every failure of the reload unexplained, as it must.
 */
const KILL_SLACK_MS = 450;
const POST_BODY = Buffer.alloc(1024, 'p');
const MAX_STALL_MS = 3000;

test(
  'fault: SIGKILL a worker every second and reload once, under load',
  { timeout: 120_000 },
  async (t) => {
    if (!requireTool(t, 'nginx')) return;
    const world = await makeWorld();
    t.after(() => world.cleanup());
    const rt = await installRuntime(world);
    const listen = `unix:${world.socketPath('fault')}` as ListenTarget;
    const bridge = await startBridge(world, rt, { listen, processes: WORKERS });
    const nginx = await startNginx(world, {
      fcgi: [{ prefix: '/fcgi', target: listen }],
      fcgiRoot: rt.docRoot,
      keepalive: 8,
    });
    const base = `${nginx.url}/fcgi`;
    const firstWorkers = await bridge.workerPids();
    assert.equal(firstWorkers.length, WORKERS, `workers: ${firstWorkers.join(',')}`);

    const servedBy = new Map<number, number>();
    /** answeredAt are the times (ms into the load) of the good answers. */
    const answeredAt: number[] = [];
    /** kills: when each SIGKILL was sent and when the worker was seen gone (a zombie or reaped). */
    const kills: { at: number; deadAt: number; pid: number }[] = [];
    let reloadAt = 0;
    const t0 = performance.now();
    const chaos = (async () => {
      const events = [
        ...KILL_AT.map((at) => ({ at, what: 'kill' as const })),
        { at: RELOAD_AT, what: 'reload' as const },
      ].sort((a, b) => a.at - b.at);
      for (const e of events) {
        await sleep(Math.max(0, t0 + e.at - performance.now()));
        if (e.what === 'reload') {
          reloadAt = performance.now();
          process.kill(bridge.pid, 'SIGHUP');
          continue;
        }
        // the busiest live worker: the kill that can fail the most requests
        const live = bridge.childPids().filter(isProcessAlive);
        const victim = [...live].sort((a, b) => (servedBy.get(b) ?? 0) - (servedBy.get(a) ?? 0))[0];
        assert.ok(victim !== undefined, 'no worker to kill');
        const at = performance.now();
        process.kill(victim, 'SIGKILL');
        // Its sockets close when it is gone, which a loaded machine may take a while to do.
        while (isProcessAlive(victim) && performance.now() - at < 5000) await sleep(5);
        kills.push({ at, deadAt: performance.now(), pid: victim });
      }
    })();
    const load = await runLoad(
      base,
      // Half GETs, half POSTs: nginx retries an idempotent request that failed on a kept-alive
      // connection, but never a POST, so the POSTs show what a kill really costs.
      (i) => ({
        path: '/pid',
        ...(i % 2 === 1 ? { method: 'POST', body: POST_BODY } : {}),
        check(status, body) {
          const pid = Number(body.toString().trim());
          if (status !== 200 || !Number.isInteger(pid))
            return `${status} ${body.toString().replace(/\s+/g, ' ').slice(0, 80)}`;
          servedBy.set(pid, (servedBy.get(pid) ?? 0) + 1);
          answeredAt.push(performance.now() - t0);
          return undefined;
        },
      }),
      { durationMs: DURATION_MS, concurrency: CONCURRENCY, timeoutMs: 15_000 },
    );
    await chaos;

    const inFlightAtKill = (f: LoadFailure): boolean =>
      kills.some((k) => f.start <= k.deadAt + KILL_SLACK_MS && f.end >= k.at);
    const explained = load.failures.filter(inFlightAtKill);
    const unexplained = load.failures.filter((f) => !inFlightAtKill(f));
    const nginxLog = await nginx.errorLog();
    const nginxErrors = nginxLog.split('\n').filter((l) => /\[(error|crit|alert|emerg)\]/.test(l));
    const perSecond = Array.from(
      { length: DURATION_MS / 1000 },
      (_, s) => answeredAt.filter((at) => at >= s * 1000 && at < (s + 1) * 1000).length,
    );
    // The longest stretch without a good answer, from the start of the load to its end.
    const marks = [0, ...answeredAt.sort((a, b) => a - b), load.elapsedMs];
    const longestGap = Math.max(...marks.slice(1).map((m, i) => m - marks[i]!));
    const report = [
      `${load.requests} requests in ${(load.elapsedMs / 1000).toFixed(1)} s from ${CONCURRENCY} clients, ` +
        `${load.ok} ok, ${load.failures.length} failed`,
      `SIGKILL at ${kills.map((k) => `${((k.at - t0) / 1000).toFixed(2)} s (pid ${k.pid}, gone after ${(k.deadAt - k.at).toFixed(0)} ms)`).join(', ')}; ` +
        `SIGHUP at ${((reloadAt - t0) / 1000).toFixed(2)} s`,
      `failures in flight at a kill: ${explained.length} (bound ${kills.length} x ${CONCURRENCY} = ` +
        `${kills.length * CONCURRENCY}); not explained by a kill (the reload or else): ${unexplained.length}`,
      `answers per second: ${perSecond.join(', ')}; longest wait for an answer: ${longestGap.toFixed(0)} ms`,
      `nginx error lines: ${nginxErrors.length}`,
      `requests per worker pid: ${[...servedBy].map(([p, n]) => `${p}:${n}`).join(' ')}`,
    ].join('\n');
    t.diagnostic(report);
    process.stdout.write(`\nfastcgi fault test:\n${report}\n`);
    if (load.failures.length > 0) t.diagnostic(summarize(load.failures));
    if (nginxErrors.length > 0) t.diagnostic(nginxErrors.slice(0, 10).join('\n'));

    assert.equal(kills.length, KILL_AT.length);
    // The service kept answering, kills and reload included. Booting a new generation of
    // workers takes CPU from the old one, so a loaded machine may stall it for a moment;
    // MAX_STALL_MS is far above that and far below a stuck service.
    assert.ok(longestGap <= MAX_STALL_MS, `no answer for ${longestGap.toFixed(0)} ms`);
    assert.deepEqual(
      unexplained.map(
        (f) =>
          `${((f.start - t0) / 1000).toFixed(3)}-${((f.end - t0) / 1000).toFixed(3)} s ${f.why}`,
      ),
      [],
      'failures no kill explains (the reload must not fail any)',
    );
    assert.ok(
      load.failures.length <= kills.length * CONCURRENCY,
      `${load.failures.length} failures > ${kills.length} kills x ${CONCURRENCY} clients`,
    );

    // The reload completes (new workers booting under load may take a while), then the master
    // keeps WORKERS workers, none of them of the first generation.
    const settled = async (): Promise<boolean> => {
      const now = await bridge.workerPids();
      return (
        bridge.lines.some((l) => /reload done/.test(l)) &&
        now.length === WORKERS &&
        !now.some((p) => firstWorkers.includes(p))
      );
    };
    const deadline = Date.now() + 30_000;
    while (!(await settled()) && Date.now() < deadline) await sleep(200);
    const now = await bridge.workerPids();
    assert.ok(
      await settled(),
      `workers after the run: ${now.join(',')} (first: ${firstWorkers.join(',')})\n` +
        bridge.lines.join('\n'),
    );
    const after = await httpRequest(`${base}/pid`);
    assert.equal(after.status, 200);
    await nginx.stop();
    await bridge.stop();
    assert.equal(await bridge.exited, 0, bridge.lines.join('\n'));
  },
);
