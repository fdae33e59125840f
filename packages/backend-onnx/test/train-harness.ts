/**
 * The training-graph test harness: seeded batches, one run of a generated training graph, and the
 * directional finite-difference check of its gradients against a float64 loss (reference.ts's
 * `referenceLoss`, written independently of the graph).
 */
import { IGNORE_INDEX, type LlamaConfig } from '@llama-pro/core';
import { weightSourceOf } from '@llama-pro/core/testing';
import * as ort from 'onnxruntime-node';
import { encodeModel } from '../src/graph';
import { TRAIN_IDS, TRAIN_LOSS, TRAIN_TARGETS, buildTrainingGraph, gradName } from '../src/train';
import type { Weights } from './reference';

export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

/** ids and targets [B, T]; every 7th target is the ignore index. */
export function randomBatch(V: number, B: number, T: number, seed: number): { ids: Int32Array; targets: Int32Array } {
  const r = rng(seed);
  const ids = Int32Array.from({ length: B * T }, () => Math.floor((r() + 0.5) * V));
  const targets = Int32Array.from({ length: B * T }, (_, i) => (i % 7 === 3 ? IGNORE_INDEX : Math.floor((r() + 0.5) * V)));
  return { ids, targets };
}

/** Runs the training graph once; returns the loss and the gradient outputs. */
export async function runTrainingGraph(c: LlamaConfig, weights: Weights, trainable: readonly string[], ids: Int32Array, targets: Int32Array, B: number, T: number) {
  const graph = await buildTrainingGraph(weightSourceOf(c, weights), { seqLen: T, trainable });
  const session = await ort.InferenceSession.create(encodeModel(graph.model), { intraOpNumThreads: 1, graphOptimizationLevel: 'all', logSeverityLevel: 3 });
  try {
    const feeds: Record<string, ort.Tensor> = {
      [TRAIN_IDS]: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [B, T]),
      [TRAIN_TARGETS]: new ort.Tensor('int64', BigInt64Array.from(targets, BigInt), [B, T]),
    };
    for (const n of graph.trainable) feeds[n] = new ort.Tensor('float32', weights.get(n)!.values, weights.get(n)!.shape);
    const out = await session.run(feeds);
    const grads = new Map<string, Float32Array>();
    for (const n of graph.trainable) grads.set(n, out[gradName(n)]!.data as Float32Array);
    return { graph, loss: (out[TRAIN_LOSS]!.data as Float32Array)[0]!, grads };
  } finally {
    await session.release();
  }
}

/**
 * Directional central finite differences of the float64 reference loss, one random direction per tensor
 * (step 1e-3 of the tensor's RMS; the perturbation actually applied to the float32 values is measured).
 * Returns |ΔL - g·d| / (|g| |d|) per tensor.
 */
export function finiteDifferenceErrors(
  loss: (w: Weights) => number,
  weights: Weights,
  names: readonly string[],
  grad: (n: string) => Float32Array,
  seed: number,
): Record<string, number> {
  const rand = rng(seed);
  const errors: Record<string, number> = {};
  for (const name of names) {
    const w = weights.get(name)!;
    const orig = w.values;
    let rms = 0;
    for (const v of orig) rms += v * v;
    rms = Math.sqrt(rms / orig.length);
    const h = 1e-3 * Math.max(rms, 1e-2);
    const plus = orig.map((v) => v + h * rand());
    const minus = orig.map((v, i) => v - (plus[i]! - v));
    w.values = plus;
    const lp = loss(weights);
    w.values = minus;
    const lm = loss(weights);
    w.values = orig;
    const g = grad(name);
    let pred = 0;
    let gn = 0;
    let dn = 0;
    for (let i = 0; i < g.length; i++) {
      const d = plus[i]! - minus[i]!;
      pred += g[i]! * d;
      gn += g[i]! ** 2;
      dn += d * d;
    }
    errors[name] = Math.abs(lp - lm - pred) / (Math.sqrt(gn * dn) + 1e-30);
  }
  return errors;
}
