// FastCGI 1.0 wire constants: record types, roles, flags, protocol statuses and sizes (FastCGI spec §8).

/** FCGI_VERSION_1 is the only protocol version; every record header carries it (FastCGI spec §3.3). */
export const FCGI_VERSION_1 = 1;

/** FCGI_HEADER_LEN is the fixed size of a record header in bytes (FastCGI spec §3.3, §8). */
export const FCGI_HEADER_LEN = 8;

/** FCGI_MAX_CONTENT_LENGTH is the largest `contentLength` a header can state: a uint16 (FastCGI spec §3.3). */
export const FCGI_MAX_CONTENT_LENGTH = 65535;

/** FCGI_MAX_PADDING_LENGTH is the largest `paddingLength` a header can state: a uint8 (FastCGI spec §3.3). */
export const FCGI_MAX_PADDING_LENGTH = 255;

/**
 * FCGI_MAX_RECORD_LENGTH is the size of the largest possible record (header, content and
 * padding), so the most a decoder ever has to hold for one incomplete record.
 */
export const FCGI_MAX_RECORD_LENGTH =
  FCGI_HEADER_LEN + FCGI_MAX_CONTENT_LENGTH + FCGI_MAX_PADDING_LENGTH;

/** FCGI_NULL_REQUEST_ID is the request id of management records (FastCGI spec §3.3, §4). */
export const FCGI_NULL_REQUEST_ID = 0;

/** FCGI_MAX_REQUEST_ID is the largest request id a header can carry: a uint16 (FastCGI spec §3.3). */
export const FCGI_MAX_REQUEST_ID = 65535;

// Record types (FastCGI spec §8). Types 1–11 are all that version 1 defines; a peer may still send
// others, which a decoder passes through so the connection can answer FCGI_UNKNOWN_TYPE (§4.2).

/** FCGI_BEGIN_REQUEST (1) starts a request; its body is role and flags (FastCGI spec §5.1). */
export const FCGI_BEGIN_REQUEST = 1;
/** FCGI_ABORT_REQUEST (2) asks the application to abort a request; empty body (FastCGI spec §5.4). */
export const FCGI_ABORT_REQUEST = 2;
/** FCGI_END_REQUEST (3) ends a request with app and protocol status (FastCGI spec §5.5). */
export const FCGI_END_REQUEST = 3;
/** FCGI_PARAMS (4) is the name-value stream of CGI meta-variables (FastCGI spec §5.2). */
export const FCGI_PARAMS = 4;
/** FCGI_STDIN (5) is the request body stream (FastCGI spec §5.3). */
export const FCGI_STDIN = 5;
/** FCGI_STDOUT (6) is the response stream (FastCGI spec §5.3). */
export const FCGI_STDOUT = 6;
/** FCGI_STDERR (7) is the error-log stream (FastCGI spec §5.3). */
export const FCGI_STDERR = 7;
/** FCGI_DATA (8) is the Filter role's extra input stream (FastCGI spec §5.3, §6.4). */
export const FCGI_DATA = 8;
/** FCGI_GET_VALUES (9) queries application variables; a management record (FastCGI spec §4.1). */
export const FCGI_GET_VALUES = 9;
/** FCGI_GET_VALUES_RESULT (10) answers FCGI_GET_VALUES (FastCGI spec §4.1). */
export const FCGI_GET_VALUES_RESULT = 10;
/** FCGI_UNKNOWN_TYPE (11) answers a management record of a type not understood (FastCGI spec §4.2). */
export const FCGI_UNKNOWN_TYPE = 11;
/** FCGI_MAXTYPE is the highest record type version 1 defines (FastCGI spec §8). */
export const FCGI_MAXTYPE = FCGI_UNKNOWN_TYPE;

/** RecordType is one of the eleven record types FastCGI 1.0 defines. */
export type RecordType =
  | typeof FCGI_BEGIN_REQUEST
  | typeof FCGI_ABORT_REQUEST
  | typeof FCGI_END_REQUEST
  | typeof FCGI_PARAMS
  | typeof FCGI_STDIN
  | typeof FCGI_STDOUT
  | typeof FCGI_STDERR
  | typeof FCGI_DATA
  | typeof FCGI_GET_VALUES
  | typeof FCGI_GET_VALUES_RESULT
  | typeof FCGI_UNKNOWN_TYPE;

