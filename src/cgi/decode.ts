// The one rule for bytes that become environ strings, shared by every front end:
// decode as UTF-8, and replace an invalid sequence with U+FFFD (docs/translator.md).

const NON_ASCII = /[^\x00-\x7f]/; // eslint-disable-line no-control-regex
const NON_LATIN1 = /[^\x00-\xff]/; // eslint-disable-line no-control-regex

/** decodeBytes turns meta-variable bytes into a string by the project's UTF-8 rule. */
export function decodeBytes(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
}

/**
 * decodeLatin1 re-reads a byte string (one char per byte, U+0000 to U+00FF: how node:http gives
 * header values and the request target) by the same UTF-8 rule. Plain ASCII is returned as it is;
 * so is a string holding a char above U+00FF, which cannot be a byte string (it is decoded already).
 */
export function decodeLatin1(s: string): string {
  if (!NON_ASCII.test(s) || NON_LATIN1.test(s)) return s;
  return Buffer.from(s, 'latin1').toString('utf8');
}

/**
 * percentDecode decodes `%XX` escapes to bytes, then all the bytes by the UTF-8 rule (so `%C3%A9`
 * is `é` and a lone `%FF` is U+FFFD). Other chars are bytes as in {@link decodeLatin1}. A `%` not
 * followed by two hex digits stays as it is (the HTTP front end refuses it before this).
 */
export function percentDecode(s: string): string {
  if (!s.includes('%')) return decodeLatin1(s);
  const bytes = Buffer.from(s, NON_LATIN1.test(s) ? 'utf8' : 'latin1');
  const out = Buffer.allocUnsafe(bytes.length);
  let o = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (b === 0x25 && i + 2 < bytes.length && isHex(bytes[i + 1]) && isHex(bytes[i + 2])) {
      out[o++] = parseInt(String.fromCharCode(bytes[i + 1]!, bytes[i + 2]!), 16);
      i += 2;
    } else {
      out[o++] = b;
    }
  }
  return out.subarray(0, o).toString('utf8');
}

function isHex(b: number | undefined): boolean {
  return (
    b !== undefined &&
    ((b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66))
  );
}

// RFC 3986 §3.3: pchar = unreserved / pct-encoded / sub-delims / ":" / "@"; plus "/" between segments.
const PATH_SAFE = /^[A-Za-z0-9\-._~!$&'()*+,;=:@/]*$/;

/** percentEncodePath encodes a decoded path (SCRIPT_NAME + PATH_INFO) for a REQUEST_URI. */
export function percentEncodePath(path: string): string {
  if (PATH_SAFE.test(path)) return path;
  let out = '';
  for (const b of Buffer.from(path, 'utf8')) {
    const c = String.fromCharCode(b);
    out += b < 0x80 && PATH_SAFE.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** removeDotSegments resolves `.` and `..` in an absolute path (RFC 3986 §5.2.4); it never climbs above `/`. */
export function removeDotSegments(path: string): string {
  if (!path.includes('.')) return path;
  const out: string[] = [];
  const segments = path.split('/');
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i]!;
    const last = i === segments.length - 1;
    if (seg === '.' || seg === '..') {
      if (seg === '..' && out.length > 1) out.pop();
      if (last) out.push('');
    } else {
      out.push(seg);
    }
  }
  const joined = out.join('/');
  return joined.startsWith('/') ? joined : `/${joined}`;
}
