#!/usr/bin/env node
// Copies the fork server (src/cgi/fork-server.pl) next to its compiled module, which finds it
// relative to itself: dist/src/cgi/ (shipped in "files"), as the sources find it under tsx.
import { chmodSync, copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const to = join(root, 'dist', 'src', 'cgi', 'fork-server.pl');
mkdirSync(dirname(to), { recursive: true });
copyFileSync(join(root, 'src', 'cgi', 'fork-server.pl'), to);
chmodSync(to, 0o644); // run as `perl FILE`, never executed itself
