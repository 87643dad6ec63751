// The backends of the FastCGI benchmark (bench/fastcgi.js), each started on a unix socket in
// the run's temp dir: cgi-bridge (N workers), node-fastcgi 2.0.0, php-fpm (static pool), Go's
// net/http/fcgi (built here with `go build`) and a plain Node http.createServer (behind
// proxy_pass). Each start function resolves with
// `{ label, config, prefix, kind, socket, keepConn, scriptDir?, servingPids(), log(), stop() }`
// or throws when its tool is missing.
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { acceptsConnections, descendants, runUser, stopper } from './fastcgi-proc.js';

const PHP_FPM = process.env.PHP_FPM ?? '/usr/sbin/php-fpm8.2';
const GO = process.env.GO ?? '/usr/bin/go';

/** ToolMissing marks a backend that cannot run here (its tool is not installed). */
export class ToolMissing extends Error {}

function need(path, pkg) {
  if (!existsSync(path)) throw new ToolMissing(`${path} not installed (apt-get install ${pkg})`);
}

/**
 * launch spawns a long-running backend with stdout/stderr to `DIR/NAME.log`, waits until its
 * socket accepts, and returns `{ pid, log(), stop() }` (SIGTERM, SIGKILL after 5 s, by pid).
 */
async function launch(dir, name, cmd, args, socket, env = {}) {
  const logFile = join(dir, `${name}.log`);
  const fd = openSync(logFile, 'a');
  let child;
  try {
    child = spawn(cmd, args, {
      stdio: ['ignore', fd, fd],
      env: { PATH: process.env.PATH, HOME: process.env.HOME ?? '/', LANG: 'C', ...env },
    });
  } finally {
    closeSync(fd);
  }
  const log = () => {
    try {
      return readFileSync(logFile, 'utf8');
    } catch {
      return '';
    }
  };
  const stop = stopper(child, 5000, { descendants: true });
  if (!(await acceptsConnections(socket))) {
    await stop();
    throw new Error(`${name} did not listen on ${socket}:\n${log()}`);
  }
  return { pid: child.pid, log, stop };
}

/** startCgiBridge runs `cgi-bridge fastcgi bench/peers/cgi-bridge/app.js --processes N`. */
export async function startCgiBridge(root, dir, processes) {
  const socket = join(dir, `cgi-bridge-${processes}.sock`);
  const p = await launch(
    dir,
    `cgi-bridge-${processes}`,
    process.execPath,
    [
      join(root, 'bin/cgi-bridge.js'),
      'fastcgi',
      join(root, 'bench/peers/cgi-bridge/app.js'),
      '--listen',
      `unix:${socket}`,
      '--processes',
      String(processes),
      '--socket-mode',
      '666',
    ],
    socket,
  );
  return {
    ...p,
    label: `cgi-bridge, ${processes} worker${processes === 1 ? '' : 's'}`,
    config: `\`cgi-bridge fastcgi --processes ${processes}\` (a master + ${processes} worker process${processes === 1 ? '' : 'es'}), FCGI_KEEP_CONN`,
    prefix: `cgi-bridge-${processes}`,
    kind: 'fastcgi',
    socket,
    servingPids: () => (processes === 0 ? [p.pid] : descendants(p.pid)),
  };
}

// startNodeScript runs one of the single-process Node peers, bench/peers/node/SCRIPT SOCKET, on
// DIR/NAME.sock; `fields` describe it (label, config, kind …).
async function startNodeScript(root, dir, name, script, fields) {
  const socket = join(dir, `${name}.sock`);
  const p = await launch(
    dir,
    name,
    process.execPath,
    [join(root, 'bench/peers/node', script), socket],
    socket,
  );
  return { ...p, prefix: name, socket, servingPids: () => [p.pid], ...fields };
}

/** startNodeFastcgi runs node-fastcgi 2.0.0 with the shared Node handler. */
export async function startNodeFastcgi(root, dir) {
  if (!existsSync(join(root, 'node_modules/node-fastcgi'))) {
    throw new ToolMissing('node-fastcgi not installed (npm install)');
  }
  return startNodeScript(root, dir, 'node-fastcgi', 'node-fastcgi.js', {
    label: 'node-fastcgi 2.0.0',
    config: 'one process, FCGI_KEEP_CONN (which it ignores)',
    kind: 'fastcgi',
  });
}

