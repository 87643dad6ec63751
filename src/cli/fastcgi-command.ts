// `cgi-bridge fastcgi TARGET`: the app as a FastCGI responder, on --listen ADDR or on the
// socket the web server (or systemd) passed, under a pre-fork master or in one process. With
// --cgi-bin/--cgi-root/--cgi-script it serves legacy CGI programs: an fcgiwrap replacement.
import type { ArgumentsCamelCase, Argv, CommandModule, Options } from 'yargs';
import {
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_MAX_BODY_BYTES,
  DEFAULT_MAX_CONCURRENT_REQUESTS,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_MAX_REQUESTS_PER_CONNECTION,
} from '../fastcgi/options.js';
import { DEFAULT_MAX_PARAMS, DEFAULT_MAX_PARAMS_BYTES } from '../fastcgi/params.js';
import type { ListenAddress } from '../server/address.js';
import { checkTargetChoice } from './cgi-target.js';
import {
  GROUPS,
  appOptions,
  cgiOptions,
  cgiRootOption,
  limitOptions,
  listenOptions,
  parseSeconds,
  parseSize,
  prepareProcess,
  type AppArgs,
  type CgiArgs,
} from './options.js';

/** FastcgiArgs are the parsed arguments of `fastcgi`. */
export interface FastcgiArgs extends AppArgs, CgiArgs {
  /** target is the app.js TARGET; absent when --cgi-bin, --cgi-root or --cgi-script takes its place. */
  target?: string;
  listen?: ListenAddress;
  socketMode: number;
  allowedClients?: string[];
  processes: number;
  maxRequests: number;
  timeout: number;
  gracefulTimeout: number;
  maxBody: number;
  maxParamsSize: number;
  maxParams: number;
  maxConnections: number;
  maxConcurrentRequests: number;
  maxRequestsPerConnection: number;
  idleTimeout: number;
  multiplex: boolean;
  holdResponse: boolean;
}

const PROCESSES = 'Processes';

// sizeText shows a byte count the way --max-body takes it: 2G, 128k.
function sizeText(n: number): string {
  for (const [unit, size] of [
    ['G', 1024 ** 3],
    ['M', 1024 ** 2],
    ['k', 1024],
  ] as const) {
    if (n >= size && n % size === 0) return `${n / size}${unit}`;
  }
  return String(n);
}

const count = (flag: string) => (v: unknown) => {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0 || String(v).trim() === '') {
    throw new Error(`--${flag} must be a whole number >= 0, got ${JSON.stringify(v)}`);
  }
  return n;
};

const positive = (flag: string) => (v: unknown) => {
  const n = count(flag)(v);
  if (n === 0) throw new Error(`--${flag} must be at least 1`);
  return n;
};

const fastcgiOptions = {
  'allowed-clients': {
    type: 'string',
    array: true,
    requiresArg: true,
    description:
      'Accept TCP connections only from these addresses or CIDR ranges, comma-separated ' +
      '(default: FCGI_WEB_SERVER_ADDRS when set, else everyone)',
    group: GROUPS.LISTEN,
  },
  processes: {
    type: 'string',
    requiresArg: true,
    default: '1',
    description: 'Worker processes under a master; 0: serve in this one process, no master',
    group: PROCESSES,
    coerce: count('processes'),
  },
  'max-requests': {
    type: 'string',
    requiresArg: true,
    default: '0',
    description: 'Replace a worker after it started N requests (0: never)',
    group: PROCESSES,
    coerce: count('max-requests'),
  },
  timeout: {
    type: 'string',
    requiresArg: true,
    default: '60',
    description:
      'Seconds a request may take (504 after; 0: no limit); a worker whose event loop is blocked longer is killed',
    group: PROCESSES,
    coerce: (v: string) => parseSeconds(v, 'timeout'),
  },
  'max-body': {
    type: 'string',
    requiresArg: true,
    default: sizeText(DEFAULT_MAX_BODY_BYTES),
    description: 'Largest request body (413 beyond it); k, M, G suffixes',
    group: GROUPS.LIMITS,
    coerce: (v: string) => parseSize(v, 'max-body'),
  },
  'max-params-size': {
    type: 'string',
    requiresArg: true,
    default: sizeText(DEFAULT_MAX_PARAMS_BYTES),
    description: 'Largest FCGI_PARAMS stream of a request (431 beyond it)',
    group: GROUPS.LIMITS,
    coerce: (v: string) => parseSize(v, 'max-params-size'),
  },
  'max-params': {
    type: 'string',
    requiresArg: true,
    default: String(DEFAULT_MAX_PARAMS),
    description: 'Most params in a request (431 beyond it)',
    group: GROUPS.LIMITS,
    coerce: count('max-params'),
  },
  'max-connections': {
    type: 'string',
    requiresArg: true,
    default: String(DEFAULT_MAX_CONNECTIONS),
    description: 'Open connections per worker (FCGI_MAX_CONNS)',
    group: GROUPS.LIMITS,
    coerce: positive('max-connections'),
  },
  'max-concurrent-requests': {
    type: 'string',
    requiresArg: true,
    default: String(DEFAULT_MAX_CONCURRENT_REQUESTS),
    description: 'Requests in progress per worker (FCGI_MAX_REQS; FCGI_OVERLOADED beyond it)',
    group: GROUPS.LIMITS,
    coerce: positive('max-concurrent-requests'),
  },
  'max-requests-per-connection': {
    type: 'string',
    requiresArg: true,
    default: String(DEFAULT_MAX_REQUESTS_PER_CONNECTION),
    description: 'Concurrent requests on one multiplexed connection',
    group: GROUPS.LIMITS,
    coerce: positive('max-requests-per-connection'),
  },
  'idle-timeout': {
    type: 'string',
    requiresArg: true,
    default: String(DEFAULT_IDLE_TIMEOUT_MS / 1000),
    description: 'Seconds an idle connection stays open (0: until the web server closes it)',
    group: GROUPS.LIMITS,
    coerce: (v: string) => parseSeconds(v, 'idle-timeout'),
  },
  multiplex: {
    type: 'boolean',
    default: true,
    description: 'Accept several requests at once on one connection (FCGI_MPXS_CONNS)',
    group: GROUPS.LIMITS,
  },
  'hold-response': {
    type: 'boolean',
    default: true,
    description:
      'Hold a response until its request body was received whole (nginx stops sending a body once the reply starts)',
    group: GROUPS.LIMITS,
  },
} satisfies Record<string, Options>;

