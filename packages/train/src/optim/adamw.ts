/**
 * AdamW with decoupled weight decay (Loshchilov & Hutter), in the update order of PyTorch's
 * `torch.optim.AdamW`: p ← p·(1 − lr·wd); m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²;
 * p ← p − (lr / (1−β1ᵗ)) · m / (√v / √(1−β2ᵗ) + ε). State is float32 (Float32Array) and the update is
 * a fixed sequence of operations, so runs are deterministic and resumable bit for bit.
 *
 * Fused: the update reads the gradients once, applying the global-norm clip factor on the fly
 * (`gradScale`, rounded to float32 exactly as an in-place clip would store it), and writes the
 * parameters in place, so a backend's resident parameter arrays can be the optimizer's master copy.
 * This is the one AdamW of the toolkit; every backend trains through it.
 */
import { UsageError, nativeAdamW, type AdamWKernel } from '@llama-pro/core';
import { PAPER_RECIPE, decaysByShape, decaysFor } from '../defaults';

export { decaysByShape, decaysFor };

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

const { beta1, beta2, eps, weightDecay } = PAPER_RECIPE.optimizer;
export const DEFAULT_ADAMW: AdamWOptions = { beta1, beta2, eps, weightDecay };

export interface OptimizerSlot {
  readonly name: string;
  readonly size: number;
  /** Whether weight decay applies (matrices yes; norms and biases no). */
  readonly decay: boolean;
}

export interface AdamWState {
  /** Number of updates taken. */
  step: number;
  expAvg: Map<string, Float32Array>;
  expAvgSq: Map<string, Float32Array>;
}

export interface AdamWRuntime {
  /**
   * Run each step through @llama-pro/native-io's vectorized loop when the addon has it (default true);
   * false runs the JavaScript loop. Both compute the same float64 operations in the same order: the
   * parameters and moments are bit-identical either way.
   */
  readonly native?: boolean;
}

export class AdamW {
  private t = 0;
  private readonly m = new Map<string, Float32Array>();
  private readonly v = new Map<string, Float32Array>();
  private readonly slots: Map<string, OptimizerSlot>;
  private readonly kernel: AdamWKernel | undefined;

  constructor(
    slots: readonly OptimizerSlot[],
    readonly options: AdamWOptions = DEFAULT_ADAMW,
    runtime: AdamWRuntime = {},
  ) {
    const { beta1, beta2, eps, weightDecay } = options;
    if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1)) throw new UsageError(`AdamW betas must lie in [0, 1), got ${beta1}, ${beta2}`);
    if (!(eps > 0)) throw new UsageError(`AdamW eps must be positive, got ${eps}`);
    if (!(weightDecay >= 0)) throw new UsageError(`AdamW weight decay must be ≥ 0, got ${weightDecay}`);
    this.kernel = runtime.native === false ? undefined : nativeAdamW();
    this.slots = new Map(slots.map((s) => [s.name, s]));
    for (const s of slots) {
      this.m.set(s.name, new Float32Array(s.size));
      this.v.set(s.name, new Float32Array(s.size));
    }
  }

  get step(): number {
    return this.t;
  }

  /** Which loop runs the steps: native-io's vectorized one or JavaScript's (same results). */
  get implementation(): 'native' | 'javascript' {
    return this.kernel ? 'native' : 'javascript';
  }

  /**
   * Updates `params` in place from `grads` (both keyed by slot name) at learning rate `lr`. Gradients
   * are read, never written; each is multiplied by `gradScale` first (the clip factor; 1 = as given).
   */
  update(params: ReadonlyMap<string, Float32Array>, grads: ReadonlyMap<string, Float32Array>, lr: number, gradScale = 1): void {
    if (!(lr >= 0) || !Number.isFinite(lr)) throw new UsageError(`learning rate must be a finite number ≥ 0, got ${lr}`);
    if (!(gradScale >= 0) || !Number.isFinite(gradScale)) throw new UsageError(`gradient scale must be a finite number ≥ 0, got ${gradScale}`);
    this.t++;
    const { beta1, beta2, eps, weightDecay } = this.options;
    const bc1 = 1 - Math.pow(beta1, this.t);
    const bc2Sqrt = Math.sqrt(1 - Math.pow(beta2, this.t));
    const stepSize = lr / bc1;
    for (const [name, slot] of this.slots) {
      const p = params.get(name);
      const g = grads.get(name);
      if (!p || !g) throw new UsageError(`AdamW: missing ${p ? 'gradient' : 'parameter'} for "${name}"`);
      if (p.length !== slot.size || g.length !== slot.size) throw new UsageError(`AdamW: "${name}" has ${p.length} values and ${g.length} gradients, expected ${slot.size}`);
      const m = this.m.get(name)!;
      const v = this.v.get(name)!;
      const decay = slot.decay ? 1 - lr * weightDecay : 1;
      if (this.kernel) {
        this.kernel(p, g, m, v, beta1, beta2, eps, stepSize, bc2Sqrt, decay, gradScale);
        continue;
      }
      const scaled = gradScale !== 1;
      for (let i = 0; i < p.length; i++) {
        const gi = scaled ? Math.fround(g[i]! * gradScale) : g[i]!;
        const mi = (m[i] = beta1 * m[i]! + (1 - beta1) * gi);
        const vi = (v[i] = beta2 * v[i]! + (1 - beta2) * gi * gi);
        p[i] = p[i]! * decay - (stepSize * mi) / (Math.sqrt(vi) / bc2Sqrt + eps);
      }
    }
  }

  getState(): AdamWState {
    return { step: this.t, expAvg: new Map(this.m), expAvgSq: new Map(this.v) };
  }

  /** Restores state saved by `getState` (copied into the optimizer's own buffers). */
  setState(state: AdamWState): void {
    for (const [name, slot] of this.slots) {
      const m = state.expAvg.get(name);
      const v = state.expAvgSq.get(name);
      if (!m || !v || m.length !== slot.size || v.length !== slot.size) {
        throw new UsageError(`optimizer state has no matching moments for "${name}"; the checkpoint belongs to a different policy or model`);
      }
      this.m.get(name)!.set(m);
      this.v.get(name)!.set(v);
    }
    this.t = state.step;
  }
}
