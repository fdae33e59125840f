/**
 * The training graph on architecture variants, against the float64 reference of reference.ts (with the
 * harness of train-harness.ts, shared with train-graph.test.ts):
 * RoPE scaling (llama3, yarn with its attention factor, linear, dynamic), sliding-window attention
 * (Mistral on every layer, Qwen2 on some layers) with sequences longer than the window, and q/k/v biases.
 * The loss must match the reference and every gradient must match central finite differences of the
 * reference loss (directional, one random direction per tensor).
 *
 * Models: the transformers-saved checkpoints of ../shared/hf-conformance (read in place; real configs in
 * both spellings, bf16/fp16 weights upcast to float32), and seeded random ones for shapes the folder does
 * not have. The reference takes the rotary cos/sin from core's `cosSin` (whose agreement with transformers
 * the hf-conformance logits tests check) and applies its own window rule (key j visible from query t iff
 * 0 <= t - j < window); everything else it computes independently of the graph.
 *
 * Tolerances as in train-graph.test.ts: float32 graph vs float64 reference, 1e-5 on the loss and 1e-4 on
 * the finite-difference agreement (step 1e-3 of each tensor's RMS: truncation ~1e-6, cancellation
 * negligible).
 */
import * as path from 'node:path';
import { EMBED, HfCheckpoint, cosSin, expectedShape, expectedTensorNames, layerTensorName, normalizeConfig, stagePosition, type LlamaConfig } from '@llama-pro/core';
import { buildTrainingGraph } from '../src/train';
import { describeWithFixtures, fixturePath, randomWeights, tinyRawConfig, weightSourceOf } from '@llama-pro/core/testing';
import { referenceLoss, type ArchReference, type Weights } from './reference';
import { finiteDifferenceErrors, randomBatch, runTrainingGraph } from './train-harness';

const CONFORMANCE = 'hf-conformance';

function referenceOf(c: LlamaConfig, T: number): ArchReference {
  const { cos, sin, width } = cosSin(c, Int32Array.from({ length: T }, (_, t) => t), T);
  const half = width / 2;
  const pick = (a: Float32Array): Float64Array => Float64Array.from({ length: T * half }, (_, k) => a[Math.floor(k / half) * width + (k % half)]!);
  return { cos: pick(cos), sin: pick(sin), rotaryDim: width, window: (l) => c.attentionWindows[l] ?? null };
}

async function loadWeights(dir: string): Promise<{ config: LlamaConfig; weights: Weights }> {
  const ckpt = await HfCheckpoint.open(dir);
  try {
    const config = ckpt.config;
    const weights: Weights = new Map();
    for (const n of expectedTensorNames(config)) weights.set(n, { shape: expectedShape(config, n)!, values: await ckpt.readFloat32(n) });
    return { config, weights };
  } finally {
    await ckpt.close();
  }
}

async function check(config: LlamaConfig, weights: Weights, trainable: string[], B: number, T: number, seed: number): Promise<void> {
  const { ids, targets } = randomBatch(config.vocabSize, B, T, seed);
  const ref = referenceOf(config, T);
  const r = await runTrainingGraph(config, weights, trainable, ids, targets, B, T);
  const lossRef = referenceLoss(config, weights, ids, targets, B, T, ref);
  expect(Math.abs(r.loss - lossRef) / lossRef).toBeLessThan(1e-5);
  expect([...r.graph.trainable].sort()).toEqual([...trainable].sort());
  const errors = finiteDifferenceErrors((w) => referenceLoss(config, w, ids, targets, B, T, ref), weights, trainable, (n) => r.grads.get(n)!, seed + 1);
  expect(Object.entries(errors).filter(([, e]) => !(e <= 1e-4))).toEqual([]);
}

const layers = (c: LlamaConfig, ls: number[]): string[] => expectedTensorNames(c).filter((n) => ls.some((l) => n.startsWith(`model.layers.${l}.`)));

const FIXTURE_CASES: [string, string, (c: LlamaConfig) => string[]][] = [
  ['llama3-scaling-fp16', 'llama3 RoPE (factor 8, original 32 positions), tied head, every tensor', (c) => expectedTensorNames(c)],
  ['llama-yarn-bf16', 'yarn RoPE (factor 4, attention factor), new blocks 1 and 3', (c) => layers(c, [1, 3])],
  ['llama-linear-scaling-v4config-bf16', 'linear RoPE (4.x config keys), q of layer 1 and v of layer 2 alone', () => [layerTensorName(1, 'self_attn.q_proj.weight'), layerTensorName(2, 'self_attn.v_proj.weight')]],
  ['mistral-sliding-bf16', 'Mistral sliding window 24 on every layer, layer 0 and the final norm', (c) => [...layers(c, [0]), 'model.norm.weight']],
  ['qwen2-sliding-mixed-bf16', 'Qwen2 q/k/v biases, window 24 on layers 2-3 only, every tensor', (c) => expectedTensorNames(c)],
  ['qwen2-bias-tied-bf16', 'Qwen2 q/k/v biases, tied head: k bias and k weight of layer 1 alone', () => [layerTensorName(1, 'self_attn.k_proj.bias'), layerTensorName(1, 'self_attn.k_proj.weight')]],
];

