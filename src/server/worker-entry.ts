// The program a pre-fork master forks for each worker (see runForkedWorker in worker.ts).
import { runForkedWorker } from './worker.js';

process.exit(await runForkedWorker());
