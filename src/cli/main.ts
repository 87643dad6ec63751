// The cgi-bridge command line: yargs with one module per command (mocha's lib/cli style) and
// one failure handler that prints one line and decides the exit code.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import yargs from 'yargs';
import { isBridgeError } from '../errors.js';
import { bundleCommand } from './bundle-command.js';
import { cgiCommand } from './cgi-command.js';
import { loadConfigFile } from './config-file.js';
import { fastcgiCommand } from './fastcgi-command.js';
import { GROUPS } from './options.js';
import { serveCommand } from './serve-command.js';

/** CliIo is where main writes (tests capture it); the process's stdout/stderr by default. */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
}

/** EXIT lists the command line's exit codes. */
export const EXIT = Object.freeze({
  /** OK: the command finished (a server stopped gracefully). */
  OK: 0,
  /** FAILED: the command failed while running (listen error, a hook threw, an unexpected error). */
  FAILED: 1,
  /** USAGE: the command line, a config file or the TARGET is wrong; nothing was started. */
  USAGE: 2,
});

// UsageError carries a message from yargs' own validation (unknown option, missing TARGET).
class UsageError extends Error {}

function packageVersion(): string {
  // src/cli/main.ts under tsx, dist/src/cli/main.js when built: walk up to our package.json.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'cgi-bridge' && pkg.version) return pkg.version;
    } catch {
      // not here; go up
    }
    dir = dirname(dir);
  }
  return 'unknown';
}

/**
 * exitCodeFor maps a failure to the exit code: yargs usage errors and `CLI_ERR_*` codes are
 * {@link EXIT.USAGE}, anything else {@link EXIT.FAILED}.
 */
export function exitCodeFor(error: unknown): number {
  if (error instanceof UsageError) return EXIT.USAGE;
  if (isBridgeError(error) && error.code.startsWith('CLI_ERR_')) return EXIT.USAGE;
  return EXIT.FAILED;
}

/**
 * failureMessage renders a failure as the one line the user sees: `cgi-bridge: MESSAGE`. A
 * BridgeError is expected and shows no stack; other errors show theirs only with `--debug`.
 */
export function failureMessage(error: unknown, debug: boolean): string {
  if (error instanceof UsageError) {
    const message = error.message.replace(/^cgi-bridge: /, '');
    return `cgi-bridge: ${message} (see cgi-bridge --help)\n`;
  }
  const message = error instanceof Error ? error.message : String(error);
  const firstLine = message.split('\n')[0] ?? '';
  let text = firstLine.startsWith('cgi-bridge:') ? firstLine : `cgi-bridge: ${firstLine}`;
  if (debug && error instanceof Error && !isBridgeError(error) && error.stack) {
    text += `\n${error.stack}`;
  }
  return `${text}\n`;
}

/**
 * main runs the command line `argv` (without node and the script) and resolves to the exit
 * code; it never calls process.exit itself (bin/cgi-bridge.js does, with this code).
 */
export async function main(
  argv: string[] = process.argv.slice(2),
  io: Partial<CliIo> = {},
): Promise<number> {
  const out: CliIo = {
    stdout: io.stdout ?? ((s) => void process.stdout.write(s)),
    stderr: io.stderr ?? ((s) => void process.stderr.write(s)),
  };
  const debug = argv.includes('--debug');
  const parser = yargs()
    .scriptName('cgi-bridge')
    .usage('$0 <command> TARGET [options]')
    .command(serveCommand)
    .command(cgiCommand)
    .command(fastcgiCommand)
    .command(bundleCommand)
    .option('config', {
      type: 'string',
      config: true,
      configParser: loadConfigFile,
      description: 'Read options from FILE (.json or .ini; keys are the long option names)',
      group: GROUPS.CONFIG,
      global: true,
    })
    .option('debug', {
      type: 'boolean',
      description: 'Show stack traces of unexpected errors',
      group: GROUPS.CONFIG,
      global: true,
    })
    .demandCommand(1, 'no command given')
    .recommendCommands()
    .strict()
    .fail((msg: string | null, err: Error | null) => {
      // yargs reports handler failures with no message: those are the command's own errors.
      if (err && msg === null) throw err;
      if (isBridgeError(err)) throw err;
      // Validation, .check() and coerce failures (yargs rewraps those as YError): usage errors.
      throw new UsageError(msg ?? err?.message ?? 'bad command line');
    })
    .help('help', 'Show usage and exit')
    .alias('help', 'h')
    .version('version', 'Show the version and exit', packageVersion())
    .alias('version', 'V')
    .wrap(Math.min(100, process.stdout.columns || 100));
  try {
    let output = '';
    await parser.parseAsync(argv, {}, (_err, _args, text) => {
      output = text;
    });
    if (output !== '') out.stdout(`${output}\n`);
    return EXIT.OK;
  } catch (e) {
    out.stderr(failureMessage(e, debug));
    return exitCodeFor(e);
  }
}
