// Process signals for every server front end: SIGINT/SIGTERM ask for a graceful stop, a second
// one asks for an immediate stop (as gunicorn's arbiter: the handler only records the request).

/** StopSignal is a signal that stops a server. */
export type StopSignal = 'SIGINT' | 'SIGTERM';

const STOP_SIGNALS: readonly StopSignal[] = ['SIGINT', 'SIGTERM'];

/**
 * onStopSignals calls `graceful` on the first SIGINT or SIGTERM and `immediate` on any later one
 * (an impatient Ctrl-C twice). While installed, the signals no longer kill the process: the
 * server decides when it is done. It returns a function that removes the handlers.
 */
export function onStopSignals(
  graceful: (signal: StopSignal) => void,
  immediate: (signal: StopSignal) => void,
): () => void {
  let received = 0;
  const handler = (signal: StopSignal): void => {
    received++;
    if (received === 1) graceful(signal);
    else immediate(signal);
  };
  for (const s of STOP_SIGNALS) process.on(s, handler);
  return () => {
    for (const s of STOP_SIGNALS) process.removeListener(s, handler);
  };
}
