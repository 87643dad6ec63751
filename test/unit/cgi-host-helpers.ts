// Test helpers for the CGI host: run a fromCgi app for one request through the real translator
// (buildEnviron) and the one pipeline (runApp) with a recording writer, and watch processes.
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildEnviron, type MetaVariables } from '../../src/cgi/environ.js';
import { createErrorStream } from '../../src/gateway/error-stream.js';
import { runApp, type RunResult } from '../../src/gateway/handler.js';
import type { Environ, GatewayApp, Header } from '../../src/gateway/types.js';
import { isProcessAlive, sleep } from '../harness/process-utils.js';
import { RecordingWriter } from './gateway-helpers.js';

/** LEGACY is the directory of the legacy CGI fixtures (test/fixtures/legacy). */
export const LEGACY = fileURLToPath(new URL('../fixtures/legacy/', import.meta.url)).replace(
  /\/$/,
  '',
);

/** legacy returns the path of one fixture. */
export function legacy(name: string): string {
  return join(LEGACY, name);
}

/** CgiRequest describes one request. */
export interface CgiRequest {
  method?: string;
  scriptName?: string;
  pathInfo?: string;
  query?: string;
  /** body is sent in the given pieces (a string or bytes is one piece). */
  body?: string | Uint8Array | Uint8Array[];
  /** chunked sends the body without CONTENT_LENGTH, as a chunked request under mod_cgid. */
  chunked?: boolean;
  /** vars adds or overrides meta-variables (HTTP_*, SCRIPT_FILENAME, DOCUMENT_ROOT …). */
  vars?: MetaVariables;
  signal?: AbortSignal;
  writer?: RecordingWriter;
}

/** CgiReply is what the client saw, plus the log. */
export interface CgiReply {
  status: number;
  reason: string;
  headers: Header[];
  body: Buffer;
  text: string;
  /** kinds lists the writer calls: ['head', 'write', 'end'], or ending in 'abort' for a cut response. */
  kinds: string[];
  /** log is every gateway.errors line. */
  log: string[];
  result: RunResult;
  header(name: string): string | undefined;
}

async function* pieces(parts: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield Uint8Array.from(p);
}

/** makeCgiEnviron builds an environ as a front end would, its errors captured line by line. */
export function makeCgiEnviron(req: CgiRequest, log: string[]): Environ {
  const parts =
    req.body === undefined
      ? []
      : Array.isArray(req.body)
        ? req.body
        : [typeof req.body === 'string' ? Buffer.from(req.body) : req.body];
  const length = parts.reduce((n, p) => n + p.length, 0);
  let partial = '';
  const vars: MetaVariables = {
    REQUEST_METHOD: req.method ?? (req.body === undefined ? 'GET' : 'POST'),
    SCRIPT_NAME: req.scriptName ?? '/cgi-bin',
    PATH_INFO: req.pathInfo ?? '',
    QUERY_STRING: req.query ?? '',
    SERVER_NAME: 'example.com',
    SERVER_PORT: '80',
    SERVER_PROTOCOL: 'HTTP/1.1',
    REMOTE_ADDR: '1.2.3.4',
    HTTP_HOST: 'example.com',
    ...(req.body === undefined
      ? {}
      : req.chunked
        ? { HTTP_TRANSFER_ENCODING: 'chunked' }
        : { CONTENT_LENGTH: String(length) }),
    ...req.vars,
  };
  return buildEnviron(vars, {
    input: req.body === undefined ? null : pieces(parts),
    errors: createErrorStream((s) => {
      const lines = (partial + s).split('\n');
      partial = lines.pop() ?? '';
      log.push(...lines);
    }),
    signal: req.signal ?? new AbortController().signal,
    multithread: true,
    multiprocess: false,
    runOnce: false,
  });
}

