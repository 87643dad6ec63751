// Client address filtering for the FastCGI side: `--allowed-clients` and FCGI_WEB_SERVER_ADDRS
// (FastCGI spec §3.2), addresses or CIDR ranges, IPv4 and IPv6, checked when a TCP connection
// is accepted; connections from anyone else are closed before a byte is read.
import { isIPv4, isIPv6, type Socket } from 'node:net';
import { BridgeError } from '../errors.js';

/** ClientFilter is a parsed allow list; see {@link parseAllowedClients}. */
export interface ClientFilter {
  /** rules are the entries as written (for messages). */
  readonly rules: readonly string[];
  /** source names where the list came from: `--allowed-clients` or `FCGI_WEB_SERVER_ADDRS`. */
  readonly source: string;
  /** allows tells whether a peer address (as `socket.remoteAddress` gives it) may connect. */
  allows(address: string): boolean;
}

// An address as 128 bits; IPv4 a.b.c.d is held as ::ffff:a.b.c.d (RFC 4291 §2.5.5.2), so one
// comparison covers IPv4 peers, IPv6 peers and IPv4 peers seen through a dual-stack socket.
interface Range {
  bits: bigint;
  prefix: number;
}

const V4_MAPPED = 0xffffn << 32n;

function v4ToBits(address: string): bigint {
  const v4 = address.split('.').reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
  return V4_MAPPED | v4;
}

function v6ToBits(address: string): bigint {
  let head = address;
  let v4Tail: bigint | undefined;
  const lastColon = head.lastIndexOf(':');
  if (head.slice(lastColon + 1).includes('.')) {
    // An embedded IPv4 tail (::ffff:1.2.3.4, 64:ff9b::1.2.3.4) stands for the last 32 bits.
    v4Tail = v4ToBits(head.slice(lastColon + 1)) & 0xffffffffn;
    head = `${head.slice(0, lastColon + 1)}0:0`;
  }
  const [left, right] = head.includes('::') ? head.split('::') : [head, undefined];
  const groups = (s: string | undefined): string[] => (s ? s.split(':') : []);
  const l = groups(left);
  const r = groups(right);
  const all =
    right === undefined ? l : [...l, ...Array<string>(8 - l.length - r.length).fill('0'), ...r];
  let bits = all.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
  if (v4Tail !== undefined) bits = (bits & ~0xffffffffn) | v4Tail;
  return bits;
}

// toBits turns a literal address into 128 bits; undefined when it is not an IP address.
// A zone (fe80::1%eth0) is ignored: rules name addresses, not interfaces.
function toBits(address: string): bigint | undefined {
  const a = address.replace(/^\[(.*)\]$/, '$1').replace(/%.*$/, '');
  if (isIPv4(a)) return v4ToBits(a);
  if (isIPv6(a)) return v6ToBits(a);
  return undefined;
}

function mask(prefix: number): bigint {
  return prefix === 0 ? 0n : ((1n << BigInt(prefix)) - 1n) << BigInt(128 - prefix);
}

function parseRule(rule: string, source: string): Range {
  const bad = (why: string): BridgeError =>
    new BridgeError(
      'CLI_ERR_BAD_ALLOWED_CLIENTS',
      `cgi-bridge: ${source}: ${JSON.stringify(rule)} ${why} (want addresses or CIDR ranges, e.g. 127.0.0.1,10.0.0.0/8,::1)`,
    );
  const slash = rule.indexOf('/');
  const addr = slash < 0 ? rule : rule.slice(0, slash);
  const bits = toBits(addr);
  if (bits === undefined) throw bad('is not an IP address');
  const plain = addr.replace(/^\[(.*)\]$/, '$1');
  // An IPv4 prefix counts within the ::ffff:0:0/96 block its addresses are held in.
  const isV4 = isIPv4(plain);
  const max = isV4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const p = rule.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) throw bad(`has a prefix length outside 0-${max}`);
    prefix = Number(p);
  }
  const total = isV4 ? 96 + prefix : prefix;
  return { bits: bits & mask(total), prefix: total };
}

/**
 * parseAllowedClients parses an allow list: comma-separated (or given as an array) IPv4 and
 * IPv6 addresses and CIDR ranges (`127.0.0.1`, `10.0.0.0/8`, `::1`, `fd00::/8`, `[::1]`). An
 * IPv4 rule also matches the same peer seen as an IPv4-mapped IPv6 address (`::ffff:10.1.2.3`,
 * what a socket listening on `::` reports). Host names are not accepted: the list is checked
 * on every accept, and a DNS answer is not an identity. Junk is `CLI_ERR_BAD_ALLOWED_CLIENTS`.
 */
export function parseAllowedClients(
  spec: string | readonly string[],
  source = '--allowed-clients',
): ClientFilter {
  const rules = (typeof spec === 'string' ? [spec] : spec)
    .flatMap((s) => s.split(','))
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (rules.length === 0) {
    throw new BridgeError(
      'CLI_ERR_BAD_ALLOWED_CLIENTS',
      `cgi-bridge: ${source}: the list is empty; it would refuse every client`,
    );
  }
  const ranges = rules.map((r) => parseRule(r, source));
  return {
    rules,
    source,
    allows(address: string): boolean {
      const bits = toBits(address);
      if (bits === undefined) return false;
      return ranges.some((r) => (bits & mask(r.prefix)) === r.bits);
    },
  };
}

/**
 * allowedClientsFrom returns the filter the process runs with: `--allowed-clients` when given
 * (an explicit flag wins over an inherited variable), else FCGI_WEB_SERVER_ADDRS from `env`
 * when set and not empty (FastCGI spec §3.2), else undefined (every client allowed).
 */
export function allowedClientsFrom(
  flag: string | readonly string[] | undefined,
  env: NodeJS.ProcessEnv = process.env,
): ClientFilter | undefined {
  if (flag !== undefined && (typeof flag === 'string' ? flag !== '' : flag.length > 0)) {
    return parseAllowedClients(flag, '--allowed-clients');
  }
  const fromEnv = env.FCGI_WEB_SERVER_ADDRS;
  if (fromEnv !== undefined && fromEnv.trim() !== '') {
    return parseAllowedClients(fromEnv, 'FCGI_WEB_SERVER_ADDRS');
  }
  return undefined;
}

/**
 * guardConnections wraps a connection handler for a TCP listener: a socket whose peer the
 * filter does not allow (or whose peer address is already unknown: it reset) is destroyed at
 * once with one log line, and never reaches `handler`. Unix-socket listeners need no guard:
 * file permissions (`--socket-mode`) decide who may connect.
 */
export function guardConnections(
  handler: (socket: Socket) => void,
  filter: ClientFilter,
  log: (line: string) => void,
): (socket: Socket) => void {
  return (socket) => {
    const peer = socket.remoteAddress;
    if (peer !== undefined && filter.allows(peer)) {
      handler(socket);
      return;
    }
    log(`fcgi: refused a connection from ${peer ?? 'an unknown peer'}: not in ${filter.source}`);
    socket.destroy();
  };
}
