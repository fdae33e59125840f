/**
 * The generated training graph against an independent float64 JavaScript reference (test/reference.ts;
 * the run and the finite-difference harness are test/train-harness.ts, shared with train-graph-arch):
 * the loss must match, and every gradient is checked by central finite differences of the float64
 * reference loss along a random direction per tensor.
 *
 * Tolerances: the graph runs in float32 (about 7 significant digits; sums over a few hundred terms lose
 * at most ~2 more), the reference in float64. Finite differences use a step of 1e-3 relative to the
 * tensor's RMS in float64, so truncation error is O(h^2) ~ 1e-6 relative and cancellation ~1e-16/1e-3
 * is negligible; the perturbation actually applied to the float32 weights is measured, not assumed.
 * 1e-4 relative (the parity bound) leaves a margin of ~100x over both error sources.
 */
import { EMBED, LM_HEAD, expectedTensorNames, layerTensorName, normalizeConfig, type LlamaConfig } from '@llama-pro/core';
import { randomWeights, tinyRawConfig, weightSourceOf, type TinyConfigOptions } from '@llama-pro/core/testing';
import { TRAIN_IDS, TRAIN_TARGETS, buildTrainingGraph } from '../src/train';
import { referenceLoss, type Weights } from './reference';
import { finiteDifferenceErrors, randomBatch, runTrainingGraph } from './train-harness';

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
    const { ids, targets } = randomBatch(config.vocabSize, B, T, seed);
    const r = await runTrainingGraph(config, weights, trainable, ids, targets, B, T);
    const ref = referenceLoss(config, weights, ids, targets, B, T);
    expect(Math.abs(r.loss - ref) / ref).toBeLessThan(1e-5);
    expect([...r.graph.trainable].sort()).toEqual([...trainable].sort());
    const errors = finiteDifferenceErrors((w) => referenceLoss(config, w, ids, targets, B, T), weights, trainable, (n) => r.grads.get(n)!, seed + 1);
    const bad = Object.entries(errors).filter(([, e]) => !(e <= 1e-4));
    expect(bad).toEqual([]);
  }, 60_000);

  it('propagates no activation gradient below the lowest trainable tensor', async () => {
    const config = normalizeConfig(tinyRawConfig({ layers: 3, vocab: 40 }));
    const weights = randomWeights(config, 3) as Weights;
    const trainable = expectedTensorNames(config).filter((n) => n.startsWith('model.layers.2.'));
    const { model } = await buildTrainingGraph(weightSourceOf(config, weights), { seqLen: 4, trainable });
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
    await expect(buildTrainingGraph(weightSourceOf(config, weights), { seqLen: 4, trainable: [LM_HEAD] })).rejects.toThrow(/tied/);
    await expect(buildTrainingGraph(weightSourceOf(config, weights), { seqLen: 4, trainable: ['model.layers.9.mlp.up_proj.weight'] })).rejects.toThrow(/no such tensor/);
  });
});
