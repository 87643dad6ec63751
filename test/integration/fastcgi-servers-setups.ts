// The deployments fastcgi-servers.test.ts and fastcgi-fault.test.ts run `cgi-bridge fastcgi`
// in: a copy of the built CLI that the web servers' user can read, the responder started as a
// process of ours (--listen) or by the web server itself (socket on fd 0), and the web server
// in front, each the way its documentation configures it.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { chmod, cp, lstat, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  descendantsOf,
  freePort,
  isProcessAlive,
  sleep,
  startApache,
  startLighttpd,
  startNginx,
  startSpawnFcgi,
  waitForListen,
  type ListenTarget,
  type RunningServer,
  type SpawnedFcgiApp,
  type World,
} from '../harness/servers.js';

/** ROOT is the repository (npm test builds dist/ before the tests run). */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** ROUTES are the fixture app's routes; each exists as a file in the document root. */
export const ROUTES = ['hello', 'pid', 'env', 'echo', 'stream', 'status'] as const;

/** Runtime is a copy of the CLI and the fixture app inside a world. */
export interface Runtime {
  /** bin is the copied bin/cgi-bridge.js. */
  bin: string;
  /** app is the copied test/fixtures/apps/fcgi-app.js. */
  app: string;
  /** docRoot holds one empty file per route (Apache and lighttpd split PATH_INFO on files). */
  docRoot: string;
}

async function relax(p: string): Promise<void> {
  const st = await lstat(p);
  if (st.isSymbolicLink()) return;
  if (st.isDirectory()) {
    await chmod(p, 0o755);
    for (const name of await readdir(p)) await relax(join(p, name));
  } else {
    await chmod(p, (st.mode & 0o100) !== 0 ? 0o755 : 0o644);
  }
}

// runtimePackages is the closure of package.json's dependencies in node_modules.
async function runtimePackages(): Promise<string[]> {
  const seen = new Set<string>();
  const visit = async (name: string): Promise<void> => {
    if (seen.has(name)) return;
    let pkg: { dependencies?: Record<string, string> };
    try {
      pkg = JSON.parse(await readFile(join(ROOT, 'node_modules', name, 'package.json'), 'utf8'));
    } catch {
      return; // an optional dependency for another platform
    }
    seen.add(name);
    for (const dep of Object.keys(pkg.dependencies ?? {})) await visit(dep);
  };
  const root = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as {
    dependencies?: Record<string, string>;
  };
  for (const dep of Object.keys(root.dependencies ?? {})) await visit(dep);
  return [...seen];
}

/**
 * installRuntime copies bin/, dist/src/, package.json, the runtime node_modules and the fixture
 * app into the world (mode 0755/0644): mod_fcgid, lighttpd and spawn-fcgi start the app as
 * www-data, which cannot read a checkout under /root.
 */
export async function installRuntime(world: World): Promise<Runtime> {
  const dir = join(world.dir, 'runtime');
  await mkdir(dir, { recursive: true });
  for (const part of ['bin', 'dist/src', 'package.json']) {
    await cp(join(ROOT, part), join(dir, part), { recursive: true });
  }
  for (const name of await runtimePackages()) {
    await cp(join(ROOT, 'node_modules', name), join(dir, 'node_modules', name), {
      recursive: true,
    });
  }
  await mkdir(join(dir, 'app'));
  await cp(join(ROOT, 'test/fixtures/apps/fcgi-app.js'), join(dir, 'app', 'fcgi-app.js'));
  // the app is ESM in a .js file: the nearest package.json says so
  await writeFile(join(dir, 'app', 'package.json'), '{ "type": "module" }\n');
  const docRoot = join(dir, 'htdocs');
  await mkdir(docRoot);
  for (const r of ROUTES) await writeFile(join(docRoot, r), '');
  await relax(dir);
  return {
    bin: join(dir, 'bin', 'cgi-bridge.js'),
    app: join(dir, 'app', 'fcgi-app.js'),
    docRoot,
  };
}

/** Bridge is `cgi-bridge fastcgi` started by the test with --listen. */
export interface Bridge {
  readonly name: string;
  /** pid is the master's (or the single process's) pid. */
  readonly pid: number;
  readonly child: ChildProcess;
  /** lines are its stderr lines so far. */
  readonly lines: string[];
  /** exited resolves with the exit code (or signal name) once it is gone. */
  readonly exited: Promise<number | string>;
  /** workerPids lists its live descendants. */
  workerPids(): Promise<number[]>;
  /**
   * childPids lists its children at once from /proc/PID/task/TID/children (no scan of /proc,
   * for the fault test's timing); zombies included, so check liveness.
   */
  childPids(): number[];
  /** stop sends SIGTERM (SIGKILL to what is left after 15 s); idempotent. */
  stop(): Promise<void>;
}