/** serveCgi runs `app` for one request through runApp and a recording writer. */
export async function serveCgi(app: GatewayApp, req: CgiRequest = {}): Promise<CgiReply> {
  const log: string[] = [];
  const environ = makeCgiEnviron(req, log);
  const writer = req.writer ?? new RecordingWriter();
  const result = await runApp(app, environ, writer);
  const head = writer.head;
  const body = writer.body;
  return {
    status: head?.code ?? 0,
    reason: head?.reason ?? '',
    headers: head?.headers ?? [],
    body,
    text: body.toString('utf8'),
    kinds: writer.kinds,
    log,
    result,
    header: (name) => writer.header(name),
  };
}

/** parseLines reads `KEY=value` lines (dump.sh's output) into a map. */
export function parseLines(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) m.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return m;
}

/** tempDir makes a fresh temporary directory and returns it with its remover. */
export function tempDir(prefix: string): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `cgi-bridge-${prefix}-`));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** waitFor polls `check` until it is true or `ms` passed; it returns the last result. */
export async function waitFor(check: () => boolean, ms = 5000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

/** allGone tells whether none of `pids` is alive (a zombie counts as gone). */
export function allGone(pids: number[]): boolean {
  return pids.every((p) => !isProcessAlive(p));
}

export { sleep };

/** CgiTree is a cgi-bin directory built for a test, with traps around it. */
export interface CgiTree {
  /** base holds `cgi-bin/` and `outside/`. */
  base: string;
  /** root is the cgi-bin directory. */
  root: string;
  /** outside is a directory next to it with an executable canary. */
  outside: string;
  /** markers is where canaries leave their marker files (MARKER_DIR). */
  markers: string;
  remove(): void;
}

/**
 * makeCgiTree builds, in a temp dir: `cgi-bin/` with copies of fixtures (hello.sh, dump.sh,
 * status.sh, echo.pl, redirect.sh, nph-hello.sh, canary-ok.sh, sub/deeper/dump.sh), traps
 * (a non-executable canary, a hidden executable canary, a symlink to a canary outside, a
 * symlink to the outside directory, a directory named dir.sh, a FIFO, a symlink inside), and
 * `outside/canary-out.sh`. Canaries write `markers/canary-NAME` when they run.
 */
export function makeCgiTree(): CgiTree {
  const t = tempDir('tree');
  const root = join(t.dir, 'cgi-bin');
  const outside = join(t.dir, 'outside');
  const markers = join(t.dir, 'markers');
  for (const d of [root, join(root, 'sub', 'deeper'), join(root, 'dir.sh'), outside, markers]) {
    mkdirSync(d, { recursive: true });
  }
  const copy = (name: string, to: string, mode = 0o755): void => {
    copyFileSync(legacy(name), to);
    chmodSync(to, mode);
  };
  for (const n of ['hello.sh', 'dump.sh', 'status.sh', 'echo.pl', 'redirect.sh', 'nph-hello.sh']) {
    copy(n, join(root, n));
  }
  copy('hang.sh', join(root, 'hang.sh'));
  copy('dump.sh', join(root, 'sub', 'deeper', 'dump.sh'));
  copy('canary.sh', join(root, 'canary-ok.sh'));
  copy('canary.sh', join(root, 'canary-noexec.sh'), 0o644);
  copy('canary.sh', join(root, '.canary-hidden.sh'));
  copy('canary.sh', join(root, 'sub', '.git-canary.sh'));
  copy('canary.sh', join(outside, 'canary-out.sh'));
  symlinkSync('../outside/canary-out.sh', join(root, 'link-out.sh'));
  symlinkSync(outside, join(root, 'linkdir'));
  symlinkSync('hello.sh', join(root, 'link-in.sh'));
  execFileSync('mkfifo', [join(root, 'fifo.sh')]);
  return { base: t.dir, root, outside, markers, remove: t.remove };
}

/** canaryMarkers lists the markers canaries left (empty when none ran). */
export function canaryMarkers(tree: CgiTree): string[] {
  return readdirSync(tree.markers).filter((f) => f.startsWith('canary-'));
}
