// Client-side load for the FastCGI integration tests: many requests over a small pool of
// kept-alive HTTP connections, each answer checked, every failure recorded with its timing
// (the fault test attributes failures to the kills that were in flight).
import { Agent, request } from 'node:http';

/** LoadRequest describes one request of a load run; see {@link runLoad}. */
export interface LoadRequest {
  path: string;
  method?: string;
  body?: Buffer;
  /** check returns an error message for a wrong answer, or undefined when it is right. */
  check(status: number, body: Buffer): string | undefined;
}

/** LoadFailure is one request that failed. */
export interface LoadFailure {
  /** start and end are performance.now() times. */
  start: number;
  end: number;
  why: string;
}

/** LoadResult summarizes a load run. */
export interface LoadResult {
  requests: number;
  ok: number;
  failures: LoadFailure[];
  /** elapsedMs is the wall time of the run. */
  elapsedMs: number;
  /** sockets is how many distinct client connections carried the requests. */
  sockets: number;
}

/** LoadOptions bound a load run by count, by time, or both. */
export interface LoadOptions {
  /** concurrency is the number of clients and of pooled connections (default 8). */
  concurrency?: number;
  /** count stops after this many requests in total. */
  count?: number;
  /** durationMs stops starting requests after this long. */
  durationMs?: number;
  /** timeoutMs fails a request that takes longer (default 10000). */
  timeoutMs?: number;
}

function once(
  agent: Agent,
  url: string,
  req: LoadRequest,
  timeoutMs: number,
  sockets: Set<unknown>,
): Promise<string | undefined> {
  return new Promise((resolve) => {
    const headers: Record<string, string | number> = {};
    if (req.body !== undefined) {
      headers['content-length'] = req.body.length;
      headers['content-type'] = 'application/octet-stream';
    }
    const r = request(url, { method: req.method ?? 'GET', headers, agent });
    const timer = setTimeout(() => r.destroy(new Error(`no answer in ${timeoutMs} ms`)), timeoutMs);
    const done = (why: string | undefined): void => {
      clearTimeout(timer);
      resolve(why);
    };
    r.once('socket', (s) => sockets.add(s));
    r.once('error', (e) => done(`${e.message}`));
    r.once('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.once('error', (e) => done(e.message));
      res.once('end', () => done(req.check(res.statusCode ?? 0, Buffer.concat(chunks))));
    });
    r.end(req.body);
  });
}

/**
 * runLoad sends `next(i)` requests to `base + path` from `concurrency` clients over as many
 * kept-alive connections until `count` requests were sent or `durationMs` passed, and reports
 * every failure (connection error, timeout, or a `check` that failed).
 */
export async function runLoad(
  base: string,
  next: (i: number) => LoadRequest,
  opts: LoadOptions,
): Promise<LoadResult> {
  const concurrency = opts.concurrency ?? 8;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  if (opts.count === undefined && opts.durationMs === undefined) {
    throw new Error('runLoad: give a count, a duration or both');
  }
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const sockets = new Set<unknown>();
  const failures: LoadFailure[] = [];
  const t0 = performance.now();
  const stopAt = opts.durationMs === undefined ? Infinity : t0 + opts.durationMs;
  let issued = 0;
  let ok = 0;
  const client = async (): Promise<void> => {
    while (issued < (opts.count ?? Infinity) && performance.now() < stopAt) {
      const req = next(issued++);
      const start = performance.now();
      const why = await once(agent, base + req.path, req, timeoutMs, sockets);
      if (why === undefined) ok++;
      else failures.push({ start, end: performance.now(), why: `${req.path}: ${why}` });
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, client));
  } finally {
    agent.destroy();
  }
  return {
    requests: issued,
    ok,
    failures,
    elapsedMs: performance.now() - t0,
    sockets: sockets.size,
  };
}

/** summarize groups failure reasons with their counts, most frequent first. */
export function summarize(failures: LoadFailure[]): string {
  const counts = new Map<string, number>();
  for (const f of failures) counts.set(f.why, (counts.get(f.why) ?? 0) + 1);
  return [...counts]
    .sort((a, b) => b[1] - a[1])
    .map(([why, n]) => `${n}x ${why}`)
    .join('\n');
}