/** BridgeOptions tune {@link startBridge}. */
export interface BridgeOptions {
  listen: ListenTarget;
  /** processes is `--processes` (default 2). */
  processes?: number;
  /** args are extra command-line arguments. */
  args?: string[];
}

/** cliAddress turns a harness target (`tcp:H:P`, `unix:/p`) into a `--listen` ADDR. */
export function cliAddress(target: ListenTarget): string {
  return target.startsWith('tcp:') ? target.slice('tcp:'.length) : target;
}

/**
 * startBridge runs `node RUNTIME/bin/cgi-bridge.js fastcgi APP --listen ADDR --processes N`,
 * unix sockets with mode 0666 (the web server's workers run as www-data), and resolves once
 * the master reports it is serving. It is tracked by the world.
 */
export async function startBridge(world: World, rt: Runtime, opts: BridgeOptions): Promise<Bridge> {
  const args = [
    rt.bin,
    'fastcgi',
    rt.app,
    '--listen',
    cliAddress(opts.listen),
    '--processes',
    String(opts.processes ?? 2),
    '--socket-mode',
    '666',
    ...(opts.args ?? []),
  ];
  const child = spawn(process.execPath, args, {
    cwd: world.dir,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const lines: string[] = [];
  let partial = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (s: string) => {
    const parts = (partial + s).split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts);
  });
  const exited = new Promise<number | string>((resolve) =>
    child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)),
  );
  let gone = false;
  void exited.then(() => (gone = true));
  const seen = new Set<number>();
  const workerPids = async (): Promise<number[]> => {
    const pids = gone ? [] : (await descendantsOf(child.pid!)).map((d) => d.pid);
    for (const p of pids) seen.add(p);
    return pids;
  };
  const childPids = (): number[] => {
    const pids: number[] = [];
    try {
      for (const tid of readdirSync(`/proc/${child.pid}/task`)) {
        const text = readFileSync(`/proc/${child.pid}/task/${tid}/children`, 'utf8');
        for (const p of text.trim().split(/\s+/)) if (p !== '') pids.push(Number(p));
      }
    } catch {
      // gone, or a kernel without the children file
    }
    return pids;
  };
  let stopping: Promise<void> | undefined;
  const bridge: Bridge = {
    name: `cgi-bridge ${cliAddress(opts.listen)}`,
    pid: child.pid!,
    child,
    lines,
    exited,
    workerPids,
    childPids,
    stop() {
      stopping ??= (async () => {
        await workerPids();
        if (!gone) child.kill('SIGTERM');
        await Promise.race([exited, sleep(15_000)]);
        for (const pid of [child.pid!, ...seen]) {
          if (isProcessAlive(pid)) process.kill(pid, 'SIGKILL');
        }
        await Promise.race([exited, sleep(2000)]);
      })();
      return stopping;
    },
  };
  world.track(bridge);
  const deadline = Date.now() + 20_000;
  while (!lines.some((l) => / serving /.test(l))) {
    if (gone || Date.now() > deadline) {
      await bridge.stop();
      throw new Error(`cgi-bridge did not start (${args.join(' ')}):\n${lines.join('\n')}`);
    }
    await sleep(50);
  }
  await workerPids();
  return bridge;
}

// Lines the servers (and cgi-bridge, whose stderr mod_fcgid and lighttpd put in their logs)
// write when nothing is wrong: start-up and shutdown notices.
const NOTICES: RegExp[] = [
  /^==> .* <==$/, // tailOf's file headers
  /\[notice\]/, // nginx
  /:notice\] /, // Apache ([mpm_event:notice], [core:notice])
  /\) server started \(/, // lighttpd
  /\) server stopped by UID/,
  /\) [a-z ]*shutdown/i,
  /^cgi-bridge\[\d+\]: (serving |SIGTERM: stopping|SIGINT: stopping|SIGHUP: reloading|reload done)/,
  /^spawn-fcgi: child spawned successfully: PID: \d+$/,
];

