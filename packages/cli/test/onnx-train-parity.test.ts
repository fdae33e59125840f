/**
 * Training on ONNX Runtime (generated backward graphs) against the tfjs backend's autodiff on seeded
 * tiny models: per-tensor gradient parity (relative L2 error ≤ 1e-4) for the new-blocks, middle-layer and
 * full policies (grouped-query attention, tied and untied heads, biases), and the same loss curve over 20
 * AdamW steps of the one Trainer. Both engines compute in float32 with different summation orders;
 * observed differences are ~1e-6, so 1e-4 (the bound) is a real check, not a formality.
 * The onnx fast path (resident parameters updated in place by the fused AdamW) is checked bit for bit
 * against the copying path, and an interrupted + resumed onnx run against a straight one.
 */
import { useMainRealmTypedArrays } from '@llama-pro/backend-onnx/testing';
useMainRealmTypedArrays(); // onnxruntime-node under jest: see the helper's doc

import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HfCheckpoint, Rng, expectedTensorNames, type LlamaConfig } from '@llama-pro/core';
import { tinyRawConfig, writeRandomCheckpoint, type TinyConfigOptions } from '@llama-pro/core/testing';
import { loadOnnxTrainable } from '@llama-pro/backend-onnx';
import { tfjsBackend } from '@llama-pro/backend-tfjs';
import { ByteTokenizer, NamedRegistry } from '@llama-pro/core';
import { AdamW, BUILTIN_POLICIES, BUILTIN_SCHEDULES, BatchStream, checkpointDir, ParameterSet, SequenceFile, Trainer, constantSchedule, fullPolicy, layersPolicy, loraPolicy, newBlocksPolicy, parseExperiment, readMetrics, runTraining, type ExperimentInput, type FreezePlan, type FreezePolicy, type MetricsRecord, type PolicyOptions } from '@llama-pro/train';
import type { TrainableLM } from '@llama-pro/core';
import { relL2 } from '@llama-pro/core/testing';
import { batchOf, expectGradientParity } from './onnx-train-support';
import { runCli } from './run-cli';


const CASES: [string, TinyConfigOptions, (c: LlamaConfig) => string[]][] = [
  ['new-blocks (layers 1 and 3 of 4), GQA 2:1, tied head', { layers: 4, heads: 4, kvHeads: 2, tie: true }, (c) => expectedTensorNames(c).filter((n) => /^model\.layers\.[13]\./.test(n))],
  ['middle layer (2 of 4), MQA, attention and MLP biases', { layers: 4, heads: 4, kvHeads: 1, attentionBias: true, mlpBias: true }, (c) => expectedTensorNames(c).filter((n) => n.startsWith('model.layers.2.'))],
  ['full, GQA 2:1, untied head', { layers: 2, heads: 4, kvHeads: 2, tie: false }, (c) => expectedTensorNames(c)],
  ['full, GQA 2:1, tied head, biases', { layers: 2, heads: 4, kvHeads: 2, tie: true, attentionBias: true, mlpBias: true }, (c) => expectedTensorNames(c)],
];

/** Losses of `steps` updates of the train package's Trainer (AdamW, clipping) on `model`, and the trained values. */
async function trainerRun(model: TrainableLM, plan: FreezePlan, dataFile: string, runDir: string, steps: number, o: { lr?: number; gradAccum?: number; weightDecay?: number; seqLen?: number } = {}): Promise<{ losses: number[]; values: Map<string, Float32Array> }> {
  const params = await ParameterSet.create(model, plan, new Rng(0));
  const seqs = await SequenceFile.open(dataFile, o.seqLen ?? 8);
  try {
    const lr = o.lr ?? 1e-2;
    const trainer = new Trainer({
      model, params, optimizer: new AdamW(params.slots, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: o.weightDecay ?? 0.1 }), schedule: constantSchedule, scheduleParams: { lr, minLr: 0, warmupRatio: 0 },
      train: new BatchStream(seqs, 0, true), totalSteps: steps, batchSize: 2, gradAccum: o.gradAccum ?? 1, clip: 1, evalInterval: 0, evalBatches: 1,
      checkpointInterval: 0, keep: 1, runDir, rng: new Rng(0), policyFingerprint: '', dataFingerprint: '',
    });
    const losses: number[] = [];
    for (let i = 0; i < steps; i++) losses.push((await trainer.step(lr)).loss);
    return { losses, values: params.modelTensors() };
  } finally {
    await seqs.close();
  }
}

