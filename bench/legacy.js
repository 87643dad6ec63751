#!/usr/bin/env node
// The legacy-CGI benchmark table (`npm run bench`, or alone: `node bench/legacy.js`): a shell
// hello and a Perl hello, each started per request, behind
//   nginx -> cgi-bridge fastcgi --cgi-bin (a master + 4 workers; programs started by each
//            worker's fork server: the C one, the default where it was built, and the Perl
//            one; and for comparison with --cgi-spawn direct; and one worker, the default,
//            and two (one per CPU on the development machine),
//            which runs any number of programs at once),
//   nginx -> fcgiwrap (4 processes under spawn-fcgi, the usual Debian setup),
//   Apache (event MPM) mod_cgid,
// in one run, interleaved (every round runs every backend and script once, in a rotated order,
// so that a change of load on this shared machine hits all of them alike). `wrk -t1 -c8 -d8s
// --latency`, loopback only. Then where the time goes: what one spawn costs (bench/legacy-spawn.js)
// and `strace -c -f` on a cgi-bridge worker under load.
import { spawn } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { constants, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { APACHE, startApache } from './apache.js';
import { WRK, httpCall, runWrk } from './fastcgi-load.js';
import { descendants, sleep } from './fastcgi-proc.js';
import { measureSpawn } from './legacy-spawn.js';
import { median } from './stats.js';
import { FCGIWRAP, NGINX, startBridge, startFcgiwrap, startNginx } from './legacy-servers.js';

/** name is the table's name for bench/run.js (and bench/results/legacy.md). */
export const name = 'legacy';
/** title says what the table measures. */
export const title =
  'Legacy CGI programs: nginx -> cgi-bridge fastcgi --cgi-bin vs nginx -> fcgiwrap vs Apache mod_cgid';

/** SECONDS is each wrk run (LEGACY_BENCH_SECONDS overrides). */
const SECONDS = Number(process.env.LEGACY_BENCH_SECONDS ?? 8);
/** ROUNDS is how often every backend and script is measured (LEGACY_BENCH_ROUNDS overrides). */
const ROUNDS = Number(process.env.LEGACY_BENCH_ROUNDS ?? 3);
/** WARMUP is the seconds of load every backend gets before the rounds (LEGACY_BENCH_WARMUP). */
const WARMUP = Number(process.env.LEGACY_BENCH_WARMUP ?? 40);
/** WARMUP_WINDOW is the length of one warm-up load run, whose CPU per request is reported. */
const WARMUP_WINDOW = 5;
/** CONNECTIONS is wrk's -c. */
const CONNECTIONS = 8;
/** PROCESSES is the number of cgi-bridge workers and of fcgiwrap processes. */
const PROCESSES = 4;
/**
 * BRIDGES are the cgi-bridge servers measured, in table order: `key` is the URL prefix and the
 * results' key, `how` goes into the row's label.
 */
const BRIDGES = [
  { key: 'bridge', processes: PROCESSES, spawn: 'helper', how: 'C fork server: the default' },
  { key: 'one', processes: 1, spawn: 'helper', how: 'C fork server' },
  { key: 'two', processes: 2, spawn: 'helper', how: 'C fork server' },
  {
    key: 'perl',
    processes: PROCESSES,
    spawn: 'helper',
    forkServer: 'perl',
    how: 'Perl fork server',
  },
  { key: 'direct', processes: PROCESSES, spawn: 'direct', how: '--cgi-spawn direct' },
];
/** SPAWN_N is how many programs one spawn measurement starts in a row. */
const SPAWN_N = Number(process.env.LEGACY_BENCH_SPAWN_N ?? 100);
const STRACE = process.env.STRACE ?? '/usr/bin/strace';

const SCRIPTS = {
  'hello.sh': "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nhello\\n'\n",
  'hello.pl': '#!/usr/bin/perl\nprint "Content-Type: text/plain\\n\\nhello\\n";\n',
};

const here = dirname(fileURLToPath(import.meta.url));
const fmt = (n, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');
const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

/**
 * usage sums the user + system CPU time (clock ticks) and the minor page faults of `pids`. The
 * faults are the cost of fork() that the fork syscall does not show: after a fork every private
 * page of the parent is write-protected, and the first write to each one faults (copy-on-write).
 */
function usage(pids) {
  let cpu = 0;
  let faults = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // proc(5): minflt is field 10, utime and stime fields 14 and 15 (f[7], f[11], f[12] here)
      faults += Number(f[7]);
      cpu += Number(f[11]) + Number(f[12]);
    } catch {
      // gone
    }
  }
  return { cpu, faults };
}

