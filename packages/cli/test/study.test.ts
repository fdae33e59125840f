/**
 * `llama-pro study` end to end on the real tfjs backend with the `micro` preset (seconds): pretrain a base,
 * expand it (interleaved / top / bottom), train every variant and the full / LoRA / layers baselines on
 * two seeds, evaluate, report; then resume (nothing recomputed) and run on stories260K via --base.
 */
jest.setTimeout(300_000);
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { convertLlama2c } from '@llama-pro/core';
import { STORIES260K_BIN, describeWithFixtures, fixturePath } from '@llama-pro/core/testing';
import type { StudyResults } from '@llama-pro/study';
import { runCli } from './run-cli';

let tmp: string;
beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'llama-pro-study-'));
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

async function readResults(out: string): Promise<StudyResults & { findings: { claim: string; verdict: string }[] }> {
  return JSON.parse(await fsp.readFile(path.join(out, 'results.json'), 'utf8')) as StudyResults & { findings: { claim: string; verdict: string }[] };
}

describe('llama-pro study --preset micro', () => {
  it('runs every variant on every seed, checks identity, reports, and resumes without recomputing', async () => {
    const out = path.join(tmp, 'out');
    const cache = path.join(tmp, 'cache');
    // Two processes share the runs (each claims the next pending one); a third run below checks the numbers against one process.
    const r = await runCli(['study', '--preset', 'micro', '--backend', 'tfjs', '--out', out, '--cache-dir', cache, '--workers', '2', '--json']);
    expect(r.stderr).not.toMatch(/unexpected error/);
    expect(r.stderr).toContain('18 runs on 2 processes');
    expect(r.stderr).toMatch(/\[worker 1\] \S+ seed \d: general/);
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout) as { ran: number; reused: number };
    // 6 variants × 2 seeds, and the frontier sweep: lr 3e-3 × 2 steps × 1 seed per variant (lr 1e-2 × 2 is the main point).
    expect(summary).toMatchObject({ ran: 18, reused: 0 });
    const res = await readResults(out);
    const variants = [...new Set(res.runs.map((x) => x.variant))];
    expect(variants).toEqual(['interleaved-2', 'top-1', 'bottom-1', 'full', 'lora', 'layers-1']);
    expect(res.runs.map((x) => x.seed).sort()).toEqual([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]);
    expect(res.base.origin).toBe('pretrained');
    // The study's base has a real byte-level tokenizer.json, so generate --prompt works on it.
    const gen = await runCli(['generate', '--model', path.join(res.base.dir), '--prompt', 'Once', '--max-new-tokens', '4', '--temperature', '0', '--json']);
    expect(gen.stderr).not.toMatch(/llama-pro:/);
    expect(gen.code).toBe(0);
    expect(res.base.pretrainCurve).toHaveLength(res.config.base.pretrain.steps);
    for (const run of res.runs) {
      // Every run trained the same domain-token budget.
      expect(run.tokensSeen).toBe(res.config.train.steps * res.config.train.batchSize * res.config.train.seqLen);
      expect(run.curve).toHaveLength(res.config.train.steps);
      expect(run.after.total).toBe(res.config.eval.testProblems);
      expect(run.after.domainLoss).not.toBe(run.before.domainLoss);
      if (run.kind === 'expand') {
        // Identity: the expanded model's step-0 general loss is the base's, exactly.
        expect(run.identity).not.toBeNull();
        expect(run.before.generalLoss).toBe(res.base.eval.generalLoss);
        expect(run.identity!.identical).toBe(true);
        expect(run.identity!.verifyMaxAbsDiff).toBe(0);
        expect(run.numLayers).toBe(res.base.numLayers + run.newLayers.length);
      } else expect(run.identity).toBeNull();
    }
    // Seeds change the data order, so the two seeds of a variant differ.
    const full = res.runs.filter((x) => x.variant === 'full');
    expect(full[0]!.after.domainLoss).not.toBe(full[1]!.after.domainLoss);
    expect(res.findings.find((f) => f.claim.startsWith('Every expanded model'))!.verdict).toBe('reproduced');
    // Two seeds: every statistical finding is untested.
    for (const f of res.findings.filter((x) => !x.claim.startsWith('Every expanded model'))) expect(f.verdict).toBe('untested');
    expect(res.sweep!.map((x) => `${x.variant}:${x.lr}:${x.steps}`)).toEqual(variants.map((v) => `${v}:0.003:2`));
    const md = await fsp.readFile(path.join(out, 'report.md'), 'utf8');
    expect(md).toContain("## Which of the paper's findings this run reproduces");
    expect(md).toContain('| interleaved-2 | new-blocks | 2 |');
    for (const f of ['loss-curves', 'general-vs-domain', 'accuracy', 'frontier', 'frontier-accuracy']) {
      expect((await fsp.stat(path.join(out, `${f}.svg`))).size).toBeGreaterThan(500);
      expect((await fsp.readFile(path.join(out, `${f}.png`))).subarray(1, 4).toString()).toBe('PNG');
    }

    // Second invocation: everything is reused, numbers unchanged; the cached base is not retrained; a claim
    // left by an interrupted invocation is cleared.
    await fsp.mkdir(path.join(out, 'claims', 'left-over'), { recursive: true });
    const again = await runCli(['study', '--preset', 'micro', '--backend', 'tfjs', '--out', out, '--cache-dir', cache, '--json']);
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ ran: 0, reused: 18 });
    expect(again.stderr).toContain('cached pretrained model');
    const res2 = await readResults(out);
    expect(res2.runs).toEqual(res.runs);
    expect(res2.sweep).toEqual(res.sweep);
    await expect(fsp.stat(path.join(out, 'claims'))).rejects.toThrow();

    // One process, fresh out, same cached base: the same numbers as the two processes (only timings differ).
    const out1 = path.join(tmp, 'out-1');
    const one = await runCli(['study', '--preset', 'micro', '--backend', 'tfjs', '--out', out1, '--cache-dir', cache, '--workers', '1', '--json']);
    expect(one.code).toBe(0);
    expect(one.stderr).not.toContain('processes');
    const res1 = await readResults(out1);
    const numbers = (x: StudyResults['runs'][number]) => ({ variant: x.variant, seed: x.seed, before: x.before, after: x.after, curve: x.curve, samples: x.samples });
    expect(res1.runs.map(numbers)).toEqual(res.runs.map(numbers));
    expect(res1.sweep!.map(numbers)).toEqual(res.sweep!.map(numbers));
  });

  it('--seed shifts the seeds, --base-seed pretrains another base', async () => {
    const out = path.join(tmp, 'seeded');
    const r = await runCli(['study', '--preset', 'micro', '--backend', 'tfjs', '--seed', '5', '--base-seed', '3', '--out', out, '--cache-dir', path.join(tmp, 'cache'), '--no-png', '--workers', '1', '--json']);
    expect(r.code).toBe(0);
    // A base with another seed is not the cached seed-0 base of the first test.
    expect(r.stderr).toContain('seed 3 →');
    const res = await readResults(out);
    expect([...new Set(res.runs.map((x) => x.seed))]).toEqual([5, 6]);
    expect([...new Set(res.sweep!.map((x) => x.seed))]).toEqual([5]);
    expect(res.config.base.seed).toBe(3);
    const md = await fsp.readFile(path.join(out, 'report.md'), 'utf8');
    expect(md).toContain('base seed 3 for the initial weights');
    expect(md).toContain('seeds 5, 6');
  });

  it('refuses an unknown preset and an invalid config with a message naming the fix', async () => {
    const bad = await runCli(['study', '--preset', 'huge', '--out', path.join(tmp, 'x')]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('known presets: mini, micro');
    const badSeed = await runCli(['study', '--preset', 'micro', '--seed', '-1', '--out', path.join(tmp, 'x')]);
    expect(badSeed.code).not.toBe(0);
    expect(badSeed.stderr).toContain('--seed must be a non-negative integer, got "-1"');
    const yaml = path.join(tmp, 'bad.yaml');
    await fsp.writeFile(yaml, 'seeds: 0\n');
    const r = await runCli(['study', '--preset', 'micro', '--backend', 'tfjs', '--config', yaml, '--out', path.join(tmp, 'y')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/bad\.yaml: seeds: /);
  });
});

