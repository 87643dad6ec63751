#!/usr/bin/env node
// The FastCGI benchmark table (`npm run bench`, or alone: `node bench/fastcgi.js`): one nginx
// (1 worker, unix sockets, upstream keepalive) in front of cgi-bridge (1 and 2 workers),
// node-fastcgi, php-fpm, Go's net/http/fcgi and a plain Node http.createServer (proxy_pass),
// plus nginx answering by itself (the ceiling), all in one run on this machine. Loads: hello
// world and a 1 MiB POST echo with `wrk -t1 -c32` (requests/s, p99, errors, nginx error-log
// lines), then a 1 GiB upload streamed through with the serving process's peak RSS.
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

/** name is the table's name for bench/run.js (and bench/results/fastcgi.md). */
export const name = 'fastcgi';
/** title says what the table measures. */
export const title =
  'FastCGI responder behind nginx vs node-fastcgi, php-fpm, Go and proxied Node http';

const here = dirname(fileURLToPath(import.meta.url));

/** SECONDS is each wrk run's duration (FASTCGI_BENCH_SECONDS overrides; the runs are 10 s). */
const SECONDS = Number(process.env.FASTCGI_BENCH_SECONDS ?? 10);
/** WARMUP_SECONDS is a discarded wrk run before each measured hello run (JIT, connection pools). */
const WARMUP_SECONDS = 1;
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
    const rows = [];

    // nginx alone: the ceiling for hello.
    {
      await runWrk(`${nginx.url}/nginx/hello`, { seconds: WARMUP_SECONDS });
      await checkBackend(`${nginx.url}/nginx`, { echo: false });
      log('fastcgi: nginx alone: hello');
      rows.push({
        label: 'nginx alone (`return 200`)',
        config: "the ceiling; its CPU µs/req is nginx's own",
        hello: await measureWrk(nginx, `${nginx.url}/nginx/hello`, { seconds: SECONDS }, nginx.pid),
      });
    }
    for (const b of backends) {
      const base = `${nginx.url}/${b.prefix}`;
      const row = { label: b.label, config: b.config };
      rows.push(row);
      try {
        await checkBackend(base, { echo: !b.helloOnly });
      } catch (e) {
        row.failed = e.message;
        log(`fastcgi: ${b.label}: check failed: ${e.message}`);
        continue;
      }
      log(`fastcgi: ${b.label}: hello`);
      await runWrk(`${base}/hello`, { seconds: WARMUP_SECONDS });
      row.hello = await measureWrk(nginx, `${base}/hello`, { seconds: SECONDS }, b.pid);
      if (b.helloOnly) {
        log(`fastcgi: ${b.label}: ${row.hello.rps} req/s (hello only)`);
        continue;
      }
      log(`fastcgi: ${b.label}: ${row.hello.rps} req/s; echo`);
      row.echo = await measureWrk(
        nginx,
        `${base}/echo`,
        { seconds: SECONDS, script: echoScript },
        b.pid,
      );
      log(`fastcgi: ${b.label}: ${row.echo.rps} req/s; upload`);
      row.upload = await measureUpload(nginx, b);
      row.log = b.log();
    }
    log(`fastcgi: measured in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    return render(rows, backends, skipped, context);
  } finally {
    await nginx?.stop();
    for (const b of backends) await b.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function render(rows, backends, skipped, context) {
  const base = rows.find((r) => r.label.startsWith('Node http'));
  const ratio = (r, k) =>
    r[k] !== undefined && base?.[k] !== undefined ? `${(r[k].rps / base[k].rps).toFixed(2)}x` : '';
  const out = [
    '## FastCGI: nginx in front of each backend',
    '',
    `${context.machine()}. One nginx (1 worker, upstream \`keepalive 32\`, unix sockets) in front ` +
      `of every backend; \`wrk -t1 -c32 -d${SECONDS}s --timeout 10s --latency\` on loopback after a ${WARMUP_SECONDS} s ` +
      `warm-up; echo = POST of ${ECHO_BYTES / 1024 / 1024} MiB answered with the same bytes (read whole, then ` +
      `sent); upload = ${UPLOAD_BYTES / 1024 / 1024 / 1024} GiB streamed by a Node client through nginx ` +
      '(`fastcgi_request_buffering off` / `proxy_request_buffering off`) and counted by the backend. ' +
      '"errors" = non-2xx + socket errors reported by wrk; "log" = lines the run added to nginx\'s error log; ' +
      '"x http" = requests/s relative to the proxied Node http server; "CPU µs/req" = user + system ' +
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
  const withLines = rows.filter((r) => (r.hello?.logLines ?? 0) + (r.echo?.logLines ?? 0) > 0);
  if (withLines.length > 0) {
    out.push('', 'First nginx error-log line of each run that logged any:', '');
    for (const l of firstLines) out.push(`    ${l.slice(0, 300)}`);
  }
  void backends;
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
