// Helpers shared by the FastCGI codec tests (records, params): byte strings and coded errors.
import assert from 'node:assert/strict';
import { BridgeError } from '../../src/errors.js';

/** bytes concatenates byte values, latin-1 strings and byte arrays into one Buffer. */
export function bytes(...parts: (number[] | string | Uint8Array)[]): Buffer {
  return Buffer.concat(
    parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p))),
  );
}

/** coded is an assert.throws validator: a BridgeError with `code` and an `fcgi: ` message. */
export function coded(code: string): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof BridgeError, `expected a BridgeError, got ${String(e)}`);
    assert.equal(e.code, code);
    assert.match(e.message, /^fcgi: /);
    return true;
  };
}
