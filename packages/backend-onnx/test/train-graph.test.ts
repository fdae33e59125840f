/**
 * The generated training graph against an independent float64 JavaScript reference (test/reference.ts):
 * the loss must match, and every gradient is checked by central finite differences of the float64
 * reference loss along a random direction per tensor.
 *
 * Tolerances: the graph runs in float32 (about 7 significant digits; sums over a few hundred terms lose
 * at most ~2 more), the reference in float64. Finite differences use a step of 1e-3 relative to the
 * tensor's RMS in float64, so truncation error is O(h^2) ~ 1e-6 relative and cancellation ~1e-16/1e-3
 * is negligible; the perturbation actually applied to the float32 weights is measured, not assumed.
 * 1e-4 relative (the parity bound) leaves a margin of ~100x over both error sources.
 */
import { EMBED, IGNORE_INDEX, LM_HEAD, expectedTensorNames, layerTensorName, normalizeConfig, type LlamaConfig, type WeightSource } from '@llama-pro/core';
import { randomWeights, tinyRawConfig, weightSourceOf, type TinyConfigOptions } from '@llama-pro/core/testing';
import * as ort from 'onnxruntime-node';
import { encodeModel } from '../src/graph';
import { TRAIN_IDS, TRAIN_LOSS, TRAIN_TARGETS, buildTrainingGraph, gradName } from '../src/train';
import { referenceForward, type Weights } from './reference';

function sourceOf(config: LlamaConfig, weights: Weights): WeightSource {
  return weightSourceOf(config, weights);
}

/** Mean next-token cross-entropy over non-ignored targets, float64. */
function referenceLoss(c: LlamaConfig, weights: Weights, ids: Int32Array, targets: Int32Array, B: number, T: number): number {
  const logits = referenceForward(c, weights, ids, B, T);
  const V = c.vocabSize;
  let sum = 0;
  let n = 0;
  for (let i = 0; i < B * T; i++) {
    const t = targets[i]!;
    if (t === IGNORE_INDEX) continue;
    let m = -Infinity;
    for (let v = 0; v < V; v++) m = Math.max(m, logits[i * V + v]!);
    let z = 0;
    for (let v = 0; v < V; v++) z += Math.exp(logits[i * V + v]! - m);
    sum += m + Math.log(z) - logits[i * V + t]!;
    n++;
  }
  return sum / n;
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

async function runGraph(config: LlamaConfig, weights: Weights, trainable: string[], ids: Int32Array, targets: Int32Array, B: number, T: number) {
  const graph = await buildTrainingGraph(sourceOf(config, weights), { seqLen: T, trainable });
  const session = await ort.InferenceSession.create(encodeModel(graph.model), { intraOpNumThreads: 1, graphOptimizationLevel: 'all', logSeverityLevel: 3 });
  const feeds: Record<string, ort.Tensor> = {
    [TRAIN_IDS]: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [B, T]),
    [TRAIN_TARGETS]: new ort.Tensor('int64', BigInt64Array.from(targets, BigInt), [B, T]),
  };
  for (const n of graph.trainable) feeds[n] = new ort.Tensor('float32', weights.get(n)!.values, weights.get(n)!.shape);
  const out = await session.run(feeds);
  await session.release();
  return { graph, loss: (out[TRAIN_LOSS]!.data as Float32Array)[0]!, grad: (n: string) => out[gradName(n)]!.data as Float32Array };
}

/** Directional finite-difference check of every trainable tensor; returns the worst relative error. */
function checkGradients(config: LlamaConfig, weights: Weights, trainable: string[], grad: (n: string) => Float32Array, ids: Int32Array, targets: Int32Array, B: number, T: number, seed: number) {
  const rand = rng(seed);
  const errors: Record<string, number> = {};
  for (const name of trainable) {
    const w = weights.get(name)!;
    const orig = w.values;
    let rms = 0;
    for (const v of orig) rms += v * v;
    rms = Math.sqrt(rms / orig.length);
    const h = 1e-3 * Math.max(rms, 1e-2);
    const plus = orig.map((v) => v + h * rand());
    const dirSeed = Float64Array.from(plus, (p, i) => p - orig[i]!);
    const minus = orig.map((v, i) => v - dirSeed[i]!);
    const dPlus = Float64Array.from(plus, (p, i) => p - orig[i]!);
    const dMinus = Float64Array.from(minus, (m, i) => orig[i]! - m);
    w.values = plus;
    const lp = referenceLoss(config, weights, ids, targets, B, T);
    w.values = minus;
    const lm = referenceLoss(config, weights, ids, targets, B, T);
    w.values = orig;
    const g = grad(name);
    let pred = 0;
    let gn = 0;
    let dn = 0;
    for (let i = 0; i < g.length; i++) {
      const d = dPlus[i]! + dMinus[i]!;
      pred += g[i]! * d;
      gn += g[i]! ** 2;
      dn += d * d;
    }
    errors[name] = Math.abs(lp - lm - pred) / (Math.sqrt(gn * dn) + 1e-30);
  }
  return errors;
}

