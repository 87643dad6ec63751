// status: answers with the status code asked for (?code=NNN, 200 to 599), to test how each web
// server passes the CGI Status line on. 204 and 304 carry no body.
import type { GatewayApp } from '../src/index.js';

// Reason phrases (RFC 9110 §15) for the codes people try; others get a generic one.
const REASONS: Record<number, string> = {
  200: 'OK',
  201: 'Created',
  202: 'Accepted',
  204: 'No Content',
  206: 'Partial Content',
  301: 'Moved Permanently',
  302: 'Found',
  303: 'See Other',
  304: 'Not Modified',
  307: 'Temporary Redirect',
  308: 'Permanent Redirect',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  410: 'Gone',
  413: 'Content Too Large',
  418: "I'm a teapot",
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** reasonPhrase returns the reason phrase of `code`, or a generic one by its class. */
export function reasonPhrase(code: number): string {
  return (
    REASONS[code] ??
    (code < 300
      ? 'Success'
      : code < 400
        ? 'Redirection'
        : code < 500
          ? 'Client Error'
          : 'Server Error')
  );
}

/** app answers `?code=NNN` with that status and the status line as a plain-text body. */
const app: GatewayApp = (environ, startResponse) => {
  const raw = new URLSearchParams(environ.QUERY_STRING).get('code') ?? '200';
  const code = /^[2-5]\d\d$/.test(raw) ? Number(raw) : NaN;
  if (Number.isNaN(code)) {
    startResponse('400 Bad Request', [['Content-Type', 'text/plain; charset=utf-8']]);
    return [`code must be a status code from 200 to 599, got ${JSON.stringify(raw)}\n`];
  }
  const status = `${code} ${reasonPhrase(code)}`;
  const headers: [string, string][] = [['Content-Type', 'text/plain; charset=utf-8']];
  if (code === 401) headers.push(['WWW-Authenticate', 'Basic realm="status example"']);
  if (code === 405) headers.push(['Allow', 'GET, HEAD']);
  startResponse(status, headers);
  return [`${status}\n`];
};

export default app;
