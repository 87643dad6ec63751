#!/usr/bin/env node
// Runs the FastCGI responder fuzz test (test/unit/fastcgi-fuzz.test.ts) for far longer than
// `npm test` does: `npm run fuzz [-- --cases N | --seconds S] [--seed N]`. The environment
// variables FUZZ_CASES, FUZZ_SECONDS and FUZZ_SEED work too; a failure prints the seed to replay.
import { spawnSync } from 'node:child_process';

const env = { ...process.env };
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const [flag, inline] = args[i].split('=', 2);
  const value = inline ?? args[++i];
  if (flag === '--cases') env.FUZZ_CASES = value;
  else if (flag === '--seconds') env.FUZZ_SECONDS = value;
  else if (flag === '--seed') env.FUZZ_SEED = value;
  else {
    console.error(
      `fuzz-fastcgi: unknown argument ${args[i]} (use --cases N, --seconds S, --seed N)`,
    );
    process.exit(2);
  }
}
if (!env.FUZZ_CASES && !env.FUZZ_SECONDS) env.FUZZ_CASES = '100000';

const r = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-reporter=spec', 'test/unit/fastcgi-fuzz.test.ts'],
  { stdio: 'inherit', env },
);
process.exit(r.status ?? 1);
