/**
 * A float64 JavaScript reference for training-graph tests of architecture variants: the next-token loss
 * of a LLaMA-family decoder (HF semantics: RMSNorm, rotate-half RoPE on the first `rotaryDim` dims of a
 * head, grouped-query attention by explicit head mapping, SwiGLU, biases, tied or untied head) where the
 * rotary angles' cos/sin come from given per-position tables (so any RoPE scaling, attention factor
 * included, is data) and each layer may have a sliding window (key j is visible from query t iff
 * 0 <= t - j < window; HF Mistral / Qwen2 `sliding_window`), and the finite-difference harness that checks
 * a training graph's gradients against it.
 *
 * Written independently of the ONNX graph (loops over positions and heads, no shared code); the tables
 * themselves are checked against transformers by the hf-conformance logits tests.
 */
import { EMBED, FINAL_NORM, IGNORE_INDEX, LM_HEAD, layerTensorName, type LlamaConfig } from '@llama-pro/core';
import { weightSourceOf } from '@llama-pro/core/testing';
import * as ort from 'onnxruntime-node';
import { encodeModel } from '../src/graph';
import { TRAIN_IDS, TRAIN_LOSS, TRAIN_TARGETS, buildTrainingGraph, gradName } from '../src/train';

export type Weights = Map<string, { shape: number[]; values: Float32Array }>;

export interface ArchReference {
  /** cos and sin of position t's angle for frequency i: index t * (rotaryDim / 2) + i (attention factor included). */
  readonly cos: ArrayLike<number>;
  readonly sin: ArrayLike<number>;
  readonly rotaryDim: number;
  /** Window of layer l, or null for full causal attention. */
  readonly window: (layer: number) => number | null;
}

function get(weights: Weights, name: string): Float32Array {
  const t = weights.get(name);
  if (!t) throw new Error(`reference: missing ${name}`);
  return t.values;
}

function linear(x: Float64Array, W: Float32Array, out: number, b?: Float32Array): Float64Array {
  const n = x.length;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = b ? b[o]! : 0;
    for (let i = 0; i < n; i++) s += W[o * n + i]! * x[i]!;
    y[o] = s;
  }
  return y;
}

function rmsNorm(x: Float64Array, g: Float32Array, eps: number): Float64Array {
  let ms = 0;
  for (const v of x) ms += v * v;
  const r = 1 / Math.sqrt(ms / x.length + eps);
  return x.map((v, i) => v * r * g[i]!);
}

function rotate(v: Float64Array, heads: number, hd: number, t: number, a: ArchReference): void {
  const half = a.rotaryDim / 2;
  for (let h = 0; h < heads; h++) {
    const o = h * hd;
    for (let i = 0; i < half; i++) {
      const c = a.cos[t * half + i]!;
      const s = a.sin[t * half + i]!;
      const x1 = v[o + i]!;
      const x2 = v[o + half + i]!;
      v[o + i] = x1 * c - x2 * s;
      v[o + half + i] = x2 * c + x1 * s;
    }
  }
}

/** Logits [B*T, V] of ids [B, T] (every position real, positions 0..T-1). */
export function archForward(c: LlamaConfig, weights: Weights, a: ArchReference, ids: Int32Array, B: number, T: number): Float64Array {
  const D = c.hiddenSize;
  const H = c.numAttentionHeads;
  const KV = c.numKeyValueHeads;
  const hd = c.headDim;
  const V = c.vocabSize;
  const I = c.intermediateSize;
  const emb = get(weights, EMBED);
  const head = c.tieWordEmbeddings ? emb : get(weights, LM_HEAD);
  const out = new Float64Array(B * T * V);
  for (let b = 0; b < B; b++) {
    let xs: Float64Array[] = [];
    for (let t = 0; t < T; t++) xs.push(Float64Array.from(emb.subarray(ids[b * T + t]! * D, (ids[b * T + t]! + 1) * D)));
    for (let l = 0; l < c.numHiddenLayers; l++) {
      const p = (s: string) => get(weights, layerTensorName(l, s));
      const opt = (s: string) => weights.get(layerTensorName(l, s))?.values;
      const win = a.window(l);
      const qs: Float64Array[] = [];
      const ks: Float64Array[] = [];
      const vs: Float64Array[] = [];
      for (let t = 0; t < T; t++) {
        const h = rmsNorm(xs[t]!, p('input_layernorm.weight'), c.rmsNormEps);
        const q = linear(h, p('self_attn.q_proj.weight'), H * hd, opt('self_attn.q_proj.bias'));
        const k = linear(h, p('self_attn.k_proj.weight'), KV * hd, opt('self_attn.k_proj.bias'));
        rotate(q, H, hd, t, a);
        rotate(k, KV, hd, t, a);
        qs.push(q);
        ks.push(k);
        vs.push(linear(h, p('self_attn.v_proj.weight'), KV * hd, opt('self_attn.v_proj.bias')));
      }
      const next: Float64Array[] = [];
      for (let t = 0; t < T; t++) {
        const att = new Float64Array(H * hd);
        const keys = [...Array(t + 1).keys()].filter((j) => win === null || t - j < win);
        for (let hh = 0; hh < H; hh++) {
          const kvh = Math.floor(hh / (H / KV));
          const sc = keys.map((j) => {
            let s = 0;
            for (let d = 0; d < hd; d++) s += qs[t]![hh * hd + d]! * ks[j]![kvh * hd + d]!;
            return s / Math.sqrt(hd);
          });
          const m = Math.max(...sc);
          const e = sc.map((s) => Math.exp(s - m));
          const z = e.reduce((acc, x) => acc + x, 0);
          keys.forEach((j, idx) => {
            for (let d = 0; d < hd; d++) att[hh * hd + d]! += (e[idx]! / z) * vs[j]![kvh * hd + d]!;
          });
        }
        const o = linear(att, p('self_attn.o_proj.weight'), D, opt('self_attn.o_proj.bias'));
        const x1 = xs[t]!.map((v, i) => v + o[i]!);
        const h2 = rmsNorm(x1, p('post_attention_layernorm.weight'), c.rmsNormEps);
        const gt = linear(h2, p('mlp.gate_proj.weight'), I, opt('mlp.gate_proj.bias'));
        const up = linear(h2, p('mlp.up_proj.weight'), I, opt('mlp.up_proj.bias'));
        const act = gt.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]!);
        const dn = linear(act, p('mlp.down_proj.weight'), D, opt('mlp.down_proj.bias'));
        next.push(x1.map((v, i) => v + dn[i]!));
      }
      xs = next;
    }
    for (let t = 0; t < T; t++) {
      const h = rmsNorm(xs[t]!, get(weights, FINAL_NORM), c.rmsNormEps);
      out.set(linear(h, head, V), (b * T + t) * V);
    }
  }
  return out;
}

/** Mean next-token cross-entropy over non-ignored targets, float64. */
export function archLoss(c: LlamaConfig, weights: Weights, a: ArchReference, ids: Int32Array, targets: Int32Array, B: number, T: number): number {
  const logits = archForward(c, weights, a, ids, B, T);
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