/**
 * BUFFERING_WARNINGS are nginx's `[warn]` lines that report a body spooled to a temporary file
 * (`client_body_buffer_size` / `fastcgi_buffers` exceeded): bookkeeping of a 10 MB body, not a
 * failure. They are counted separately, not as errors.
 */
export const BUFFERING_WARNINGS =
  /\[warn\] .*an? (client request body|upstream response) is buffered to a temporary file/;

/** errorLines returns the log lines that are neither notices nor {@link BUFFERING_WARNINGS}. */
export function errorLines(log: string): string[] {
  return log
    .split('\n')
    .filter((l) => l.trim() !== '')
    .filter((l) => !NOTICES.some((re) => re.test(l)) && !BUFFERING_WARNINGS.test(l));
}

/**
 * openConnections counts the connections the responder holds on `listen` right now (server
 * side: /proc/net/tcp entries ESTABLISHED on the port, /proc/net/unix entries CONNECTED with
 * the socket's path), to tell whether the web server keeps FastCGI connections open.
 */
export function openConnections(listen: ListenTarget): number {
  if (listen.startsWith('unix:')) {
    const path = listen.slice('unix:'.length);
    // Num RefCount Protocol Flags Type St Inode Path; St 03 = SS_CONNECTED
    return readFileSync('/proc/net/unix', 'utf8')
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f[5] === '03' && f[7] === path).length;
  }
  const port = Number(listen.slice(listen.lastIndexOf(':') + 1));
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  let n = 0;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    // sl local_address rem_address st ...; st 01 = ESTABLISHED
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[3] === '01' && f[1]?.endsWith(hex)) n++;
    }
  }
  return n;
}

/** Deployment is one web server in front of the responder. */
export interface Deployment {
  server: RunningServer;
  /** base is the URL of the FastCGI prefix, e.g. `http://127.0.0.1:PORT/fcgi`. */
  base: string;
  /** bridge is the responder when the test started it (--listen). */
  bridge?: Bridge;
  /** spawned is the responder when spawn-fcgi started it. */
  spawned?: SpawnedFcgiApp;
  /** listen is the responder's socket, where the test knows it. */
  listen?: ListenTarget;
  /** errorLines are the error lines of every log involved (server, responder). */
  errorLines(): Promise<string[]>;
  /** responderPids are the responder's live processes. */
  responderPids(): Promise<number[]>;
}

/** FcgiSetup is a way to deploy the responder, see {@link FCGI_SETUPS}. */
export interface FcgiSetup {
  name: string;
  /** tools are the programs it needs (for requireTool). */
  tools: string[];
  /**
   * keepsConnections: the web server keeps FastCGI connections open between requests
   * (FCGI_KEEP_CONN), so after a load some stay open; without it none do.
   */
  keepsConnections: boolean;
  start(world: World, rt: Runtime): Promise<Deployment>;
}

const PREFIX = '/fcgi';

// nginx's default client_max_body_size (1m) would refuse the 10 MB POST with 413.
const NGINX_BODY = 'client_max_body_size 64m;';

async function target(world: World, kind: 'tcp' | 'unix', name: string): Promise<ListenTarget> {
  if (kind === 'tcp') return `tcp:127.0.0.1:${await freePort()}`;
  return `unix:${world.socketPath(name)}` as ListenTarget;
}

function deployment(server: RunningServer, extra: Partial<Deployment> = {}): Deployment {
  const { bridge, spawned } = extra;
  return {
    server,
    base: `${server.url}${PREFIX}`,
    ...extra,
    async errorLines() {
      const logs = [await server.errorLog()];
      if (bridge !== undefined) logs.push(bridge.lines.join('\n'));
      if (spawned !== undefined) logs.push(await spawned.errorLog());
      return logs.flatMap(errorLines);
    },
    async responderPids() {
      if (bridge !== undefined) return [bridge.pid, ...(await bridge.workerPids())];
      if (spawned !== undefined) return spawned.processes();
      // spawned by the server itself: its node descendants
      return (await server.processes()).filter((p) => p !== server.pid);
    },
  };
}

