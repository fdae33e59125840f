jest.setTimeout(300_000);
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ByteTokenizer, HfCheckpoint, convertLlama2c, type CausalLM } from '@llama-pro/core';
import { STORIES260K_BIN, describeWithFixtures, fixturePath } from '@llama-pro/core/testing';
import { tfjsBackend } from '@llama-pro/backend-tfjs';
import { loadHumanEval, type RunRecord } from '@llama-pro/eval';
import { startOpenAIServer, type TestServer } from '@llama-pro/eval/testing';
import { runCli } from './run-cli';

const DATA = fixturePath('datasets');
const readRun = async (dir: string): Promise<RunRecord> => JSON.parse(await fsp.readFile(path.join(dir, 'results.json'), 'utf8')) as RunRecord;

describeWithFixtures('llama-pro eval --task humaneval --samples', [['datasets', 'humaneval', 'HumanEval.jsonl.gz']], () => {
  it('scores openai/human-eval format samples and writes results.json, samples JSONL and a markdown table', async () => {
    const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-eval-'));
    const { problems } = await loadHumanEval(path.join(DATA, 'humaneval'));
    const samples = problems.slice(0, 4).map((p, i) => JSON.stringify({ task_id: p.task_id, completion: i === 3 ? '    exit(0)\n' : p.canonical_solution }));
    await fsp.writeFile(path.join(tmp, 'samples.jsonl'), samples.join('\n') + '\n');
    const r = await runCli(['eval', '--task', 'humaneval', '--samples', path.join(tmp, 'samples.jsonl'), '--limit', '4', '--data-dir', DATA, '--out', tmp, '--name', 'he']);
    expect(r.stderr).not.toMatch(/llama-pro:/);
    expect(r.code).toBe(0);
    const run = await readRun(path.join(tmp, 'he'));
    expect(run.tasks['humaneval']!.metrics).toEqual({ 'pass@1': 0.75 });
    expect(run.tasks['humaneval']!.dataset.files[0]!.sha256).toBe('b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef');
    const lines = (await fsp.readFile(path.join(tmp, 'he', 'samples_humaneval.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.passed)).toEqual([true, true, true, false]);
    expect(await fsp.readFile(path.join(tmp, 'he', 'results.md'), 'utf8')).toContain('| humaneval | 0 | pass@1 | 0.7500 |');
    expect(r.stdout).toContain('pass@1');
    const bad = await runCli(['eval', '--tasks', 'nope', '--model', tmp, '--data-dir', DATA]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/unknown evaluator "nope"; known: .*humaneval/);
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  it('--k chooses the pass@k values (openai/human-eval estimate_pass_at_k)', async () => {
    const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-eval-k-'));
    const { problems } = await loadHumanEval(path.join(DATA, 'humaneval'));
    // Problem 0: 2 samples, 1 correct; problem 1: 2 samples, both correct.
    const rows = [
      { task_id: problems[0]!.task_id, completion: problems[0]!.canonical_solution },
      { task_id: problems[0]!.task_id, completion: '    return None\n' },
      { task_id: problems[1]!.task_id, completion: problems[1]!.canonical_solution },
      { task_id: problems[1]!.task_id, completion: problems[1]!.canonical_solution },
    ];
    await fsp.writeFile(path.join(tmp, 'samples.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const r = await runCli(['eval', '--task', 'humaneval', '--samples', path.join(tmp, 'samples.jsonl'), '--limit', '2', '--data-dir', DATA, '--out', tmp, '--name', 'k', '--k', '1,2,5']);
    expect(r.code).toBe(0);
    // estimator(n, c, k) = 1 - prod(1 - k / arange(n - c + 1, n + 1)), 1 when n - c < k:
    // pass@1 = mean(1 - (1 - 1/2), 1) = 0.75; pass@2 = mean(1, 1) = 1; pass@5 is left out (n = 2 < 5, `(total >= k).all()`).
    expect((await readRun(path.join(tmp, 'k'))).tasks['humaneval']!.metrics).toEqual({ 'pass@1': 0.75, 'pass@2': 1 });
    const bad = await runCli(['eval', '--task', 'humaneval', '--samples', path.join(tmp, 'samples.jsonl'), '--data-dir', DATA, '--out', tmp, '--k', '1,x']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/--k must be an integer >= 1, got "x"/);
    await fsp.rm(tmp, { recursive: true, force: true });
  });
});

describeWithFixtures('llama-pro eval on stories260K: local backend vs OpenAI-compatible endpoint', [STORIES260K_BIN, ['datasets', 'mmlu', 'test'], ['datasets', 'gsm8k', 'test.jsonl']], () => {
  let tmp: string;
  let dir: string;
  let model: CausalLM;
  let server: TestServer;
  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-eval-e2e-'));
    dir = path.join(tmp, 'stories260K');
    await convertLlama2c(fixturePath(...STORIES260K_BIN), dir);
    const ckpt = await HfCheckpoint.open(dir);
    model = await tfjsBackend.load(ckpt, { variant: 'wasm' });
    await ckpt.close();
    server = await startOpenAIServer(model, new ByteTokenizer(model.config.vocabSize));
    await fsp.writeFile(path.join(tmp, 'corpus.txt'), 'Once upon a time, there was a little girl named Lily.\n\nShe loved to play outside in the sun.\n');
  });
  afterAll(async () => {
    await server?.close();
    await model?.dispose();
    if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
  });

  it('gives the same numbers through both paths, and compare shows zero deltas', async () => {
    // Short prompts: stories260K has 512 positions and a server rejects longer requests (the local path would
    // truncate from the left, lm-eval style).
    const common = ['--tasks', 'mmlu,gsm8k,perplexity', '--limit', '3', '--num-fewshot', '0', '--subjects', 'abstract_algebra,high_school_mathematics', '--data-dir', DATA, '--out', tmp, '--max-gen-tokens', '24', '--corpus', path.join(tmp, 'corpus.txt'), '--rolling-scoring', 'text-only'];
    // (text-only: lm-eval's rolling scoring includes BOS, which text prompts to an endpoint cannot score.)
    const local = await runCli(['eval', '--model', dir, '--backend', 'tfjs:wasm', '--name', 'local', '--byte-tokens', ...common]);
    expect(local.stderr).not.toMatch(/llama-pro:/);
    expect(local.code).toBe(0);
    const remote = await runCli(['eval', '--model', server.url, '--served-model', 'stories260K', '--name', 'remote', ...common]);
    expect(remote.stderr).not.toMatch(/llama-pro:/);
    expect(remote.code).toBe(0);
    const a = await readRun(path.join(tmp, 'local'));
    const b = await readRun(path.join(tmp, 'remote'));
    expect(a.model).toMatchObject({ kind: 'local', backend: 'tfjs:wasm' });
    expect(a.model.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(a.config.add_bos).toBe(true);
    expect(a.tasks['mmlu']!.details!['total']).toBe(6);
    for (const t of ['mmlu', 'gsm8k', 'perplexity']) {
      const ma = a.tasks[t]!.metrics;
      const mb = b.tasks[t]!.metrics;
      expect(Object.keys(mb).sort()).toEqual(Object.keys(ma).sort());
      // Equal up to float32 noise: the local path batches rows (padding), the server scores one row at a time.
      for (const k of Object.keys(ma)) expect([t, k, Math.abs(mb[k]! - ma[k]!) <= 1e-6 * Math.max(1, Math.abs(ma[k]!))]).toEqual([t, k, true]);
    }
    const sa = (await fsp.readFile(path.join(tmp, 'local', 'samples_gsm8k.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l).response);
    const sb = (await fsp.readFile(path.join(tmp, 'remote', 'samples_gsm8k.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l).response);
    expect(sb).toEqual(sa);
    // Byte-token prompts are far from what stories260K saw in training (its vocabulary merges pieces), so only sanity.
    expect(a.tasks['perplexity']!.metrics['bits_per_byte']).toBeGreaterThan(0);
    expect(Number.isFinite(a.tasks['perplexity']!.metrics['bits_per_byte'])).toBe(true);
    const cmp = await runCli(['eval', 'compare', path.join(tmp, 'local'), path.join(tmp, 'remote', 'results.json')]);
    expect(cmp.code).toBe(0);
    expect(cmp.stdout).toContain('| mmlu | acc |');
    expect(cmp.stdout).toMatch(/\(\+0\.0000\)|\(-0\.0000\)/);
  });
});
