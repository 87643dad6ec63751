// The pre-fork master (after gunicorn's arbiter, gunicorn/arbiter.py): holds the listening
// sockets, forks `processes` workers that all accept on them, replaces dead workers with
// backoff, stops on a worker that cannot boot, reloads on SIGHUP, stops gracefully on
// SIGTERM/SIGINT and kills workers whose event loop is stuck. Signal handlers only queue the
// signal; one loop does the work.
import { fork, type ChildProcess } from 'node:child_process';
import { BridgeError } from '../errors.js';
import type { ListenAddress } from './address.js';
import type { ClientFilter } from './allowed-clients.js';
import { holdSocket, type HeldSocket } from './master-sockets.js';
import { DEFAULT_GRACEFUL_TIMEOUT_MS, processLog } from './worker.js';
import {
  HEARTBEAT_GRACE_MS,
  WORKER_EXIT,
  isWorkerMessage,
  type MasterMessage,
  type TargetFactory,
  type WorkerConfig,
  type WorkerMessage,
  type WorkerResponderOptions,
} from './worker-protocol.js';

/** DEFAULT_BOOT_TIMEOUT_MS is how long a worker may take to load the app and run its startup hook. */
export const DEFAULT_BOOT_TIMEOUT_MS = 60_000;
/** BACKOFF_INITIAL_MS is the delay before replacing a worker that died young; it doubles per death. */
export const BACKOFF_INITIAL_MS = 100;
/** BACKOFF_MAX_MS caps the replacement delay. */
export const BACKOFF_MAX_MS = 10_000;
/** BACKOFF_RESET_MS: a worker that lived this long died of something new; it is replaced at once. */
export const BACKOFF_RESET_MS = 10_000;
/**
 * KILL_MARGIN_MS is how long after `--graceful-timeout` the master SIGKILLs a worker: the
 * worker cuts its own connections at the graceful timeout and runs its shutdown hook; only a
 * worker that cannot (its event loop is blocked) is killed.
 */
export const KILL_MARGIN_MS = 1000;

/**
 * MAX_EARLY_DEATHS is how many workers in a row may die before they are ready (a module that
 * calls process.exit() while it loads, a crash in native code) before the master stops, when
 * no worker serves: backoff alone would retry such a failure forever.
 */
export const MAX_EARLY_DEATHS = 5;

const TICK_MS = 500;
const CLOSE_AFTER_EXIT_MS = 1000;

/** MasterOptions configure {@link startMaster}; times are in milliseconds. */
export interface MasterOptions {
  /** target is the app TARGET every worker imports. */
  target: string;
  /** factory builds the workers' app instead of importing `target` (see TargetFactory). */
  factory?: TargetFactory;
  /** listen are the addresses to serve (`fd:N` for an inherited socket). */
  listen: ListenAddress[];
  /** socketMode is the mode of a unix socket the master binds. */
  socketMode?: number;
  /** processes is the number of workers (at least 1). */
  processes: number;
  /** maxRequests recycles a worker after this many requests; 0 never. */
  maxRequests?: number;
  /** timeoutMs bounds a request; a worker silent for timeoutMs + HEARTBEAT_GRACE_MS is killed. 0: neither. */
  timeoutMs?: number;
  /** gracefulTimeoutMs bounds a graceful stop (SIGTERM, SIGINT, reload, recycling). */
  gracefulTimeoutMs?: number;
  /** bootTimeoutMs bounds a worker's boot; default {@link DEFAULT_BOOT_TIMEOUT_MS}. */
  bootTimeoutMs?: number;
  /** allowedClients filters TCP peers in every worker. */
  allowedClients?: ClientFilter;
  /** responder are the FastCGI responder's limits. */
  responder?: WorkerResponderOptions;
  /** log receives whole lines; default {@link processLog}. */
  log?: (line: string) => void;
  /** signals installs the SIGTERM/SIGINT/SIGHUP/SIGTTIN/SIGTTOU handlers; default true. */
  signals?: boolean;
}

/** WorkerState is where a worker is in its life, as the master sees it. */
export type WorkerState = 'booting' | 'ready' | 'retiring' | 'stopping';

/** WorkerInfo describes one live worker. */
export interface WorkerInfo {
  pid: number;
  /** generation counts reloads: workers of an older generation are being replaced. */
  generation: number;
  state: WorkerState;
}

