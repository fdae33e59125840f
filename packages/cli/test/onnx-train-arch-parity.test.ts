/**
 * ONNX training-graph gradients against the tfjs backend's autodiff on the architecture variants of
 * ../shared/hf-conformance (checkpoints saved by transformers, read in place): RoPE scaling (llama3, yarn,
 * linear), sliding windows (Mistral on every layer, Qwen2 on some layers) with a sequence longer than
 * the window, q/k/v biases. Loss and every trainable tensor's gradient must agree to relative L2 ≤ 1e-4
 * (the bound); both engines compute in float32 with different summation orders (observed
 * differences on the plain cases of onnx-train-parity.test.ts are ~1e-6).
 */
import { useMainRealmTypedArrays } from '@llama-pro/backend-onnx/testing';
useMainRealmTypedArrays(); // onnxruntime-node under jest: see the helper's doc

import { HfCheckpoint, IGNORE_INDEX, Rng, expectedTensorNames, layerTensorName, type LlamaConfig, type TrainingBatch } from '@llama-pro/core';
import { describeWithFixtures, fixturePath, relL2 } from '@llama-pro/core/testing';
import { loadOnnxTrainable } from '@llama-pro/backend-onnx';
import { tfjsBackend } from '@llama-pro/backend-tfjs';

function batchOf(c: LlamaConfig, B: number, T: number, seed: number): TrainingBatch {
  const rng = new Rng(seed);
  const ids = Int32Array.from({ length: B * T }, () => rng.int(c.vocabSize));
  const targets = Int32Array.from({ length: B * T }, (_, i) => (i % 9 === 4 ? IGNORE_INDEX : rng.int(c.vocabSize)));
  return { ids, targets, batchSize: B, seqLen: T };
}

const layers = (c: LlamaConfig, ls: number[]): string[] => expectedTensorNames(c).filter((n) => ls.some((l) => n.startsWith(`model.layers.${l}.`)));

const CASES: [string, string, (c: LlamaConfig) => string[]][] = [
  ['llama3-scaling-fp16', 'llama3 RoPE, tied head, every tensor', (c) => expectedTensorNames(c)],
  ['llama-yarn-bf16', 'yarn RoPE with its attention factor, new blocks 1 and 3', (c) => layers(c, [1, 3])],
  ['llama-linear-scaling-bf16', 'linear RoPE, every tensor', (c) => expectedTensorNames(c)],
  ['mistral-sliding-bf16', 'Mistral window 24 on every layer, every tensor', (c) => expectedTensorNames(c)],
  ['qwen2-sliding-mixed-bf16', 'Qwen2 biases, window 24 on layers 2-3, layers 0 and 2', (c) => layers(c, [0, 2])],
  ['qwen2-sliding-mixed-v4config-bf16', 'the same with 4.x config keys, q/k/v biases of layer 3 alone', () => ['q', 'k', 'v'].map((p) => layerTensorName(3, `self_attn.${p}_proj.bias`))],
];

describeWithFixtures('onnx training graph vs tfjs autodiff on transformers-saved architecture variants', [['hf-conformance']], () => {
  it.each(CASES)('%s (%s): loss and every gradient match at T = 40', async (name, _label, pick) => {
    const ckpt = await HfCheckpoint.open(fixturePath('hf-conformance', name));
    const config = ckpt.config;
    const trainable = pick(config);
    const batch = batchOf(config, 2, 40, name.length);
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
  }, 120_000);
});
