// The nginx of the FastCGI benchmark (bench/fastcgi.js): one private instance (1 worker) on
// 127.0.0.1 in a temp state dir, in front of every backend at once, each behind its own
// location prefix and upstream (unix socket, keepalive). Started in the foreground as our
// child, stopped by its pid; /etc/nginx is not used.
import { statSync } from 'node:fs';
import { DEBIAN_FASTCGI_PARAMS, NGINX, launchNginx, readText } from './nginx-conf.js';

export { NGINX };

// The FastCGI backends get Debian's fastcgi_params plus the Host header.
const FASTCGI_PARAMS = [...DEBIAN_FASTCGI_PARAMS, ['HTTP_HOST', '$host']];

/**
 * Backend routes for {@link startNginx}: `{ prefix, socket, kind: 'fastcgi' | 'http',
 * keepConn?: boolean (default true), scriptFilename?: (route) => string }`. Requests go to
 * `/PREFIX/ROUTE`; `/PREFIX/upload` streams the request body (request buffering off).
 */

function locationFor(b, i) {
  const upstream = `backend_${i}`;
  const keep = b.keepConn !== false;
  const common = (streaming) => {
    if (b.kind === 'http') {
      return [
        `proxy_pass http://${upstream};`,
        'proxy_http_version 1.1;',
        'proxy_set_header Connection "";',
        ...(streaming ? ['proxy_request_buffering off;'] : []),
      ];
    }
    return [
      ...FASTCGI_PARAMS.map(([k, v]) => `fastcgi_param ${k} ${v};`),
      ...(b.scriptDir !== undefined
        ? [`fastcgi_param SCRIPT_FILENAME ${b.scriptDir}/$route.php;`]
        : []),
      ...(keep ? ['fastcgi_keep_conn on;'] : []),
      ...(streaming ? ['fastcgi_request_buffering off;'] : []),
      `fastcgi_pass ${upstream};`,
    ];
  };
  return [
    `    location ~ ^/${b.prefix}/(?<route>upload)$ {`,
    ...common(true).map((l) => `      ${l}`),
    '    }',
    `    location ~ ^/${b.prefix}/(?<route>[a-z]+)$ {`,
    ...common(false).map((l) => `      ${l}`),
    '    }',
  ];
}

/**
 * startNginx writes the config for `backends` and starts nginx (1 worker) on a free port.
 * Returns `{ url, port, pid, errorLog, errorSize(), errorLinesSince(offset), stop() }`; `/nginx/hello` is answered by
 * nginx itself (`return 200`, the ceiling).
 */
export async function startNginx(stateDir, backends) {
  const nginx = await launchNginx({
    stateDir,
    label: 'bench/fastcgi-nginx.js',
    workerConnections: 4096,
    http: (port) => {
      const c = [
        '  access_log off;',
        '  default_type application/octet-stream;',
        '  keepalive_requests 1000000;',
        // 1 MiB echo bodies stay in memory both ways; nothing is spooled to disk.
        '  client_max_body_size 0;',
        '  client_body_buffer_size 2m;',
        '  fastcgi_buffer_size 16k;',
        '  fastcgi_buffers 32 64k;',
        '  fastcgi_busy_buffers_size 128k;',
        '  fastcgi_max_temp_file_size 0;',
        '  proxy_buffer_size 16k;',
        '  proxy_buffers 32 64k;',
        '  proxy_busy_buffers_size 128k;',
        '  proxy_max_temp_file_size 0;',
      ];
      backends.forEach((b, i) => {
        c.push(`  upstream backend_${i} {`, `    server unix:${b.socket};`);
        if (b.keepConn !== false) c.push('    keepalive 32;');
        c.push('  }');
      });
      c.push(
        '  server {',
        `    listen 127.0.0.1:${port};`,
        '    server_name localhost;',
        '    location = /nginx/hello { default_type text/plain; return 200 "hello world\\n"; }',
      );
      backends.forEach((b, i) => c.push(...locationFor(b, i)));
      c.push('  }');
      return c;
    },
  });
  const errorLog = nginx.errorLog;
  return {
    ...nginx,
    /** errorSize is the error log's size now, to count the lines a run adds. */
    errorSize: () => sizeOf(errorLog),
    /** errorLinesSince returns the lines written after `offset` bytes. */
    errorLinesSince: (offset) =>
      readText(errorLog)
        .slice(offset)
        .split('\n')
        .filter((l) => l.trim() !== ''),
  };
}

function sizeOf(file) {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}
