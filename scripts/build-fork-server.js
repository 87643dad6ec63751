#!/usr/bin/env node
// Compiles the C fork server (src/cgi/fork-server.c) next to its module: dist/src/cgi/fork-server,
// and src/cgi/fork-server for the sources under tsx. Run by `npm run build` and, in an installed
// package (which ships dist/src/cgi/fork-server.c), by npm's `install` step. Without a C
// compiler (CC, cc, gcc or clang) it says so and succeeds: programs are then started through
// the Perl fork server or directly. Never through a shell; skipped when the binary is current.
import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import spawn from 'cross-spawn';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const note = (line) => console.error(`cgi-bridge: ${line}`);

if (process.platform === 'win32') process.exit(0);
const srcDir = join(root, 'src', 'cgi');
const distDir = join(root, 'dist', 'src', 'cgi');
// A checkout compiles its source for both places; an installed package has only dist.
const dirs = existsSync(join(srcDir, 'fork-server.c')) ? [srcDir, distDir] : [distDir];
const source = join(dirs[0], 'fork-server.c');
if (!existsSync(source)) {
  note('fork-server.c not found; the C fork server is not built');
  process.exit(0);
}
const targets = dirs.map((d) => join(d, 'fork-server'));
// In an installed package a binary already there came from the machine that packed it (maybe
// another architecture): it is always rebuilt, and removed when that fails.
const installed = dirs.length === 1;
const mtime = (f) => (existsSync(f) ? statSync(f).mtimeMs : -1);
if (!installed && targets.every((t) => mtime(t) >= mtime(source))) process.exit(0);

const compilers = process.env.CC
  ? [process.env.CC.trim().split(/\s+/)]
  : [['cc'], ['gcc'], ['clang']];
const built = join(dirname(targets[0]), `.fork-server.${process.pid}`);
mkdirSync(dirname(built), { recursive: true });
const failures = [];
for (const [cc, ...flags] of compilers) {
  const r = spawn.sync(cc, [...flags, '-O2', '-o', built, source], { encoding: 'utf8' });
  if (r.error) {
    failures.push(`${cc}: ${r.error.code ?? r.error.message}`);
    continue;
  }
  if (r.status !== 0) {
    failures.push(
      `${cc} exited ${r.status ?? r.signal}: ${(r.stderr || '').trim().split('\n')[0]}`,
    );
    rmSync(built, { force: true });
    continue;
  }
  for (const t of targets.slice(1)) {
    mkdirSync(dirname(t), { recursive: true });
    copyFileSync(built, t);
  }
  renameSync(built, targets[0]);
  process.exit(0);
}
if (installed) for (const t of targets) rmSync(t, { force: true });
note(`the C fork server was not built (${failures.join('; ')});`);
note('CGI programs will be started through the Perl fork server or directly');
