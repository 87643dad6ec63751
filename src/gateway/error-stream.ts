// gateway.errors: the error stream every front end hands to the app.
import type { ErrorStream } from './types.js';

/** LineSink receives text destined for the error log (stderr, FCGI_STDERR, a logger). */
export type LineSink = (text: string) => void;

/** createErrorStream wraps a sink as a `gateway.errors` stream; a throwing sink never reaches the app. */
export function createErrorStream(sink: LineSink, flush?: () => void): ErrorStream {
  const write = (s: string): void => {
    try {
      sink(String(s));
    } catch {
      // The log going away must not fail the request (e.g. stderr closed by the web server).
    }
  };
  return {
    write,
    writelines(lines: Iterable<string>): void {
      for (const l of lines) write(l);
    },
    flush(): void {
      try {
        flush?.();
      } catch {
        // see write
      }
    },
  };
}

/** stderrErrorStream is a `gateway.errors` that writes to this process's stderr. */
export function stderrErrorStream(): ErrorStream {
  return createErrorStream((s) => process.stderr.write(s));
}
