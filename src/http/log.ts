// The HTTP front end's log: whole lines to stderr with a prefix, so text from concurrent requests
// (gateway.errors) never interleaves mid-line.
import { createErrorStream } from '../gateway/error-stream.js';
import type { ErrorStream } from '../gateway/types.js';

/** LogLine receives one complete line of log text, without its trailing newline. */
export type LogLine = (line: string) => void;

/** stderrLog writes `cgi-bridge: LINE` to stderr; it is the HTTP server's default log. */
export const stderrLog: LogLine = (line) => {
  process.stderr.write(`cgi-bridge: ${line}\n`);
};

/** RequestErrorStream is a `gateway.errors` for one request; `end()` flushes a trailing partial line. */
export interface RequestErrorStream extends ErrorStream {
  end(): void;
}

/**
 * lineErrorStream makes a `gateway.errors` stream that hands `log` whole lines: text is held
 * until its newline arrives, and `flush()`/`end()` push out what is held.
 */
export function lineErrorStream(log: LogLine): RequestErrorStream {
  let partial = '';
  const flushPartial = (): void => {
    if (partial === '') return;
    const line = partial;
    partial = '';
    log(line);
  };
  const stream = createErrorStream((text) => {
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) log(line);
  }, flushPartial);
  return { ...stream, end: () => stream.flush() };
}