const TICK_MS = 10; // USER_HZ is 100 on Linux

async function checkHello(url) {
  const r = await httpCall(url);
  const text = r.body.toString();
  if (r.status !== 200 || text !== 'hello\n') {
    throw new Error(`${url} answered ${r.status}: ${text.slice(0, 200)}`);
  }
}

/** measure runs one wrk load against `url` and reads the backend's CPU around it. */
async function measure(backend, script, seconds = SECONDS) {
  const url = backend.url(script);
  const pids = backend.servingPids();
  const helpers = backend.helperPids?.() ?? [];
  const before = usage(pids);
  const helpersBefore = usage(helpers);
  const loadBefore = loadavg()[0];
  const r = await runWrk(url, { seconds, connections: CONNECTIONS });
  const after = usage(pids);
  const helpersAfter = usage(helpers);
  const n = Math.max(1, r.requests);
  return {
    rps: r.rps,
    p99: r.p99,
    p50: r.p50,
    errors: r.non2xx + r.socketErrors,
    requests: r.requests,
    cpuMs: ((after.cpu - before.cpu) * TICK_MS) / n,
    faults: (after.faults - before.faults) / n,
    helperCpuMs: ((helpersAfter.cpu - helpersBefore.cpu) * TICK_MS) / n,
    helperFaults: (helpersAfter.faults - helpersBefore.faults) / n,
    load: (loadBefore + loadavg()[0]) / 2,
  };
}

/** straceWorker attaches `strace -c` (and then `strace -c -f`) to one worker under load. */
async function straceWorker(bridge, url, dir) {
  if (!existsSync(STRACE)) return undefined;
  const worker = bridge.workers()[0];
  if (worker === undefined) return undefined;
  const out = {};
  for (const follow of [false, true]) {
    const file = join(dir, `strace${follow ? '-f' : ''}.txt`);
    const args = ['-c', '-S', 'time', '-o', file, ...(follow ? ['-f'] : []), '-p', String(worker)];
    const tracer = spawn(STRACE, args, { stdio: 'ignore' });
    const done = new Promise((resolve) => tracer.once('exit', resolve));
    await sleep(500);
    const r = await runWrk(url, { seconds: 5, connections: CONNECTIONS });
    tracer.kill('SIGINT');
    await Promise.race([done, sleep(10_000)]);
    out[follow ? 'follow' : 'worker'] = { text: readFileSync(file, 'utf8'), requests: r.requests };
  }
  return out;
}

/**
 * whereTheTimeGoes reads the measurements back as sentences: the serving processes' own CPU
 * and page faults per request, and what one spawn costs the starting process.
 */
