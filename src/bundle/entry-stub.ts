// The generated entry of a bundled CGI script: imports the app module and hands it to cgiMain.
// It is source text for esbuild (never run as it is), so it stays plain ES2022 JavaScript.

/** EntryStubInput names what the stub imports, as specifiers esbuild resolves. */
export interface EntryStubInput {
  /** appSpecifier is the app module: an absolute path or a package specifier. */
  appSpecifier: string;
  /** exportName is the app's export; undefined means the default export, else `app`. */
  exportName: string | undefined;
  /** childSpecifier is this package's CGI child module (src/cgi/child), an absolute path. */
  childSpecifier: string;
  /** label names the app in the error line of a script whose module has no app. */
  label: string;
}

/**
 * entryStubSource returns the stub's source. A named export is read with a static member
 * access, so esbuild reports a missing one at bundle time (`import-is-undefined`); the
 * default-or-`app` choice and the hooks are looked up by key, because either may be absent.
 * The choice follows loadTarget's (src/server/load-target.ts): a CommonJS module's
 * `module.exports` arrives as the default export, and its own `.default` is taken when it has one.
 * cgiMain is called one turn of the event loop later: a module that serves itself (calls
 * `serve(app)` at load) has started its cgiMain by then, and the stub's call is a no-op.
 * Without an app, the request gets a 500 and the reason goes to the error log.
 */
export function entryStubSource(input: EntryStubInput): string {
  const { appSpecifier, exportName, childSpecifier, label } = input;
  const wanted =
    exportName === undefined
      ? 'default export or "app" export'
      : `export ${JSON.stringify(exportName)}`;
  const candidates =
    exportName === undefined ? 'ns[key("default")], ns[key("app")]' : `ns.${exportName}`;
  const missing = `cgi: ${label} has no ${wanted} that is a function, and does not call serve()`;
  return `import * as ns from ${JSON.stringify(appSpecifier)};
import { cgiMain } from ${JSON.stringify(childSpecifier)};
const key = (k) => k;
const fn = (v) =>
  typeof v === "function" ? v
  : v !== null && typeof v === "object" && typeof v.default === "function" ? v.default
  : undefined;
const missing = () => { throw new Error(${JSON.stringify(missing)}); };
const app = [${candidates}].map(fn).find((v) => v !== undefined) ?? missing;
const hook = (name) => (typeof ns[key(name)] === "function" ? ns[key(name)] : undefined);
setImmediate(() => cgiMain(app, { startup: hook("startup"), shutdown: hook("shutdown") }));
`;
}