const RECORD_TYPE_NAMES: readonly string[] = [
  '',
  'FCGI_BEGIN_REQUEST',
  'FCGI_ABORT_REQUEST',
  'FCGI_END_REQUEST',
  'FCGI_PARAMS',
  'FCGI_STDIN',
  'FCGI_STDOUT',
  'FCGI_STDERR',
  'FCGI_DATA',
  'FCGI_GET_VALUES',
  'FCGI_GET_VALUES_RESULT',
  'FCGI_UNKNOWN_TYPE',
];

/** recordTypeName gives the spec name of a record type (`'FCGI_STDIN'`), or `'type N'` for others, for logs. */
export function recordTypeName(type: number): string {
  return (type >= 1 && type <= FCGI_MAXTYPE && RECORD_TYPE_NAMES[type]) || `type ${type}`;
}

/**
 * isManagementRecordType tells whether `type` is a management record type: one sent with
 * request id 0 and not tied to a request (FastCGI spec §3.3, §4).
 */
export function isManagementRecordType(type: number): boolean {
  return type === FCGI_GET_VALUES || type === FCGI_GET_VALUES_RESULT || type === FCGI_UNKNOWN_TYPE;
}

// Roles, the `role` field of FCGI_BEGIN_REQUEST (FastCGI spec §5.1, §6).

/** FCGI_RESPONDER (1): the CGI/1.1 role, params and stdin in, a response out (FastCGI spec §6.2). */
export const FCGI_RESPONDER = 1;
/** FCGI_AUTHORIZER (2): params in, an allow/deny decision out (FastCGI spec §6.3). */
export const FCGI_AUTHORIZER = 2;
/** FCGI_FILTER (3): like a Responder plus a file on FCGI_DATA (FastCGI spec §6.4). */
export const FCGI_FILTER = 3;

/** Role is one of the three roles FastCGI 1.0 defines; a decoded `role` may be any uint16. */
export type Role = typeof FCGI_RESPONDER | typeof FCGI_AUTHORIZER | typeof FCGI_FILTER;

/**
 * FCGI_KEEP_CONN is the FCGI_BEGIN_REQUEST flag bit asking the application to keep the
 * connection open after the request; without it the application closes it (FastCGI spec §5.1).
 */
export const FCGI_KEEP_CONN = 1;

// Protocol statuses, the `protocolStatus` field of FCGI_END_REQUEST (FastCGI spec §5.5).

/** FCGI_REQUEST_COMPLETE (0): normal end of request (FastCGI spec §5.5). */
export const FCGI_REQUEST_COMPLETE = 0;
/** FCGI_CANT_MPX_CONN (1): a second concurrent request on a connection that does not multiplex (FastCGI spec §5.5). */
export const FCGI_CANT_MPX_CONN = 1;
/** FCGI_OVERLOADED (2): the application ran out of a resource, e.g. database connections (FastCGI spec §5.5). */
export const FCGI_OVERLOADED = 2;
/** FCGI_UNKNOWN_ROLE (3): the application does not implement the requested role (FastCGI spec §5.5). */
export const FCGI_UNKNOWN_ROLE = 3;

/** ProtocolStatus is one of the four protocol statuses of FCGI_END_REQUEST. */
export type ProtocolStatus =
  | typeof FCGI_REQUEST_COMPLETE
  | typeof FCGI_CANT_MPX_CONN
  | typeof FCGI_OVERLOADED
  | typeof FCGI_UNKNOWN_ROLE;

// Variable names a web server may query with FCGI_GET_VALUES (FastCGI spec §4.1).

/** FCGI_MAX_CONNS names the most concurrent transport connections the application accepts (FastCGI spec §4.1). */
export const FCGI_MAX_CONNS = 'FCGI_MAX_CONNS';
/** FCGI_MAX_REQS names the most concurrent requests the application accepts (FastCGI spec §4.1). */
export const FCGI_MAX_REQS = 'FCGI_MAX_REQS';
/** FCGI_MPXS_CONNS names whether the application multiplexes connections: `'0'` or `'1'` (FastCGI spec §4.1). */
export const FCGI_MPXS_CONNS = 'FCGI_MPXS_CONNS';