function builder(yargs: Argv): Argv<FastcgiArgs> {
  return yargs
    .positional('target', {
      type: 'string',
      description: 'The app: app.js[:export] or package/subpath[:export]',
    })
    .options(appOptions)
    .options(cgiOptions)
    .options(cgiRootOption)
    .options(listenOptions)
    .option('listen', {
      description:
        'Address: host:port, :port, [::1]:port, unix:/path, /path.sock or fd:N ' +
        '(default: the socket systemd passed, else fd 0 when it is a listening socket)',
    })
    .options(fastcgiOptions)
    .option('graceful-timeout', limitOptions['graceful-timeout'])
    .check((argv) => checkTargetChoice(argv as unknown as FastcgiArgs, true))
    .example('$0 fastcgi app.js --listen 127.0.0.1:9000', 'for nginx: fastcgi_pass 127.0.0.1:9000;')
    .example(
      '$0 fastcgi app.js --listen /run/app.sock --processes 4',
      'four workers on a unix socket',
    )
    .example(
      '$0 fastcgi app.js',
      'started by mod_fcgid, lighttpd bin-path or spawn-fcgi (socket on fd 0)',
    )
    .example(
      '$0 fastcgi --cgi-root /usr/lib/cgi-bin --listen /run/cgi.sock',
      "fcgiwrap's job: run the SCRIPT_FILENAME nginx sends, if it lies inside the directory (one worker runs them all at once)",
    ) as unknown as Argv<FastcgiArgs>;
}

async function handler(argv: ArgumentsCamelCase<FastcgiArgs>): Promise<void> {
  prepareProcess(argv);
  const [{ runFastcgiServer }, { CGI_TARGET_MODULE, cgiTargetSpec, describeCgiTarget }] =
    await Promise.all([import('../server/fastcgi-server.js'), import('./cgi-target.js')]);
  // A CGI target is rebuilt in each worker from its JSON spec (cgi-target.ts, createTarget).
  const cgi = cgiTargetSpec(argv, argv.timeout);
  await runFastcgiServer(cgi !== undefined ? describeCgiTarget(cgi) : argv.target!, {
    factory: cgi !== undefined ? { module: CGI_TARGET_MODULE, options: cgi } : undefined,
    listen: argv.listen,
    socketMode: argv.socketMode,
    allowedClients: argv.allowedClients,
    processes: argv.processes,
    maxRequests: argv.maxRequests,
    timeoutMs: argv.timeout,
    gracefulTimeoutMs: argv.gracefulTimeout,
    responder: {
      maxBodyBytes: argv.maxBody,
      maxParamsBytes: argv.maxParamsSize,
      maxParams: argv.maxParams,
      maxConnections: argv.maxConnections,
      maxConcurrentRequests: argv.maxConcurrentRequests,
      maxRequestsPerConnection: argv.maxRequestsPerConnection,
      idleTimeoutMs: argv.idleTimeout,
      multiplex: argv.multiplex,
      holdResponseUntilBodyRead: argv.holdResponse,
    },
  });
}

/**
 * fastcgiCommand is the yargs command module for `cgi-bridge fastcgi TARGET [--listen ADDR]`:
 * a FastCGI responder under a pre-fork master (`--processes N`, default 1) or in one process
 * (`--processes 0`); without --listen, on the socket inherited from systemd or on fd 0.
 */
export const fastcgiCommand: CommandModule<object, FastcgiArgs> = {
  command: 'fastcgi [target]',
  describe:
    'Serve a gateway app or CGI programs as a FastCGI responder (--listen ADDR, or the socket on fd 0)',
  builder,
  handler,
};