function whereTheTimeGoes(results, spawnRows) {
  const med = (key, s, f) => median((results.get(`${key} ${s}`) ?? []).map((m) => m[f]));
  const spawnMed = (how, program, f) =>
    median(
      (spawnRows.find((r) => r.how.startsWith(how) && r.program === program)?.runs ?? []).map(
        (x) => x[f],
      ),
    );
  const lines = ['### Where the time goes', ''];
  for (const s of Object.keys(SCRIPTS)) {
    lines.push(
      `- \`${s}\`: cgi-bridge's own processes (master, workers and their fork servers) spend ` +
        `${fmt(med('bridge', s, 'cpuMs'), 2)} ms of CPU and take ${fmt(med('bridge', s, 'faults'))} ` +
        `page faults per request, of which the C fork servers ${fmt(med('bridge', s, 'helperCpuMs'), 2)} ms ` +
        `and ${fmt(med('bridge', s, 'helperFaults'))}; with one worker ` +
        `${fmt(med('one', s, 'cpuMs'), 2)} ms and ${fmt(med('one', s, 'faults'))}; with two ` +
        `${fmt(med('two', s, 'cpuMs'), 2)} ms and ${fmt(med('two', s, 'faults'))}; with the Perl fork server ` +
        `${fmt(med('perl', s, 'cpuMs'), 2)} ms and ${fmt(med('perl', s, 'faults'))} (the Perl ` +
        `processes ${fmt(med('perl', s, 'helperCpuMs'), 2)} ms and ${fmt(med('perl', s, 'helperFaults'))}); ` +
        `with \`--cgi-spawn direct\` ${fmt(med('direct', s, 'cpuMs'), 2)} ms and ` +
        `${fmt(med('direct', s, 'faults'))}; fcgiwrap's ${fmt(med('wrap', s, 'cpuMs'), 2)} ms and ` +
        `${fmt(med('wrap', s, 'faults'))}.`,
    );
  }
  const c = (f) => spawnMed('C fork', '/bin/true', f);
  const n = (f) => spawnMed('node child_process', '/bin/true', f);
  const x = (f) => spawnMed('cross-spawn', '/bin/true', f);
  const kc = (f) => spawnMed('fork server: node + fork-server.c', '/bin/true', f);
  const kp = (f) => spawnMed('fork server: node + fork-server.pl', '/bin/true', f);
  const hd = (f) => spawnMed('fromCgi: resolve + cross-spawn', 'hello.sh', f);
  const hh = (f) => spawnMed('fromCgi: resolve + fork server', 'hello.sh', f);
  lines.push(
    `- Starting \`/bin/true\` costs the starting process(es) ${fmt(c('cpuMs'), 2)} ms of CPU and ` +
      `${fmt(c('faults'))} faults from C, ${fmt(n('cpuMs'), 2)} ms and ${fmt(n('faults'))} from ` +
      `node's child_process.spawn, ${fmt(x('cpuMs'), 2)} ms and ${fmt(x('faults'))} through ` +
      `cross-spawn, ${fmt(kc('cpuMs'), 2)} ms and ${fmt(kc('faults'))} through the C fork server ` +
      `and ${fmt(kp('cpuMs'), 2)} ms and ${fmt(kp('faults'))} through the Perl one (node and the ` +
      `fork server together); fromCgi's whole request path for \`hello.sh\` ` +
      `${fmt(hd('cpuMs'), 2)} ms and ${fmt(hd('faults'))} faults spawning directly, ` +
      `${fmt(hh('cpuMs'), 2)} ms and ${fmt(hh('faults'))} through the C fork server.`,
    '- Why direct spawning costs so much: node (libuv) starts a program with fork(), which ' +
      'write-protects every private page of the worker; the first write to each page afterwards ' +
      '(the JS heap, stacks, malloc) is a copy-on-write fault, and a worker writes hundreds of ' +
      'pages per request. On this VM a page fault is expensive, so the faults, not the fork call, ' +
      'are most of the CPU; with 4 workers on 2 CPUs the CPU runs out first.',
    '- One, two or four workers: a worker is asynchronous, so one runs as many programs at once ' +
      'as requests come (fcgiwrap needs a process per concurrent request). Four workers on 2 ' +
      'CPUs cost more CPU per request than one or two: each sees a quarter of the requests, so it takes ' +
      'four times as long to warm up (below), and four event loops, heaps and fork servers wake ' +
      'up for a quarter of the work each and compete with the programs for the CPUs.',
    "- The fork server (Apache mod_cgid's design): each worker starts one small process that " +
      "starts the programs, so the worker is never forked; the programs' stdio are pipes to it, " +
      'relayed as frames on its own stdin and stdout, so a worker opens no descriptor per ' +
      'request. The C one (fork-server.c, ' +
      'compiled at install where there is a C compiler, and then what `--cgi-spawn auto` uses) ' +
      'starts them with vfork(), which copies no page tables and write-protects nothing. The ' +
      'Perl one (fork-server.pl, the fallback) forks, and its own copy-on-write faults after ' +
      'each fork (about 100 pages of interpreter state) make it cost about what it saves for a ' +
      'small worker: `auto` uses it only from 512 MiB resident. The programs themselves (sh, ' +
      'perl) cost the same under every server.',
  );
  return lines;
}

/** summarizeStrace keeps strace -c's header and its top `n` rows. */
function summarizeStrace(text, n = 10) {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const head = lines.findIndex((l) => l.startsWith('% time'));
  if (head < 0) return text.trim();
  const total = lines.find((l) => /\btotal$/.test(l));
  return [...lines.slice(head, head + 2 + n), ...(total ? ['...', total] : [])].join('\n');
}

