// Client-side probes for cgi-servers.test.ts: a GET that timestamps each piece of the body as it
// arrives, a deterministic upload body with its SHA-256, and the normalization that makes
// responses from different web servers comparable.
import { createHash } from 'node:crypto';
import { request } from 'node:http';
import type { HttpResponse } from '../harness/servers.js';

/** Arrival is one piece of a response body and the time it reached the client. */
export interface Arrival {
  /** at is Date.now() when the piece arrived. */
  at: number;
  bytes: number;
}

/** TimedResponse is a response read with {@link timedGet}. */
export interface TimedResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  arrivals: Arrival[];
}

/** timedGet sends a GET and records when each piece of the body arrives. */
export function timedGet(url: string, timeoutMs = 10_000): Promise<TimedResponse> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false });
    const timer = setTimeout(
      () => req.destroy(new Error(`timedGet ${url}: no answer in ${timeoutMs} ms`)),
      timeoutMs,
    );
    req.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.once('response', (res) => {
      const chunks: Buffer[] = [];
      const arrivals: Arrival[] = [];
      res.on('data', (c: Buffer) => {
        arrivals.push({ at: Date.now(), bytes: c.length });
        chunks.push(c);
      });
      res.once('error', reject);
      res.once('end', () => {
        clearTimeout(timer);
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks),
          arrivals,
        });
      });
    });
    req.end();
  });
}

/** UploadBody is a request body produced piece by piece, and the digest it will have. */
export interface UploadBody {
  size: number;
  sha256: string;
  /** chunks yields the body; each call starts it again from the beginning. */
  chunks(): AsyncGenerator<Buffer>;
}

/**
 * uploadBody describes `size` bytes sent in `pieceSize` pieces: piece i is one of 17 patterns
 * (i mod 17) stamped with i in its first bytes, so a dropped, repeated or reordered piece
 * changes the hash. The body is generated while it is sent, never held whole by the test.
 */
export function uploadBody(size: number, pieceSize = 64 * 1024): UploadBody {
  const patterns = Array.from({ length: 17 }, (_, k) => {
    const b = Buffer.allocUnsafe(pieceSize);
    for (let j = 0; j < pieceSize; j++) b[j] = (k * 131 + j * 7 + (j >> 8)) & 0xff;
    return b;
  });
  function* pieces(): Generator<Buffer> {
    for (let i = 0, off = 0; off < size; i++, off += pieceSize) {
      const b = Buffer.from(
        patterns[i % patterns.length]!.subarray(0, Math.min(pieceSize, size - off)),
      );
      if (b.length >= 4) b.writeUInt32BE(i, 0);
      yield b;
    }
  }
  const hash = createHash('sha256');
  for (const b of pieces()) hash.update(b);
  return {
    size,
    sha256: hash.digest('hex'),
    async *chunks() {
      yield* pieces();
    },
  };
}

/** sha256 returns the hex SHA-256 of `data`. */
export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * SERVER_HEADERS are the response headers a web server adds or rewrites on its own, so they
 * are left out when responses of different servers are compared: Date, Server and connection
 * management everywhere; Content-Length (Apache drops the script's and sends the body chunked;
 * {@link normalizeResponse} checks it against the body where present); Accept-Ranges (lighttpd
 * adds it to 200 responses).
 */
export const SERVER_HEADERS: ReadonlySet<string> = new Set([
  'date',
  'server',
  'connection',
  'keep-alive',
  'transfer-encoding',
  'content-length',
  'accept-ranges',
]);

/** NormalizedResponse is what must be equal when two servers answer the same request. */
export interface NormalizedResponse {
  status: number;
  /** headers are the remaining `name: value` lines, names lower-cased, sorted. */
  headers: string[];
  /** body is the text when it is short UTF-8, else `LENGTH bytes, sha256 HEX`. */
  body: string;
}

/**
 * normalizeResponse strips what a server adds on its own ({@link SERVER_HEADERS}) and keeps
 * status, the app's headers and the body. A Content-Length that is present must match the body
 * (HEAD excepted: there it describes the GET body).
 */
export function normalizeResponse(res: HttpResponse, method = 'GET'): NormalizedResponse {
  const length = res.headers['content-length'];
  if (length !== undefined && method !== 'HEAD' && Number(length) !== res.body.length) {
    throw new Error(`Content-Length ${length} but ${res.body.length} body bytes`);
  }
  const headers: string[] = [];
  for (let i = 0; i < res.rawHeaders.length; i += 2) {
    const name = res.rawHeaders[i]!.toLowerCase();
    if (!SERVER_HEADERS.has(name)) headers.push(`${name}: ${res.rawHeaders[i + 1]}`);
  }
  headers.sort();
  const text = res.body.toString('utf8');
  const printable = res.body.length <= 4096 && Buffer.from(text, 'utf8').equals(res.body);
  return {
    status: res.status,
    headers,
    body: printable ? text : `${res.body.length} bytes, sha256 ${sha256(res.body)}`,
  };
}
