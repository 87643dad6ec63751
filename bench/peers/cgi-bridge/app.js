// The cgi-bridge peer of the FastCGI benchmark (bench/fastcgi.js): a gateway app run by
// `cgi-bridge fastcgi`, with hello, echo (the body read whole, then returned) and upload (the
// body counted as it streams in). The route is the last segment of SCRIPT_NAME + PATH_INFO.
// Like the Node handler, hello answers synchronously; only the routes that read a body are async.

async function echo(environ, start) {
  const chunks = [];
  for await (const chunk of environ['gateway.input']) chunks.push(chunk);
  start('200 OK', [['Content-Type', 'application/octet-stream']]);
  return chunks;
}

async function upload(environ, start) {
  let n = 0;
  for await (const chunk of environ['gateway.input']) n += chunk.length;
  start('200 OK', [['Content-Type', 'text/plain']]);
  return [`${n}\n`];
}

/** The app. */
export default function app(environ, start) {
  const path = `${environ.SCRIPT_NAME ?? ''}${environ.PATH_INFO ?? ''}`;
  const route = path.slice(path.lastIndexOf('/') + 1);
  if (route === 'hello') {
    start('200 OK', [['Content-Type', 'text/plain']]);
    return ['hello world\n'];
  }
  if (route === 'echo') return echo(environ, start);
  if (route === 'upload') return upload(environ, start);
  start('404 Not Found', [['Content-Type', 'text/plain']]);
  return ['not found\n'];
}
