// `cgi-bridge bundle`: turns a gateway app module into ONE self-contained executable CGI script
// (shebang, mode 0755, every dependency inlined by esbuild) for any web server's cgi-bin.
import { chmod, mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, extname, isAbsolute, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BuildFailure, Message, Plugin } from 'esbuild';
import { BridgeError } from '../errors.js';
import { splitTargetSpec } from '../server/load-target.js';
import { entryStubSource } from './entry-stub.js';

/** BundleOptions configure {@link bundleApp}. */
export interface BundleOptions {
  /** app is `path/app.ts[:export]` or `package/subpath[:export]` (default export, else `app`). */
  app: string;
  /** outFile is the script to write (created with its directory; replaced atomically). */
  outFile: string;
  /** node is the interpreter line after `#!`: `/usr/bin/env node` (default) or an absolute path. */
  node?: string;
  /**
   * minify removes whitespace and simplifies syntax (default true). Identifiers are kept either
   * way: renaming them saves bytes but no measurable start-up time (bench/cgi-startup.js), and
   * the names make the stack traces in the web server's error log readable.
   */
  minify?: boolean;
  /** cwd resolves a relative `app` and package specifiers (default: process.cwd()). */
  cwd?: string;
}

/** BundleResult describes the script {@link bundleApp} wrote. */
export interface BundleResult {
  /** outFile is the absolute path of the script. */
  outFile: string;
  /** bytes is the script's size. */
  bytes: number;
  /** warnings are esbuild's warnings, formatted for a terminal. */
  warnings: string[];
}

/** DEFAULT_NODE is the default interpreter line: node found through the web server's PATH. */
export const DEFAULT_NODE = '/usr/bin/env node';

// Linux reads at most 255 bytes of a `#!` line (BINPRM_BUF_SIZE); longer lines are cut off.
const MAX_SHEBANG = 255;

// The bundle is CommonJS: node starts a CommonJS main module faster than an ES module (no ESM
// loader; bench/cgi-startup.js measures it). A script dropped under a `"type": "module"`
// package.json is still parsed as ESM, where `require` does not exist, so the banner rebinds it
// to process.getBuiltinModule (Node >= 20.16). In CommonJS the `var` re-declares the module
// wrapper's own `require` parameter and keeps its value.
const REQUIRE_SHIM =
  'var require = typeof require == "function" ? require : process.getBuiltinModule;';

// CommonJS has no import.meta; a bundled module's `import.meta.url` becomes the script's own
// file URL (the bundle is always the main module, so process.argv[1] is its path), computed
// only when read. `new URL('./data.json', import.meta.url)` then points beside the script.
const IMPORT_META_SHIM =
  'var __cgiBridgeImportMeta = { get url() { return require("node:url").pathToFileURL(process.argv[1]).href; } };';

/**
 * shebangLine validates the interpreter and returns the script's first line. `/usr/bin/env node`
 * finds node in the web server's PATH; an absolute path pins one node binary.
 */
export function shebangLine(node: string = DEFAULT_NODE): string {
  const line = `#!${node}`;
  if (!node.startsWith('/') || /[\0\r\n]/.test(node) || Buffer.byteLength(line) > MAX_SHEBANG) {
    throw new BridgeError(
      'BUNDLE_ERR_BAD_NODE',
      `cgi-bridge: bundle: --node must be an absolute path such as /usr/bin/node or "${DEFAULT_NODE}", one line of at most ${MAX_SHEBANG - 2} bytes (got ${JSON.stringify(node)})`,
    );
  }
  return line;
}

// Our own modules, next to this file: .js in dist/ and an installed package, .ts under tsx.
function ownModule(relative: string): string {
  const here = fileURLToPath(import.meta.url);
  return resolve(dirname(here), `${relative}${extname(here)}`);
}

const RESOLVING = Symbol('cgi-bridge-self: resolving');

// The package plugin does two things for start-up time and for correctness:
// - `import ... from 'cgi-bridge'` in an app resolves to this very copy of the package, whether
//   or not the app's directory has it in node_modules: one copy of the library in the script;
// - this package's modules are marked free of side effects, so a module whose exports the app
//   does not use is left out with everything it imports. Without it, `import { BridgeError }
//   from 'cgi-bridge'` would pull in (and run at every start) cross-spawn and node:child_process
//   for the CGI host side, because esbuild must keep a CommonJS import that might have effects.
function selfPackagePlugin(srcRoot: string, indexFile: string): Plugin {
  return {
    name: 'cgi-bridge-self',
    setup(build) {
      build.onResolve({ filter: /^cgi-bridge$/ }, () => ({ path: indexFile, sideEffects: false }));
      build.onResolve({ filter: /^\.\.?\// }, async (args) => {
        if (args.pluginData === RESOLVING) return undefined;
        const r = await build.resolve(args.path, {
          kind: args.kind,
          importer: args.importer,
          resolveDir: args.resolveDir,
          pluginData: RESOLVING,
        });
        if (r.errors.length > 0 || !r.path.startsWith(srcRoot + sep)) return undefined;
        return { path: r.path, sideEffects: false };
      });
    },
  };
}

