// Options the commands share (yargs option definitions in groups, as mocha's lib/cli/run.js),
// their value parsers, and the process set-up they ask for (--chdir, --env).
import type { Options } from 'yargs';
import { BridgeError } from '../errors.js';
import { parseListenAddress, parseSocketMode } from '../server/address.js';

/** GROUPS are the help screen's option groups. */
export const GROUPS = {
  APP: 'Application',
  LISTEN: 'Listening',
  LIMITS: 'Limits',
  CONFIG: 'Configuration',
  CGI: 'CGI programs',
} as const;

function usage(code: string, message: string): BridgeError {
  return new BridgeError(code, `cgi-bridge: ${message}`);
}

const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/**
 * parseSize reads a byte count: a number, or a number with k, M or G (powers of 1024, an
 * optional `i`/`B` after it is accepted: `10M`, `512KiB`, `1g`). Junk is `CLI_ERR_BAD_SIZE`.
 */
export function parseSize(input: string | number, flag = 'size'): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?$/i.exec(String(input).trim());
  const n = m ? Math.floor(Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase()]!) : NaN;
  if (!Number.isSafeInteger(n) || n < 0) {
    throw usage(
      'CLI_ERR_BAD_SIZE',
      `--${flag} ${JSON.stringify(String(input))} is not a size (e.g. 1048576, 512k, 10M, 1G)`,
    );
  }
  return n;
}

/** parseSeconds reads a duration in seconds (fractions allowed) and returns milliseconds. */
export function parseSeconds(input: string | number, flag = 'timeout'): number {
  const s = String(input).trim();
  const n = /^\d+(\.\d+)?$/.test(s) ? Number(s) : NaN;
  if (!Number.isFinite(n) || n > 2 ** 31 / 1000) {
    throw usage(
      'CLI_ERR_BAD_DURATION',
      `--${flag} ${JSON.stringify(s)} is not a number of seconds`,
    );
  }
  return Math.round(n * 1000);
}

/** parseEnvPairs reads `--env K=V` values (repeatable) into pairs; K must be a variable name. */
export function parseEnvPairs(values: unknown): [string, string][] {
  const list = values === undefined ? [] : Array.isArray(values) ? values : [values];
  return list.map((v: unknown) => {
    const s = String(v);
    const eq = s.indexOf('=');
    const name = eq > 0 ? s.slice(0, eq) : '';
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      throw usage('CLI_ERR_BAD_ENV', `--env ${JSON.stringify(s)} is not NAME=VALUE`);
    }
    return [name, s.slice(eq + 1)];
  });
}

/** appOptions are for every command that loads a TARGET: where it runs and its environment. */
export const appOptions = {
  chdir: {
    type: 'string',
    requiresArg: true,
    normalize: true,
    description: 'Change to DIR before loading the app (TARGET is resolved there)',
    group: GROUPS.APP,
  },
  env: {
    // Not `array: true`: an array option swallows the TARGET that follows it; a repeated
    // flag still collects into a list.
    type: 'string',
    requiresArg: true,
    description: 'Set an environment variable for the app or CGI programs, NAME=VALUE (repeatable)',
    group: GROUPS.APP,
    coerce: parseEnvPairs,
  },
} satisfies Record<string, Options>;

/** listenOptions are for the commands that listen (serve; fastcgi later). */
export const listenOptions = {
  listen: {
    type: 'string',
    requiresArg: true,
    description: 'Address: host:port, :port, [::1]:port, unix:/path, /path.sock or fd:N',
    group: GROUPS.LISTEN,
    coerce: parseListenAddress,
  },
  'socket-mode': {
    type: 'string',
    requiresArg: true,
    default: '660',
    description: 'Permission bits of a unix socket, octal',
    group: GROUPS.LISTEN,
    coerce: parseSocketMode,
  },
} satisfies Record<string, Options>;

/** limitOptions are the request limits and the graceful stop of a server. */
export const limitOptions = {
  'max-body': {
    type: 'string',
    requiresArg: true,
    default: '1G',
    description: 'Largest request body (413 beyond it); k, M, G suffixes',
    group: GROUPS.LIMITS,
    coerce: (v: string) => parseSize(v, 'max-body'),
  },
  'max-header-size': {
    type: 'string',
    requiresArg: true,
    default: '16k',
    description: 'Largest request line plus headers (431 beyond it)',
    group: GROUPS.LIMITS,
    coerce: (v: string) => parseSize(v, 'max-header-size'),
  },
  'headers-timeout': {
    type: 'string',
    requiresArg: true,
    default: '60',
    description: 'Seconds a client may take to send its headers (408 after)',
    group: GROUPS.LIMITS,
    coerce: (v: string) => parseSeconds(v, 'headers-timeout'),
  },
  'request-timeout': {
    type: 'string',
    requiresArg: true,
    default: '300',
    description: 'Seconds a client may take to send the whole request (408 after; 0: none)',
    group: GROUPS.LIMITS,
    coerce: (v: string) => parseSeconds(v, 'request-timeout'),
  },
  'keep-alive-timeout': {
    type: 'string',
    requiresArg: true,
    default: '5',
    description: 'Seconds an idle keep-alive connection stays open',
    group: GROUPS.LIMITS,
    coerce: (v: string) => parseSeconds(v, 'keep-alive-timeout'),
  },
  'graceful-timeout': {
    type: 'string',
    requiresArg: true,
    default: '10',
    description: 'Seconds SIGTERM/SIGINT waits for in-flight requests before cutting them',
    group: GROUPS.LIMITS,
    coerce: (v: string) => parseSeconds(v, 'graceful-timeout'),
  },
} satisfies Record<string, Options>;

