#!/usr/bin/env node
// The FastCGI benchmark table (`npm run bench`, or alone: `node bench/fastcgi.js`): one nginx
// (1 worker, unix sockets, upstream keepalive) in front of cgi-bridge (1 and 2 workers),
// node-fastcgi, php-fpm, Go's net/http/fcgi and a plain Node http.createServer (proxy_pass),
// plus nginx answering by itself (the ceiling), all in one run on this machine. Loads: hello
// world and a 1 MiB POST echo with `wrk -t1 -c32` (requests/s, p99, errors, nginx error-log
// lines), each after a warm-up and in rounds over every backend in a rotated order (medians),
// then a 1 GiB upload streamed through with the serving process's peak RSS.
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { NGINX, startNginx } from './fastcgi-nginx.js';
import { ECHO_BYTES, WRK, checkBackend, runWrk, upload, writeEchoScript } from './fastcgi-load.js';
import {
  ToolMissing,
  startCgiBridge,
  startFastcgiHello,
  startGo,
  startNodeFastcgi,
  startNodeHttp,
  startPhpFpm,
} from './fastcgi-peers.js';
import { cpuTicks, descendants, peakRssKiB } from './fastcgi-proc.js';
import { median } from './stats.js';

/** name is the table's name for bench/run.js (and bench/results/fastcgi.md). */
export const name = 'fastcgi';
/** title says what the table measures. */
export const title =
  'FastCGI responder behind nginx vs node-fastcgi, php-fpm, Go and proxied Node http';

const here = dirname(fileURLToPath(import.meta.url));

/** SECONDS is each wrk run's duration (FASTCGI_BENCH_SECONDS overrides; the runs are 10 s). */
const SECONDS = Number(process.env.FASTCGI_BENCH_SECONDS ?? 10);
/**
 * WARMUP_SECONDS is the load each backend gets before a load's measured rounds, with that same
 * load (FASTCGI_BENCH_WARMUP overrides): V8 optimizes a request path only after it ran a while,
 * and a path that reads a body is not warmed by hello.
 */
const WARMUP_SECONDS = Number(process.env.FASTCGI_BENCH_WARMUP ?? 5);
/**
 * ROUNDS is how many times each backend is measured per load (FASTCGI_BENCH_ROUNDS overrides),
 * every round over every backend in a rotated order: a shared machine's speed drifts, so a
 * backend is never measured only in a slow or a fast stretch of it. The table shows medians.
 */
const ROUNDS = Math.max(1, Number(process.env.FASTCGI_BENCH_ROUNDS ?? 3));
/** UPLOAD_BYTES is the streamed upload: 1 GiB (FASTCGI_BENCH_UPLOAD_MIB overrides). */
const UPLOAD_BYTES = Number(process.env.FASTCGI_BENCH_UPLOAD_MIB ?? 1024) * 1024 * 1024;
/** PHP_CHILDREN is php-fpm's static pool size. */
const PHP_CHILDREN = Number(process.env.FASTCGI_BENCH_PHP_CHILDREN ?? 4);

const fmt = (n, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');
const mib = (kib) => (kib / 1024).toFixed(0);

// TICK_US is one clock tick of /proc/PID/stat in microseconds (USER_HZ is 100 on Linux).
const TICK_US = 10_000;

/**
 * measureWrk runs one wrk load and counts the nginx error-log lines it caused and the CPU time
 * the backend's processes (`pid` and its descendants) and nginx's spent per request: figures
 * that other load on the machine disturbs far less than requests/s.
 */
async function measureWrk(nginx, url, opts, pid) {
  const ticks = (pids) => () => pids.reduce((sum, p) => sum + cpuTicks(p), 0);
  const cpu = ticks(pid === undefined ? [] : [pid, ...descendants(pid)]);
  const nginxCpu = ticks([nginx.pid, ...descendants(nginx.pid)]);
  const before = nginx.errorSize();
  const cpu0 = cpu();
  const nginx0 = nginxCpu();
  const r = await runWrk(url, opts);
  const perRequest = (t) => (t * TICK_US) / Math.max(1, r.requests);
  const cpuUs = pid === undefined ? NaN : perRequest(cpu() - cpu0);
  const nginxUs = perRequest(nginxCpu() - nginx0);
  const lines = nginx.errorLinesSince(before);
  return {
    ...r,
    cpuUs,
    nginxUs,
    errors: r.non2xx + r.socketErrors,
    logLines: lines.length,
    firstLogLine: lines[0],
  };
}

/** measureUpload streams UPLOAD_BYTES and reads the serving processes' peak RSS around it. */
async function measureUpload(nginx, backend) {
  const peak = () => Math.max(0, ...backend.servingPids().map(peakRssKiB));
  const before = peak();
  const logBefore = nginx.errorSize();
  try {
    const r = await upload(`${nginx.url}/${backend.prefix}/upload`, UPLOAD_BYTES);
    const ok = r.status === 200 && r.counted === UPLOAD_BYTES;
    return {
      ok,
      why: ok ? undefined : `status ${r.status}, counted ${r.counted}`,
      mibPerS: UPLOAD_BYTES / 1024 / 1024 / (r.ms / 1000),
      before,
      after: peak(),
      logLines: nginx.errorLinesSince(logBefore).length,
    };
  } catch (e) {
    return {
      ok: false,
      why: e.message,
      before,
      after: peak(),
      logLines: nginx.errorLinesSince(logBefore).length,
    };
  }
}

/**
 * measureLoad gives every row `WARMUP_SECONDS` of `load` (its errors and error-log lines still
 * count), then measures each `ROUNDS` times, one round over every row in a rotated order, and
 * stores the summary as `row[load.key]`.
 */
async function measureLoad(nginx, rows, load, log) {
  const url = (row) => `${row.base}/${load.path}`;
  const runs = new Map(rows.map((r) => [r, []]));
  const warm = new Map();
  for (const row of rows) {
    log(`fastcgi: ${row.label}: ${load.key} warm-up`);
    warm.set(
      row,
      await measureWrk(nginx, url(row), { seconds: WARMUP_SECONDS, script: load.script }, row.pid),
    );
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < rows.length; i++) {
      const row = rows[(i + round) % rows.length];
      const m = await measureWrk(
        nginx,
        url(row),
        { seconds: SECONDS, script: load.script },
        row.pid,
      );
      runs.get(row).push(m);
      log(`fastcgi: ${row.label}: ${load.key} round ${round + 1}: ${m.rps} req/s`);
    }
  }
  for (const row of rows) row[load.key] = summarize(warm.get(row), runs.get(row));
}

