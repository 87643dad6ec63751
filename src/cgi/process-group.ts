// The host side's process control: a CGI program started with `detached: true` leads its own
// process group (setsid), so one signal to the group reaches it and everything it started.

/** DEFAULT_KILL_GRACE_MS is how long a group has between SIGTERM and SIGKILL: 2 s. */
export const DEFAULT_KILL_GRACE_MS = 2000;

// How often a terminating group is checked for members: short first, since most programs die
// on SIGTERM at once, then less often.
const POLL_MS = [10, 20, 50, 100];

// Groups that may still have members. A CGI program leads its own session, so nothing reaches
// it when the bridge itself dies; on the bridge's 'exit' (process.exit, the end of the event
// loop, an uncaught exception, a graceful stop) every group left gets SIGKILL.
const live = new Set<ProcessGroup>();
let exitHook = false;

function killLiveGroups(): void {
  for (const g of live) g.signal('SIGKILL');
  live.clear();
}

function errnoCode(e: unknown): string | undefined {
  return (e as { code?: unknown } | null)?.code as string | undefined;
}

/**
 * kill is process.kill without the cost of its failure: the error it throws for a gone group
 * (ESRCH, the usual answer once a program exited) gets no stack trace, which would cost more
 * than the system call. Returns undefined when the signal was sent, else the errno code.
 */
function kill(pid: number, sig: NodeJS.Signals | 0): string | undefined {
  const limit = Error.stackTraceLimit;
  const quiet = setStackTraceLimit(0);
  try {
    process.kill(pid, sig);
    return undefined;
  } catch (e) {
    return errnoCode(e) ?? 'EUNKNOWN';
  } finally {
    if (quiet) setStackTraceLimit(limit);
  }
}

// setStackTraceLimit sets Error.stackTraceLimit; false where it cannot be set (frozen).
function setStackTraceLimit(limit: number): boolean {
  try {
    Error.stackTraceLimit = limit;
    return true;
  } catch {
    return false;
  }
}

/**
 * ProcessGroup signals the process group `pgid` (the pid of a program spawned with
 * `detached: true`). Every signal goes to the whole group, so children the program started in
 * the background (`sleep 1000 &`) are reached too; one that left the group with setsid(2) is
 * not. A group whose members are all zombies still counts as alive: after the grace period it
 * gets SIGKILL, which is harmless.
 */
export class ProcessGroup {
  private ending: Promise<boolean> | undefined;

  constructor(
    readonly pgid: number,
    readonly graceMs: number = DEFAULT_KILL_GRACE_MS,
  ) {
    // kill(-1) would signal every process we may signal; kill(-0) our own group.
    if (!Number.isInteger(pgid) || pgid <= 1) {
      throw new RangeError(`ProcessGroup: ${pgid} is not a process group id`);
    }
  }

  /**
   * track registers the group for SIGKILL when the bridge process exits, until {@link release}
   * (or the end of {@link terminate}) says it is empty.
   */
  track(): void {
    if (!exitHook) {
      exitHook = true;
      process.once('exit', killLiveGroups);
    }
    live.add(this);
  }

  /** release forgets a group that has no members left. */
  release(): void {
    live.delete(this);
  }

  /** alive tells whether any process of the group exists. */
  get alive(): boolean {
    const error = kill(-this.pgid, 0);
    return error === undefined || error === 'EPERM';
  }

  /** signal sends `sig` to every process of the group; false when the group is gone. */
  signal(sig: NodeJS.Signals): boolean {
    return kill(-this.pgid, sig) === undefined;
  }

  /** terminating is true once {@link terminate} was called. */
  get terminating(): boolean {
    return this.ending !== undefined;
  }

  /**
   * terminate sends SIGTERM to the group, then SIGKILL if any member is left after `graceMs`.
   * It resolves true when the group ended within the grace period, false when SIGKILL was
   * needed. Later calls return the same promise.
   */
  terminate(): Promise<boolean> {
    this.ending ??= this.run().finally(() => this.release());
    return this.ending;
  }

  private async run(): Promise<boolean> {
    if (!this.signal('SIGTERM')) return true;
    const deadline = Date.now() + this.graceMs;
    for (let i = 0; ; i++) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      await new Promise((resolve) => setTimeout(resolve, Math.min(left, POLL_MS[i] ?? 100)));
      if (!this.alive) return true;
    }
    this.signal('SIGKILL');
    return false;
  }
}
