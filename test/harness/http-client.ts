// A minimal HTTP/1.1 client for integration tests, on node:http (no fetch: fetch hides the raw
// status line and adds headers like Sec-Fetch-Mode that would show up in CGI environments).
import { Agent, request, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';

/** Options of {@link httpRequest}. */
export interface HttpRequestOptions {
  /** Default GET. */
  method?: string;
  headers?: OutgoingHttpHeaders;
  /**
   * Request body. A Buffer/string is sent with Content-Length (unless a header says otherwise);
   * an async iterable is streamed with `Transfer-Encoding: chunked`.
   */
  body?: Buffer | string | AsyncIterable<Buffer>;
  /** Give up (and reject) after this long (default 10000 ms). */
  timeoutMs?: number;
  /** Agent to use; default none (`agent: false`, a new connection that is closed afterwards). */
  agent?: Agent;
}

/** HttpResponse is a fully read response. */
export interface HttpResponse {
  status: number;
  /** The reason phrase exactly as the server sent it (may be empty). */
  statusMessage: string;
  headers: IncomingHttpHeaders;
  /** Header names and values in wire order, duplicates kept. */
  rawHeaders: string[];
  body: Buffer;
  /** The body as UTF-8 text. */
  text(): string;
}

/** httpRequest sends one request and reads the whole response. */
export function httpRequest(url: string, opts: HttpRequestOptions = {}): Promise<HttpResponse> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    const body = opts.body;
    const headers: OutgoingHttpHeaders = { ...opts.headers };
    if ((typeof body === 'string' || Buffer.isBuffer(body)) && !hasHeader(headers)) {
      headers['content-length'] = Buffer.byteLength(body);
    }
    const req = request(url, {
      method: opts.method ?? 'GET',
      headers,
      agent: opts.agent ?? false,
    });
    const timer = setTimeout(() => {
      req.destroy(
        new Error(`httpRequest ${opts.method ?? 'GET'} ${url}: no answer in ${timeoutMs} ms`),
      );
    }, timeoutMs);
    const fail = (e: Error): void => {
      clearTimeout(timer);
      reject(e);
    };
    req.once('error', fail);
    req.once('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.once('error', fail);
      res.once('end', () => {
        clearTimeout(timer);
        const buf = Buffer.concat(chunks);
        resolve({
          status: res.statusCode ?? 0,
          statusMessage: res.statusMessage ?? '',
          headers: res.headers,
          rawHeaders: res.rawHeaders,
          body: buf,
          text: () => buf.toString('utf8'),
        });
      });
    });
    if (body === undefined) {
      req.end();
    } else if (typeof body === 'string' || Buffer.isBuffer(body)) {
      req.end(body);
    } else {
      void (async () => {
        try {
          for await (const chunk of body) {
            if (!req.write(chunk)) await new Promise((r) => req.once('drain', r));
          }
          req.end();
        } catch (e) {
          req.destroy(e instanceof Error ? e : new Error(String(e)));
        }
      })();
    }
  });
}

function hasHeader(headers: OutgoingHttpHeaders): boolean {
  return Object.keys(headers).some((k) => {
    const l = k.toLowerCase();
    return l === 'content-length' || l === 'transfer-encoding';
  });
}

/** KeepAliveClient sends requests over a pool of reused connections; see {@link keepAliveClient}. */
export interface KeepAliveClient {
  request(url: string, opts?: Omit<HttpRequestOptions, 'agent'>): Promise<HttpResponse>;
  /** close destroys the pooled connections. */
  close(): void;
}

/**
 * keepAliveClient returns a client whose requests reuse connections (`maxSockets` of them,
 * default 1, so sequential requests go over one connection). Close it when done.
 */
export function keepAliveClient(maxSockets = 1): KeepAliveClient {
  const agent = new Agent({ keepAlive: true, maxSockets });
  return {
    request: (url, opts = {}) => httpRequest(url, { ...opts, agent }),
    close: () => agent.destroy(),
  };
}
