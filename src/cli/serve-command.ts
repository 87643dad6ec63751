// `cgi-bridge serve TARGET`: the app (or the CGI programs of --cgi-bin/--cgi-script) on the
// built-in HTTP server, until SIGINT/SIGTERM.
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import type { GatewayApp } from '../gateway/types.js';
import type { ListenAddress } from '../server/address.js';
import { checkTargetChoice } from './cgi-target.js';
import {
  GROUPS,
  appOptions,
  cgiOptions,
  limitOptions,
  listenOptions,
  parseSeconds,
  prepareProcess,
  type AppArgs,
  type CgiArgs,
} from './options.js';

/** ServeArgs are the parsed arguments of `serve`. */
export interface ServeArgs extends AppArgs, CgiArgs {
  /** target is the app.js TARGET; absent when --cgi-bin or --cgi-script takes its place. */
  target?: string;
  /** timeout bounds a request's wall time (ms); absent: 60 s for CGI programs, none for an app. */
  timeout?: number;
  listen: ListenAddress;
  socketMode: number;
  maxBody: number;
  maxHeaderSize: number;
  headersTimeout: number;
  requestTimeout: number;
  keepAliveTimeout: number;
  gracefulTimeout: number;
}

function builder(yargs: Argv): Argv<ServeArgs> {
  return yargs
    .positional('target', {
      type: 'string',
      description: 'The app: app.js[:export] or package/subpath[:export]',
    })
    .options(appOptions)
    .options(cgiOptions)
    .options(listenOptions)
    .option('listen', { default: '127.0.0.1:8080' })
    .options(limitOptions)
    .option('timeout', {
      type: 'string',
      requiresArg: true,
      description:
        'Seconds a request may take (504 after; 0: no limit); default 60 for CGI programs, none for an app',
      group: GROUPS.LIMITS,
      coerce: (v: string) => parseSeconds(v, 'timeout'),
    })
    .check((argv) => {
      if (argv['headers-timeout'] === 0) throw new Error('--headers-timeout must be above 0');
      return checkTargetChoice(argv as unknown as ServeArgs, false);
    })
    .example('$0 serve app.js', 'serve app.js on http://127.0.0.1:8080/')
    .example('$0 serve app.js:api --listen :8000', 'the export "api", on every interface')
    .example('$0 serve --cgi-bin ./cgi-bin', 'the CGI programs in ./cgi-bin at /cgi-bin/NAME')
    .example(
      '$0 serve --cgi-script /usr/lib/git-core/git-http-backend --env GIT_PROJECT_ROOT=/srv/git --env GIT_HTTP_EXPORT_ALL=1',
      'one CGI program for every path',
    ) as unknown as Argv<ServeArgs>;
}

async function handler(argv: ArgumentsCamelCase<ServeArgs>): Promise<void> {
  prepareProcess(argv);
  const [{ loadTarget }, { serveHttp }, { cgiTargetSpec, buildCgiApp, describeCgiTarget }] =
    await Promise.all([
      import('../server/load-target.js'),
      import('../http/server.js'),
      import('./cgi-target.js'),
    ]);
  const cgi = cgiTargetSpec(argv, argv.timeout);
  let target: { app: GatewayApp; startup?: () => unknown; shutdown?: () => unknown };
  if (cgi !== undefined) {
    // fromCgi bounds the program itself (its process group is killed), so no wrapper here.
    target = { app: buildCgiApp(cgi) };
  } else {
    target = await loadTarget(argv.target!);
    if (argv.timeout !== undefined && argv.timeout > 0) {
      const [{ withRequestTimeout }, { stderrLog }] = await Promise.all([
        import('../server/request-timeout.js'),
        import('../http/log.js'),
      ]);
      target = { ...target, app: withRequestTimeout(target.app, argv.timeout, stderrLog) };
    }
  }
  const handle = await serveHttp(target.app, {
    listen: argv.listen,
    socketMode: argv.socketMode,
    maxBodyBytes: argv.maxBody,
    maxHeaderSize: argv.maxHeaderSize,
    headersTimeout: argv.headersTimeout,
    requestTimeout: argv.requestTimeout,
    keepAliveTimeout: argv.keepAliveTimeout,
    gracefulTimeout: argv.gracefulTimeout,
    hooks: target,
    label: cgi !== undefined ? describeCgiTarget(cgi) : argv.target,
  });
  await handle.closed;
}

/** serveCommand is the yargs command module for `cgi-bridge serve TARGET [--listen ADDR]`. */
export const serveCommand: CommandModule<object, ServeArgs> = {
  command: 'serve [target]',
  describe: 'Serve a gateway app or CGI programs over HTTP (default 127.0.0.1:8080)',
  builder,
  handler,
};