/**
 * parseNameList reads `--inherit-env NAME` values (repeatable, each may also be a
 * comma-separated list) into variable names; anything else is `CLI_ERR_BAD_ENV`.
 */
export function parseNameList(values: unknown, flag = 'inherit-env'): string[] {
  const list = values === undefined ? [] : Array.isArray(values) ? values : [values];
  const names = list.flatMap((v: unknown) => String(v).split(','));
  for (const name of names) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      throw usage('CLI_ERR_BAD_ENV', `--${flag} ${JSON.stringify(name)} is not a variable name`);
    }
  }
  return names;
}

/**
 * parseUrlPrefix reads `--cgi-prefix`: an absolute URL path without `.`/`..` segments; a
 * trailing `/` is dropped, and `/` alone is the root (''). Junk is `CLI_ERR_BAD_PREFIX`.
 */
export function parseUrlPrefix(input: string): string {
  const s = String(input).trim();
  const bare = s.replace(/\/+$/, '');
  const segments = bare.split('/').slice(1);
  // The HTTP front end merges `//` and removes dot segments: such a prefix would never match.
  if (
    !s.startsWith('/') ||
    segments.some((x) => x === '' || x === '.' || x === '..') ||
    /[?#\0]/.test(s)
  ) {
    throw usage(
      'CLI_ERR_BAD_PREFIX',
      `--cgi-prefix ${JSON.stringify(s)} is not an absolute URL path (e.g. /cgi-bin)`,
    );
  }
  return bare;
}

/**
 * cgiOptions turn `serve` and `fastcgi` into a CGI host for legacy programs (src/cli/cgi-target.ts):
 * each of --cgi-bin, --cgi-script and (fastcgi only) --cgi-root takes the place of TARGET.
 */
export const cgiOptions = {
  'cgi-bin': {
    type: 'string',
    requiresArg: true,
    description: 'Instead of TARGET: the CGI programs in DIR, at --cgi-prefix',
    group: GROUPS.CGI,
  },
  'cgi-script': {
    type: 'string',
    requiresArg: true,
    description: 'Instead of TARGET: the one CGI program FILE, for every path',
    group: GROUPS.CGI,
  },
  'cgi-prefix': {
    type: 'string',
    requiresArg: true,
    description: 'URL path where --cgi-bin is mounted (default /cgi-bin; / for the root)',
    group: GROUPS.CGI,
    coerce: parseUrlPrefix,
  },
  'inherit-env': {
    // Not `array: true`, for the reason given at --env.
    type: 'string',
    requiresArg: true,
    description:
      "Pass the variable NAME from cgi-bridge's environment to CGI programs (repeatable); " +
      'otherwise they get only PATH, --env and the request',
    group: GROUPS.CGI,
    coerce: parseNameList,
  },
  'cgi-spawn': {
    type: 'string',
    requiresArg: true,
    choices: ['auto', 'helper', 'direct'],
    description:
      'Who starts CGI programs: a small Perl fork server per process (helper), cgi-bridge ' +
      'itself (direct), or the fork server once a process holds 512 MiB and perl is found ' +
      '(auto, the default)',
    group: GROUPS.CGI,
  },
} satisfies Record<string, Options>;

/**
 * cgiRootOption is fastcgi's `--cgi-root DIR`, fcgiwrap's mode: the web server names the
 * program (SCRIPT_FILENAME), which must lie inside DIR. `serve` has no web server to ask.
 */
export const cgiRootOption = {
  'cgi-root': {
    type: 'string',
    requiresArg: true,
    description:
      "Instead of TARGET: run the web server's SCRIPT_FILENAME when it lies inside DIR " +
      "(fcgiwrap's mode; SCRIPT_NAME and PATH_INFO as the web server sends them)",
    group: GROUPS.CGI,
  },
} satisfies Record<string, Options>;

/** CgiArgs are the parsed {@link cgiOptions} (and fastcgi's {@link cgiRootOption}). */
export interface CgiArgs {
  cgiBin?: string;
  cgiScript?: string;
  cgiRoot?: string;
  cgiPrefix?: string;
  inheritEnv?: string[];
  cgiSpawn?: 'auto' | 'helper' | 'direct';
}

/** AppArgs are the parsed {@link appOptions}. */
export interface AppArgs {
  chdir?: string;
  env?: [string, string][];
}

/**
 * prepareProcess applies --chdir and then --env to this process, before the app is imported
 * (module code may read the environment at load time). A missing directory is `CLI_ERR_BAD_CHDIR`.
 */
export function prepareProcess(args: AppArgs): void {
  if (args.chdir !== undefined) {
    try {
      process.chdir(args.chdir);
    } catch (e) {
      throw new BridgeError(
        'CLI_ERR_BAD_CHDIR',
        `cgi-bridge: --chdir ${args.chdir}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
        { cause: e },
      );
    }
  }
  for (const [name, value] of args.env ?? []) process.env[name] = value;
}
