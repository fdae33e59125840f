/** Child process for the kill/resume test: `node -r ts-register.js train-child.ts <tmp> <out> <slowAfter>`. */
import * as path from 'node:path';
import { RESUME_EXP, toyRun } from './toy-run';

const [tmp, out, slowAfter] = process.argv.slice(2) as [string, string, string];
toyRun(path.join(tmp, 'model'), path.join(tmp, 'corpus'), out, RESUME_EXP, { slowAfter: Number(slowAfter) }).then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(String((e as Error).stack) + '\n');
    process.exit(1);
  },
);
