// The host side's running CGI program: one child process per request, started by the fork
// server (fork-server.ts) or with cross-spawn, never through a shell, as the leader of its own
// process group; the request body pumped to its stdin, its stdout read on demand
// (backpressure), its stderr forwarded line by line.
import type { Readable, Writable } from 'node:stream';
import spawn from 'cross-spawn';
import type { ErrorStream, InputStream } from '../gateway/types.js';
import { compiledForkServer, forkServer } from './fork-server.js';
import type { ProgramProcess } from './helper-process.js';
import type { CgiSpawn } from './spawn-options.js';
import { ProcessGroup } from './process-group.js';

/** ProgramSpec says what to run and how. */
export interface ProgramSpec {
  /** executable is the file to execute (argv[0] is the same path). */
  executable: string;
  /** args are the command-line arguments (RFC 3875 §4.4). */
  args: readonly string[];
  cwd: string;
  env: Record<string, string>;
  /** stdin is true when a request body will be pumped; otherwise stdin is /dev/null. */
  stdin: boolean;
  /** label names the program in log lines (its SCRIPT_FILENAME). */
  label: string;
  errors: ErrorStream;
  /** signal is gateway.signal: when it fires, the program's group is terminated. */
  signal: AbortSignal;
  /** timeoutMs bounds the program's wall time; 0 means no bound. */
  timeoutMs: number;
  /** killGraceMs is the time between SIGTERM and SIGKILL. */
  killGraceMs: number;
  /** spawn says who starts the program (see {@link CgiProgram.start}); default `direct`. */
  spawn?: CgiSpawn;
}

/**
 * StopReason says why the host ended a program: `timeout` (timeoutMs), `aborted`
 * (gateway.signal), `input` (the request body failed), `closed` (the response was given up),
 * `lingered` (it closed its output but did not exit).
 */
export type StopReason = 'timeout' | 'aborted' | 'input' | 'closed' | 'lingered';

/** ProgramOutcome is how a program ended, as far as the host knows. */
export interface ProgramOutcome {
  /** code is the exit code, null when it was killed by a signal or has not exited. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** exited is false when the program still ran after its output ended (see `lingered`). */
  exited: boolean;
  spawnError?: NodeJS.ErrnoException;
  stopReason?: StopReason;
  /** inputError is the request body's failure, when stopReason is `input`. */
  inputError?: unknown;
}

// After stdout ends, how long the host waits for the exit status before it gives up on it and
// terminates the program (Apache terminates a still-running CGI child at once).
const EXIT_AFTER_EOF_MS = 1000;
// A stderr line longer than this is logged in pieces, so a program cannot fill memory with it.
const MAX_STDERR_LINE = 8192;

/**
 * AUTO_HELPER_RSS is the resident size from which `auto` starts programs through the Perl fork
 * server (the C one, when built, is used at any size): 512 MiB. Measured on a 2-vCPU VM
 * (bench/results/legacy.md), one `hello.sh` costs about the same CPU either way for a worker
 * of 400 MiB (7 ms); below that a direct spawn is as cheap and starts the program sooner, above
 * it forking the worker costs more and more (10 ms at 850 MiB and 1.7 GiB, against 7-8 ms
 * through the Perl fork server).
 */
export const AUTO_HELPER_RSS = 512 * 1024 * 1024;

const noop = (): void => undefined;

/**
 * raceTimeout resolves with what `p` resolves with, or with 'timeout' after `ms`. The timer is
 * cleared once `p` settles: a pending timer would keep the whole request reachable (through
 * the race's continuation) until it fired, and so out of the young generation.
 */
async function raceTimeout<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(resolve, ms, 'timeout');
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * CgiProgram runs one CGI program for one request. The host reads its output with `read()`,
 * ends it with `close()` (or lets it finish), and asks `outcome()` how it ended. Whatever
 * happens, the program's whole process group is terminated (SIGTERM, SIGKILL after the grace
 * period) when the request times out, when gateway.signal fires, when the response is given
 * up before the output ended, and when the program exits leaving background processes in its
 * group — no process outlives its request (one that called setsid(2) is out of reach).
 */
