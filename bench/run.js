#!/usr/bin/env node
// `npm run bench`: runs each benchmark table module in TABLES, prints its markdown table and
// writes it to bench/results/NAME.md. `node bench/run.js NAME...` runs only those tables.
// A table module exports `name`, `title` and `run(context) -> Promise<string>` (markdown).
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/** TABLES are the table modules, run in this order (FastCGI and host tables join here). */
const TABLES = ['./cgi-startup.js', './fastcgi.js', './legacy.js'];

const wanted = process.argv.slice(2);
const resultsDir = join(here, 'results');
mkdirSync(resultsDir, { recursive: true });

const context = {
  root: join(here, '..'),
  log: (s) => process.stderr.write(`bench: ${s}\n`),
  machine: () =>
    `node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
};

let failed = 0;
for (const spec of TABLES) {
  const table = await import(spec);
  if (wanted.length > 0 && !wanted.includes(table.name)) continue;
  context.log(`${table.name}: ${table.title}`);
  try {
    const markdown = await table.run(context);
    process.stdout.write(`\n${markdown}\n`);
    const file = join(resultsDir, `${table.name}.md`);
    writeFileSync(file, markdown);
    context.log(`wrote ${file}`);
  } catch (e) {
    failed++;
    context.log(`${table.name} failed: ${e instanceof Error ? (e.stack ?? e.message) : e}`);
  }
}
process.exitCode = failed > 0 ? 1 : 0;