async function trainerLosses(model: TrainableLM, policy: FreezePolicy, options: PolicyOptions, dataFile: string, runDir: string, steps: number): Promise<number[]> {
  const names = model.parameterNames();
  const plan = policy.plan({ parameterNames: names, shapeOf: (n) => model.parameterShape(n), manifest: { trainable: names.filter((n) => n.startsWith('model.layers.1.')), newLayers: [1] }, options });
  return (await trainerRun(model, plan, dataFile, runDir, steps)).losses;
}

/** The same model without the resident-array capability: the Trainer falls back to copies and setParameter. */
function copyingView(m: TrainableLM): TrainableLM {
  return {
    config: m.config, device: m.device,
    parameterNames: () => m.parameterNames(), parameterShape: (n) => m.parameterShape(n),
    getParameter: (n) => m.getParameter(n), setParameter: (n, v) => m.setParameter(n, v),
    loss: (b) => m.loss(b), lossAndGradients: (b, t) => m.lossAndGradients(b, t),
    forward: (b) => m.forward(b), tokenLogprobs: (b) => m.tokenLogprobs(b), startSession: (n) => m.startSession(n), dispose: () => m.dispose(),
  };
}

async function writeTokens(file: string, n: number, vocab: number, seed: number): Promise<void> {
  const rng = new Rng(seed);
  await fsp.writeFile(file, Buffer.from(Int32Array.from({ length: n }, () => rng.int(vocab)).buffer));
}