export class CgiProgram {
  readonly child: ProgramProcess;
  readonly group: ProcessGroup | undefined;
  stopReason: StopReason | undefined;
  inputError: unknown;
  spawnError: NodeJS.ErrnoException | undefined;
  private exitCode: number | null = null;
  private exitSignal: NodeJS.Signals | null = null;
  private hasExited = false;
  private stdoutEnded = false;
  private stdinDone = false;
  private closed = false;
  private readonly exited: Promise<void>;
  private readonly stderrDone: Promise<void>;
  private readonly stdoutIt: AsyncIterator<Buffer> | undefined;
  private prefetched: Promise<IteratorResult<Buffer>> | undefined;
  private readonly timer: NodeJS.Timeout | undefined;
  private readonly onAbort = (): void => this.stop('aborted');

  /**
   * start runs the program the way `spec.spawn` says: `helper` and `auto` (see CgiSpawn) through
   * this process's fork server (which does what cross-spawn does below, without forking this
   * process), `direct`, or `auto` where the fork server cannot start, with cross-spawn. It
   * rejects only when the fork server fails (`CGI_ERR_FORK_SERVER`) or the request cannot be
   * passed to a program (a NUL byte); a program that cannot be started is `spawnError`, as with
   * cross-spawn.
   */
  static async start(spec: ProgramSpec): Promise<CgiProgram> {
    const mode = spec.spawn ?? 'direct';
    const helper =
      mode === 'helper' ||
      (mode === 'auto' && (compiledForkServer() || process.memoryUsage.rss() >= AUTO_HELPER_RSS));
    const server = helper ? await forkServer(mode === 'auto' ? 'auto' : 'helper') : undefined;
    if (server === undefined) return new CgiProgram(spec);
    const child = await server.spawn({
      executable: spec.executable,
      args: spec.args,
      cwd: spec.cwd,
      env: spec.env,
      stdin: spec.stdin,
    });
    return new CgiProgram(spec, child);
  }

