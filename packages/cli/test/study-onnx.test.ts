/**
 * The study on the onnx backend (the `mini` preset's default engine): training through generated backward
 * graphs, identity at step 0 exact, every variant run on the same budget.
 */
import { useMainRealmTypedArrays } from '@llama-pro/backend-onnx/testing';
useMainRealmTypedArrays();
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { StudyResults } from '@llama-pro/study';
import { runCli } from './run-cli';

jest.setTimeout(300_000);

it('llama-pro study --preset micro --backend onnx: every variant, exact identity at step 0', async () => {
  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'llama-pro-study-onnx-'));
  try {
    const out = path.join(tmp, 'out');
    const r = await runCli(['study', '--preset', 'micro', '--backend', 'onnx', '--out', out, '--cache-dir', path.join(tmp, 'cache'), '--no-png', '--json']);
    expect(r.stderr).not.toMatch(/unexpected error/);
    expect(r.code).toBe(0);
    // 6 variants × 2 seeds, plus the frontier sweep point lr 3e-3 × 2 steps per variant.
    expect(JSON.parse(r.stdout)).toMatchObject({ ran: 18, reused: 0 });
    const res = JSON.parse(await fsp.readFile(path.join(out, 'results.json'), 'utf8')) as StudyResults;
    expect(res.runs).toHaveLength(12);
    expect(res.sweep).toHaveLength(6);
    for (const run of res.runs) {
      expect(run.tokensSeen).toBe(res.config.train.steps * res.config.train.batchSize * res.config.train.seqLen);
      if (run.kind === 'expand') {
        expect(run.before.generalLoss).toBe(res.base.eval.generalLoss);
        expect(run.identity!.verifyMaxAbsDiff).toBe(0);
      }
      expect(run.after.domainLoss).toBeLessThan(run.before.domainLoss);
    }
  } finally {
    await fsp.rm(tmp, { recursive: true, force: true });
  }
});