const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe('onnx training vs tfjs autodiff', () => {
  let tmp: string;
  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'onnx-train-parity-'));
  });
  afterAll(async () => {
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  it.each(CASES)('%s: loss and every gradient match', async (label, opts, pick) => {
    const dir = path.join(tmp, `m${CASES.findIndex((c) => c[0] === label)}`);
    const config = await writeRandomCheckpoint(dir, tinyRawConfig({ vocab: 67, ...opts }), { seed: label.length, std: 0.15 });
    const ckpt = await HfCheckpoint.open(dir);
    try {
      await expectGradientParity(ckpt, pick(config), batchOf(config, 2, 11, label.length));
    } finally {
      await ckpt.close();
    }
  }, 60_000);

  it('20 AdamW steps of the Trainer give the same loss curve on onnx (resident fast path) and tfjs, and frozen tensors stay byte-identical', async () => {
    const dir = path.join(tmp, 'curve');
    const config = await writeRandomCheckpoint(dir, tinyRawConfig({ layers: 3, heads: 4, kvHeads: 2, vocab: 67, tie: false }), { seed: 7, std: 0.15 });
    const ckpt = await HfCheckpoint.open(dir);
    const plan: FreezePlan = { trainable: expectedTensorNames(config).filter((n) => n.startsWith('model.layers.1.') || n === 'model.norm.weight'), lora: [], summary: 'layer 1 + final norm' };
    const frozen = 'model.layers.0.mlp.up_proj.weight';
    const dataFile = path.join(tmp, 'curve.tokens');
    await writeTokens(dataFile, 4 * 10 + 1, config.vocabSize, 3); // 4 sequences of 9+1: batches repeat
    const onnx = await loadOnnxTrainable(ckpt, { threads: 1 });
    const tfjs = await tfjsBackend.loadTrainable!(ckpt, { variant: 'cpu' });
    try {
      const frozenBefore = await onnx.getParameter(frozen);
      const a = (await trainerRun(onnx, plan, dataFile, path.join(tmp, 'curve-onnx'), 20, { lr: 5e-3, seqLen: 9 })).losses;
      const b = (await trainerRun(tfjs, plan, dataFile, path.join(tmp, 'curve-tfjs'), 20, { lr: 5e-3, seqLen: 9 })).losses;
      // Training must actually move the loss (the batches repeat every 2 steps).
      expect(a[19]!).toBeLessThan(a[3]! - 0.05);
      for (let s = 0; s < 20; s++) expect(Math.abs(a[s]! - b[s]!)).toBeLessThan(2e-4 * b[s]!);
      expect(bits(await onnx.getParameter(frozen)).equals(bits(frozenBefore))).toBe(true);
      // The inference path sees the trained parameters.
      const logits = await onnx.forward({ ids: batchOf(config, 1, 5, 1).ids, batchSize: 1, seqLen: 5 });
      const ref = await tfjs.forward({ ids: batchOf(config, 1, 5, 1).ids, batchSize: 1, seqLen: 5 });
      expect(relL2(logits.data, ref.data)).toBeLessThan(1e-4);
    } finally {
      await onnx.dispose();
      await tfjs.dispose();
      await ckpt.close();
    }
  }, 120_000);

  it.each([1, 2])('onnx: the resident fast path is bit-identical to the copying path (grad-accum %i, lora included)', async (gradAccum) => {
    const dir = path.join(tmp, `fast-${gradAccum}`);
    const config = await writeRandomCheckpoint(dir, tinyRawConfig({ layers: 2, heads: 4, kvHeads: 2, vocab: 67, tie: true }), { seed: 21, std: 0.15 });
    const dataFile = path.join(tmp, `fast-${gradAccum}.tokens`);
    await writeTokens(dataFile, 8 * 9 + 1, config.vocabSize, 9);
    const plan: FreezePlan = {
      trainable: expectedTensorNames(config).filter((n) => n.startsWith('model.layers.1.')),
      lora: [{ name: 'model.layers.0.self_attn.q_proj.weight', rank: 2, alpha: 4 }],
      summary: 'layer 1 + a LoRA adapter on layer 0',
    };
    const ckpt = await HfCheckpoint.open(dir);
    const fast = await loadOnnxTrainable(ckpt, { threads: 1 });
    const slow = await loadOnnxTrainable(ckpt, { threads: 1 });
    try {
      // The onnx model takes the zero-copy path: the trainer's master values are its resident arrays.
      const ps = await ParameterSet.create(fast, plan, new Rng(0));
      for (const n of plan.trainable) expect(ps.values.get(n)).toBe(await fast.residentParameter(n));
      const a = await trainerRun(fast, plan, dataFile, path.join(tmp, `fast-run-${gradAccum}`), 5, { gradAccum });
      const b = await trainerRun(copyingView(slow), plan, dataFile, path.join(tmp, `slow-run-${gradAccum}`), 5, { gradAccum });
      expect(a.losses).toEqual(b.losses);
      expect(a.losses[4]!).toBeLessThan(a.losses[0]!);
      for (const [n, v] of a.values) expect({ n, same: bits(v).equals(bits(b.values.get(n)!)) }).toEqual({ n, same: true });
      for (const n of plan.trainable) expect(bits(await fast.getParameter(n)).equals(bits(await slow.getParameter(n)))).toBe(true);
    } finally {
      await fast.dispose();
      await slow.dispose();
      await ckpt.close();
    }
  }, 60_000);

  it.each<[string, FreezePolicy, PolicyOptions]>([
    ['new-blocks', newBlocksPolicy, {}],
    ['layers', layersPolicy, { layers: { top: 1 } }],
    ['full', fullPolicy, {}],
    ['lora', loraPolicy, { lora: { rank: 2, alpha: 4, targets: ['self_attn.q_proj', 'self_attn.v_proj'] } }],
  ])('the train package\'s Trainer gives the same losses on onnx and tfjs (%s)', async (label, policy, options) => {
    const dir = path.join(tmp, `trainer-${label}`);
    const config = await writeRandomCheckpoint(dir, tinyRawConfig({ layers: 2, heads: 4, kvHeads: 2, vocab: 67, tie: true }), { seed: 11, std: 0.15 });
    const dataFile = path.join(tmp, `data-${label}.tokens`);
    await writeTokens(dataFile, 8 * 9 + 1, config.vocabSize, 5);
    const ckpt = await HfCheckpoint.open(dir);
    const onnx = await loadOnnxTrainable(ckpt, { threads: 1 });
    const tfjs = await tfjsBackend.loadTrainable!(ckpt, { variant: 'cpu' });
    try {
      const a = await trainerLosses(onnx, policy, options, dataFile, path.join(tmp, `run-onnx-${label}`), 6);
      const b = await trainerLosses(tfjs, policy, options, dataFile, path.join(tmp, `run-tfjs-${label}`), 6);
      for (let s = 0; s < a.length; s++) expect(Math.abs(a[s]! - b[s]!)).toBeLessThan(2e-4 * b[s]!);
      expect(Math.min(...a.slice(3))).toBeLessThan(a[0]!);
    } finally {
      await onnx.dispose();
      await tfjs.dispose();
      await ckpt.close();
    }
  }, 60_000);
});