function nginxBehindBridge(kind: 'tcp' | 'unix', keepalive: number, unbuffered = false): FcgiSetup {
  const what = `${kind}${keepalive > 0 ? ' keep_conn+keepalive' : ''}`;
  return {
    name: `nginx fastcgi_pass ${what}${unbuffered ? ' request_buffering off' : ''}`,
    tools: ['nginx'],
    keepsConnections: keepalive > 0,
    async start(world, rt) {
      const listen = await target(world, kind, `bridge-nginx-${kind}-${keepalive}-${unbuffered}`);
      const bridge = await startBridge(world, rt, { listen });
      const server = await startNginx(world, {
        fcgi: [{ prefix: PREFIX, target: listen }],
        fcgiRoot: rt.docRoot,
        keepalive,
        extraConfig: NGINX_BODY,
        // the body goes to the responder while the client still sends it
        ...(unbuffered ? { extraLocationConfig: 'fastcgi_request_buffering off;' } : {}),
      });
      return deployment(server, { bridge, listen });
    },
  };
}

/** node is the absolute node binary, for the servers that spawn the responder. */
const NODE = process.execPath;

/**
 * FCGI_SETUPS are the deployments every case runs against: nginx over TCP and a unix socket,
 * with and without kept-alive FastCGI connections, and streaming request bodies
 * (`fastcgi_request_buffering off`); Apache mod_proxy_fcgi (enablereuse=on) and
 * mod_fcgid (spawns the responder, socket on fd 0); lighttpd mod_fastcgi over a socket and
 * with bin-path (max-procs 2, fd 0); spawn-fcgi (fd 0) behind nginx.
 */
export const FCGI_SETUPS: FcgiSetup[] = [
  nginxBehindBridge('tcp', 8),
  nginxBehindBridge('unix', 8),
  nginxBehindBridge('tcp', 0),
  nginxBehindBridge('unix', 0),
  nginxBehindBridge('unix', 8, true),
  {
    name: 'apache mod_proxy_fcgi enablereuse=on',
    tools: ['apache2'],
    keepsConnections: true,
    async start(world, rt) {
      const listen = await target(world, 'unix', 'bridge-apache');
      const bridge = await startBridge(world, rt, { listen });
      const server = await startApache(world, {
        fcgi: [{ prefix: PREFIX, target: listen }],
        fcgiRoot: rt.docRoot,
        reuse: true,
      });
      return deployment(server, { bridge, listen });
    },
  },
  {
    name: 'apache mod_fcgid (fd 0)',
    tools: ['apache2', 'mod_fcgid'],
    keepsConnections: false,
    async start(world, rt) {
      const server = await startApache(world, {
        fcgid: [{ prefix: PREFIX, command: [NODE, rt.bin, 'fastcgi', rt.app, '--processes', '0'] }],
        fcgiRoot: rt.docRoot,
        fcgidProcs: 2,
      });
      return deployment(server);
    },
  },
  {
    name: 'lighttpd mod_fastcgi socket',
    tools: ['lighttpd'],
    keepsConnections: false,
    async start(world, rt) {
      const listen = await target(world, 'unix', 'bridge-lighttpd');
      const bridge = await startBridge(world, rt, { listen });
      const server = await startLighttpd(world, {
        fcgi: [{ prefix: PREFIX, target: listen }],
        fcgiRoot: rt.docRoot,
      });
      return deployment(server, { bridge, listen });
    },
  },
  {
    name: 'lighttpd bin-path max-procs 2 (fd 0)',
    tools: ['lighttpd'],
    keepsConnections: false,
    async start(world, rt) {
      const server = await startLighttpd(world, {
        spawn: [
          {
            prefix: PREFIX,
            command: [NODE, rt.bin, 'fastcgi', rt.app, '--processes', '0'],
            maxProcs: 2,
          },
        ],
        fcgiRoot: rt.docRoot,
      });
      return deployment(server);
    },
  },
  {
    name: 'spawn-fcgi (fd 0) behind nginx',
    tools: ['spawn-fcgi', 'nginx'],
    keepsConnections: true,
    async start(world, rt) {
      const listen = `unix:${world.socketPath('spawned')}` as ListenTarget;
      const spawned = await startSpawnFcgi(world, {
        listen,
        command: [NODE, rt.bin, 'fastcgi', rt.app, '--processes', '2'],
        children: 1,
      });
      if (!(await waitForListen(listen, { timeoutMs: 10_000 }))) {
        throw new Error(`spawn-fcgi: nothing accepts on ${listen}:\n${await spawned.errorLog()}`);
      }
      const server = await startNginx(world, {
        fcgi: [{ prefix: PREFIX, target: listen }],
        fcgiRoot: rt.docRoot,
        extraConfig: NGINX_BODY,
      });
      return deployment(server, { spawned, listen });
    },
  },
];
