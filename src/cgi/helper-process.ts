// A program started by the fork server, seen from Node: its stdio are streams over the frames of
// the fork server's one channel (see fork-server.pl), not file descriptors of this process.
import { EventEmitter } from 'node:events';
import { constants } from 'node:os';
import { Readable, Writable } from 'node:stream';

/** ProgramProcess is the part of a ChildProcess a CgiProgram uses; the fork server's fit it too. */
export interface ProgramProcess {
  readonly pid?: number;
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  readonly exitCode: number | null;
  readonly signalCode: NodeJS.Signals | null;
  once(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
}

/** FrameSink sends one frame to the fork server. */
export type FrameSink = (type: string, id: number, payload?: Buffer) => void;

/**
 * STDIN_WINDOW is how many bytes of a request body may be on their way to a program before the
 * fork server says they were written (its 'W' frames): the stdin stream's backpressure.
 */
export const STDIN_WINDOW = 256 * 1024;

/** FRAME_DATA is the most stdin bytes one 'I' frame carries. */
const FRAME_DATA = 64 * 1024;

const noop = (): void => undefined;

/** nameOf finds the name of `n` in an os.constants table. */
export function nameOf(table: Record<string, number>, n: number): string | undefined {
  for (const [name, value] of Object.entries(table)) if (value === n) return name;
  return undefined;
}

function pipeError(errno: number): NodeJS.ErrnoException {
  const code = nameOf(constants.errno as Record<string, number>, errno) ?? `E${errno}`;
  return Object.assign(new Error(`write ${code}`), { errno: -errno, code, syscall: 'write' });
}

/**
 * HelperProcess is a program the fork server started: `stdout` is fed by its 'D' and 'Z'
 * frames (a full stream sends 'P', reading on 'U'; destroying it 'K', which closes the pipe);
 * `stdin` (null: /dev/null) sends 'I' frames, at most {@link STDIN_WINDOW} bytes ahead of the
 * 'W' acknowledgements, and 'E' at its end; `stderr` is fed by 'O' and 'C'. 'exit' and 'error'
 * come as from a ChildProcess; a failed start has no pid and emits 'error'.
 */
export class HelperProcess extends EventEmitter implements ProgramProcess {
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  readonly stderr = new Readable({ read: noop });
  readonly stdout: Readable | null = null;
  readonly stdin: Writable | null = null;
  stderrEnded = false;
  stdoutEnded = false;
  private paused = false;
  private unacked = 0;
  private waiting: ((e?: Error | null) => void) | null = null;
  private inputEnded = false;

  constructor(
    readonly pid: number | undefined,
    private readonly id: number,
    private readonly send: FrameSink,
    withStdin: boolean,
  ) {
    super();
    if (pid === undefined) {
      this.stdoutEnded = true;
      this.endStderr();
      return;
    }
    this.stdout = new Readable({
      read: () => {
        if (!this.paused) return;
        this.paused = false;
        send('U', id);
      },
      destroy: (err, cb) => {
        if (!this.stdoutEnded) {
          this.stdoutEnded = true;
          send('K', id);
        }
        cb(err);
      },
    });
    if (!withStdin) return;
    this.stdin = new Writable({
      write: (chunk: Buffer, _encoding, cb) => {
        this.unacked += chunk.length;
        // In frames the fork server takes whole (it refuses one of more than 4 MiB).
        for (let at = 0; at < chunk.length; at += FRAME_DATA) {
          send('I', id, chunk.subarray(at, at + FRAME_DATA));
        }
        if (this.unacked <= STDIN_WINDOW) cb();
        else this.waiting = cb;
      },
      final: (cb) => {
        this.endInput();
        cb();
      },
      destroy: (err, cb) => {
        this.waiting = null;
        this.endInput();
        cb(err);
      },
    });
  }

  private endInput(): void {
    if (this.inputEnded) return;
    this.inputEnded = true;
    this.send('E', this.id);
  }

  /**
   * done tells whether nothing more will come or go for this program: its output ended, it
   * exited, and its stdin was ended here or reported gone (a 'Q' may follow its 'X').
   */
  get done(): boolean {
    return (
      this.stdoutEnded &&
      this.stderrEnded &&
      (this.exitCode !== null || this.signalCode !== null) &&
      (this.stdin === null || this.inputEnded)
    );
  }

  /** output is a 'D' frame: bytes of its stdout. */
  output(data: Buffer): void {
    const out = this.stdout;
    if (out === null || this.stdoutEnded || out.destroyed) return;
    if (!out.push(data) && !this.paused) {
      this.paused = true;
      this.send('P', this.id);
    }
  }

  /** endOutput is a 'Z' frame (its stdout ended), or `err` when the fork server is gone. */
  endOutput(err?: Error): void {
    if (this.stdoutEnded) return;
    this.stdoutEnded = true;
    if (!err) this.stdout?.push(null);
    // Frames of a whole run can come in one read, before the caller of spawn() (resumed by a
    // promise, after this tick's nextTick callbacks) listens for 'error': like node, later.
    else setImmediate(() => this.stdout?.destroy(err));
  }

  /** written is a 'W' frame: `n` bytes of its stdin were written to its pipe. */
  written(n: number): void {
    this.unacked -= n;
    if (this.waiting === null || this.unacked > STDIN_WINDOW) return;
    const cb = this.waiting;
    this.waiting = null;
    cb();
  }

  /** inputFailed is a 'Q' frame: its stdin is gone (`errno`: EPIPE, as a pipe's write gives). */
  inputFailed(errno: number): void {
    this.inputEnded = true;
    const e = pipeError(errno);
    const cb = this.waiting;
    this.waiting = null;
    // After the caller's set-up, as in endOutput.
    setImmediate(() => (cb ? cb(e) : this.stdin?.destroy(e)));
  }

  /** endStderr is a 'C' frame: its stderr ended. */
  endStderr(): void {
    if (this.stderrEnded) return;
    this.stderrEnded = true;
    this.stderr.push(null);
  }

  /** exited is an 'X' frame. */
  exited(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.exitCode !== null || this.signalCode !== null) return;
    this.exitCode = code;
    this.signalCode = signal;
    // Its 'S' and 'X' frames may come in one read, before the caller of spawn() (resumed by a
    // promise) listens: like node, emit after the current tick's promise jobs.
    setImmediate(() => this.emit('exit', code, signal));
  }
}
