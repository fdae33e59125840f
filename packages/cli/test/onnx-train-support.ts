/**
 * Shared setup of the onnx-vs-tfjs training parity tests (onnx-train-parity and onnx-train-arch-parity):
 * seeded batches, and the one gradient-parity check: the same checkpoint loaded as a trainable model on
 * both backends, loss to 1e-5 relative and every trainable tensor's gradient to relative L2 ≤ 1e-4 (the
 * issue's bound; both engines compute in float32 with different summation orders, observed ~1e-6).
 */
import { IGNORE_INDEX, Rng, type LlamaConfig, type TrainingBatch, type WeightSource } from '@llama-pro/core';
import { relL2 } from '@llama-pro/core/testing';
import { loadOnnxTrainable } from '@llama-pro/backend-onnx';
import { tfjsBackend } from '@llama-pro/backend-tfjs';

/** ids and targets [B, T] (every 9th target the ignore index). */
export function batchOf(c: LlamaConfig, B: number, T: number, seed: number): TrainingBatch {
  const rng = new Rng(seed);
  const ids = Int32Array.from({ length: B * T }, () => rng.int(c.vocabSize));
  const targets = Int32Array.from({ length: B * T }, (_, i) => (i % 9 === 4 ? IGNORE_INDEX : rng.int(c.vocabSize)));
  return { ids, targets, batchSize: B, seqLen: T };
}

/** Loss and gradients of `trainable` on onnx (the training graph) and tfjs (autodiff) agree. */
export async function expectGradientParity(source: WeightSource, trainable: readonly string[], batch: TrainingBatch): Promise<void> {
  const onnx = await loadOnnxTrainable(source, { threads: 1 });
  const tfjs = await tfjsBackend.loadTrainable!(source, { variant: 'cpu' });
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
  }
}
