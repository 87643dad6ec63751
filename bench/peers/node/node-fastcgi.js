// The node-fastcgi 2.0.0 peer of the FastCGI benchmark (bench/fastcgi.js): the npm package's
// http-compatible FastCGI server on a unix socket, with the same handler as the HTTP peer.
// Usage: node node-fastcgi.js SOCKET
import { chmodSync, rmSync } from 'node:fs';
import fcgi from 'node-fastcgi';
import { handle } from './handler.js';

const sock = process.argv[2];
rmSync(sock, { force: true });
const server = fcgi.createServer(handle);
server.listen(sock, () => {
  chmodSync(sock, 0o666); // nginx's workers run as another user
  process.stderr.write(`node-fastcgi peer listening on ${sock}\n`);
});
process.on('SIGTERM', () => process.exit(0));
