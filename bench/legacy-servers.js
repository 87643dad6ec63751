// The servers of the legacy-CGI benchmark (bench/legacy.js), each in the run's temp dir on
// loopback or a unix socket, stopped by pid: `cgi-bridge fastcgi --cgi-bin` (a master + N
// workers), fcgiwrap (N processes under spawn-fcgi, as Debian runs it) and one nginx in front
// of both with the usual fcgiwrap config (SCRIPT_FILENAME = the directory + the script name).
// Apache mod_cgid comes from bench/apache.js.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEBIAN_FASTCGI_PARAMS, NGINX, launchNginx, readText } from './nginx-conf.js';
import { acceptsConnections, alive, descendants, runUser, sleep, stopper } from './fastcgi-proc.js';

export { NGINX };
export const FCGIWRAP = process.env.FCGIWRAP ?? '/usr/sbin/fcgiwrap';
export const SPAWN_FCGI = process.env.SPAWN_FCGI ?? '/usr/bin/spawn-fcgi';

const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

// cmdlineOf reads /proc/PID/cmdline: a pid is only signalled while it is still the program we
// started (pids are reused quickly on a busy machine).
function cmdlineOf(pid) {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

async function stopPids(pids, marker) {
  const ours = pids.filter((p) => alive(p) && cmdlineOf(p).includes(marker));
  for (const p of ours) process.kill(p, 'SIGTERM');
  for (let i = 0; i < 100 && ours.some(alive); i++) await sleep(50);
  for (const p of ours) if (alive(p) && cmdlineOf(p).includes(marker)) process.kill(p, 'SIGKILL');
}

/**
 * startBridge runs `cgi-bridge fastcgi --cgi-bin DIR --cgi-prefix PREFIX --processes N
 * --cgi-spawn SPAWN` on a unix socket (mode 0666: nginx's workers are www-data when we are root),
 * in its own session, with CGI_BRIDGE_FORK_SERVER=FORKSERVER when given (`c`, `perl`), its
 * socket and log named after NAME, and resolves with
 * `{ socket, pid, servingPids(), log(), stop() }` once it accepts connections.
 */
export async function startBridge(
  root,
  dir,
  cgiDir,
  { processes, prefix, spawn: how = 'auto', forkServer, name },
) {
  const socket = join(dir, `bridge-${name}.sock`);
  const logFile = join(dir, `bridge-${name}.log`);
  const fd = openSync(logFile, 'a');
  let child;
  try {
    child = spawn(
      process.execPath,
      [
        join(root, 'bin/cgi-bridge.js'),
        'fastcgi',
        '--cgi-bin',
        cgiDir,
        '--cgi-prefix',
        prefix,
        '--listen',
        `unix:${socket}`,
        '--socket-mode',
        '666',
        '--processes',
        String(processes),
        '--cgi-spawn',
        how,
      ],
      {
        stdio: ['ignore', fd, fd],
        // Its own session, as a daemon has (spawn-fcgi's children and Apache make their own):
        // with the scheduler's autogroups (kernel.sched_autogroup_enabled) a session shares the
        // CPUs as a whole, and left in ours it would compete with nginx and wrk.
        detached: true,
        env: { PATH, LANG: 'C', ...(forkServer ? { CGI_BRIDGE_FORK_SERVER: forkServer } : {}) },
      },
    );
  } finally {
    closeSync(fd);
  }
  const stop = stopper(child, 15_000);
  if (!(await acceptsConnections(socket))) {
    await stop();
    throw new Error(`cgi-bridge did not listen on ${socket}:\n${readText(logFile)}`);
  }
  // Wait for every worker: the master accepts on the socket before they all booted.
  for (let i = 0; i < 200 && !/\(\d+ worker\(s\)/.test(readText(logFile)); i++) await sleep(50);
  const workers = () => descendants(child.pid).filter((p) => cmdlineOf(p).includes('worker-entry'));
  // The workers' fork servers (src/cgi/fork-server.c or .pl), which start the programs for them.
  const helpers = () =>
    descendants(child.pid).filter((p) => /\/fork-server(\.pl)? /.test(cmdlineOf(p)));
  return {
    socket,
    pid: child.pid,
    /** servingPids are the master, its workers and their fork servers (not the CGI programs). */
    servingPids: () => [child.pid, ...workers(), ...helpers()],
    helpers,
    workers,
    log: () => readText(logFile),
    stop,
  };
}

/**
 * startFcgiwrap runs fcgiwrap under spawn-fcgi (`-F N`, a unix socket of mode 0666, as
 * www-data when we are root) and resolves with `{ socket, pids, servingPids(), stop() }`.
 */
export async function startFcgiwrap(dir, { processes }) {
  for (const [tool, pkg] of [
    [FCGIWRAP, 'fcgiwrap'],
    [SPAWN_FCGI, 'spawn-fcgi'],
  ]) {
    if (!existsSync(tool)) throw new Error(`${tool} not installed (apt-get install ${pkg})`);
  }
  const socket = join(dir, 'fcgiwrap.sock');
  const pidFile = join(dir, 'fcgiwrap.pid');
  const user = runUser();
  const args = ['-F', String(processes), '-s', socket, '-M', '0666', '-P', pidFile];
  if (user !== undefined) args.push('-u', user.name, '-g', user.group);
  args.push('--', FCGIWRAP);
  const r = spawnSync(SPAWN_FCGI, args, { encoding: 'utf8', env: { PATH, LANG: 'C' } });
  const pids = readText(pidFile)
    .split(/\s+/)
    .filter((s) => /^\d+$/.test(s))
    .map(Number);
  const stop = () => stopPids(pids, 'fcgiwrap');
  if (r.status !== 0 || pids.length !== processes || !(await acceptsConnections(socket))) {
    await stop();
    throw new Error(`spawn-fcgi fcgiwrap failed (${r.status}): ${r.stderr}${r.stdout}`);
  }
  return { socket, pids, servingPids: () => pids.filter(alive), stop };
}

/**
 * startNginx starts one nginx (1 worker, access log off) with, per route `{ prefix, socket }`,
 * the config fcgiwrap's users write: `location /PREFIX/` with SCRIPT_FILENAME = cgiDir + the
 * script's name, SCRIPT_NAME = the URI, a FastCGI connection per request. Resolves with
 * `{ url, stop() }`.
 */
export async function startNginx(stateDir, cgiDir, routes) {
  const nginx = await launchNginx({
    stateDir,
    label: 'bench/legacy-servers.js',
    workerConnections: 1024,
    http: (port) => [
      '  access_log off;',
      '  keepalive_requests 1000000;',
      '  server {',
      `    listen 127.0.0.1:${port};`,
      '    server_name localhost;',
      ...routes.flatMap((r) => [
        `    location ~ ^/${r.prefix}(/[^/]+)$ {`,
        ...DEBIAN_FASTCGI_PARAMS.map(([k, v]) => `      fastcgi_param ${k} ${v};`),
        `      fastcgi_param SCRIPT_FILENAME ${cgiDir}$1;`,
        `      fastcgi_pass unix:${r.socket};`,
        '    }',
      ]),
      '  }',
    ],
  });
  return { url: nginx.url, errorLog: nginx.errorLog, stop: nginx.stop };
}
