// CGI start-up: what one request costs a node CGI script before it does any work, next to
// `node -e ''` (the floor), plain scripts without the library, and the variants explored to
// get the bundled script to the floor (module format, minifying, a V8 start-up snapshot,
// NODE_OPTIONS). Timed with hyperfine (medians); then through a real Apache mod_cgid with ab.
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { APACHE, startApache } from './apache.js';
import { median } from './stats.js';

export const name = 'cgi-startup';
export const title = 'CGI start-up time of a node CGI script';

const RUNS = Number(process.env.BENCH_RUNS ?? 40);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 3);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const AB_REQUESTS = Number(process.env.BENCH_AB_REQUESTS ?? 200);
const TARGET = 1.1;
// BENCH_RUNS, BENCH_ROUNDS, BENCH_WARMUP, BENCH_AB_REQUESTS tune the run; BENCH_TIMER=loop
// times without hyperfine.

const RESPONSE =
  'Status: 200 OK\\r\\nContent-Type: text/plain; charset=utf-8\\r\\nContent-Length: 14\\r\\n\\r\\nHello, world!\\n';

// The CGI environment every command runs with (and nothing else: `env -i` style).
const CGI_ENV = {
  PATH: '/usr/local/bin:/usr/bin:/bin',
  GATEWAY_INTERFACE: 'CGI/1.1',
  REQUEST_METHOD: 'GET',
  SCRIPT_NAME: '/cgi-bin/hello',
  PATH_INFO: '',
  QUERY_STRING: '',
  SERVER_NAME: 'localhost',
  SERVER_PORT: '80',
  SERVER_PROTOCOL: 'HTTP/1.1',
  REMOTE_ADDR: '127.0.0.1',
};

function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).status === 0;
}

