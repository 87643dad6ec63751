// The host side of RFC 3875 §4: the environment a CGI program gets — the request's
// meta-variables plus an allow-list from the bridge's own environment, never all of it.
import { BridgeError } from '../errors.js';
import type { Environ } from '../gateway/types.js';
import { metaVariablesFromEnviron } from './environ.js';

/** DEFAULT_PATH is the child's PATH when the bridge itself has none. */
export const DEFAULT_PATH = '/usr/local/bin:/usr/bin:/bin';

/** InheritOptions say what a CGI child takes from the bridge's environment. */
export interface InheritOptions {
  /** inheritEnv names variables copied from the bridge's environment (`--inherit-env NAME`). */
  inheritEnv?: readonly string[];
  /** env sets variables outright (`--env K=V`): a record, or `K=V` strings. */
  env?: Readonly<Record<string, string>> | readonly string[];
}

// execve(2): a name holds no '=' and no NUL; a value no NUL.
const ENV_NAME = /^[^=\0]+$/;

function badOption(message: string): BridgeError {
  return new BridgeError('CGI_ERR_BAD_OPTION', `cgi: ${message}`);
}

function envPairs(env: InheritOptions['env']): [string, string][] {
  if (env === undefined) return [];
  if (!Array.isArray(env)) return Object.entries(env as Record<string, string>);
  return (env as readonly string[]).map((kv) => {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw badOption(`env entry ${JSON.stringify(kv)} is not NAME=VALUE`);
    return [kv.slice(0, eq), kv.slice(eq + 1)];
  });
}

/**
 * inheritedEnvironment is the part of a child's environment that comes from the bridge: PATH
 * (from `hostEnv`, else {@link DEFAULT_PATH}), each variable `inheritEnv` names that `hostEnv`
 * has, then `env` as given. It is computed once per host, not per request. A bad name or a NUL
 * in a value is `CGI_ERR_BAD_OPTION`.
 */
export function inheritedEnvironment(
  hostEnv: Readonly<Record<string, string | undefined>>,
  options: InheritOptions = {},
): Record<string, string> {
  const out: Record<string, string> = { PATH: hostEnv.PATH || DEFAULT_PATH };
  for (const name of options.inheritEnv ?? []) {
    if (!ENV_NAME.test(name)) throw badOption(`cannot inherit ${JSON.stringify(name)}`);
    const v = hostEnv[name];
    if (v !== undefined) out[name] = v;
  }
  for (const [name, value] of envPairs(options.env)) {
    if (!ENV_NAME.test(name) || value.includes('\0')) {
      throw badOption(`env ${JSON.stringify(name)} has a bad name or a NUL in its value`);
    }
    out[name] = value;
  }
  return out;
}

/** ScriptVariables are the meta-variables the host decides for the program it runs. */
export interface ScriptVariables {
  SCRIPT_FILENAME: string;
  SCRIPT_NAME: string;
  PATH_INFO: string;
  /** PATH_TRANSLATED: a string sets it, null removes it, undefined keeps the environ's. */
  PATH_TRANSLATED?: string | null;
}

/**
 * childEnvironment builds a program's environment: the environ's meta-variables
 * (metaVariablesFromEnviron: upper-case string keys, HTTP_PROXY never, httpoxy), the host's
 * `script` variables, GATEWAY_INTERFACE=CGI/1.1, SERVER_SOFTWARE (the environ's, else
 * `serverSoftware`), REDIRECT_STATUS=200 unless set (php-cgi's force-redirect check refuses to
 * run without it), and last `inherited` (PATH and the configured names), so a request can never
 * replace PATH.
 */
export function childEnvironment(
  environ: Environ,
  script: ScriptVariables,
  inherited: Readonly<Record<string, string>>,
  serverSoftware: string,
): Record<string, string> {
  const env = metaVariablesFromEnviron(environ);
  env.SCRIPT_FILENAME = script.SCRIPT_FILENAME;
  env.SCRIPT_NAME = script.SCRIPT_NAME;
  env.PATH_INFO = script.PATH_INFO;
  if (script.PATH_TRANSLATED === null) delete env.PATH_TRANSLATED;
  else if (script.PATH_TRANSLATED !== undefined) env.PATH_TRANSLATED = script.PATH_TRANSLATED;
  env.GATEWAY_INTERFACE = 'CGI/1.1';
  env.SERVER_SOFTWARE ||= serverSoftware;
  env.REDIRECT_STATUS ||= '200';
  for (const k in inherited) env[k] = inherited[k]!;
  return env;
}

/**
 * searchArguments returns a program's command-line arguments by RFC 3875 §4.4: a query string
 * without an unencoded `=` is a search string, split on `+` into words that are each
 * percent-decoded. No arguments at all when the query is empty, holds `=`, or when any word
 * cannot be passed (a bad escape, invalid UTF-8, a NUL), or there are more than `maxWords`
 * ("If the server cannot create any part of the argument list, then the server MUST NOT
 * generate any command line information").
 */
export function searchArguments(query: string, maxWords = 1024): string[] {
  if (query === '' || query.includes('=')) return [];
  const words = query.split('+');
  if (words.length > maxWords) return [];
  const out: string[] = [];
  for (const word of words) {
    const decoded = decodeWord(word);
    if (decoded === null) return [];
    out.push(decoded);
  }
  return out;
}

const fatalUtf8 = new TextDecoder('utf-8', { fatal: true });

function isHex(b: number | undefined): boolean {
  return (
    b !== undefined &&
    ((b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66))
  );
}

// decodeWord percent-decodes one search word; null when it cannot become an argument.
function decodeWord(word: string): string | null {
  if (!word.includes('%')) return word.includes('\0') ? null : word;
  // The environ's strings are decoded text already: escapes are ASCII, so work on UTF-8 bytes.
  const src = Buffer.from(word, 'utf8');
  const out = Buffer.allocUnsafe(src.length);
  let o = 0;
  for (let i = 0; i < src.length; i++) {
    const b = src[i]!;
    if (b !== 0x25) {
      out[o++] = b;
      continue;
    }
    if (!isHex(src[i + 1]) || !isHex(src[i + 2])) return null;
    out[o++] = parseInt(src.toString('latin1', i + 1, i + 3), 16);
    i += 2;
  }
  const bytes = out.subarray(0, o);
  if (bytes.includes(0)) return null;
  try {
    return fatalUtf8.decode(bytes);
  } catch {
    return null;
  }
}
