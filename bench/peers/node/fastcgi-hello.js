// A reference for the FastCGI benchmark (bench/fastcgi.js), not a peer a user would run: the
// least a Node FastCGI responder can do per request. It answers every request with the hello
// response, honours FCGI_KEEP_CONN, and ignores params and body (no environ, no app, no
// limits). What nginx reaches in front of it is the ceiling for any Node FastCGI backend on the
// machine. Usage: node fastcgi-hello.js SOCKET
import { chmodSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';

const sock = process.argv[2];
const STDOUT = 6;
const BODY = Buffer.from('Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nhello world\n');

// answer builds the whole reply for one request id: stdout, empty stdout, FCGI_END_REQUEST.
function answer(id) {
  const pad = -BODY.length & 7;
  const out = Buffer.alloc(8 + BODY.length + pad + 8 + 16);
  const header = (at, type, length, padding) => {
    out[at] = 1;
    out[at + 1] = type;
    out.writeUInt16BE(id, at + 2);
    out.writeUInt16BE(length, at + 4);
    out[at + 6] = padding;
  };
  header(0, STDOUT, BODY.length, pad);
  BODY.copy(out, 8);
  let at = 8 + BODY.length + pad;
  header(at, STDOUT, 0, 0);
  header(at + 8, 3, 8, 0); // FCGI_END_REQUEST, app status 0, FCGI_REQUEST_COMPLETE
  return out;
}
const REPLY_1 = answer(1);

const server = createServer((socket) => {
  socket.setNoDelay(true);
  socket.on('error', () => {});
  let pending = null; // the bytes of a record cut across reads
  let keepConn = false;
  socket.on('data', (chunk) => {
    let buf = pending === null ? chunk : Buffer.concat([pending, chunk]);
    pending = null;
    let at = 0;
    while (buf.length - at >= 8) {
      const type = buf[at + 1];
      const id = buf.readUInt16BE(at + 2);
      const length = buf.readUInt16BE(at + 4);
      const end = at + 8 + length + buf[at + 6];
      if (end > buf.length) break;
      if (type === 1) keepConn = (buf[at + 8 + 2] & 1) === 1; // FCGI_BEGIN_REQUEST flags
      if (type === 5 && length === 0) {
        // The end of FCGI_STDIN: the request is complete.
        socket.write(id === 1 ? REPLY_1 : answer(id));
        if (!keepConn) socket.end();
      }
      at = end;
    }
    if (at < buf.length) pending = buf.subarray(at);
  });
});
rmSync(sock, { force: true });
server.listen(sock, () => {
  chmodSync(sock, 0o666); // nginx's workers run as another user
  process.stderr.write(`fastcgi hello reference listening on ${sock}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