describe('onnx runs of runTraining (the code llama-pro train runs)', () => {
  it('8 steps straight equal 3 steps + interrupt + --resume: bitwise tensors, optimizer state and loss log', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-onnx-resume-'));
    try {
      const modelDir = path.join(dir, 'model');
      await writeRandomCheckpoint(modelDir, tinyRawConfig({ layers: 2, vocab: 300, hiddenSize: 32, heads: 4, kvHeads: 2 }), { seed: 8, std: 0.1 });
      const corpus = path.join(dir, 'corpus.txt');
      await fsp.writeFile(corpus, Array.from({ length: 60 }, (_, i) => `${i % 7} + ${i % 5} = ${(i % 7) + (i % 5)}.`).join('\n'));
      const exp: ExperimentInput = { backend: 'onnx', steps: 8, batchSize: 2, gradAccum: 2, seqLen: 16, seed: 3, policy: { name: 'layers', layers: { indices: [1] } }, optimizer: { lr: 1e-2 }, eval: { interval: 4, batches: 1 }, checkpoint: { interval: 0, keep: 2 }, data: { textSplit: 'line', valFraction: 0.1 } };
      const run = async (out: string, o: { resume?: boolean; stopAfter?: number } = {}) => {
        const ckpt = await HfCheckpoint.open(modelDir);
        const model = await loadOnnxTrainable(ckpt, { threads: 1 });
        const ac = new AbortController();
        try {
          return await runTraining({
            experiment: parseExperiment({ ...exp, out, data: { ...exp.data, path: corpus } }),
            model, source: ckpt, tokenizer: new ByteTokenizer(300),
            policies: new NamedRegistry('freeze policy', BUILTIN_POLICIES), schedules: new NamedRegistry('schedule', BUILTIN_SCHEDULES),
            resume: o.resume, signal: ac.signal,
            onStep: (r: MetricsRecord) => {
              if (o.stopAfter !== undefined && r.step >= o.stopAfter) ac.abort();
            },
            info: { backend: 'onnx' },
          });
        } finally {
          await model.dispose();
          await ckpt.close();
        }
      };
      const straight = await run(path.join(dir, 'straight'));
      const out = path.join(dir, 'interrupted');
      const s1 = await run(out, { stopAfter: 3 });
      expect(s1).toMatchObject({ finishReason: 'interrupted', step: 3 });
      const s2 = await run(out, { resume: true });
      expect(s2).toMatchObject({ finishReason: 'completed', step: 8, resumedFrom: 3 });
      const [a, b] = [await HfCheckpoint.open(straight.exportDir!), await HfCheckpoint.open(s2.exportDir!)];
      for (const n of a.tensorNames()) expect({ n, same: (await a.read(n)).equals(await b.read(n)) }).toEqual({ n, same: true });
      await Promise.all([a.close(), b.close()]);
      const opt = async (runDir: string) => fsp.readFile(path.join(checkpointDir(runDir, 8), 'optimizer.safetensors'));
      expect((await opt(out)).equals(await opt(straight.runDir))).toBe(true);
      const log = async (d: string) => (await readMetrics(d)).map((m) => [m.step, m.loss, m.lr, m.grad_norm, m.val_loss]);
      expect(await log(out)).toEqual(await log(straight.runDir));
      expect(straight.finalValLoss).toBeLessThan(straight.initialValLoss!);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

describe('llama-pro train --backend onnx', () => {
  it('trains the new blocks of an expanded model through the CLI and keeps frozen tensors byte-identical', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-onnx-cli-train-'));
    const base = path.join(dir, 'base');
    await writeRandomCheckpoint(base, tinyRawConfig({ layers: 2, vocab: 300, hiddenSize: 32, heads: 4, kvHeads: 2 }), { seed: 4 });
    const grown = path.join(dir, 'grown');
    expect((await runCli(['expand', base, grown, '--strategy', 'top', '--blocks', '1'])).code).toBe(0);
    await fsp.writeFile(path.join(dir, 'corpus.txt'), 'Tom has 3 apples and buys 4 more. 3 + 4 = 7.\n'.repeat(40));
    const r = await runCli(['train', '--model', grown, '--data', path.join(dir, 'corpus.txt'), '--out', path.join(dir, 'run'), '--steps', '4', '--seq-len', '32', '--batch-size', '2', '--backend', 'onnx', '--json', '--byte-tokens']);
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s).toMatchObject({ finishReason: 'completed', step: 4, policy: 'new-blocks', trainableTensors: 9 });
    expect(s.peakRssMb).toBeGreaterThan(0);
    const metrics = (await fsp.readFile(path.join(dir, 'run', 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(metrics.filter((m) => m.loss !== undefined).every((m) => m.rss_mb > 0)).toBe(true);
    const [a, b] = [await HfCheckpoint.open(grown), await HfCheckpoint.open(s.exportDir)];
    for (const n of a.tensorNames()) {
      const same = (await a.read(n)).equals(await b.read(n));
      expect([n, same]).toEqual([n, !n.startsWith('model.layers.2.')]);
    }
    await Promise.all([a.close(), b.close()]);
  });
  it('train --resume: refuses a directory with no run and a backend switch (unless --allow-backend-change); run.json records both backends', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-onnx-cli-resume-'));
    try {
      const model = path.join(dir, 'model');
      await writeRandomCheckpoint(model, tinyRawConfig({ layers: 2, vocab: 300, hiddenSize: 32, heads: 4, kvHeads: 2 }), { seed: 4 });
      await fsp.writeFile(path.join(dir, 'corpus.txt'), 'Tom has 3 apples and buys 4 more. 3 + 4 = 7.\n'.repeat(40));
      const out = path.join(dir, 'run');
      const args = ['train', '--model', model, '--data', path.join(dir, 'corpus.txt'), '--out', out, '--policy', 'layers', '--layers', '1', '--steps', '4', '--seq-len', '32', '--batch-size', '2', '--eval-interval', '0', '--json', '--byte-tokens'];
      const none = await runCli([...args, '--resume']);
      expect(none.code).toBe(1);
      expect(none.stderr).toMatch(/--resume: .* holds no training run to continue .*drop --resume/);
      const first = await runCli([...args, '--backend', 'tfjs:cpu']);
      expect(first.code).toBe(0);
      // The default backend (onnx) differs from the run's (tfjs): refused, naming both fixes.
      const switched = await runCli([...args, '--resume']);
      expect(switched.code).toBe(1);
      expect(switched.stderr).toMatch(/trained on backend "tfjs:cpu" but this resume would run on "onnx"; resume with --backend tfjs:cpu, or pass --allow-backend-change/);
      const allowed = await runCli([...args, '--resume', '--allow-backend-change']);
      expect(allowed.code).toBe(0);
      const run = JSON.parse(await fsp.readFile(path.join(out, 'run.json'), 'utf8'));
      expect(run.backends).toEqual(['tfjs:cpu', 'onnx']);
      expect(run.segments).toMatchObject([
        { fromStep: 0, toStep: 4, backend: 'tfjs', backendVariant: 'cpu', finishReason: 'completed' },
        { fromStep: 4, toStep: 4, backend: 'onnx', device: 'onnx:cpu', finishReason: 'completed' },
      ]);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});