/** run measures everything and returns the markdown (for bench/run.js). */
export async function run(context) {
  const log = context.log;
  const root = context.root;
  for (const [tool, pkg] of [
    [NGINX, 'nginx'],
    [WRK, 'wrk'],
    [FCGIWRAP, 'fcgiwrap'],
    [APACHE, 'apache2'],
  ]) {
    if (!existsSync(tool)) throw new Error(`${tool} not installed (apt-get install ${pkg})`);
  }
  if (!existsSync(join(root, 'dist/src/cli/main.js'))) {
    throw new Error('dist/ is not built: run `npm run build` first (npm run bench does)');
  }
  const dir = mkdtempSync(join(tmpdir(), 'cgi-bridge-bench-legacy-'));
  chmodSync(dir, 0o755); // www-data (nginx, fcgiwrap, Apache's children) reaches the scripts
  const cgiDir = join(dir, 'cgi-bin');
  mkdirSync(cgiDir, { mode: 0o755 });
  for (const [file, text] of Object.entries(SCRIPTS)) {
    writeFileSync(join(cgiDir, file), text, { mode: 0o755 });
    chmodSync(join(cgiDir, file), 0o755);
  }
  const loadStart = load();
  const started = [];
  const stopAll = async () => {
    for (const s of started.reverse()) await s.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  };
  // The bridges, fcgiwrap and Apache run in sessions of their own: Ctrl-C does not reach them.
  const onSignal = (signal) => {
    log(`legacy: ${signal}, stopping the servers`);
    void stopAll().finally(() => process.exit(128 + (constants.signals[signal] ?? 0)));
  };
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  const t0 = Date.now();
  try {
    const bridges = [];
    for (const v of BRIDGES) {
      const server = await startBridge(root, dir, cgiDir, {
        processes: v.processes,
        prefix: `/${v.key}`,
        spawn: v.spawn,
        forkServer: v.forkServer,
        name: v.key,
      });
      started.push(server);
      bridges.push({ ...v, server });
    }
    const bridge = bridges[0].server; // the default: the strace below looks at one of its workers
    const wrap = await startFcgiwrap(dir, { processes: PROCESSES });
    started.push(wrap);
    mkdirSync(join(dir, 'nginx'));
    const nginx = await startNginx(join(dir, 'nginx'), cgiDir, [
      ...bridges.map((v) => ({ prefix: v.key, socket: v.server.socket })),
      { prefix: 'wrap', socket: wrap.socket },
    ]);
    started.push(nginx);
    const apacheState = join(dir, 'apache');
    mkdirSync(apacheState);
    const apache = await startApache(apacheState, cgiDir);
    started.push(apache);
    const apachePid = () => Number(readFileSync(join(apacheState, 'apache.pid'), 'utf8'));

    const backends = [
      ...bridges.map((v) => ({
        label: `nginx -> cgi-bridge fastcgi --cgi-bin (${v.processes} worker${v.processes === 1 ? '' : 's'}, ${v.how})`,
        key: v.key,
        url: (s) => `${nginx.url}/${v.key}/${s}`,
        servingPids: v.server.servingPids,
        helperPids: v.server.helpers,
      })),
      {
        label: `nginx -> fcgiwrap (${PROCESSES} processes, spawn-fcgi)`,
        key: 'wrap',
        url: (s) => `${nginx.url}/wrap/${s}`,
        servingPids: wrap.servingPids,
      },
      {
        label: 'Apache 2.4 event + mod_cgid',
        key: 'apache',
        url: (s) => `${apache.url}/cgi-bin/${s}`,
        servingPids: () => [apachePid(), ...descendants(apachePid())],
      },
    ];
    for (const b of backends) for (const s of Object.keys(SCRIPTS)) await checkHello(b.url(s));
    log(`legacy: servers up, load average ${load()}`);

    // Warm-up to the steady state of a server that has been running a while: every backend
    // WARMUP seconds, in windows alternating the scripts. A fresh cgi-bridge worker runs its
    // request path in V8's interpreter and baseline code and grows its heap first (warmUpLines).
    const warmups = new Map(); // key -> [{ script, ...measure() }], one per window
    for (const b of backends) {
      const windows = [];
      for (let i = 0; i < Math.max(1, Math.round(WARMUP / WARMUP_WINDOW)); i++) {
        const s = Object.keys(SCRIPTS)[i % Object.keys(SCRIPTS).length];
        windows.push({ script: s, ...(await measure(b, s, WARMUP_WINDOW)) });
      }
      warmups.set(b.key, windows);
      log(`legacy: warmed ${b.key}: CPU ms/req ${windows.map((w) => fmt(w.cpuMs, 2)).join(', ')}`);
    }
    const results = new Map(); // `${key} ${script}` -> measurements
    const order = backends.flatMap((b) => Object.keys(SCRIPTS).map((s) => ({ b, s })));
    for (let round = 0; round < ROUNDS; round++) {
      const k = round % order.length;
      for (const { b, s } of [...order.slice(k), ...order.slice(0, k)]) {
        const m = await measure(b, s);
        const id = `${b.key} ${s}`;
        if (!results.has(id)) results.set(id, []);
        results.get(id).push(m);
        log(
          `legacy: round ${round + 1} ${b.key} ${s}: ${fmt(m.rps)} req/s, p99 ${fmt(m.p99, 1)} ms, load ${fmt(m.load, 2)}`,
        );
      }
    }
    const loadAfterLoad = load();

    log('legacy: strace on a cgi-bridge worker');
    const strace = await straceWorker(bridge, backends[0].url('hello.sh'), dir);

    // The spawn measurements run with the servers idle.
    log('legacy: spawn cost');
    const spawnRows = await measureSpawn({
      root,
      dir,
      programs: {
        '/bin/true': '/bin/true',
        'hello.sh': join(cgiDir, 'hello.sh'),
        'hello.pl': join(cgiDir, 'hello.pl'),
      },
      n: SPAWN_N,
      rounds: 3,
      log,
    });
    const loadEnd = load();
    log(`legacy: measured in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    return render({
      context,
      backends,
      results,
      strace,
      spawnRows,
      warmups,
      loads: { start: loadStart, afterLoad: loadAfterLoad, end: loadEnd },
    });
  } finally {
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
    await stopAll();
  }
}

/**
 * warmUpLines tells how a fresh cgi-bridge worker warms up: CPU per request in each warm-up
 * window, next to fcgiwrap's, which has nothing to warm.
 */
function warmUpLines(warmups) {
  const row = (key) =>
    (warmups.get(key) ?? [])
      .map((w) => `${fmt(w.cpuMs, 2)} (${w.script === 'hello.sh' ? 'sh' : 'pl'})`)
      .join(', ');
  const windows = warmups.get('bridge') ?? [];
  const requests = windows.reduce((n, w) => n + w.requests, 0);
  return [
    `- Warm-up: every backend got ${WARMUP} s of the same load before the rounds, in ` +
      `${WARMUP_WINDOW} s windows alternating the scripts, so that the table shows servers in ` +
      "their steady state. A fresh cgi-bridge worker runs its request path in V8's interpreter " +
      'and baseline code until each function is hot enough for the optimizing compiler, and ' +
      'grows its heap meanwhile (the page faults): ' +
      `CPU ms/req per window with ${PROCESSES} workers ${row('bridge')} (${requests} requests, ` +
      `about ${fmt(requests / PROCESSES)} per worker); with two ${row('two')}; with one worker ${row('one')}; ` +
      `fcgiwrap ${row('wrap')}. A worker restarted by \`--max-requests\` starts cold again.`,
  ];
}

function render({ context, backends, results, strace, spawnRows, warmups, loads }) {
  const get = (key, s) => results.get(`${key} ${s}`) ?? [];
  const med = (key, s, f) => median(get(key, s).map((m) => m[f]));
  const out = [
    '## Legacy CGI programs: cgi-bridge fastcgi --cgi-bin vs fcgiwrap vs Apache mod_cgid',
    '',
    `${context.machine()}. Load average (1, 5, 15 min) at the start ${loads.start}, after the ` +
      `load runs ${loads.afterLoad}, at the end ${loads.end}: other work shared this 2-CPU ` +
      'machine, so every backend and script was measured once per round, in a rotated order ' +
      `(${ROUNDS} rounds), and the table shows the median with the range.`,
    '',
    `\`wrk -t1 -c${CONNECTIONS} -d${SECONDS}s --latency\` on 127.0.0.1 after a ${WARMUP} s warm-up of each; ` +
      'the programs are `hello.sh` (`#!/bin/sh`, one printf) and `hello.pl` (`#!/usr/bin/perl`, ' +
      'one print), started once per request. One nginx (1 worker, a FastCGI connection per ' +
      'request, the usual fcgiwrap location: SCRIPT_FILENAME = directory + script name) in front ' +
      `of cgi-bridge (\`fastcgi --cgi-bin DIR --processes ${PROCESSES}\`, and with one worker, ` +
      'the default, and two) and of fcgiwrap ' +
      `(\`spawn-fcgi -F ${PROCESSES}\`); Apache 2.4 (event MPM, mod_cgid) serves the same directory ` +
      'itself. Every server runs in sessions of its own, as daemons do (spawn-fcgi gives each ' +
      'fcgiwrap process one; Apache and each cgi-bridge master one for all their processes), ' +
      "apart from nginx and wrk: with the kernel's autogroup scheduling a session shares the " +
      'CPUs as a whole. CPU ms/req and faults/req: user + system CPU time and minor page faults per ' +
      'request of the serving processes themselves, not of the programs they start (cgi-bridge: ' +
      'master + workers; fcgiwrap: its processes; Apache: all of its processes), from /proc.',
    '',
    '| backend | program | req/s (median) | range | x fcgiwrap | p99 ms (median) | p99 / fcgiwrap | CPU ms/req | faults/req | errors | load avg |',
    '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const b of backends) {
    for (const s of Object.keys(SCRIPTS)) {
      const ms = get(b.key, s);
      if (ms.length === 0) continue;
      const rps = med(b.key, s, 'rps');
      const p99 = med(b.key, s, 'p99');
      const wrapRps = med('wrap', s, 'rps');
      const wrapP99 = med('wrap', s, 'p99');
      const rpsList = ms.map((m) => m.rps);
      out.push(
        [
          '',
          b.label,
          `\`${s}\``,
          fmt(rps),
          `${fmt(Math.min(...rpsList))}–${fmt(Math.max(...rpsList))}`,
          `${fmt(rps / wrapRps, 2)}x`,
          fmt(p99, 1),
          `${fmt(p99 / wrapP99, 2)}x`,
          fmt(med(b.key, s, 'cpuMs'), 2),
          fmt(med(b.key, s, 'faults')),
          String(ms.reduce((n, m) => n + m.errors, 0)),
          fmt(median(ms.map((m) => m.load)), 1),
          '',
        ]
          .join(' | ')
          .trim(),
      );
    }
  }
  out.push(
    '',
    "Target (issue 4): cgi-bridge at least fcgiwrap's requests/s, with p99 no worse than 1.2x.",
    '',
    ...whereTheTimeGoes(results, spawnRows),
    ...warmUpLines(warmups),
    '',
    '### What one spawn costs',
    '',
    `Mean time to start a program and see it end, ${SPAWN_N} in a row, 3 rounds (median, range); ` +
      'measured after the load runs with the servers idle. The C loop is fork + execv + waitpid ' +
      'from a small process, which is what fcgiwrap does; node (libuv 1.46) also forks, from a ' +
      'process of tens of MiB, then waits for the exec on a pipe; cross-spawn only adds argument ' +
      'handling on Linux (its shebang and PATHEXT work is for Windows); the fork server rows ' +
      'count the faults and CPU of node and of the fork server together; fromCgi adds the ' +
      'cgi-bin resolution, the environment, the head parser and the exit.',
    '',
    '| how | program | ms per program (median) | range | faults per program | CPU ms per program |',
    '|---|---|--:|--:|--:|--:|',
  );
  for (const r of spawnRows) {
    const ms = r.runs.map((x) => x.ms);
    out.push(
      `| ${r.how} | \`${r.program}\` | ${fmt(median(ms), 2)} | ${fmt(Math.min(...ms), 2)}–${fmt(Math.max(...ms), 2)} | ` +
        `${fmt(median(r.runs.map((x) => x.faults)))} | ${fmt(median(r.runs.map((x) => x.cpuMs)), 2)} |`,
    );
  }
  if (strace !== undefined) {
    out.push(
      '',
      '### strace -c on one cgi-bridge worker under the hello.sh load',
      '',
      "strace's seconds are wall time inside each call, stretched by preemption on this loaded " +
        'machine: read the calls column more than the seconds.',
      '',
      `Worker alone (${strace.worker.requests} requests through all ${PROCESSES} workers in 5 s, ` +
        'the traced one slowed down by strace):',
      '',
      '```',
      summarizeStrace(strace.worker.text),
      '```',
      '',
      `With -f (the programs it started too; ${strace.follow.requests} requests in 5 s):`,
      '',
      '```',
      summarizeStrace(strace.follow.text),
      '```',
    );
  }
  return `${out.join('\n')}\n`;
}

// Run alone: `node bench/legacy.js` (after `npm run build`).
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const context = {
    root: join(here, '..'),
    log: (s) => process.stderr.write(`bench: ${s}\n`),
    machine: () => `node ${process.version}, load average ${load()}`,
  };
  const markdown = await run(context);
  process.stdout.write(`\n${markdown}\n`);
  mkdirSync(join(here, 'results'), { recursive: true });
  writeFileSync(join(here, 'results', `${name}.md`), markdown);
}
