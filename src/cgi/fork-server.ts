// The host side's fork server (Apache mod_cgid's design): a small process, started once per Node
// process at the first program start, that forks and execs the CGI programs: fork-server.c as
// compiled at install (vfork(), a few small tables) or, without a C compiler, fork-server.pl.
// Both speak the protocol described at the top of fork-server.pl, over their stdin and stdout
// only: a program's stdio are pipes to the fork server, relayed as frames (helper-process.ts),
// so Node opens no file descriptor per request. node's own spawn fork()s the whole Node process,
// after which every page it writes is a copy-on-write fault: hundreds per request. Programs
// started here are still the leaders of their own process groups, which the host signals by
// pid as before (same uid).
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';
import spawn from 'cross-spawn';
import { BridgeError } from '../errors.js';
import { HelperProcess, nameOf } from './helper-process.js';
import { ProcessGroup } from './process-group.js';
import { forkServerKind, type ForkServerKind } from './spawn-options.js';

/** SpawnRequest is what to run: argv[0] is `executable`, an absolute path; `env` is all of it. */
export interface SpawnRequest {
  executable: string;
  args: readonly string[];
  cwd: string;
  env: Record<string, string>;
  /** stdin is true when a request body will be written; otherwise stdin is /dev/null. */
  stdin: boolean;
}

// The first start (perl loading POSIX) is slow on a loaded machine; past this it has failed.
const READY_TIMEOUT_MS = 15_000;
const FRAME_HEAD = 9; // type (1), id (u32), length (u32)
const MAX_FRAME = 4 * 1024 * 1024; // the most a fork server takes in one frame
const SCRIPT = fileURLToPath(new URL('./fork-server.pl', import.meta.url));
const BINARY = fileURLToPath(new URL('./fork-server', import.meta.url));

const noop = (): void => undefined;
const log = (line: string): void => void process.stderr.write(`cgi-bridge: ${line}\n`);

function forkServerError(message: string, cause?: unknown): BridgeError {
  return new BridgeError('CGI_ERR_FORK_SERVER', `cgi: ${message}`, { cause, status: 502 });
}

// spawnError is the error node's spawn would give for `errno` (code ENOENT, EACCES, ENOEXEC …).
function spawnError(errno: number, req: SpawnRequest): NodeJS.ErrnoException {
  const code = nameOf(constants.errno as Record<string, number>, errno) ?? `E${errno}`;
  return Object.assign(new Error(`spawn ${req.executable} ${code}`), {
    errno: -errno,
    code,
    syscall: `spawn ${req.executable}`,
    path: req.executable,
    spawnargs: [...req.args],
  });
}

interface Starting {
  req: SpawnRequest;
  resolve(p: HelperProcess): void;
  reject(e: unknown): void;
}

/** ForkServer owns one fork server process (fork-server.c or .pl) and the programs it started. */
export class ForkServer {
  readonly pid: number | undefined;
  readonly ready: Promise<void>;
  exited = false;
  private readonly child: ChildProcess;
  private readonly starting = new Map<number, Starting>();
  private readonly running = new Map<number, HelperProcess>();
  private nextId = 1;
  private pending: Buffer = Buffer.alloc(0);
  private isReady = false;

