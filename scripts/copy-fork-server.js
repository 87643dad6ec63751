#!/usr/bin/env node
// Copies the fork servers' sources (src/cgi/fork-server.pl and .c) next to their compiled module,
// which finds them relative to itself: dist/src/cgi/ (shipped in "files"), as the sources find
// them under tsx. The .c is compiled there by build-fork-server.js, here or at npm install.
import { chmodSync, copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
for (const name of ['fork-server.pl', 'fork-server.c']) {
  const to = join(root, 'dist', 'src', 'cgi', name);
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(join(root, 'src', 'cgi', name), to);
  chmodSync(to, 0o644); // the .pl runs as `perl FILE`, never executed itself
}