// prepare writes every script variant into `dir` (no package.json above it: a plain cgi-bin).
async function prepare(root, dir) {
  const { bundleApp } = await import(join(root, 'dist', 'src', 'bundle', 'bundle.js'));
  const esbuild = await import('esbuild');
  const hello = join(root, 'dist', 'cgi', 'hello');
  if (!existsSync(hello)) throw new Error(`${hello} is missing: run npm run build first`);
  copyFileSync(hello, join(dir, 'hello'));
  chmodSync(join(dir, 'hello'), 0o755);

  writeFileSync(join(dir, 'plain.mjs'), `process.stdout.write('${RESPONSE}');\n`);
  writeFileSync(join(dir, 'plain.cjs'), `process.stdout.write('${RESPONSE}');\n`);
  writeFileSync(join(dir, 'plain-fs.cjs'), `require('node:fs').writeSync(1, '${RESPONSE}');\n`);
  const plainCgi = join(dir, 'plain-cgi');
  writeFileSync(plainCgi, `#!/usr/bin/env node\nrequire('node:fs').writeSync(1, '${RESPONSE}');\n`);
  chmodSync(plainCgi, 0o755);

  await bundleApp({
    app: join(root, 'dist', 'cgi-bin', 'hello.js'),
    outFile: join(dir, 'hello-unminified'),
    minify: false,
  });

  // The same entry as bundleApp's, built here in the variants bundleApp does not make.
  const app = JSON.stringify(join(root, 'dist', 'cgi-bin', 'hello.js'));
  const child = JSON.stringify(join(root, 'dist', 'src', 'cgi', 'child.js'));
  const entry = `import app from ${app}; import { cgiMain } from ${child}; cgiMain(app);`;
  const common = {
    bundle: true,
    platform: 'node',
    target: 'node20',
    minify: true,
    write: true,
    logLevel: 'error',
  };
  // Fully minified: identifiers renamed too (bundleApp keeps them for readable stack traces).
  await esbuild.build({
    ...common,
    stdin: { contents: entry, resolveDir: dir },
    format: 'cjs',
    outfile: join(dir, 'hello-minified.js'),
  });
  // An ES module bundle (it must be .mjs to load as ESM in a directory without package.json).
  await esbuild.build({
    ...common,
    stdin: { contents: entry, resolveDir: dir },
    format: 'esm',
    outfile: join(dir, 'hello.mjs'),
  });

  // The CommonJS bundle dropped under a "type": "module" package.json: node parses it as ESM.
  mkdirSync(join(dir, 'esm-scope'));
  writeFileSync(join(dir, 'esm-scope', 'package.json'), '{ "type": "module" }\n');
  copyFileSync(hello, join(dir, 'esm-scope', 'hello'));

  // A V8 start-up snapshot (node --build-snapshot, Node >= 18.20): the app and the library are
  // already loaded in the heap the process starts from; the request runs in the main function.
  const snapEntry = join(dir, 'snapshot-entry.js');
  await esbuild.build({
    ...common,
    stdin: {
      contents: `import app from ${app}; import { cgiMain } from ${child}; import { startupSnapshot } from 'node:v8';
if (startupSnapshot.isBuildingSnapshot()) startupSnapshot.setDeserializeMainFunction(() => cgiMain(app)); else cgiMain(app);`,
      resolveDir: dir,
    },
    format: 'cjs',
    outfile: snapEntry,
  });
  const blob = join(dir, 'hello.blob');
  const built = spawnSync(
    process.execPath,
    ['--snapshot-blob', blob, '--build-snapshot', snapEntry],
    {
      encoding: 'utf8',
    },
  );
  const snapshot = built.status === 0 ? blob : undefined;

  const rows = [
    { label: "`node -e ''` (the floor)", cmd: "node -e ''", floor: true },
    { label: 'plain ESM script, process.stdout (no library)', cmd: 'node plain.mjs' },
    { label: 'plain CommonJS script, process.stdout (no library)', cmd: 'node plain.cjs' },
    { label: 'plain CommonJS script, fs.writeSync(1) (no library)', cmd: 'node plain-fs.cjs' },
    {
      label: '**bundled hello, run as a CGI script (`./hello`, `#!/usr/bin/env node`)**',
      cmd: './hello',
      target: true,
    },
    { label: 'bundled hello, `node hello` (no /usr/bin/env hop)', cmd: 'node hello' },
    { label: 'bundled hello, not minified', cmd: 'node hello-unminified' },
    { label: 'bundled hello, identifiers minified too', cmd: 'node hello-minified.js' },
    { label: 'bundled hello as an ES module bundle (.mjs)', cmd: 'node hello.mjs' },
    { label: 'bundled hello under a `"type": "module"` package.json', cmd: 'node esm-scope/hello' },
    {
      label: 'bundled hello with `NODE_OPTIONS=--jitless`',
      cmd: 'env NODE_OPTIONS=--jitless node hello',
    },
  ];
  if (snapshot) {
    rows.push({
      label: 'hello from a V8 start-up snapshot (`node --snapshot-blob`)',
      cmd: `node --snapshot-blob hello.blob`,
    });
  }
  return { rows, snapshotError: snapshot ? undefined : built.stderr.split('\n')[0] };
}

// check runs each command once and makes sure it answers the hello response.
function check(dir, rows) {
  for (const r of rows) {
    if (r.floor) continue;
    const [cmd, ...args] = r.cmd.split(' ');
    const out = spawnSync(cmd, args, { cwd: dir, env: CGI_ENV, encoding: 'utf8' });
    if (!out.stdout.endsWith('Hello, world!\n')) {
      throw new Error(`${r.cmd} did not answer hello: ${out.stdout}${out.stderr}`);
    }
  }
}