/** startNodeHttp runs the plain http.createServer peer (behind proxy_pass, upstream keepalive). */
export function startNodeHttp(root, dir) {
  return startNodeScript(root, dir, 'node-http', 'http-server.js', {
    label: 'Node http.createServer (proxy_pass)',
    config: 'one process, HTTP/1.1 upstream keepalive',
    kind: 'http',
  });
}

/**
 * startFastcgiHello runs bench/peers/node/fastcgi-hello.js: no gateway, hello only, the ceiling
 * for a Node FastCGI backend (`helloOnly`: it has no echo or upload).
 */
export function startFastcgiHello(root, dir) {
  return startNodeScript(root, dir, 'fastcgi-hello', 'fastcgi-hello.js', {
    label: 'reference: hello-only Node FastCGI codec',
    config:
      'bench/peers/node/fastcgi-hello.js, one process, FCGI_KEEP_CONN: parses records, answers a fixed hello, ' +
      'builds no environ and runs no app (not a usable server: the ceiling for any Node FastCGI backend here)',
    kind: 'fastcgi',
    helloOnly: true,
  });
}

/**
 * startPhpFpm runs php-fpm with a static pool of `children` and the scripts of
 * bench/peers/php (copied into the run dir, readable by the pool's user).
 * `keepConn` chooses whether nginx keeps FastCGI connections open.
 */
export async function startPhpFpm(root, dir, children, keepConn) {
  need(PHP_FPM, 'php-fpm');
  const scriptDir = join(dir, 'php');
  mkdirSync(scriptDir, { recursive: true });
  chmodSync(scriptDir, 0o755);
  for (const f of ['hello.php', 'echo.php', 'upload.php']) {
    copyFileSync(join(root, 'bench/peers/php', f), join(scriptDir, f));
    chmodSync(join(scriptDir, f), 0o644);
  }
  const name = `php-fpm-${children}${keepConn ? '-keep' : ''}`;
  const socket = join(dir, `${name}.sock`);
  const user = runUser();
  const conf = join(dir, `${name}.conf`);
  writeFileSync(
    conf,
    [
      '; generated by bench/fastcgi-peers.js',
      '[global]',
      `pid = ${join(dir, `${name}.pid`)}`,
      `error_log = ${join(dir, `${name}-error.log`)}`,
      'daemonize = no',
      '[bench]',
      ...(user !== undefined ? [`user = ${user.name}`, `group = ${user.group}`] : []),
      `listen = ${socket}`,
      'listen.mode = 0666',
      'listen.backlog = 4096',
      'pm = static',
      `pm.max_children = ${children}`,
      'pm.max_requests = 0',
      // the upload streams: php://input reads from the web server, not from a spooled copy
      'php_admin_value[enable_post_data_reading] = Off',
      'php_admin_value[post_max_size] = 0',
      '',
    ].join('\n'),
  );
  const p = await launch(dir, name, PHP_FPM, ['-F', '-y', conf, '-p', dir], socket);
  return {
    ...p,
    label: `php-fpm 8.2, static ${children}${keepConn ? ', keep_conn' : ''}`,
    config: `pm = static, ${children} children, Debian's php.ini (opcache on), ${keepConn ? 'FCGI_KEEP_CONN' : 'a connection per request'}`,
    prefix: name,
    kind: 'fastcgi',
    keepConn,
    socket,
    scriptDir,
    servingPids: () => descendants(p.pid),
  };
}

/** startGo builds bench/peers/go/main.go with `go build` into the run dir and runs it. */
export async function startGo(root, dir) {
  need(GO, 'golang-go');
  const exe = join(dir, 'go-fcgi-peer');
  const build = spawnSync(GO, ['build', '-o', exe, join(root, 'bench/peers/go/main.go')], {
    encoding: 'utf8',
    env: {
      ...process.env,
      GO111MODULE: 'off',
      GOFLAGS: '',
      GOCACHE: process.env.GOCACHE ?? join(dir, 'go-cache'),
    },
  });
  if (build.status !== 0) throw new Error(`go build failed:\n${build.stderr}${build.stdout}`);
  const socket = join(dir, 'go.sock');
  const p = await launch(dir, 'go', exe, [socket], socket);
  const version = spawnSync(GO, ['version'], { encoding: 'utf8' }).stdout.trim().split(' ')[2];
  return {
    ...p,
    label: `Go ${version ?? ''} net/http/fcgi`.replace(/ +/g, ' '),
    config: 'one process, GOMAXPROCS = CPUs, FCGI_KEEP_CONN',
    prefix: 'go',
    kind: 'fastcgi',
    socket,
    servingPids: () => [p.pid],
  };
}
