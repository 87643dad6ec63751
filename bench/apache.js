// A private Apache httpd (Debian apache2, event MPM, mod_cgid) on 127.0.0.1 for the benchmark,
// after the lab's apache.sh: its own config, pid file, logs and cgid socket in a temp state dir;
// /etc/apache2 and the system service are not used. Stopped by the PID in its own pid file.
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';

export const APACHE = process.env.APACHE2 ?? '/usr/sbin/apache2';
const MODULES = process.env.APACHE_MODULES ?? '/usr/lib/apache2/modules';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** freePort asks the kernel for a free loopback port. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// alive: the process exists and is not a zombie (PID 1 here may not reap daemons).
function alive(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

async function acceptsConnections(port) {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise((resolve) => {
      const c = connect(port, '127.0.0.1');
      c.once('connect', () => resolve(c.end() && true));
      c.once('error', () => resolve(false));
    });
    if (ok) return true;
    await sleep(100);
  }
  return false;
}

// runUser is who CGI children run as: as root, Apache refuses to serve as root (AH00526).
function runUser() {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag) => spawnSync('id', [flag, 'www-data'], { encoding: 'utf8' });
  const uid = id('-u');
  const gid = id('-g');
  if (uid.status !== 0 || gid.status !== 0) throw new Error('running as root needs user www-data');
  const group = spawnSync('id', ['-gn', 'www-data'], { encoding: 'utf8' }).stdout.trim();
  return { name: 'www-data', group, uid: Number(uid.stdout), gid: Number(gid.stdout) };
}

/**
 * startApache serves `cgiDir` at /cgi-bin/ through mod_cgid from a private Apache whose state
 * lives in `state` (both must be readable by www-data when running as root). It resolves to
 * `{ url, stop }` once the port accepts connections.
 */
export async function startApache(state, cgiDir) {
  const port = await freePort();
  const user = runUser();
  const run = join(state, 'run');
  const htdocs = join(state, 'htdocs');
  mkdirSync(run, { recursive: true });
  mkdirSync(htdocs, { recursive: true });
  chmodSync(state, 0o755);
  // mod_cgid's daemon runs as User and must reach its socket.
  if (user) chownSync(run, user.uid, user.gid);
  const pidFile = join(state, 'apache.pid');
  const conf = join(state, 'apache.conf');
  writeFileSync(
    conf,
    `# bench/apache.js: a private Apache for the CGI start-up benchmark
ServerRoot "${state}"
ServerName localhost
Listen 127.0.0.1:${port}
PidFile "${pidFile}"
DefaultRuntimeDir "${run}"
Mutex file:${run} default
ErrorLog "${join(state, 'error.log')}"
LogLevel warn
Timeout 60
KeepAlive On
LoadModule mpm_event_module ${MODULES}/mod_mpm_event.so
LoadModule authz_core_module ${MODULES}/mod_authz_core.so
LoadModule alias_module ${MODULES}/mod_alias.so
LoadModule cgid_module ${MODULES}/mod_cgid.so
ScriptSock "${join(run, 'cgid.sock')}"
StartServers 1
ServerLimit 2
ThreadsPerChild 16
MaxRequestWorkers 32
${user ? `User ${user.name}\nGroup ${user.group}\n` : ''}DocumentRoot "${htdocs}"
<Directory />
  AllowOverride None
  Require all denied
</Directory>
ScriptAlias "/cgi-bin/" "${cgiDir}/"
<Directory "${cgiDir}">
  Options +ExecCGI
  Require all granted
</Directory>
`,
  );
  const env = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C' };
  const started = spawnSync(APACHE, ['-d', state, '-f', conf, '-k', 'start'], {
    env,
    encoding: 'utf8',
  });
  if (started.status !== 0) {
    throw new Error(`apache2 failed to start: ${started.stderr || started.stdout}`);
  }
  let pid = 0;
  for (let i = 0; i < 100 && !pid; i++) {
    if (existsSync(pidFile)) pid = Number(readFileSync(pidFile, 'utf8').trim()) || 0;
    if (!pid) await sleep(100);
  }
  if (!pid) throw new Error(`apache2 wrote no pid file (${join(state, 'error.log')})`);
  const stop = async () => {
    if (!alive(pid)) return;
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 100 && alive(pid); i++) await sleep(100);
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  };
  if (!(await acceptsConnections(port))) {
    await stop();
    throw new Error(`apache2 is not listening on ${port} (${join(state, 'error.log')})`);
  }
  return { url: `http://127.0.0.1:${port}`, stop, errorLog: join(state, 'error.log') };
}