// hyperfine runs the commands in ROUNDS rounds and pools the runs: one command's runs are then
// spread over the whole measurement, so load from other processes hits every row alike.
function hyperfine(dir, rows) {
  const json = join(dir, 'hyperfine.json');
  const pooled = rows.map(() => ({ times: [], cpu: [] }));
  const perRound = Math.max(2, Math.ceil(RUNS / ROUNDS));
  for (let round = 0; round < ROUNDS; round++) {
    const args = ['-N', '--style', 'none', '--warmup', String(WARMUP), '--runs', String(perRound)];
    const r = spawnSync(
      'hyperfine',
      [...args, '--export-json', json, ...rows.map((row) => row.cmd)],
      {
        cwd: dir,
        env: CGI_ENV,
        encoding: 'utf8',
      },
    );
    if (r.status !== 0) throw new Error(`hyperfine failed: ${r.stderr}`);
    JSON.parse(readFileSync(json, 'utf8')).results.forEach((x, i) => {
      pooled[i].times.push(...x.times.map((t) => t * 1000));
      pooled[i].cpu.push((x.user + x.system) * 1000);
    });
  }
  return pooled.map((p) => ({
    median: median(p.times),
    min: Math.min(...p.times),
    cpu: p.cpu.reduce((a, b) => a + b, 0) / p.cpu.length,
  }));
}

// fallback times the commands itself, interleaved (drift hits every row alike), wall time only.
function loop(dir, rows) {
  const times = rows.map(() => []);
  for (let i = 0; i < WARMUP + RUNS; i++) {
    rows.forEach((row, j) => {
      const [cmd, ...args] = row.cmd.split(' ');
      const t = process.hrtime.bigint();
      spawnSync(cmd, args, { cwd: dir, env: CGI_ENV, stdio: 'ignore' });
      if (i >= WARMUP) times[j].push(Number(process.hrtime.bigint() - t) / 1e6);
    });
  }
  return times.map((t) => ({ median: median(t), min: Math.min(...t), cpu: undefined }));
}

