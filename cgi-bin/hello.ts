// hello: the smallest gateway app, and the one the CGI start-up benchmark runs.
import type { GatewayApp } from '../src/index.js';

/** app answers every request with a plain-text greeting. */
const app: GatewayApp = (_environ, startResponse) => {
  startResponse('200 OK', [['Content-Type', 'text/plain; charset=utf-8']]);
  return ['Hello, world!\n'];
};

export default app;
