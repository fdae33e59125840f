/**
 * AdamW over resident Float32Arrays, in PyTorch's update order (p ← p·(1 − lr·wd); m ← β1 m + (1−β1) g;
 * v ← β2 v + (1−β2) g²; p ← p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)), weight decay on tensors of rank ≥ 2
 * only, and global-norm gradient clipping. Parameters are updated in place, so ORT tensors wrapping them
 * see the new values without copies.
 */
import { UsageError } from '@llama-pro/core';

export interface OnnxAdamWOptions {
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Global gradient-norm clipping threshold (default 1.0; 0 or Infinity = off). */
  clip?: number;
}

export interface AdamWParam {
  readonly name: string;
  readonly shape: readonly number[];
  readonly values: Float32Array;
}

/** Scales gradients in place so their global L2 norm is at most `maxNorm`; returns the norm before clipping. */
export function clipGradients(grads: Iterable<Float32Array>, maxNorm: number): number {
  const list = [...grads];
  let sq = 0;
  for (const g of list) for (let i = 0; i < g.length; i++) sq += g[i]! * g[i]!;
  const norm = Math.sqrt(sq);
  if (maxNorm > 0 && Number.isFinite(maxNorm) && norm > maxNorm) {
    const s = maxNorm / (norm + 1e-6);
    for (const g of list) for (let i = 0; i < g.length; i++) g[i] = g[i]! * s;
  }
  return norm;
}

export class ResidentAdamW {
  private t = 0;
  private readonly m = new Map<string, Float32Array>();
  private readonly v = new Map<string, Float32Array>();
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  readonly clip: number;

  constructor(
    readonly params: readonly AdamWParam[],
    o: OnnxAdamWOptions = {},
  ) {
    this.beta1 = o.beta1 ?? 0.9;
    this.beta2 = o.beta2 ?? 0.95;
    this.eps = o.eps ?? 1e-8;
    this.weightDecay = o.weightDecay ?? 0.1;
    this.clip = o.clip ?? 1.0;
    if (!(this.beta1 >= 0 && this.beta1 < 1) || !(this.beta2 >= 0 && this.beta2 < 1)) throw new UsageError(`AdamW betas must lie in [0, 1), got ${this.beta1}, ${this.beta2}`);
    if (!(this.eps > 0)) throw new UsageError(`AdamW eps must be positive, got ${this.eps}`);
    if (!(this.weightDecay >= 0)) throw new UsageError(`AdamW weight decay must be ≥ 0, got ${this.weightDecay}`);
    for (const p of params) {
      this.m.set(p.name, new Float32Array(p.values.length));
      this.v.set(p.name, new Float32Array(p.values.length));
    }
  }

  get step(): number {
    return this.t;
  }

  /** Clips `grads` in place, then updates every parameter in place; returns the pre-clip gradient norm. */
  update(grads: ReadonlyMap<string, Float32Array>, lr: number): number {
    if (!(lr >= 0) || !Number.isFinite(lr)) throw new UsageError(`learning rate must be a finite number ≥ 0, got ${lr}`);
    const ordered = this.params.map((p) => {
      const g = grads.get(p.name);
      if (!g || g.length !== p.values.length) throw new UsageError(`AdamW: missing or mis-sized gradient for ${p.name}`);
      return g;
    });
    const norm = clipGradients(ordered, this.clip);
    this.t++;
    const { beta1: b1, beta2: b2, eps } = this;
    const bc1 = 1 - b1 ** this.t;
    const bc2 = Math.sqrt(1 - b2 ** this.t);
    const stepSize = lr / bc1;
    this.params.forEach((p, k) => {
      const g = ordered[k]!;
      const m = this.m.get(p.name)!;
      const v = this.v.get(p.name)!;
      const w = p.values;
      const decay = p.shape.length >= 2 ? 1 - lr * this.weightDecay : 1;
      for (let i = 0; i < w.length; i++) {
        const gi = g[i]!;
        const mi = b1 * m[i]! + (1 - b1) * gi;
        const vi = b2 * v[i]! + (1 - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        w[i] = w[i]! * decay - (stepSize * mi) / (Math.sqrt(vi) / bc2 + eps);
      }
    });
    return norm;
  }
}
