// The plain Node HTTP peer of the FastCGI benchmark (bench/fastcgi.js): http.createServer on a
// unix socket, behind nginx proxy_pass with upstream keepalive (what a Node user would pick
// instead of FastCGI). Usage: node http-server.js SOCKET
import { chmodSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { handle } from './handler.js';

const sock = process.argv[2];
rmSync(sock, { force: true });
const server = createServer(handle);
// nginx reuses upstream connections for up to keepalive_timeout (60 s): stay open longer.
server.keepAliveTimeout = 120_000;
server.listen(sock, () => {
  chmodSync(sock, 0o666); // nginx's workers run as another user
  process.stderr.write(`node http peer listening on ${sock}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