/** MasterHandle is a running master from {@link startMaster}. */
export interface MasterHandle {
  /** addresses are where the workers accept, in ADDR notation. */
  readonly addresses: readonly string[];
  /** workers lists the live workers. */
  workers(): WorkerInfo[];
  /** spawned is the number of workers forked so far. */
  readonly spawned: number;
  /** reload queues a graceful reload, as SIGHUP does. */
  reload(): void;
  /** stop queues a graceful stop, as SIGTERM does (a second call stops at once). */
  stop(): void;
  /** ready resolves once the first generation of workers accepts; rejects if the master halts first. */
  readonly ready: Promise<void>;
  /**
   * closed resolves after the last worker exited and the sockets were released; it rejects
   * with the worker's boot error (code and message) when the master halted because a worker
   * could not boot.
   */
  readonly closed: Promise<void>;
}

interface WorkerRecord {
  child: ChildProcess;
  pid: number;
  generation: number;
  state: WorkerState;
  startedAt: number;
  lastSeen: number;
  bootError?: { code: string; message: string };
  /** why the master killed it, for the exit's log line */
  killedFor?: string;
}

type QueuedSignal = 'SIGTERM' | 'SIGINT' | 'SIGHUP' | 'SIGTTIN' | 'SIGTTOU';
const SIGNALS: readonly QueuedSignal[] = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGTTIN', 'SIGTTOU'];

// The worker program: worker-entry.js next to this module (worker-entry.ts under tsx).
function workerEntry(): string {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  return new URL(`./worker-entry${ext}`, import.meta.url).pathname;
}

// A worker inherits the master's node flags (--import tsx, --max-old-space-size …) but not an
// inspector port, which the master already holds.
function workerExecArgv(): string[] {
  return process.execArgv.filter((a) => !/^--inspect(-brk|-port|-wait)?(=|$)/.test(a));
}

function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  return signal !== null ? `was killed by ${signal}` : `exited with code ${code}`;
}

class Arbiter {
  readonly #options: Required<
    Pick<MasterOptions, 'maxRequests' | 'timeoutMs' | 'gracefulTimeoutMs' | 'bootTimeoutMs'>
  > &
    MasterOptions;
  readonly #sockets: HeldSocket[];
  readonly #log: (line: string) => void;
  readonly #workers = new Map<number, WorkerRecord>();
  readonly #signalQueue: QueuedSignal[] = [];
  readonly #exits: { record: WorkerRecord; code: number | null; signal: NodeJS.Signals | null }[] =
    [];
  #processes: number;
  #generation = 1;
  #reloadFrom: number | undefined; // the generation a reload replaces
  #spawned = 0;
  #backoffMs = 0;
  #nextSpawnAt = 0;
  #stopping = false;
  #stopDeadline = 0;
  #killedAtDeadline = false;
  #haltError: BridgeError | undefined;
  #everReady = false;
  #earlyDeaths = 0;
  #done = false;
  #wakeup: (() => void) | undefined;
  #removeHandlers: () => void = () => undefined;
  readonly #settleReady: { resolve: () => void; reject: (e: unknown) => void };
  readonly #settleClosed: { resolve: () => void; reject: (e: unknown) => void };
  readonly ready: Promise<void>;
  readonly closed: Promise<void>;

