#!/usr/bin/env node
// Bundles each cgi-bin example into one executable CGI script, dist/cgi/NAME (run by
// `npm run build` after tsc). Every cgi-bin/*.ts except demo.ts is an app; cgi-bin/lib/ holds
// helpers. The scripts are built from tsc's output (dist/cgi-bin/NAME.js), so the app and
// the CGI child share one copy of the library (one BridgeError class) inside each script.
import { readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = join(root, 'dist', 'cgi');
const NOT_APPS = new Set(['demo']);

const started = Date.now();
const { bundleApp } = await import(join(root, 'dist', 'src', 'bundle', 'bundle.js'));
const names = readdirSync(join(root, 'cgi-bin'))
  .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
  .map((f) => f.slice(0, -3))
  .filter((n) => !NOT_APPS.has(n))
  .sort();

rmSync(outDir, { recursive: true, force: true });
const results = await Promise.all(
  names.map((name) =>
    bundleApp({
      app: join(root, 'dist', 'cgi-bin', `${name}.js`),
      outFile: join(outDir, name),
    }),
  ),
);
// The repository's package.json says "type": "module", which would make node load these
// extensionless scripts through the slower ES module loader. In a real cgi-bin there is no
// package.json, so they start as CommonJS; this one makes dist/cgi behave the same.
writeFileSync(join(outDir, 'package.json'), '{ "type": "commonjs" }\n');

for (const r of results) for (const w of r.warnings) process.stderr.write(w);
const total = results.reduce((n, r) => n + r.bytes, 0);
console.log(
  `build-cgi-bin: ${names.length} scripts in ${outDir} (${(total / 1024).toFixed(0)} KiB, ${Date.now() - started} ms): ${names.join(' ')}`,
);
