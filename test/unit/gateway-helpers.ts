// Test helpers for the gateway pipeline: a recording ResponseWriter (the pipeline's collaborator)
// and an environ built from parts, without any front end.
import { createErrorStream } from '../../src/gateway/error-stream.js';
import { fileWrapper } from '../../src/gateway/file-wrapper.js';
import type { ResponseWriter } from '../../src/gateway/handler.js';
import { BodyInput, type ByteSource } from '../../src/gateway/input.js';
import type { Environ, Header } from '../../src/gateway/types.js';

/** WriterEvent is one call the pipeline made on the writer, in order. */
export type WriterEvent =
  | { kind: 'head'; code: number; reason: string; headers: Header[] }
  | { kind: 'write'; bytes: Buffer }
  | { kind: 'end' }
  | { kind: 'abort'; error: unknown };

/** RecordingWriterOptions make the writer slow or failing, like a real client. */
export interface RecordingWriterOptions {
  /** writeDelayMs delays each write()'s promise (backpressure). */
  writeDelayMs?: number;
  /** failWriteAt makes the n-th write() (0-based) reject, as a client that went away. */
  failWriteAt?: number;
}

/** RecordingWriter records every call the pipeline makes on it. */
export class RecordingWriter implements ResponseWriter {
  readonly events: WriterEvent[] = [];
  private writes = 0;
  /** inFlight is true while a write() promise is pending (to prove calls never overlap). */
  inFlight = false;
  overlapped = false;

  constructor(private readonly options: RecordingWriterOptions = {}) {}

  writeHead(code: number, reason: string, headers: Header[]): void {
    if (this.inFlight) this.overlapped = true;
    this.events.push({ kind: 'head', code, reason, headers: headers.map(([n, v]) => [n, v]) });
  }

  write(chunk: Uint8Array): void | Promise<void> {
    if (this.inFlight) this.overlapped = true;
    const n = this.writes++;
    if (n === this.options.failWriteAt) return Promise.reject(new Error('EPIPE: client gone'));
    this.events.push({ kind: 'write', bytes: Buffer.from(chunk) });
    const delay = this.options.writeDelayMs;
    if (delay === undefined) return;
    this.inFlight = true;
    return new Promise((resolve) =>
      setTimeout(() => {
        this.inFlight = false;
        resolve();
      }, delay),
    );
  }

  end(): void {
    this.events.push({ kind: 'end' });
  }

  abort(error: unknown): void {
    this.events.push({ kind: 'abort', error });
  }

  /** head is the writeHead call, if there was one. */
  get head(): Extract<WriterEvent, { kind: 'head' }> | undefined {
    return this.events.find((e) => e.kind === 'head') as
      Extract<WriterEvent, { kind: 'head' }> | undefined;
  }

  /** body is every written byte, concatenated. */
  get body(): Buffer {
    return Buffer.concat(this.events.flatMap((e) => (e.kind === 'write' ? [e.bytes] : [])));
  }

  /** kinds lists the calls by kind, e.g. ['head', 'write', 'end']. */
  get kinds(): string[] {
    return this.events.map((e) => e.kind);
  }

  /** header returns the value of a header that was sent (case-insensitive). */
  header(name: string): string | undefined {
    const lower = name.toLowerCase();
    return this.head?.headers.find(([n]) => n.toLowerCase() === lower)?.[1];
  }
}

/** TestEnvironOptions are the parts of a test environ. */
export interface TestEnvironOptions {
  method?: string;
  body?: ByteSource | null;
  length?: number | null;
  signal?: AbortSignal;
  extra?: Record<string, unknown>;
}

/** TestEnviron is an environ plus the lines written to its gateway.errors. */
export interface TestEnviron {
  environ: Environ;
  errors: string[];
}

/** makeEnviron builds a complete environ the way a front end would, errors captured in memory. */
export function makeEnviron(options: TestEnvironOptions = {}): TestEnviron {
  const errors: string[] = [];
  const length = options.length === undefined ? 0 : options.length;
  const environ = {
    REQUEST_METHOD: options.method ?? 'GET',
    SCRIPT_NAME: '',
    PATH_INFO: '/test',
    QUERY_STRING: '',
    SERVER_NAME: 'localhost',
    SERVER_PORT: '8080',
    SERVER_PROTOCOL: 'HTTP/1.1',
    REQUEST_URI: '/test',
    GATEWAY_INTERFACE: 'CGI/1.1',
    ...(length !== null && length > 0 ? { CONTENT_LENGTH: String(length) } : {}),
    'gateway.version': [1, 0] as const,
    'gateway.url_scheme': 'http' as const,
    'gateway.input': new BodyInput(options.body ?? null, length),
    'gateway.errors': createErrorStream((s) => errors.push(s)),
    'gateway.multithread': true,
    'gateway.multiprocess': false,
    'gateway.run_once': false,
    'gateway.file_wrapper': fileWrapper,
    'gateway.signal': options.signal ?? new AbortController().signal,
    ...options.extra,
  };
  return { environ: environ as Environ, errors };
}

/** sleep resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** tick lets pending promise callbacks and I/O callbacks run. */
export function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** splitSource yields `data` in pieces of the given sizes, cycling through them. */
export async function* splitSource(data: Uint8Array, sizes: number[]): AsyncGenerator<Uint8Array> {
  let at = 0;
  let i = 0;
  while (at < data.length) {
    const n = sizes[i++ % sizes.length]!;
    // A fresh copy each time, like a socket read.
    yield Uint8Array.from(data.subarray(at, at + n));
    at += n;
  }
}