// ab runs `n` sequential requests (-c 1) and reports their total time and failures.
function ab(url, n) {
  const r = spawnSync('ab', ['-q', '-n', String(n), '-c', '1', url], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ab ${url} failed: ${r.stderr}`);
  const num = (re) => Number(re.exec(r.stdout)?.[1] ?? 0);
  const failed = num(/Failed requests:\s+(\d+)/) + num(/Non-2xx responses:\s+(\d+)/);
  return { seconds: num(/Time taken for tests:\s+([\d.]+) seconds/), failed };
}

async function throughApache(log, work) {
  if (!existsSync(APACHE))
    return '_Apache not measured: apache2 is not installed (apt-get install apache2 apache2-utils)._\n';
  if (!have('ab'))
    return '_Apache not measured: ab is not installed (apt-get install apache2-utils)._\n';
  // A world-readable copy: CGI children run as www-data, which cannot enter /root or a 0700 temp dir.
  const state = mkdtempSync(join(tmpdir(), 'bench-apache-'));
  chmodSync(state, 0o755);
  const cgiDir = join(state, 'cgi-bin');
  mkdirSync(cgiDir);
  chmodSync(cgiDir, 0o755);
  writeFileSync(join(cgiDir, 'sh-hello'), `#!/bin/sh\nprintf '${RESPONSE}'\n`);
  for (const f of ['hello', 'plain-cgi']) copyFileSync(join(work, f), join(cgiDir, f));
  for (const f of ['sh-hello', 'hello', 'plain-cgi']) chmodSync(join(cgiDir, f), 0o755);
  let apache;
  try {
    apache = await startApache(state, cgiDir);
    const rows = [
      ['`/bin/sh` script (the CGI floor: fork + exec)', 'sh-hello'],
      ['plain node CommonJS script, fs.writeSync(1) (no library)', 'plain-cgi'],
      ['**bundled hello**', 'hello'],
    ];
    // Like the hyperfine rounds: each script's requests are spread over the whole measurement.
    for (const [, script] of rows) ab(`${apache.url}/cgi-bin/${script}?warmup`, 10);
    const totals = rows.map(() => ({ seconds: 0, requests: 0 }));
    const perRound = Math.max(1, Math.ceil(AB_REQUESTS / ROUNDS));
    for (let round = 0; round < ROUNDS; round++) {
      rows.forEach(([, script], i) => {
        const url = `${apache.url}/cgi-bin/${script}`;
        const m = ab(url, perRound);
        if (m.failed > 0) {
          throw new Error(`${m.failed} failed requests to ${url}; see ${apache.errorLog}`);
        }
        totals[i].seconds += m.seconds;
        totals[i].requests += perRound;
      });
    }
    const results = rows.map(([label, script], i) => {
      const { seconds, requests } = totals[i];
      const r = { label, rps: requests / seconds, mean: (seconds * 1000) / requests };
      log(`apache ${script}: ${r.rps.toFixed(1)} req/s, ${r.mean.toFixed(1)} ms`);
      return r;
    });
    const plain = results[1].mean;
    return [
      `Through Apache httpd (event MPM, mod_cgid) on 127.0.0.1, \`ab -c 1\`, ${Math.max(1, Math.ceil(AB_REQUESTS / ROUNDS)) * ROUNDS} requests per script in ${ROUNDS} rounds:`,
      '',
      '| CGI script | requests/s | mean latency (ms) | × plain node script |',
      '| --- | ---: | ---: | ---: |',
      ...results.map(
        (r) =>
          `| ${r.label} | ${r.rps.toFixed(1)} | ${r.mean.toFixed(1)} | ${(r.mean / plain).toFixed(2)} |`,
      ),
      '',
    ].join('\n');
  } finally {
    await apache?.stop();
    rmSync(state, { recursive: true, force: true });
  }
}

/** run measures every variant and returns the markdown table. */
export async function run({ root, log, machine }) {
  const dir = mkdtempSync(join(tmpdir(), 'bench-cgi-'));
  try {
    const { rows, snapshotError } = await prepare(root, dir);
    check(dir, rows);
    const at = machine();
    let stats;
    let how;
    if (have('hyperfine') && process.env.BENCH_TIMER !== 'loop') {
      log(`hyperfine: ${rows.length} commands x ${RUNS} runs`);
      stats = hyperfine(dir, rows);
      how = `hyperfine -N in ${ROUNDS} rounds (${WARMUP} warm-up runs each), ${Math.max(2, Math.ceil(RUNS / ROUNDS)) * ROUNDS} runs per command`;
    } else {
      const why = have('hyperfine')
        ? 'BENCH_TIMER=loop'
        : 'hyperfine is not installed (apt-get install hyperfine, or cargo install hyperfine)';
      log(`${why}: timing with a spawnSync loop`);
      stats = loop(dir, rows);
      how = `a spawnSync loop (${why}), ${RUNS} interleaved runs per command`;
    }
    const floor = stats[rows.findIndex((r) => r.floor)];
    const target = stats[rows.findIndex((r) => r.target)];
    const ratio = target.median / floor.median;
    const lines = [
      `## ${title}`,
      '',
      `Each command answers one GET with a CGI environment (\`env -i\` style) and nothing else; ${how}. Machine: ${at}.`,
      '',
      '| command | median (ms) | min (ms) | user+sys (ms) | × floor (median) | × floor (user+sys) |',
      '| --- | ---: | ---: | ---: | ---: | ---: |',
      ...rows.map((r, i) => {
        const s = stats[i];
        const cpu = s.cpu === undefined ? 'n/a' : s.cpu.toFixed(1);
        const cpuRatio = s.cpu === undefined ? 'n/a' : (s.cpu / floor.cpu).toFixed(2);
        return `| ${r.label} | ${s.median.toFixed(1)} | ${s.min.toFixed(1)} | ${cpu} | ${(s.median / floor.median).toFixed(2)} | ${cpuRatio} |`;
      }),
      '',
      `Target: the bundled hello within ${TARGET}× of \`node -e ''\`: **${ratio.toFixed(2)}× by median wall time, ${ratio <= TARGET ? 'met' : 'not met'}**${target.cpu === undefined ? '' : ` (${(target.cpu / floor.cpu).toFixed(2)}× by user+sys CPU time)`}.`,
      '',
    ];
    if (snapshotError)
      lines.push(`_The start-up snapshot could not be built: ${snapshotError}_`, '');
    lines.push(await throughApache(log, dir));
    return lines.join('\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