function isPathLike(spec: string): boolean {
  return spec.startsWith('.') || isAbsolute(spec) || /\.[cm]?[jt]sx?$/.test(spec);
}

function isBuildFailure(e: unknown): e is BuildFailure {
  return e instanceof Error && Array.isArray((e as Partial<BuildFailure>).errors);
}

/**
 * bundleApp writes one executable CGI script for `options.app`: the shebang, then a compact
 * CommonJS bundle (target node20, no source map) of a generated entry that calls this package's
 * `cgiMain(app, { startup, shutdown })`. Every import, node_modules included, is inlined, so the
 * file works when copied alone into a cgi-bin. Failures are `BUNDLE_ERR_*` BridgeErrors.
 */
export async function bundleApp(options: BundleOptions): Promise<BundleResult> {
  const cwd = options.cwd ?? process.cwd();
  const shebang = shebangLine(options.node);
  const { module, exportName } = splitTargetSpec(options.app);
  const appSpecifier = isPathLike(module) ? resolve(cwd, module) : module;
  const outFile = resolve(cwd, options.outFile);
  if (appSpecifier !== module || isAbsolute(module)) {
    const found = await stat(appSpecifier).then(
      (st) => st.isFile(),
      () => false,
    );
    if (!found) {
      throw new BridgeError(
        'BUNDLE_ERR_NO_APP',
        `cgi-bridge: bundle: ${appSpecifier} is not a file (APP is path/app.ts[:export] or package/subpath[:export])`,
      );
    }
  }
  // esbuild is a dependency of the CLI only; a bundled script never loads it.
  const esbuild = await import('esbuild');
  let result;
  try {
    result = await esbuild.build({
      stdin: {
        contents: entryStubSource({
          appSpecifier,
          exportName,
          childSpecifier: ownModule('../cgi/child'),
          label: basename(module),
        }),
        resolveDir: cwd,
        sourcefile: 'cgi-entry.js',
        loader: 'js',
      },
      bundle: true,
      write: false,
      platform: 'node',
      format: 'cjs',
      target: 'node20',
      minifyWhitespace: options.minify ?? true,
      minifySyntax: options.minify ?? true,
      minifyIdentifiers: false,
      sourcemap: false,
      charset: 'utf8',
      banner: { js: `${shebang}\n${REQUIRE_SHIM}\n${IMPORT_META_SHIM}` },
      define: { 'import.meta.url': '__cgiBridgeImportMeta.url' },
      plugins: [selfPackagePlugin(dirname(ownModule('../index')), ownModule('../index'))],
      logLevel: 'silent',
      logOverride: { 'import-is-undefined': 'error' },
    });
  } catch (e) {
    if (!isBuildFailure(e)) throw e;
    // The first line says what failed (a CLI shows one line); esbuild's code frames follow.
    const first = e.errors[0];
    const where = first?.location
      ? `${first.location.file}:${first.location.line}:${first.location.column}: `
      : '';
    const more = e.errors.length > 1 ? ` (and ${e.errors.length - 1} more)` : '';
    const frames = await formatMessages(esbuild.formatMessages, e.errors, 'error');
    throw new BridgeError(
      'BUNDLE_ERR_BUILD_FAILED',
      `cgi-bridge: bundle: cannot bundle ${options.app}: ${where}${first?.text ?? e.message}${more}\n${frames.join('')}`,
      { cause: e },
    );
  }
  const contents = result.outputFiles[0]!.contents;
  await writeExecutable(outFile, contents);
  return {
    outFile,
    bytes: contents.length,
    warnings: await formatMessages(esbuild.formatMessages, result.warnings, 'warning'),
  };
}

async function formatMessages(
  format: typeof import('esbuild').formatMessages,
  messages: Message[],
  kind: 'error' | 'warning',
): Promise<string[]> {
  return messages.length === 0 ? [] : format(messages, { kind, color: false });
}

// writeExecutable replaces `file` atomically with a 0755 script: a web server never runs half a file.
async function writeExecutable(file: string, contents: Uint8Array): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    await writeFile(tmp, contents, { mode: 0o755 });
    await chmod(tmp, 0o755); // the umask may have taken bits off
    await rename(tmp, file);
  } catch (cause) {
    await rm(tmp, { force: true });
    throw new BridgeError(
      'BUNDLE_ERR_WRITE_FAILED',
      `cgi-bridge: bundle: cannot write ${file}: ${(cause as Error).message}`,
      { cause },
    );
  }
}