describeWithFixtures('onnx training graph on transformers-saved architecture variants', [[CONFORMANCE]], () => {
  it.each(FIXTURE_CASES)('%s (%s): loss and finite-difference gradients at T = 40', async (name, _label, pick) => {
    const { config, weights } = await loadWeights(fixturePath(CONFORMANCE, name));
    await check(config, weights, pick(config), 2, 40, name.length);
  }, 120_000);

  it('the fixtures are what the cases claim (windows shorter than T, scaled RoPE)', async () => {
    const cfg = async (n: string) => (await loadWeights(path.join(fixturePath(CONFORMANCE), n))).config;
    expect((await cfg('mistral-sliding-bf16')).attentionWindows).toEqual([24, 24, 24, 24]);
    expect((await cfg('qwen2-sliding-mixed-bf16')).attentionWindows).toEqual([null, null, 24, 24]);
    expect((await cfg('llama-yarn-bf16')).ropeScaling?.type).toBe('yarn');
    expect((await cfg('llama3-scaling-fp16')).ropeScaling?.type).toBe('llama3');
  });
});

describe('onnx training graph on seeded architecture variants', () => {
  it('linear scaling, head_dim 12, Mistral window 3 < T = 9, GQA 3:1, every tensor', async () => {
    const config = normalizeConfig(
      tinyRawConfig({
        architecture: 'MistralForCausalLM',
        layers: 2,
        hiddenSize: 36,
        heads: 6,
        kvHeads: 2,
        vocab: 47,
        extra: { head_dim: 12, rope_scaling: { rope_type: 'linear', factor: 2 }, sliding_window: 3 },
      }),
    );
    expect(config.attentionWindows).toEqual([3, 3]);
    await check(config, randomWeights(config, 5, 0.15) as Weights, expectedTensorNames(config), 2, 9, 5);
  }, 60_000);

  it('Qwen2 layer_types with a sliding layer below a full one, window 2, biases, tied head, layer 1 only', async () => {
    const config = normalizeConfig(
      tinyRawConfig({
        architecture: 'Qwen2ForCausalLM',
        layers: 3,
        heads: 4,
        kvHeads: 1,
        vocab: 41,
        tie: true,
        extra: { use_sliding_window: true, sliding_window: 2, layer_types: ['sliding_attention', 'full_attention', 'sliding_attention'], rope_parameters: { rope_type: 'default', rope_theta: 1e6 } },
      }),
    );
    expect(config.attentionWindows).toEqual([2, null, 2]);
    await check(config, randomWeights(config, 9, 0.15) as Weights, layers(config, [1]), 2, 8, 9);
  }, 60_000);

  it('dynamic RoPE within max_position_embeddings trains like plain RoPE (transformers rescales only beyond it)', async () => {
    const raw = tinyRawConfig({ layers: 2, vocab: 37, maxPositions: 16 });
    const plain = normalizeConfig(raw);
    const dynamic = normalizeConfig({ ...raw, rope_scaling: { rope_type: 'dynamic', factor: 4 } });
    const weights = randomWeights(plain, 2, 0.15) as Weights;
    const { ids, targets } = randomBatch(37, 2, 16, 2);
    const all = expectedTensorNames(plain);
    const a = await runTrainingGraph(plain, weights, all, ids, targets, 2, 16);
    const b = await runTrainingGraph(dynamic, weights, all, ids, targets, 2, 16);
    expect(b.loss).toBe(a.loss);
    for (const n of all) expect([n, Buffer.from(b.grads.get(n)!.buffer).equals(Buffer.from(a.grads.get(n)!.buffer))]).toEqual([n, true]);
  }, 60_000);

  it.each<[string, (c: LlamaConfig) => string[]]>([
    ['the MLP output of layer 2', () => [layerTensorName(2, 'mlp.down_proj.weight')]],
    ['the k bias of layer 1 and the final norm', () => [layerTensorName(1, 'self_attn.k_proj.bias'), 'model.norm.weight']],
    ['the attention norm of layer 1', () => [layerTensorName(1, 'input_layernorm.weight')]],
  ])('tensors below the lowest trainable stage of the tensor table are forward-only (%s)', async (_label, pick) => {
    const config = normalizeConfig(tinyRawConfig({ architecture: 'Qwen2ForCausalLM', layers: 3, vocab: 31, extra: { use_sliding_window: true, sliding_window: 2, max_window_layers: 1 } }));
    const trainable = pick(config);
    const { model } = await buildTrainingGraph(weightSourceOf(config, randomWeights(config, 1)), { seqLen: 5, trainable });
    const uses = new Map<string, number>();
    for (const node of model.graph!.node!) for (const i of node.input ?? []) uses.set(i, (uses.get(i) ?? 0) + 1);
    const lowest = Math.min(...trainable.map((n) => stagePosition(config, n)));
    const below = expectedTensorNames(config).filter((n) => stagePosition(config, n) < lowest);
    expect(below.length).toBeGreaterThan(0);
    expect(below.includes(EMBED)).toBe(true);
    // One use each: the forward Gemm / Mul / Gather; no transposed product for an activation gradient.
    expect(below.map((n) => [n, uses.get(n)])).toEqual(below.map((n) => [n, 1]));
  });
});
