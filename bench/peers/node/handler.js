// The Node peers' request handler for the FastCGI benchmark (bench/fastcgi.js), shared by the
// plain http.createServer peer (behind nginx proxy_pass) and the node-fastcgi peer: hello,
// echo (the body read whole, then sent back) and upload (the body counted).
const HELLO = Buffer.from('hello world\n');

/** handle answers one request; the route is the last segment of the URL's path. */
export function handle(req, res) {
  const path = req.url.split('?')[0];
  const route = path.slice(path.lastIndexOf('/') + 1);
  if (route === 'hello') {
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': HELLO.length });
    res.end(HELLO);
  } else if (route === 'echo') {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      res.writeHead(200, {
        'Content-Type': 'application/octet-stream',
        'Content-Length': body.length,
      });
      res.end(body);
    });
  } else if (route === 'upload') {
    let n = 0;
    req.on('data', (c) => (n += c.length));
    req.on('end', () => {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end(`${n}\n`);
    });
  } else {
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not found\n');
  }
}