function batch(V: number, B: number, T: number, seed: number) {
  const r = rng(seed);
  const ids = Int32Array.from({ length: B * T }, () => Math.floor((r() + 0.5) * V));
  const targets = Int32Array.from({ length: B * T }, (_, i) => (i % 7 === 3 ? IGNORE_INDEX : Math.floor((r() + 0.5) * V)));
  return { ids, targets };
}

const POLICIES: [string, TinyConfigOptions, (c: LlamaConfig) => string[]][] = [
  [
    'new-blocks (layers 1 and 3 of 4), GQA 2:1, untied',
    { layers: 4, heads: 4, kvHeads: 2, tie: false },
    (c) => expectedTensorNames(c).filter((n) => n.startsWith('model.layers.1.') || n.startsWith('model.layers.3.')),
  ],
  ['middle layer only (2 of 4), MQA, biases', { layers: 4, heads: 4, kvHeads: 1, attentionBias: true, mlpBias: true }, (c) => expectedTensorNames(c).filter((n) => n.startsWith('model.layers.2.'))],
  ['full, GQA 2:1, tied embeddings', { layers: 2, heads: 4, kvHeads: 2, tie: true }, (c) => expectedTensorNames(c)],
  ['full, GQA 3:1, untied, biases, head_dim 12', { layers: 2, hiddenSize: 36, heads: 6, kvHeads: 2, tie: false, attentionBias: true, mlpBias: true }, (c) => expectedTensorNames(c)],
  ['single tensors: a norm weight and a down projection', { layers: 3, heads: 4, kvHeads: 2 }, () => [layerTensorName(0, 'post_attention_layernorm.weight'), layerTensorName(2, 'mlp.down_proj.weight')]],
];

describe('onnx training graph vs a float64 reference', () => {
  it.each(POLICIES)('%s: loss and finite-difference gradients', async (label, opts, pick) => {
    const config = normalizeConfig(tinyRawConfig({ vocab: 53, ...opts }));
    const seed = label.length;
    const weights = randomWeights(config, seed, 0.15) as Weights;
    const trainable = pick(config);
    const B = 2;
    const T = 7;
    const { ids, targets } = batch(config.vocabSize, B, T, seed);
    const r = await runGraph(config, weights, trainable, ids, targets, B, T);
    const ref = referenceLoss(config, weights, ids, targets, B, T);
    expect(Math.abs(r.loss - ref) / ref).toBeLessThan(1e-5);
    expect([...r.graph.trainable].sort()).toEqual([...trainable].sort());
    const errors = checkGradients(config, weights, trainable, r.grad, ids, targets, B, T, seed + 1);
    const bad = Object.entries(errors).filter(([, e]) => !(e <= 1e-4));
    expect(bad).toEqual([]);
  }, 60_000);

  it('propagates no activation gradient below the lowest trainable tensor', async () => {
    const config = normalizeConfig(tinyRawConfig({ layers: 3, vocab: 40 }));
    const weights = randomWeights(config, 3) as Weights;
    const trainable = expectedTensorNames(config).filter((n) => n.startsWith('model.layers.2.'));
    const { model } = await buildTrainingGraph(sourceOf(config, weights), { seqLen: 4, trainable });
    const uses = new Map<string, number>();
    for (const node of model.graph!.node!) for (const i of node.input ?? []) uses.set(i, (uses.get(i) ?? 0) + 1);
    // Frozen layers 0 and 1 and the embedding are used by the forward pass only (one Gemm / Gather each);
    // layer 2's matrices are used twice (forward, and dX for the layers below inside the block).
    for (const n of expectedTensorNames(config)) {
      if (n.startsWith('model.layers.0.') || n.startsWith('model.layers.1.') || n === EMBED) expect([n, uses.get(n)]).toEqual([n, 1]);
    }
    expect(uses.get(layerTensorName(2, 'self_attn.o_proj.weight'))).toBe(2);
    expect(uses.get(LM_HEAD)).toBe(3); // forward Gemm, dX MatMul, and the target-row Gather
    expect(model.graph!.input!.map((i) => i.name)).toEqual([TRAIN_IDS, TRAIN_TARGETS, ...trainable]);
  });

  it('refuses unknown or tied-away tensor names', async () => {
    const config = normalizeConfig(tinyRawConfig({ tie: true }));
    const weights = randomWeights(config, 1) as Weights;
    await expect(buildTrainingGraph(sourceOf(config, weights), { seqLen: 4, trainable: [LM_HEAD] })).rejects.toThrow(/tied/);
    await expect(buildTrainingGraph(sourceOf(config, weights), { seqLen: 4, trainable: ['model.layers.9.mlp.up_proj.weight'] })).rejects.toThrow(/no such tensor/);
  });
});
