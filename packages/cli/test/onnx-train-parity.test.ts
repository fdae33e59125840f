/**
 * Training on ONNX Runtime (generated backward graphs) against the tfjs backend's autodiff on seeded
 * tiny models: per-tensor gradient parity (relative L2 error ≤ 1e-4) for the new-blocks, middle-layer and
 * full policies (grouped-query attention, tied and untied heads, biases), and the same loss curve over 20
 * AdamW steps. Both engines compute in float32 with different summation orders; observed differences are
 * ~1e-6, so 1e-4 (the bound) is a real check, not a formality.
 */
import { useMainRealmTypedArrays } from '@llama-pro/backend-onnx/testing';
useMainRealmTypedArrays(); // onnxruntime-node under jest: see the helper's doc

import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HfCheckpoint, IGNORE_INDEX, Rng, expectedTensorNames, type LlamaConfig, type TrainingBatch } from '@llama-pro/core';
import { tinyRawConfig, writeRandomCheckpoint, type TinyConfigOptions } from '@llama-pro/core/testing';
import { OnnxTrainer, ResidentAdamW, loadOnnxTrainable } from '@llama-pro/backend-onnx';
import { tfjsBackend } from '@llama-pro/backend-tfjs';
import { AdamW, BatchStream, ParameterSet, SequenceFile, Trainer, constantSchedule, fullPolicy, layersPolicy, loraPolicy, newBlocksPolicy, type FreezePolicy, type PolicyOptions } from '@llama-pro/train';
import type { TrainableLM } from '@llama-pro/core';
import { relL2 } from '@llama-pro/core/testing';
import { runCli } from './run-cli';


function batchOf(c: LlamaConfig, B: number, T: number, seed: number): TrainingBatch {
  const rng = new Rng(seed);
  const ids = Int32Array.from({ length: B * T }, () => rng.int(c.vocabSize));
  const targets = Int32Array.from({ length: B * T }, (_, i) => (i % 9 === 4 ? IGNORE_INDEX : rng.int(c.vocabSize)));
  return { ids, targets, batchSize: B, seqLen: T };
}

const CASES: [string, TinyConfigOptions, (c: LlamaConfig) => string[]][] = [
  ['new-blocks (layers 1 and 3 of 4), GQA 2:1, tied head', { layers: 4, heads: 4, kvHeads: 2, tie: true }, (c) => expectedTensorNames(c).filter((n) => /^model\.layers\.[13]\./.test(n))],
  ['middle layer (2 of 4), MQA, attention and MLP biases', { layers: 4, heads: 4, kvHeads: 1, attentionBias: true, mlpBias: true }, (c) => expectedTensorNames(c).filter((n) => n.startsWith('model.layers.2.'))],
  ['full, GQA 2:1, untied head', { layers: 2, heads: 4, kvHeads: 2, tie: false }, (c) => expectedTensorNames(c)],
  ['full, GQA 2:1, tied head, biases', { layers: 2, heads: 4, kvHeads: 2, tie: true, attentionBias: true, mlpBias: true }, (c) => expectedTensorNames(c)],
];

