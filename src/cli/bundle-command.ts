// `cgi-bridge bundle APP -o FILE`: one self-contained executable CGI script for any cgi-bin.
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { isBridgeError } from '../errors.js';
import { GROUPS } from './options.js';

/** BundleArgs are the parsed arguments of `bundle`. */
export interface BundleArgs {
  app: string;
  outFile: string;
  node?: string;
  minify: boolean;
}

function builder(yargs: Argv): Argv<BundleArgs> {
  return yargs
    .positional('app', {
      type: 'string',
      description: 'The app module: app.ts|app.js[:export] or package/subpath[:export]',
    })
    .options({
      'out-file': {
        alias: 'o',
        type: 'string',
        demandOption: true,
        requiresArg: true,
        description: 'The script to write (mode 0755; its directory is created)',
        group: GROUPS.APP,
      },
      node: {
        type: 'string',
        requiresArg: true,
        description:
          'The interpreter on the #! line: "/usr/bin/env node" (default) or an absolute path',
        group: GROUPS.APP,
      },
      minify: {
        type: 'boolean',
        default: true,
        description: 'Minify the script (--no-minify keeps it readable)',
        group: GROUPS.APP,
      },
    })
    .check((argv) => {
      // A bad --node is a usage error, found before esbuild starts.
      if (argv.node !== undefined && !argv.node.startsWith('/')) {
        throw new Error(`--node must be an absolute path, got ${JSON.stringify(argv.node)}`);
      }
      return true;
    })
    .example('$0 bundle app.ts -o /usr/lib/cgi-bin/app', 'write one script for Apache')
    .example(
      '$0 bundle app.ts:handler -o app.cgi --node /usr/bin/node',
      'a named export, a fixed node binary',
    ) as unknown as Argv<BundleArgs>;
}

async function handler(argv: ArgumentsCamelCase<BundleArgs>): Promise<void> {
  // Loaded here: esbuild is for this command only, not for every start of the CLI.
  const { bundleApp } = await import('../bundle/bundle.js');
  let result;
  try {
    result = await bundleApp({
      app: argv.app,
      outFile: argv.outFile,
      node: argv.node,
      minify: argv.minify,
    });
  } catch (e) {
    // esbuild's code frames follow the first line; the failure handler prints that line.
    if (isBridgeError(e) && e.code === 'BUNDLE_ERR_BUILD_FAILED') {
      const frames = e.message.split('\n').slice(1).join('\n');
      if (frames.trim() !== '') process.stderr.write(`${frames}\n`);
    }
    throw e;
  }
  for (const w of result.warnings) process.stderr.write(w);
  process.stdout.write(`cgi-bridge: wrote ${result.outFile} (${result.bytes} bytes)\n`);
}

/** bundleCommand is the yargs command module for `cgi-bridge bundle APP -o FILE`. */
export const bundleCommand: CommandModule<object, BundleArgs> = {
  command: 'bundle <app>',
  describe: 'Write one self-contained executable CGI script for the app',
  builder,
  handler,
};
