// redirect: a 302 with a Location header (RFC 3875 §6.2.3 client redirect). The target is the
// hello example next to this script, or ?to=/some/path (a path on this host only: no open redirect).
import type { GatewayApp } from '../src/index.js';

/** app redirects to `?to=` (a local path) or to the sibling `hello` script. */
const app: GatewayApp = (environ, startResponse) => {
  const to = new URLSearchParams(environ.QUERY_STRING).get('to');
  const dir = environ.SCRIPT_NAME.slice(0, environ.SCRIPT_NAME.lastIndexOf('/'));
  // Only a path on this host: "//evil.example" or "/\evil" would leave it.
  const path = to !== null && /^\/(?![/\\])[\x21-\x7e]*$/.test(to) ? to : `${dir}/hello`;
  const host = environ.HTTP_HOST ?? `${environ.SERVER_NAME}:${environ.SERVER_PORT}`;
  const location = `${environ['gateway.url_scheme']}://${host}${path}`;
  startResponse('302 Found', [
    ['Location', location],
    ['Content-Type', 'text/plain; charset=utf-8'],
  ]);
  return [`Redirecting to ${location}\n`];
};

export default app;
