// TARGET resolution for the CLI: `app.js[:export]` or `package/subpath[:export]` -> the app and its hooks.
import { createRequire } from 'node:module';
import { isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BridgeError } from '../errors.js';
import type { GatewayApp } from '../gateway/types.js';
import type { AppHooks } from '../cgi/child.js';

/** LoadedTarget is an app module's app plus its optional lifecycle hooks. */
export interface LoadedTarget extends AppHooks {
  app: GatewayApp;
  /** specifier is what was imported (a file URL or a package specifier). */
  specifier: string;
}

/** splitTarget splits `module[:export]`; a `:` followed by an identifier at the end names the export. */
export function splitTargetSpec(target: string): {
  module: string;
  exportName: string | undefined;
} {
  const m = /^(.*?):([A-Za-z_$][\w$]*)$/.exec(target);
  if (m && m[1] !== '' && !/^[A-Za-z]$/.test(m[1]!)) return { module: m[1]!, exportName: m[2] };
  return { module: target, exportName: undefined };
}

function isPathLike(spec: string): boolean {
  return spec.startsWith('.') || isAbsolute(spec) || /\.(c|m)?(j|t)s$/.test(spec);
}

/** resolveTargetSpecifier turns a module path or package specifier into what import() takes. */
export function resolveTargetSpecifier(mod: string, cwd = process.cwd()): string {
  if (isPathLike(mod)) return pathToFileURL(resolve(cwd, mod)).href;
  try {
    return pathToFileURL(createRequire(join(cwd, 'noop.js')).resolve(mod)).href;
  } catch {
    return mod; // an ESM-only package: let import() resolve it
  }
}

/** pickApp chooses the app among a module's exports: the named one, else the default, else `app`. */
export function pickApp(
  ns: Record<string, unknown>,
  exportName: string | undefined,
  where: string,
): GatewayApp {
  const candidates = exportName !== undefined ? [exportName] : ['default', 'app'];
  for (const name of candidates) {
    let v = ns[name];
    // A CommonJS module seen from ESM: its module.exports is the default export.
    if (
      name === 'default' &&
      v !== null &&
      typeof v === 'object' &&
      typeof (v as Record<string, unknown>).default === 'function'
    ) {
      v = (v as Record<string, unknown>).default;
    }
    if (typeof v === 'function') return v as GatewayApp;
  }
  const wanted =
    exportName !== undefined
      ? `export ${JSON.stringify(exportName)}`
      : 'a default export or an export named "app"';
  throw new BridgeError(
    'CLI_ERR_BAD_TARGET',
    `cgi-bridge: ${where} has no ${wanted} that is a function (exports: ${Object.keys(ns).join(', ') || 'none'})`,
  );
}

/** loadTarget imports a TARGET and returns its app and hooks; a missing or throwing module is a coded error. */
export async function loadTarget(target: string, cwd = process.cwd()): Promise<LoadedTarget> {
  const { module, exportName } = splitTargetSpec(target);
  const specifier = resolveTargetSpecifier(module, cwd);
  let ns: Record<string, unknown>;
  try {
    ns = (await import(specifier)) as Record<string, unknown>;
  } catch (cause) {
    throw new BridgeError(
      'CLI_ERR_BAD_TARGET',
      `cgi-bridge: cannot load ${module}: ${(cause as Error)?.message ?? cause}`,
      {
        cause,
      },
    );
  }
  const app = pickApp(ns, exportName, module);
  const hook = (name: string): (() => unknown) | undefined =>
    typeof ns[name] === 'function' ? (ns[name] as () => unknown) : undefined;
  return { app, startup: hook('startup'), shutdown: hook('shutdown'), specifier };
}

/**
 * loadTargetFactory builds an app with a factory module instead of a TARGET (see TargetFactory
 * in worker-protocol.ts): it imports `factory.module` and returns what its
 * `createTarget(options)` returns. A missing module or factory is `CLI_ERR_BAD_TARGET`.
 */
export async function loadTargetFactory(factory: {
  module: string;
  options: unknown;
}): Promise<LoadedTarget> {
  let ns: Record<string, unknown>;
  try {
    ns = (await import(factory.module)) as Record<string, unknown>;
  } catch (cause) {
    throw new BridgeError(
      'CLI_ERR_BAD_TARGET',
      `cgi-bridge: cannot load ${factory.module}: ${(cause as Error)?.message ?? cause}`,
      { cause },
    );
  }
  const create = ns.createTarget;
  if (typeof create !== 'function') {
    throw new BridgeError(
      'CLI_ERR_BAD_TARGET',
      `cgi-bridge: ${factory.module} has no createTarget function`,
    );
  }
  return (await (create as (o: unknown) => LoadedTarget | Promise<LoadedTarget>)(
    factory.options,
  )) as LoadedTarget;
}
