// `cgi-bridge serve TARGET`: the app on the built-in HTTP server, until SIGINT/SIGTERM.
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import type { ListenAddress } from '../server/address.js';
import {
  appOptions,
  limitOptions,
  listenOptions,
  prepareProcess,
  type AppArgs,
} from './options.js';

/** ServeArgs are the parsed arguments of `serve`. */
export interface ServeArgs extends AppArgs {
  target: string;
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
    .options(listenOptions)
    .option('listen', { default: '127.0.0.1:8080' })
    .options(limitOptions)
    .check((argv) => {
      if (argv['headers-timeout'] === 0) throw new Error('--headers-timeout must be above 0');
      return true;
    })
    .example('$0 serve app.js', 'serve app.js on http://127.0.0.1:8080/')
    .example(
      '$0 serve app.js:api --listen :8000',
      'the export "api", on every interface',
    ) as unknown as Argv<ServeArgs>;
}

async function handler(argv: ArgumentsCamelCase<ServeArgs>): Promise<void> {
  prepareProcess(argv);
  const [{ loadTarget }, { serveHttp }] = await Promise.all([
    import('../server/load-target.js'),
    import('../http/server.js'),
  ]);
  const target = await loadTarget(argv.target);
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
    label: argv.target,
  });
  await handle.closed;
}

/** serveCommand is the yargs command module for `cgi-bridge serve TARGET [--listen ADDR]`. */
export const serveCommand: CommandModule<object, ServeArgs> = {
  command: 'serve <target>',
  describe: 'Serve a gateway app over HTTP (default 127.0.0.1:8080)',
  builder,
  handler,
};
