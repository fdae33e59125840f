/**
 * ONNX training-graph gradients against the tfjs backend's autodiff on the architecture variants of
 * ../shared/hf-conformance (checkpoints saved by transformers, read in place): RoPE scaling (llama3, yarn,
 * linear), sliding windows (Mistral on every layer, Qwen2 on some layers) with a sequence longer than
 * the window, q/k/v biases. Loss and every trainable tensor's gradient must agree to relative L2 ≤ 1e-4
 * (the bound); both engines compute in float32 with different summation orders (observed
 * differences on the plain cases of onnx-train-parity.test.ts are ~1e-6). The check itself is
 * onnx-train-support.ts's, shared with onnx-train-parity.test.ts.
 */
import { useMainRealmTypedArrays } from '@llama-pro/backend-onnx/testing';
useMainRealmTypedArrays(); // onnxruntime-node under jest: see the helper's doc

import { HfCheckpoint, expectedTensorNames, layerTensorName, type LlamaConfig } from '@llama-pro/core';
import { describeWithFixtures, fixturePath } from '@llama-pro/core/testing';
import { batchOf, expectGradientParity } from './onnx-train-support';

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
    try {
      await expectGradientParity(ckpt, pick(config), batchOf(config, 2, 40, name.length));
    } finally {
      await ckpt.close();
    }
  }, 120_000);
});