/** Losses of `steps` updates of the train package's Trainer (AdamW, clipping) on `model`. */
async function trainerLosses(model: TrainableLM, policy: FreezePolicy, options: PolicyOptions, dataFile: string, runDir: string, steps: number): Promise<number[]> {
  const names = model.parameterNames();
  const plan = policy.plan({ parameterNames: names, shapeOf: (n) => model.parameterShape(n), manifest: { trainable: names.filter((n) => n.startsWith('model.layers.1.')), newLayers: [1] }, options });
  const params = await ParameterSet.create(model, plan, new Rng(0));
  const seqs = await SequenceFile.open(dataFile, 8);
  try {
    const trainer = new Trainer({
      model, params, optimizer: new AdamW(params.slots), schedule: constantSchedule, scheduleParams: { lr: 1e-2, minLr: 0, warmupRatio: 0 },
      train: new BatchStream(seqs, 0, true), totalSteps: steps, batchSize: 2, gradAccum: 1, clip: 1, evalInterval: 0, evalBatches: 1,
      checkpointInterval: 0, keep: 1, runDir, rng: new Rng(0), policyFingerprint: '', dataFingerprint: '',
    });
    const out: number[] = [];
    for (let i = 0; i < steps; i++) out.push((await trainer.step(1e-2)).loss);
    return out;
  } finally {
    await seqs.close();
  }
}

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
    const trainable = pick(config);
    const batch = batchOf(config, 2, 11, label.length);
    const onnx = await loadOnnxTrainable(ckpt, { threads: 1 });
    const tfjs = await tfjsBackend.loadTrainable!(ckpt, { variant: 'cpu' });
    try {
      const a = await onnx.lossAndGradients(batch, trainable);
      const b = await tfjs.lossAndGradients(batch, trainable);
      expect(a.tokens).toBe(b.tokens);
      expect(Math.abs(a.loss - b.loss) / b.loss).toBeLessThan(1e-5);
      expect([...a.gradients.keys()].sort()).toEqual([...trainable].sort());
      const bad = trainable.map((n) => [n, relL2(a.gradients.get(n)!, b.gradients.get(n)!)] as const).filter(([, e]) => !(e <= 1e-4));
      expect(bad).toEqual([]);
    } finally {
      await onnx.dispose();
      await tfjs.dispose();
      await ckpt.close();
    }
  }, 60_000);

  it('20 AdamW steps give the same loss curve, and frozen tensors stay byte-identical', async () => {
    const dir = path.join(tmp, 'curve');
    const config = await writeRandomCheckpoint(dir, tinyRawConfig({ layers: 3, heads: 4, kvHeads: 2, vocab: 67, tie: false }), { seed: 7, std: 0.15 });
    const ckpt = await HfCheckpoint.open(dir);
    const trainable = expectedTensorNames(config).filter((n) => n.startsWith('model.layers.1.') || n === 'model.norm.weight');
    const frozen = 'model.layers.0.mlp.up_proj.weight';
    const onnx = await loadOnnxTrainable(ckpt, { threads: 1 });
    const tfjs = await tfjsBackend.loadTrainable!(ckpt, { variant: 'cpu' });
    try {
      const frozenBefore = await onnx.getParameter(frozen);
      const trainer = new OnnxTrainer(onnx, trainable, { weightDecay: 0.1, clip: 1.0 });
      // tfjs: its gradients, the same optimizer implementation over copies of its parameters.
      const params = [];
      for (const n of trainable) params.push({ name: n, shape: tfjs.parameterShape(n), values: await tfjs.getParameter(n) });
      const opt = new ResidentAdamW(params, { weightDecay: 0.1, clip: 1.0 });
      const a: number[] = [];
      const b: number[] = [];
      for (let s = 0; s < 20; s++) {
        const batch = batchOf(config, 2, 9, 100 + (s % 4));
        const lr = 5e-3 * Math.min(1, (s + 1) / 4);
        a.push((await trainer.trainStep(batch, lr)).loss);
        const r = await tfjs.lossAndGradients(batch, trainable);
        b.push(r.loss);
        opt.update(r.gradients, lr);
        for (const p of params) await tfjs.setParameter(p.name, p.values);
      }
      // Training must actually move the loss (the batches repeat every 4 steps).
      expect(a[19]!).toBeLessThan(a[3]! - 0.05);
      for (let s = 0; s < 20; s++) expect(Math.abs(a[s]! - b[s]!)).toBeLessThan(2e-4 * b[s]!);
      expect(Buffer.from((await onnx.getParameter(frozen)).buffer).equals(Buffer.from(frozenBefore.buffer))).toBe(true);
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

  it.each<[string, FreezePolicy, PolicyOptions]>([
    ['new-blocks', newBlocksPolicy, {}],
    ['layers', layersPolicy, { layers: { top: 1 } }],
    ['full', fullPolicy, {}],
    ['lora', loraPolicy, { lora: { rank: 2, alpha: 4, targets: ['self_attn.q_proj', 'self_attn.v_proj'] } }],
  ])('the train package\'s Trainer gives the same losses on onnx and tfjs (%s)', async (label, policy, options) => {
    const dir = path.join(tmp, `trainer-${label}`);
    const config = await writeRandomCheckpoint(dir, tinyRawConfig({ layers: 2, heads: 4, kvHeads: 2, vocab: 67, tie: true }), { seed: 11, std: 0.15 });
    const rng = new Rng(5);
    const dataFile = path.join(tmp, `data-${label}.tokens`);
    await fsp.writeFile(dataFile, Buffer.from(Int32Array.from({ length: 8 * 9 + 1 }, () => rng.int(config.vocabSize)).buffer));
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
});