describeWithFixtures('llama-pro study --base stories260K', [STORIES260K_BIN], () => {
  it('refuses the converted real model without a tokenizer, and runs on it with --byte-tokens', async () => {
    const base = path.join(tmp, 'stories260K');
    await convertLlama2c(fixturePath(...STORIES260K_BIN), base);
    const yaml = path.join(tmp, 'stories.yaml');
    await fsp.writeFile(yaml, 'seeds: 1\n');
    const out = path.join(tmp, 'stories-out');
    // No tokenizer.json: refused unless byte tokens are asked for.
    const refused = await runCli(['study', '--preset', 'micro', '--backend', 'tfjs', '--config', yaml, '--base', base, '--out', out, '--no-png', '--json']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('has no tokenizer.json');
    expect(refused.stderr).toContain('--byte-tokens');
    const r = await runCli(['study', '--preset', 'micro', '--backend', 'tfjs', '--config', yaml, '--base', base, '--byte-tokens', '--out', out, '--no-png', '--json']);
    expect(r.stderr).not.toMatch(/unexpected error/);
    expect(r.code).toBe(0);
    const res = await readResults(out);
    expect(res.base.origin).toBe('given');
    expect(res.base.numLayers).toBe(5);
    // stories260K has 5 layers: the variant list is rebuilt for it (interleaved needs a group count dividing 5).
    expect(res.runs.map((x) => x.variant)).toEqual(['top-2', 'bottom-2', 'interleaved-5', 'top-5', 'bottom-5', 'full', 'lora', 'layers-2']);
    const inter = res.runs.find((x) => x.variant === 'interleaved-5')!;
    expect(inter.newLayers).toEqual([1, 3, 5, 7, 9]);
    expect(inter.identity!.identical).toBe(true);
    expect(Number.isFinite(res.base.eval.generalLoss)).toBe(true);
    expect(inter.before.generalLoss).toBe(res.base.eval.generalLoss);
    await expect(fsp.stat(path.join(out, 'loss-curves.png'))).rejects.toThrow();
  });
});
