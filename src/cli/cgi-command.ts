// `cgi-bridge cgi TARGET`: one CGI request (RFC 3875): environment + stdin -> stdout.
// bin/cgi-bridge.js runs the plain `cgi TARGET` form without yargs; this module serves the
// forms with options (--chdir, --env, --config) and `cgi --help`.
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { appOptions, prepareProcess, type AppArgs } from './options.js';

/** CgiArgs are the parsed arguments of `cgi`. */
export interface CgiArgs extends AppArgs {
  target: string;
}

function builder(yargs: Argv): Argv<CgiArgs> {
  return yargs
    .positional('target', {
      type: 'string',
      description: 'The app: app.js[:export] or package/subpath[:export]',
    })
    .options(appOptions)
    .example(
      '$0 cgi app.js',
      'answer the CGI request in the environment',
    ) as unknown as Argv<CgiArgs>;
}

async function handler(argv: ArgumentsCamelCase<CgiArgs>): Promise<void> {
  prepareProcess(argv);
  const [{ loadTarget }, { cgiMain }] = await Promise.all([
    import('../server/load-target.js'),
    import('../cgi/child.js'),
  ]);
  const target = await loadTarget(argv.target);
  // The one handler that does not return: cgiMain is a CGI process's whole life, its exit
  // included (it must end by signal when a read of stdin is still in flight). Failures before
  // this point (bad target, --chdir) still reach main's failure handler.
  await cgiMain(target.app, target);
}

/** cgiCommand is the yargs command module for `cgi-bridge cgi TARGET`. */
export const cgiCommand: CommandModule<object, CgiArgs> = {
  command: 'cgi <target>',
  describe: 'Answer one CGI request (environment + stdin -> stdout)',
  builder,
  handler,
};