  constructor(options: MasterOptions, sockets: HeldSocket[]) {
    this.#options = {
      ...options,
      maxRequests: options.maxRequests ?? 0,
      timeoutMs: options.timeoutMs ?? 0,
      gracefulTimeoutMs: options.gracefulTimeoutMs ?? DEFAULT_GRACEFUL_TIMEOUT_MS,
      bootTimeoutMs: options.bootTimeoutMs ?? DEFAULT_BOOT_TIMEOUT_MS,
    };
    this.#sockets = sockets;
    this.#processes = options.processes;
    this.#log = options.log ?? processLog;
    let r: { resolve: () => void; reject: (e: unknown) => void } | undefined;
    this.ready = new Promise<void>((resolve, reject) => (r = { resolve, reject }));
    this.#settleReady = r!;
    this.closed = new Promise<void>((resolve, reject) => (r = { resolve, reject }));
    this.#settleClosed = r!;
    this.ready.catch(() => undefined);
    this.closed.catch(() => undefined);
  }

  get spawned(): number {
    return this.#spawned;
  }

  workers(): WorkerInfo[] {
    return [...this.#workers.values()].map((w) => ({
      pid: w.pid,
      generation: w.generation,
      state: w.state,
    }));
  }

  start(installSignals: boolean): void {
    // Signal handlers only queue (gunicorn's arbiter): the loop acts on them between steps.
    const onSignal = (signal: QueuedSignal): void => this.queue(signal);
    // If the master dies anyway (an uncaught error), no worker may outlive it.
    const onExit = (): void => {
      for (const w of this.#workers.values()) w.child.kill('SIGKILL');
    };
    if (installSignals) for (const s of SIGNALS) process.on(s, onSignal);
    process.on('exit', onExit);
    this.#removeHandlers = () => {
      if (installSignals) for (const s of SIGNALS) process.removeListener(s, onSignal);
      process.removeListener('exit', onExit);
    };
    void this.#loop();
  }

  queue(signal: QueuedSignal): void {
    if (this.#signalQueue.length < 5) this.#signalQueue.push(signal);
    this.#wake();
  }

  #wake(): void {
    const wake = this.#wakeup;
    this.#wakeup = undefined;
    wake?.();
  }

  async #loop(): Promise<void> {
    while (!this.#done) {
      try {
        this.#step(Date.now());
      } catch (e) {
        // A bug in the loop must not leave workers without a master that manages them.
        this.#log(`master: unexpected error: ${e instanceof Error ? e.stack : String(e)}`);
        this.#beginStop(
          new BridgeError('SERVER_ERR_MASTER', `cgi-bridge: master failed: ${String(e)}`),
        );
      }
      if (this.#done) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, this.#sleepMs(Date.now()));
        function done(): void {
          clearTimeout(timer);
          resolve();
        }
        this.#wakeup = done;
      });
    }
  }

  #sleepMs(now: number): number {
    let ms = TICK_MS;
    if (this.#stopping) ms = Math.min(ms, this.#stopDeadline - now);
    if (this.#nextSpawnAt > now) ms = Math.min(ms, this.#nextSpawnAt - now);
    return Math.max(10, ms);
  }

  #step(now: number): void {
    while (this.#signalQueue.length > 0) this.#handleSignal(this.#signalQueue.shift()!, now);
    while (this.#exits.length > 0) this.#reap(this.#exits.shift()!, now);
    this.#murder(now);
    if (this.#stopping) {
      this.#progressStop(now);
      return;
    }
    this.#progressReload();
    this.#manageWorkers(now);
  }

  #handleSignal(signal: QueuedSignal, now: number): void {
    switch (signal) {
      case 'SIGHUP':
        if (!this.#stopping) this.#startReload();
        return;
      case 'SIGTERM':
      case 'SIGINT':
        if (!this.#stopping) {
          this.#log(
            `${signal}: stopping ${this.#workers.size} worker(s) (graceful timeout ${this.#options.gracefulTimeoutMs / 1000} s)`,
          );
          this.#beginStop(undefined);
        } else {
          // A second one (an impatient Ctrl-C twice): no more waiting.
          this.#stopDeadline = now;
        }
        return;
      case 'SIGTTIN':
        this.#processes++;
        this.#log(`SIGTTIN: ${this.#processes} worker(s)`);
        return;
      case 'SIGTTOU':
        if (this.#processes > 1) this.#processes--;
        this.#log(`SIGTTOU: ${this.#processes} worker(s)`);
        return;
    }
  }

  // --- spawning -------------------------------------------------------------------------

  #config(): WorkerConfig {
    const o = this.#options;
    return {
      target: o.target,
      factory: o.factory,
      fds: this.#sockets.map((_, i) => 3 + i),
      maxRequests: o.maxRequests,
      timeoutMs: o.timeoutMs,
      gracefulTimeoutMs: o.gracefulTimeoutMs,
      allowedClients: o.allowedClients
        ? { rules: [...o.allowedClients.rules], source: o.allowedClients.source }
        : null,
      // Other workers serve the same app; so may other processes on an inherited socket.
      multiprocess: this.#processes > 1 || o.listen.some((a) => a.kind === 'fd'),
      responder: o.responder ?? {},
    };
  }

  #spawn(now: number): void {
    // The sockets become fds 3, 4 … of the worker (systemd's numbering); stdin is /dev/null.
    const child = fork(workerEntry(), [], {
      stdio: ['ignore', 'inherit', 'inherit', ...this.#sockets.map((s) => s.fd), 'ipc'],
      execArgv: workerExecArgv(),
      serialization: 'json',
    });
    this.#spawned++;
    const pid = child.pid;
    if (pid === undefined) {
      // fork failed (EAGAIN, ENOMEM): 'error' follows; treat it as a death, with backoff.
      child.once('error', (e) => this.#log(`cannot start a worker: ${e.message}`));
      this.#backOff(now);
      return;
    }
    const record: WorkerRecord = {
      child,
      pid,
      generation: this.#generation,
      state: 'booting',
      startedAt: now,
      lastSeen: now,
    };
    this.#workers.set(pid, record);
    child.on('message', (m: unknown) => this.#onMessage(record, m));
    child.on('error', () => undefined); // a failed send; the exit tells the rest
    // 'close' comes after the IPC channel closed, so a boot-error message the worker sent just
    // before exiting has been delivered. A grandchild the app started may hold the channel
    // open, though, so 'exit' plus a moment is enough too.
    let reaped = false;
    const reap = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (reaped) return;
      reaped = true;
      this.#exits.push({ record, code, signal });
      this.#wake();
    };
    child.once('close', reap);
    child.once('exit', (code: number | null, signal: NodeJS.Signals | null) => {
      setTimeout(() => reap(code, signal), CLOSE_AFTER_EXIT_MS).unref();
    });
    this.#send(record, { type: 'cgi-bridge:start', config: this.#config() });
  }

  #send(record: WorkerRecord, message: MasterMessage): void {
    if (!record.child.connected) return;
    try {
      record.child.send(message);
    } catch {
      // the channel closed meanwhile: the exit event follows
    }
  }

  #onMessage(record: WorkerRecord, message: unknown): void {
    if (!isWorkerMessage(message)) return;
    const m: WorkerMessage = message;
    record.lastSeen = Date.now();
    switch (m.type) {
      case 'cgi-bridge:heartbeat':
        return;
      case 'cgi-bridge:ready':
        if (record.state === 'booting') record.state = 'ready';
        this.#earlyDeaths = 0;
        break;
      case 'cgi-bridge:boot-error':
        record.bootError = { code: m.code, message: m.message };
        break;
      case 'cgi-bridge:retiring':
        // It drains and exits; its replacement starts now, so capacity stays.
        // (A worker accepts just before it reports ready: a tiny --max-requests can come first.)
        if (record.state === 'ready' || record.state === 'booting') {
          record.state = 'retiring';
          this.#earlyDeaths = 0;
        }
        break;
    }
    this.#wake();
  }

  #manageWorkers(now: number): void {
    const current = [...this.#workers.values()].filter(
      (w) => w.generation === this.#generation && (w.state === 'booting' || w.state === 'ready'),
    );
    if (current.length > this.#processes) {
      // SIGTTOU: the newest go first.
      for (const w of current.slice(this.#processes).reverse()) this.#tellStop(w);
      return;
    }
    if (!this.#everReady && current.length > 0 && current.every((w) => w.state === 'ready')) {
      if (current.length === this.#processes) this.#announceReady(current);
    }
    if (now < this.#nextSpawnAt) return;
    for (let i = current.length; i < this.#processes; i++) this.#spawn(now);
  }

  #announceReady(workers: WorkerRecord[]): void {
    this.#everReady = true;
    this.#log(
      `serving ${this.#options.target} on ${this.#sockets.map((s) => s.label).join(', ')} ` +
        `(${workers.length} worker(s): ${workers.map((w) => w.pid).join(', ')})`,
    );
    this.#settleReady.resolve();
  }

  #backOff(now: number): void {
    this.#backoffMs =
      this.#backoffMs === 0 ? BACKOFF_INITIAL_MS : Math.min(this.#backoffMs * 2, BACKOFF_MAX_MS);
    this.#nextSpawnAt = now + this.#backoffMs;
  }

  // --- deaths ---------------------------------------------------------------------------

  #reap(
    exit: { record: WorkerRecord; code: number | null; signal: NodeJS.Signals | null },
    now: number,
  ): void {
    const { record, code, signal } = exit;
    this.#workers.delete(record.pid);
    if (record.state === 'booting' && (record.bootError || code === WORKER_EXIT.BOOT_ERROR)) {
      this.#bootFailed(
        record,
        record.bootError ?? {
          code: 'SERVER_ERR_WORKER_BOOT',
          message: `cgi-bridge: worker ${record.pid} ${describeExit(code, signal)} before it was ready`,
        },
      );
      return;
    }
    if (record.state === 'stopping' || record.state === 'retiring' || this.#stopping) {
      if (record.killedFor !== undefined) this.#log(`worker ${record.pid} ${record.killedFor}`);
      return;
    }
    // An unexpected death: replace it, after a delay that grows while workers die young.
    const why = record.killedFor ?? describeExit(code, signal);
    if (record.state === 'booting' && ++this.#earlyDeaths >= MAX_EARLY_DEATHS) {
      if (![...this.#workers.values()].some((w) => w.state === 'ready')) {
        this.#beginStop(
          new BridgeError(
            'SERVER_ERR_WORKER_BOOT',
            `cgi-bridge: ${this.#earlyDeaths} workers in a row died before they were ready (the last one ${why})`,
          ),
        );
        return;
      }
    }
    const lived = now - record.startedAt;
    if (lived >= BACKOFF_RESET_MS) {
      this.#backoffMs = 0;
      this.#nextSpawnAt = now;
    } else {
      this.#backOff(now);
    }
    const when = this.#nextSpawnAt > now ? ` in ${this.#nextSpawnAt - now} ms` : '';
    this.#log(`worker ${record.pid} ${why}; starting a new one${when}`);
  }

  #bootFailed(record: WorkerRecord, error: { code: string; message: string }): void {
    const message = error.message.replace(/^cgi-bridge: /, '');
    if (this.#stopping) return;
    if (this.#reloadFrom !== undefined && record.generation === this.#generation) {
      // A reload that cannot boot keeps the old workers serving.
      this.#log(`reload failed, the old workers keep serving: ${message}`);
      for (const w of this.#workers.values()) {
        if (w.generation === this.#generation) this.#tellStop(w);
      }
      this.#generation = this.#reloadFrom;
      this.#reloadFrom = undefined;
      return;
    }
    const serving = [...this.#workers.values()].some((w) => w.state === 'ready');
    if (serving) {
      // Others still serve: retry, with backoff, rather than take the service down.
      this.#backOff(Date.now());
      this.#log(`worker ${record.pid} cannot boot, retrying in ${this.#backoffMs} ms: ${message}`);
      return;
    }
    // Nothing serves and workers cannot boot: respawning would only repeat the failure.
    this.#beginStop(new BridgeError(error.code, `cgi-bridge: ${message}`));
  }

  // murder kills workers that stopped answering (gunicorn's murder_workers).
  #murder(now: number): void {
    for (const w of this.#workers.values()) {
      if (w.killedFor !== undefined) continue;
      if (w.state === 'booting') {
        if (now - w.startedAt > this.#options.bootTimeoutMs) {
          w.bootError = {
            code: 'SERVER_ERR_BOOT_TIMEOUT',
            message: `cgi-bridge: worker ${w.pid} did not boot within ${this.#options.bootTimeoutMs / 1000} s`,
          };
          w.killedFor = 'did not boot in time';
          w.child.kill('SIGKILL');
        }
        continue;
      }
      const limit = this.#options.timeoutMs + HEARTBEAT_GRACE_MS;
      if (this.#options.timeoutMs > 0 && now - w.lastSeen > limit) {
        // Its event loop has not turned for longer than any request may take: synchronous
        // code that never yields. Only SIGKILL stops it.
        w.killedFor = `was stuck (no heartbeat for ${Math.round((now - w.lastSeen) / 1000)} s, --timeout ${this.#options.timeoutMs / 1000} s) and was killed`;
        w.child.kill('SIGKILL');
      }
    }
  }

  // --- reload and stop ------------------------------------------------------------------

  #startReload(): void {
    if (this.#reloadFrom !== undefined) {
      this.#log('SIGHUP: a reload is already in progress');
      return;
    }
    this.#reloadFrom = this.#generation;
    this.#generation++;
    this.#log(`SIGHUP: reloading: starting ${this.#processes} new worker(s)`);
  }

  #progressReload(): void {
    if (this.#reloadFrom === undefined) return;
    const fresh = [...this.#workers.values()].filter(
      (w) => w.generation === this.#generation && w.state === 'ready',
    );
    if (fresh.length < this.#processes) return;
    // The new generation accepts: the old one stops accepting and finishes what it has.
    const old = [...this.#workers.values()].filter((w) => w.generation < this.#generation);
    for (const w of old) this.#tellStop(w);
    this.#reloadFrom = undefined;
    this.#log(
      `reload done: workers ${fresh.map((w) => w.pid).join(', ')} took over` +
        (old.length > 0 ? `; ${old.map((w) => w.pid).join(', ')} finish their requests` : ''),
    );
  }

  #tellStop(record: WorkerRecord): void {
    if (record.state === 'stopping') return;
    record.state = 'stopping';
    if (record.child.connected) this.#send(record, { type: 'cgi-bridge:stop' });
    else record.child.kill('SIGTERM');
  }

  #beginStop(error: BridgeError | undefined): void {
    if (this.#stopping) return;
    this.#stopping = true;
    this.#haltError = error;
    this.#stopDeadline = Date.now() + this.#options.gracefulTimeoutMs + KILL_MARGIN_MS;
    for (const w of this.#workers.values()) this.#tellStop(w);
    this.#wake();
  }

  #progressStop(now: number): void {
    for (const w of this.#workers.values()) this.#tellStop(w);
    if (now >= this.#stopDeadline && !this.#killedAtDeadline && this.#workers.size > 0) {
      this.#killedAtDeadline = true;
      for (const w of this.#workers.values()) {
        w.killedFor = `was killed after the graceful timeout (${this.#options.gracefulTimeoutMs / 1000} s)`;
        w.child.kill('SIGKILL');
      }
    }
    if (this.#workers.size === 0) this.#finish();
  }

  #finish(): void {
    this.#done = true;
    for (const s of this.#sockets) s.close();
    this.#removeHandlers();
    if (this.#haltError) {
      this.#settleReady.reject(this.#haltError);
      this.#settleClosed.reject(this.#haltError);
    } else {
      this.#settleReady.reject(
        new BridgeError('SERVER_ERR_STOPPED', 'cgi-bridge: stopped before the workers were ready'),
      );
      this.#settleClosed.resolve();
    }
  }
}

