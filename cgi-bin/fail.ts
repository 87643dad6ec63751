// fail: an app that throws, to show the error path. Before headers (default) the client gets a
// generic 500 and the stack goes to the error log; with ?after=1 the response is cut off mid-body.
import type { GatewayApp } from '../src/index.js';

/** app throws before the response starts, or after the first chunk with ?after=1. */
const app: GatewayApp = (environ, startResponse) => {
  const after = new URLSearchParams(environ.QUERY_STRING).get('after') === '1';
  if (!after) throw new Error('fail.ts: this app fails on purpose (before headers)');
  startResponse('200 OK', [['Content-Type', 'text/plain; charset=utf-8']]);
  return (function* () {
    yield 'the first chunk arrives, then the app fails\n';
    throw new Error('fail.ts: this app fails on purpose (after headers)');
  })();
};

export default app;
