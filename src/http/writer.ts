// The HTTP front end's ResponseWriter: the gateway pipeline's output onto a node:http ServerResponse.
import type { ServerResponse } from 'node:http';
import { BridgeError } from '../errors.js';
import type { ResponseWriter } from '../gateway/handler.js';
import type { Header } from '../gateway/types.js';

/** HttpWriterHooks let the server add connection handling around the app's response. */
export interface HttpWriterHooks {
  /** closeConnection is asked at writeHead: true adds `Connection: close` (no keep-alive). */
  closeConnection?: () => boolean;
  /** beforeEnd runs just before the response ends (the server starts draining an unread body). */
  beforeEnd?: () => void;
}

function gone(): BridgeError {
  return new BridgeError('HTTP_ERR_CLIENT_GONE', 'http: the client closed the connection');
}

/**
 * httpResponseWriter writes a gateway response to `res`. Headers go out as a flat list, so
 * repeated fields (Set-Cookie) stay separate; node adds chunked encoding when there is no
 * Content-Length. `write` resolves when the socket takes more (backpressure on 'drain'),
 * `end` when the response is flushed, and `abort` destroys the socket so the client sees a cut
 * response and the connection is not reused.
 */
export function httpResponseWriter(
  res: ServerResponse,
  hooks: HttpWriterHooks = {},
): ResponseWriter {
  // Resolves on `event`, rejects when the response closes first (the client went away).
  const waitFor = (event: 'drain' | 'finish'): Promise<void> =>
    new Promise((resolve, reject) => {
      const onEvent = (): void => {
        res.removeListener('close', onClose);
        resolve();
      };
      const onClose = (): void => {
        res.removeListener(event, onEvent);
        if (event === 'finish' && res.writableFinished) resolve();
        else reject(gone());
      };
      res.once(event, onEvent);
      res.once('close', onClose);
    });

  return {
    writeHead(code: number, reason: string, headers: Header[]): void {
      if (res.destroyed) throw gone();
      const flat: string[] = [];
      for (const [name, value] of headers) flat.push(name, value);
      // The pipeline refuses hop-by-hop headers from the app, so this is the only Connection field.
      if (hooks.closeConnection?.()) flat.push('Connection', 'close');
      res.writeHead(code, reason, flat);
    },
    write(chunk: Uint8Array): void | Promise<void> {
      if (res.destroyed) throw gone();
      if (res.write(chunk)) return;
      return waitFor('drain');
    },
    end(): Promise<void> {
      if (res.destroyed) return Promise.reject(gone());
      hooks.beforeEnd?.();
      const finished = waitFor('finish');
      res.end();
      return finished;
    },
    abort(): void {
      res.destroy();
    },
  };
}