  constructor(
    /** kind is which fork server this is. */
    readonly kind: ForkServerKind,
  ) {
    const command = commandFor(kind);
    this.child = spawn(command[0]!, command.slice(1), {
      // No PERL5LIB or PERL5OPT of ours: the Perl one loads nothing but perl-base.
      env: { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin', LC_ALL: 'C' },
      stdio: ['pipe', 'pipe', 'inherit'],
      shell: false,
      windowsHide: true,
    });
    this.pid = this.child.pid;
    let readyTimer: NodeJS.Timeout | undefined;
    this.ready = new Promise<void>((resolve, reject) => {
      this.onReady = () => {
        clearTimeout(readyTimer);
        resolve();
      };
      this.onFailed = (e) => {
        clearTimeout(readyTimer);
        reject(e);
      };
      readyTimer = setTimeout(() => {
        this.onFailed(forkServerError(`fork server not ready within ${READY_TIMEOUT_MS} ms`));
        this.stop();
      }, READY_TIMEOUT_MS);
    });
    this.ready.catch(noop);
    this.child.on('error', (e) => {
      this.onFailed(forkServerError(`fork server: ${e.message}`, e));
      // No process (perl not found): there will be no 'exit'.
      if (this.child.pid === undefined) this.exited = true;
    });
    this.child.stdin?.on('error', noop);
    this.child.stdout?.on('data', (chunk: Buffer) => this.onData(chunk));
    this.child.once('exit', (code, signal) => this.onExit(code, signal));
  }

  private onReady: () => void = noop;
  private onFailed: (e: unknown) => void = noop;

  // A running or starting program keeps the event loop alive through the fork server's pipes;
  // between them the fork server must not.
  private updateRef(): void {
    const busy = !this.isReady || this.starting.size > 0 || this.running.size > 0;
    for (const h of [this.child, this.child.stdout, this.child.stdin]) {
      const r = h as { ref?: () => void; unref?: () => void } | null;
      if (busy) r?.ref?.();
      else r?.unref?.();
    }
  }

  /** stop ends the fork server: it SIGKILLs the groups of the programs still running. */
  stop(): void {
    this.child.stdin?.destroy();
    if (!this.exited) this.child.kill('SIGKILL');
  }

  // send writes one frame: TYPE(1) ID(u32 BE) LENGTH(u32 BE) PAYLOAD, in one write.
  private readonly send = (type: string, id: number, payload?: Buffer): void => {
    const stdin = this.child.stdin;
    if (stdin === null || stdin.destroyed) return;
    const head = Buffer.allocUnsafe(FRAME_HEAD);
    head[0] = type.charCodeAt(0);
    head.writeUInt32BE(id, 1);
    head.writeUInt32BE(payload?.length ?? 0, 5);
    if (payload === undefined || payload.length === 0) {
      stdin.write(head);
      return;
    }
    stdin.cork();
    stdin.write(head);
    stdin.write(payload);
    stdin.uncork();
  };

  /**
   * spawn starts one program. It resolves once the program runs (or could not be started: no
   * pid, an 'error' event like node's spawn error); it rejects when the fork server fails.
   */
  spawn(req: SpawnRequest): Promise<HelperProcess> {
    if (this.exited) return Promise.reject(forkServerError('the fork server has exited'));
    const env = Object.entries(req.env).map(([k, v]) => `${k}=${v}`);
    const fields = [req.stdin ? '1' : '0', req.cwd, req.executable];
    fields.push(String(req.args.length + 1), req.executable, ...req.args, ...env);
    if (fields.some((f) => f.includes('\0'))) {
      // node's spawn refuses these too (ERR_INVALID_ARG_VALUE): NUL ends a C string.
      return Promise.reject(new TypeError(`cgi: ${req.executable}: a NUL byte in argv or env`));
    }
    const id = this.nextId;
    this.nextId = id >= 0xffffffff ? 1 : id + 1;
    const payload = Buffer.from(fields.join('\0'), 'utf8');
    if (payload.length > MAX_FRAME) {
      // The fork server takes no bigger frame; execve(2) would refuse it anyway.
      return Promise.resolve(this.failedStart(id, constants.errno.E2BIG, req));
    }
    this.send('R', id, payload);
    return new Promise<HelperProcess>((resolve, reject) => {
      this.starting.set(id, { req, resolve, reject });
      this.updateRef();
    });
  }

  // failedStart is a program that could not be started (`errno`): no pid, and an 'error'
  // after the caller's synchronous set-up, as node emits a spawn error.
  private failedStart(id: number, errno: number, req: SpawnRequest): HelperProcess {
    const p = new HelperProcess(undefined, id, this.send, false);
    setImmediate(() => p.emit('error', spawnError(errno, req)));
    return p;
  }

  private onData(chunk: Buffer): void {
    let buf = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    while (buf.length >= FRAME_HEAD) {
      const length = buf.readUInt32BE(5);
      if (buf.length < FRAME_HEAD + length) break;
      const type = String.fromCharCode(buf[0]!);
      const id = buf.readUInt32BE(1);
      const payload = buf.subarray(FRAME_HEAD, FRAME_HEAD + length);
      buf = buf.subarray(FRAME_HEAD + length);
      this.onFrame(type, id, payload);
    }
    this.pending = buf;
  }

  private onFrame(type: string, id: number, payload: Buffer): void {
    if (type === 'R') {
      this.isReady = true;
      this.updateRef();
      this.onReady();
      return;
    }
    if (type === 'S' || type === 'F') {
      const s = this.starting.get(id);
      const n = Number(payload.toString('latin1'));
      if (s === undefined) {
        // Its request gave up meanwhile: nobody will read it.
        if (type === 'S') killGroup(n);
        return;
      }
      this.starting.delete(id);
      if (type === 'S') {
        const p = new HelperProcess(n, id, this.send, s.req.stdin);
        this.running.set(id, p);
        s.resolve(p);
      } else {
        s.resolve(this.failedStart(id, n, s.req));
      }
      this.updateRef();
      return;
    }
    const p = this.running.get(id);
    if (p === undefined) return;
    if (type === 'D') p.output(payload);
    else if (type === 'Z') p.endOutput();
    else if (type === 'O') p.stderr.push(payload);
    else if (type === 'C') p.endStderr();
    else if (type === 'W') p.written(Number(payload.toString('latin1')));
    else if (type === 'Q') p.inputFailed(Number(payload.toString('latin1')));
    else if (type === 'X') {
      const [code, sig] = payload.toString('latin1').split(' ').map(Number) as [number, number];
      const signal = sig > 0 ? ((nameOf(constants.signals, sig) ?? null) as NodeJS.Signals) : null;
      p.exited(sig > 0 ? null : code, signal);
    }
    if (p.done) {
      this.running.delete(id);
      this.updateRef();
    }
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null): void {
    this.exited = true;
    const how = signal !== null ? `killed by ${signal}` : `exit code ${code}`;
    const e = forkServerError(`the fork server (pid ${this.pid}) ended (${how})`);
    this.onFailed(e);
    if (!this.isReady) return;
    const lost = this.starting.size + this.running.size;
    if (lost > 0) log(`${e.message}; its ${lost} request(s) in flight fail`);
    for (const s of this.starting.values()) s.reject(e);
    this.starting.clear();
    // Their output and exit status are lost with it: end them, and say so (their responses
    // are cut).
    for (const p of this.running.values()) {
      if (p.pid !== undefined) killGroup(p.pid);
      p.endOutput(e);
      p.endStderr();
      p.exited(null, 'SIGKILL');
    }
    this.running.clear();
  }
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message.replace(/^cgi: /, '') : String(e);
}

// killGroup SIGKILLs a program's group; a pid that cannot lead one (a bad frame) is ignored.
function killGroup(pgid: number): void {
  if (Number.isInteger(pgid) && pgid > 1) new ProcessGroup(pgid).signal('SIGKILL');
}

let current: ForkServer | undefined;
let starting: Promise<ForkServer> | undefined;
let gaveUp = false;
let cFailed = false;
let hasBinary: boolean | undefined;

/**
 * compiledForkServer tells whether programs would be started by the C fork server: it was
 * built (dist/src/cgi/fork-server, next to this module) and CGI_BRIDGE_FORK_SERVER does not
 * say `perl`, and it did not fail to start in this process before.
 */
export function compiledForkServer(): boolean {
  hasBinary ??= existsSync(BINARY);
  return hasBinary && !cFailed && forkServerKind() !== 'perl';
}

// commandFor is the argv of a fork server of `kind`.
function commandFor(kind: ForkServerKind): string[] {
  return kind === 'c' ? [BINARY] : [process.env.CGI_BRIDGE_PERL || 'perl', SCRIPT];
}

async function startServer(kind: ForkServerKind): Promise<ForkServer> {
  const server = new ForkServer(kind);
  try {
    await server.ready;
  } catch (e) {
    server.stop();
    throw e;
  }
  current = server;
  return server;
}

// startOne starts the C fork server when it was built (falling back to the Perl one when it
// cannot start, unless CGI_BRIDGE_FORK_SERVER says c), else the Perl one.
async function startOne(): Promise<ForkServer> {
  if (compiledForkServer()) {
    try {
      return await startServer('c');
    } catch (e) {
      if (forkServerKind() === 'c') throw e;
      cFailed = true;
      log(`cgi: the C fork server could not start (${messageOf(e)}); the Perl one is used`);
    }
  } else if (forkServerKind() === 'c') {
    throw forkServerError(`CGI_BRIDGE_FORK_SERVER is c, but ${BINARY} was not built`);
  }
  return startServer('perl');
}

/**
 * forkServer returns this process's fork server, started on first use and again after it died
 * (requests that come while one starts wait for that one): the C one when it was built (one
 * that cannot start is logged once, and the Perl one is used from then on), else the Perl one.
 * `helper`: one that cannot start is an error (`CGI_ERR_FORK_SERVER`). `auto`: undefined, and
 * from then on for this process (programs are then started directly), after one log line;
 * undefined at once on Windows. `CGI_BRIDGE_PERL` names the perl to run (default: `perl` on PATH).
 */
export async function forkServer(mode: 'auto' | 'helper'): Promise<ForkServer | undefined> {
  if (mode === 'auto' && (gaveUp || process.platform === 'win32')) return undefined;
  if (current !== undefined && !current.exited) return current;
  try {
    starting ??= startOne().finally(() => (starting = undefined));
    return await starting;
  } catch (e) {
    if (mode === 'helper')
      throw forkServerError(`the fork server could not start: ${messageOf(e)}`, e);
    if (!gaveUp) {
      gaveUp = true;
      log(
        `cgi: the fork server could not start (${messageOf(e)}); CGI programs are started directly`,
      );
    }
    return undefined;
  }
}

/** currentForkServer is the running fork server, if any (for tests and benchmarks). */
export function currentForkServer(): ForkServer | undefined {
  return current?.exited === false ? current : undefined;
}
