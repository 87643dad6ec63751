// serve(app): the library entry a script calls. It finds out how the process was started and
// runs the matching front end; each front end is imported lazily, so a CGI request never loads
// the HTTP server and the HTTP server never loads the CGI child.
import type { AppHooks } from './cgi/child.js';
import type { GatewayApp } from './gateway/types.js';
import type { ServeHttpOptions } from './http/server.js';

/** ServeOptions are the HTTP server's options (used when the process is not a CGI request) plus hooks. */
export interface ServeOptions extends Omit<ServeHttpOptions, 'hooks'> {
  /** startup runs once before the first request (in CGI mode: before the one request). */
  startup?: AppHooks['startup'];
  /** shutdown runs once after the last request. */
  shutdown?: AppHooks['shutdown'];
}

function fatal(e: unknown): never {
  const message = e instanceof Error ? e.message : String(e);
  const line = message.startsWith('cgi-bridge:') ? message : `cgi-bridge: ${message}`;
  process.stderr.write(`${line.split('\n')[0]}\n`);
  process.exit(1);
}

/**
 * serve runs `app` for the way this process was started, and owns the process from then on:
 * - CGI (RFC 3875 §4.1.4: the web server set GATEWAY_INTERFACE): one request from the
 *   environment and stdin, then exit with cgiMain's code;
 * - FastCGI (FastCGI spec §2.2): fd 0 is a listening socket (mod_fcgid, lighttpd bin-path,
 *   spawn-fcgi) or systemd passed sockets: one responder process serving them until SIGTERM;
 * - otherwise the built-in HTTP server on `options.listen` (default 127.0.0.1:8080) until
 *   SIGINT/SIGTERM, then exit 0 after the graceful stop (1 if start-up or shutdown failed).
 * The PORT environment variable is deliberately not read: binding every interface because of an
 * inherited variable is not a safe default; pass `listen` to choose.
 */
export async function serve(app: GatewayApp, options: ServeOptions = {}): Promise<never> {
  const { startup, shutdown, ...httpOptions } = options;
  const hooks: AppHooks = { startup, shutdown };
  if (process.env.GATEWAY_INTERFACE !== undefined && process.env.GATEWAY_INTERFACE !== '') {
    const { cgiMain } = await import('./cgi/child.js');
    return cgiMain(app, hooks);
  }
  try {
    // A connected socket on fd 0 (Apache mod_cgid's stdin) is not FastCGI; only a listening one is.
    const { inheritedListeners } = await import('./server/inherited.js');
    const listeners = inheritedListeners();
    if (listeners.length > 0) {
      const { serveFastcgi } = await import('./server/fastcgi-server.js');
      await serveFastcgi(app, { listen: listeners[0], hooks });
      process.exit(0);
    }
    const { serveHttp } = await import('./http/server.js');
    const handle = await serveHttp(app, { ...httpOptions, hooks });
    await handle.closed;
  } catch (e) {
    fatal(e);
  }
  process.exit(0);
}