// summarize takes the medians of a load's measured runs; errors and error-log lines count every
// request of the load, the warm-up's included.
function summarize(warm, runs) {
  const all = [warm, ...runs];
  const med = (k) => median(runs.map((m) => m[k]));
  return {
    runs,
    rps: med('rps'),
    p99: med('p99'),
    cpuUs: med('cpuUs'),
    nginxUs: med('nginxUs'),
    errors: all.reduce((n, m) => n + m.errors, 0),
    logLines: all.reduce((n, m) => n + m.logLines, 0),
    firstLogLine: all.find((m) => m.firstLogLine !== undefined)?.firstLogLine,
  };
}

function backendFactories(root, dir) {
  return [
    () => startCgiBridge(root, dir, 1),
    () => startCgiBridge(root, dir, 2),
    () => startNodeFastcgi(root, dir),
    () => startPhpFpm(root, dir, PHP_CHILDREN, false),
    () => startGo(root, dir),
    () => startNodeHttp(root, dir),
    () => startFastcgiHello(root, dir),
  ];
}

/** run measures everything and returns the markdown (for bench/run.js). */
export async function run(context) {
  const log = context.log;
  const root = context.root;
  for (const [tool, pkg] of [
    [NGINX, 'nginx'],
    [WRK, 'wrk'],
  ]) {
    if (!existsSync(tool)) throw new Error(`${tool} not installed (apt-get install ${pkg})`);
  }
  if (!existsSync(join(root, 'dist/src/cli/main.js'))) {
    throw new Error('dist/ is not built: run `npm run build` first (npm run bench does)');
  }
  const dir = mkdtempSync(join(tmpdir(), 'cgi-bridge-bench-fastcgi-'));
  chmodSync(dir, 0o755); // nginx's and php-fpm's workers (www-data) reach the sockets here
  const backends = [];
  const skipped = [];
  let nginx;
  const t0 = Date.now();
  try {
    for (const start of backendFactories(root, dir)) {
      try {
        backends.push(await start());
      } catch (e) {
        if (!(e instanceof ToolMissing)) throw e;
        skipped.push(e.message);
        log(`fastcgi: skipped: ${e.message}`);
      }
    }
    mkdirSync(join(dir, 'nginx'));
    nginx = await startNginx(join(dir, 'nginx'), backends);
    const echoScript = writeEchoScript(dir);
    // nginx alone is a row of its own: hello only, its CPU is nginx's.
    const rows = [
      {
        label: 'nginx alone (`return 200`)',
        config: "the ceiling; its CPU µs/req is nginx's own",
        base: `${nginx.url}/nginx`,
        pid: nginx.pid,
        helloOnly: true,
      },
      ...backends.map((b) => ({
        label: b.label,
        config: b.config,
        base: `${nginx.url}/${b.prefix}`,
        pid: b.pid,
        helloOnly: b.helloOnly === true,
        backend: b,
      })),
    ];
    for (const row of rows) {
      try {
        await checkBackend(row.base, { echo: !row.helloOnly });
      } catch (e) {
        row.failed = e.message;
        log(`fastcgi: ${row.label}: check failed: ${e.message}`);
      }
    }
    const ok = rows.filter((r) => r.failed === undefined);
    await measureLoad(nginx, ok, { key: 'hello', path: 'hello' }, log);
    await measureLoad(
      nginx,
      ok.filter((r) => !r.helloOnly),
      { key: 'echo', path: 'echo', script: echoScript },
      log,
    );
    for (const row of ok.filter((r) => r.backend !== undefined && !r.helloOnly)) {
      log(`fastcgi: ${row.label}: upload`);
      row.upload = await measureUpload(nginx, row.backend);
    }
    log(`fastcgi: measured in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    return render(rows, skipped, context);
  } finally {
    await nginx?.stop();
    for (const b of backends) await b.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function render(rows, skipped, context) {
  const base = rows.find((r) => r.label.startsWith('Node http'));
  // The median's ratio, and the range of the ratios within each round (same round, same minute).
  const ratio = (r, k) => {
    if (r[k] === undefined || base?.[k] === undefined) return '';
    const each = r[k].runs.map((m, i) => m.rps / base[k].runs[i].rps);
    const range = `${Math.min(...each).toFixed(2)}–${Math.max(...each).toFixed(2)}`;
    return `${(r[k].rps / base[k].rps).toFixed(2)}x (${range})`;
  };
  const out = [
    '## FastCGI: nginx in front of each backend',
    '',
    `${context.machine()}. One nginx (1 worker, upstream \`keepalive 32\`, unix sockets) in front ` +
      `of every backend; \`wrk -t1 -c32 -d${SECONDS}s --timeout 10s --latency\` on loopback. Each load ` +
      `(hello, then echo) first runs ${WARMUP_SECONDS} s against every backend (a warm-up: V8 optimizes ` +
      `a request path only after it ran a while), then ${ROUNDS} rounds, each over every backend in a ` +
      'rotated order (this shared machine speeds up and slows down by 20-30% from one minute to the ' +
      'next); the table shows medians. ' +
      `echo = POST of ${ECHO_BYTES / 1024 / 1024} MiB answered with the same bytes (read whole, then ` +
      `sent); upload = ${UPLOAD_BYTES / 1024 / 1024 / 1024} GiB streamed by a Node client through nginx ` +
      '(`fastcgi_request_buffering off` / `proxy_request_buffering off`) and counted by the backend. ' +
      '"errors" = non-2xx + socket errors reported by wrk, and "log" = lines added to nginx\'s error log, ' +
      'both over every request of the load, warm-up included; "x http" = requests/s relative to the ' +
      'proxied Node http server, with the lowest and highest of the ratios within one round (both measured in the same minute); "CPU µs/req" = user + system ' +
      "CPU time of all the backend's processes per request (from /proc; less disturbed by other " +
      'load on the machine than requests/s); "nginx µs/req" = the same for nginx (its one worker ' +
      'can pass at most 1,000,000 / that many requests/s, whatever the backend); peak RSS = VmHWM of the ' +
      'serving process (the largest, for several workers) before and after the upload.',
    '',
    '| backend | hello req/s | x http | p99 ms | CPU µs/req | nginx µs/req | errors | log | echo 1 MiB req/s | x http | p99 ms | CPU µs/req | errors | log | upload MiB/s | peak RSS MiB before → after |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const r of rows) {
    if (r.failed !== undefined) {
      out.push(
        `| ${r.label} | failed: ${r.failed.replace(/\|/g, '/').slice(0, 120)} ||||||||||||||`,
      );
      continue;
    }
    const h = r.hello;
    const e = r.echo;
    const u = r.upload;
    out.push(
      [
        '',
        r.label,
        fmt(h.rps),
        ratio(r, 'hello'),
        fmt(h.p99, 2),
        fmt(h.cpuUs),
        fmt(h.nginxUs),
        h.errors,
        h.logLines,
        e ? fmt(e.rps) : '',
        e ? ratio(r, 'echo') : '',
        e ? fmt(e.p99, 2) : '',
        e ? fmt(e.cpuUs) : '',
        e ? e.errors : '',
        e ? e.logLines : '',
        u ? (u.ok ? fmt(u.mibPerS) : `failed (${u.why})`) : '',
        u ? `${mib(u.before)} → ${mib(u.after)}` : '',
        '',
      ]
        .join(' | ')
        .trim(),
    );
  }
  out.push('', 'Configurations:', '');
  for (const r of rows) out.push(`- ${r.label}: ${r.config}`);
  for (const s of skipped) out.push(`- skipped: ${s}`);
  const firstLines = rows
    .flatMap((r) => [r.hello, r.echo])
    .filter((x) => x?.firstLogLine !== undefined)
    .map((x) => x.firstLogLine);
  if (firstLines.length > 0) {
    out.push('', 'First nginx error-log line of each load that logged any:', '');
    for (const l of firstLines) out.push(`    ${l.slice(0, 300)}`);
  }
  out.push(
    '',
    `Load average after the run: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}.`,
    '',
  );
  return out.join('\n');
}

// Run alone: `node bench/fastcgi.js` (after `npm run build`).
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const context = {
    root: join(here, '..'),
    log: (s) => process.stderr.write(`bench: ${s}\n`),
    machine: () =>
      `node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'})`,
  };
  const markdown = await run(context);
  process.stdout.write(`\n${markdown}\n`);
  mkdirSync(join(here, 'results'), { recursive: true });
  writeFileSync(join(here, 'results', `${name}.md`), markdown);
}