  /** The constructor starts the program with cross-spawn, unless `child` was started already. */
  constructor(
    private readonly spec: ProgramSpec,
    started?: ProgramProcess,
  ) {
    this.child =
      started ??
      spawn(spec.executable, spec.args, {
        cwd: spec.cwd,
        env: spec.env,
        // setsid(2): the program leads a new process group, which one kill(-pgid) ends entirely.
        detached: true,
        shell: false,
        stdio: [spec.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
        windowsHide: true,
      });
    const child = this.child;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.hasExited = true;
        this.exitCode = code;
        this.exitSignal = signal;
        // Background processes it left in its group would hold stdout open (the response would
        // never end) and outlive the request: end them now.
        if (this.group?.alive) void this.group.terminate();
        else this.group?.release();
        resolve();
      });
      child.on('error', (e: NodeJS.ErrnoException) => {
        // 'error' also reports a failed kill(); only a failed spawn (no pid) ends the program.
        if (child.pid !== undefined) return;
        this.spawnError = e;
        this.hasExited = true;
        resolve();
      });
    });
    if (child.pid === undefined) {
      this.stdoutEnded = true;
      this.stdinDone = true;
      this.stderrDone = Promise.resolve();
      child.stdout?.destroy();
      child.stderr?.destroy();
      child.stdin?.destroy();
      return;
    }
    this.group = new ProcessGroup(child.pid, spec.killGraceMs);
    this.group.track();
    const stdout = child.stdout as Readable;
    this.stdoutIt = stdout[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    // Start reading now: when a child exits, node resume()s any stdio stream nobody listens to
    // yet (child_process flushStdio), and the output still in the pipe would be dropped.
    this.prefetched = this.stdoutIt.next();
    this.prefetched.catch(noop);
    this.stderrDone = this.forwardStderr(child.stderr as Readable);
    if (spec.stdin) {
      const stdin = child.stdin as Writable;
      // EPIPE: the program exited or closed stdin without reading the whole body. That is its
      // right (RFC 3875 §4.2 lets it read less), not an error of the request.
      stdin.on('error', () => (this.stdinDone = true));
      stdin.once('close', () => (this.stdinDone = true));
    }
    if (spec.timeoutMs > 0) {
      this.timer = setTimeout(() => {
        this.log(
          `cgi: ${spec.label}: no complete response within ${spec.timeoutMs} ms; terminating its process group`,
        );
        this.stop('timeout');
      }, spec.timeoutMs);
    }
    if (spec.signal.aborted) this.stop('aborted');
    else spec.signal.addEventListener('abort', this.onAbort, { once: true });
  }

  private log(line: string): void {
    try {
      this.spec.errors.write(`${line}\n`);
    } catch {
      // a broken log never breaks the request
    }
  }

  private forwardStderr(stderr: Readable): Promise<void> {
    const prefix = `${this.spec.label}: `;
    let partial = '';
    const emit = (line: string): void => this.log(prefix + line.replace(/\r$/, ''));
    stderr.setEncoding('utf8');
    stderr.on('data', (text: string) => {
      const lines = (partial + text).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) emit(line);
      while (partial.length > MAX_STDERR_LINE) {
        emit(partial.slice(0, MAX_STDERR_LINE));
        partial = partial.slice(MAX_STDERR_LINE);
      }
    });
    stderr.on('error', noop);
    return new Promise((resolve) => {
      stderr.once('close', () => {
        if (partial !== '') emit(partial);
        partial = '';
        resolve();
      });
    });
  }

  /** read returns the next chunk of the program's stdout, or null at its end. */
  async read(): Promise<Buffer | null> {
    if (this.stdoutEnded || this.stdoutIt === undefined) return null;
    const next = this.prefetched ?? this.stdoutIt.next();
    this.prefetched = undefined;
    try {
      const r = await next;
      if (!r.done) return r.value;
    } catch (e) {
      // A stream we destroyed ourselves (close()) ends the output; any other failure is real.
      if (!this.closed) throw e;
    }
    this.stdoutEnded = true;
    return null;
  }

  /**
   * pumpStdin copies the request body to the program's stdin with backpressure, then closes
   * stdin (a body of unknown length is copied to its end). It runs next to the reading of
   * stdout, so a program that writes before it reads cannot deadlock. When the body fails
   * (client gone, limit), the program is stopped with `input`.
   */
  async pumpStdin(input: InputStream): Promise<void> {
    const stdin = this.child.stdin;
    if (!stdin || this.stdinDone) return;
    try {
      for await (const chunk of input) {
        if (this.stdinDone) return;
        if (!stdin.write(chunk)) await this.drained(stdin);
        if (this.stdinDone) return;
      }
    } catch (e) {
      if (this.stopReason === undefined) {
        this.inputError = e;
        this.stop('input');
      }
      return;
    }
    if (!this.stdinDone) stdin.end();
  }

  private drained(stdin: Writable): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        stdin.off('drain', done);
        stdin.off('close', done);
        resolve();
      };
      stdin.on('drain', done);
      stdin.on('close', done);
    });
  }

  /**
   * stop ends the program for `reason` (the first reason is kept): stdin is closed and the
   * process group terminated. Its output then ends, which is what a pending `read()` sees.
   */
  stop(reason: StopReason): void {
    this.stopReason ??= reason;
    // The signal first (terminate() sends SIGTERM at once), then the end of stdin: a program
    // reading its body would otherwise wake up at the EOF and could answer before the signal
    // came. A signal already pending when it wakes ends it before it runs again.
    if (this.group && (!this.hasExited || this.group.alive)) void this.group.terminate();
    this.child.stdin?.destroy();
  }

  /**
   * outcome waits (up to a second) for the program to exit after its output ended and tells how
   * it ended. A program that is still running then is stopped as `lingered`.
   */
  async outcome(): Promise<ProgramOutcome> {
    const r = await raceTimeout(Promise.all([this.exited, this.stderrDone]), EXIT_AFTER_EOF_MS);
    if (r === 'timeout' && !this.hasExited) this.stop('lingered');
    return {
      code: this.exitCode,
      signal: this.exitSignal,
      exited: this.hasExited,
      spawnError: this.spawnError,
      stopReason: this.stopReason,
      inputError: this.inputError,
    };
  }

  /**
   * close ends the host's part: no more timeout or abort handling, and a program whose output
   * did not end is stopped (`closed`). It is called exactly once per request, on every path.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.spec.signal.removeEventListener('abort', this.onAbort);
    if (!this.stdoutEnded || !this.hasExited) {
      this.stop('closed');
      // Release the pipe even if an escaped process still holds its other end.
      this.child.stdout?.destroy();
    }
  }

  /**
   * discard reads and drops the rest of the output (a HEAD request's body, a local redirect's),
   * so the program finishes undisturbed; past `maxBytes` it is stopped instead. The timeout
   * and gateway.signal still apply until then. It never throws.
   */
  async discard(maxBytes: number): Promise<void> {
    let seen = 0;
    try {
      for (let c = await this.read(); c !== null; c = await this.read()) {
        seen += c.length;
        if (seen > maxBytes) break;
      }
    } catch {
      // a failed pipe ends the output all the same
    }
    if (this.stdoutEnded) await this.outcome();
    this.close();
  }
}