/**
 * startMaster binds (or takes over) the listening sockets, forks `processes` workers that
 * each import `target` and accept on those sockets, and manages them until stopped:
 * - a worker that dies is replaced, at once if it lived BACKOFF_RESET_MS, else after a delay
 *   from BACKOFF_INITIAL_MS doubling to BACKOFF_MAX_MS;
 * - a worker that cannot boot (bad TARGET, throwing module or startup hook, boot timeout)
 *   stops the master with that error when no worker serves (`closed` rejects); during a
 *   reload the old workers keep serving instead;
 * - a worker recycled by `maxRequests` is replaced as it starts to drain;
 * - SIGHUP (or `reload()`): new workers start and re-import the app; once all are ready the
 *   old ones stop accepting, finish their requests and exit;
 * - SIGTERM/SIGINT (or `stop()`): every worker stops gracefully; after `gracefulTimeoutMs`
 *   (+ KILL_MARGIN_MS) the rest are SIGKILLed; a second signal kills at once;
 * - SIGTTIN/SIGTTOU: one worker more or less;
 * - a worker without a heartbeat for `timeoutMs` + HEARTBEAT_GRACE_MS is SIGKILLed and replaced.
 * Socket errors reject before any worker starts.
 */
export async function startMaster(options: MasterOptions): Promise<MasterHandle> {
  if (!Number.isInteger(options.processes) || options.processes < 1) {
    throw new BridgeError(
      'SERVER_ERR_INVALID_ARGUMENT',
      `cgi-bridge: a master needs at least 1 worker, got ${options.processes}`,
    );
  }
  const sockets: HeldSocket[] = [];
  try {
    for (const addr of options.listen) {
      sockets.push(await holdSocket(addr, { socketMode: options.socketMode }));
    }
  } catch (e) {
    for (const s of sockets) s.close();
    throw e;
  }
  const arbiter = new Arbiter(options, sockets);
  arbiter.start(options.signals ?? true);
  return {
    addresses: sockets.map((s) => s.label),
    workers: () => arbiter.workers(),
    get spawned() {
      return arbiter.spawned;
    },
    reload: () => arbiter.queue('SIGHUP'),
    stop: () => arbiter.queue('SIGTERM'),
    ready: arbiter.ready,
    closed: arbiter.closed,
  };
}
