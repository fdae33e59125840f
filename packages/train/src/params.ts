/**
 * The trainable parameter set: the float32 master copy of everything the optimizer updates, and how it
 * maps onto the model. Direct tensors are set on the model as they are. LoRA adapters use the exact
 * chain rule, so any backend works: W_eff = W0 + s·B·A (s = alpha/rank) is set on the model, the
 * backend returns G = ∂L/∂W_eff, and ∂L/∂B = s·G·Aᵀ, ∂L/∂A = s·Bᵀ·G.
 *
 * Resident fast path: when the model offers `residentParameter` (onnx), a direct tensor's master copy
 * IS the model's own array: the optimizer updates it in place and `push` only tells the model which
 * arrays changed (no per-step copies). The arithmetic is the same as the copying path, bit for bit.
 */
import { type Rng, type TrainableLM, UsageError, numel } from '@llama-pro/core';
import { decaysByShape, decaysFor } from './defaults';
import type { OptimizerSlot } from './optim/adamw';
import type { FreezePlan, LoraTarget } from './policy/types';

export interface TrainSlot extends OptimizerSlot {
  readonly shape: readonly number[];
}

interface LoraState extends LoraTarget {
  readonly out: number;
  readonly in: number;
  readonly scale: number;
  readonly w0: Float32Array;
}

export const LORA_A = '.lora_A';
export const LORA_B = '.lora_B';

/** W0 + s·B·A, with B [out, r] and A [r, in]. */
export function loraMerge(w0: Float32Array, a: Float32Array, b: Float32Array, out: number, inDim: number, rank: number, scale: number): Float32Array {
  const w = new Float32Array(out * inDim);
  for (let o = 0; o < out; o++) {
    for (let i = 0; i < inDim; i++) {
      let s = 0;
      for (let r = 0; r < rank; r++) s += b[o * rank + r]! * a[r * inDim + i]!;
      w[o * inDim + i] = w0[o * inDim + i]! + scale * s;
    }
  }
  return w;
}

export class ParameterSet {
  readonly slots: TrainSlot[] = [];
  /** Slot name -> master values. */
  readonly values = new Map<string, Float32Array>();
  private readonly direct: string[] = [];
  private readonly lora: LoraState[] = [];
  /** Direct tensors whose master values are the model's resident arrays. */
  private resident = false;

  private constructor(readonly plan: FreezePlan) {}

  /** Builds the set from the model's current values. LoRA: A ~ N(0, 1/in), B = 0 (so W_eff = W0 at start). */
  static async create(model: TrainableLM, plan: FreezePlan, rng: Rng): Promise<ParameterSet> {
    const ps = new ParameterSet(plan);
    const known = new Set(model.parameterNames());
    const seen = new Set<string>();
    for (const name of [...plan.trainable, ...plan.lora.map((l) => l.name)]) {
      if (!known.has(name)) throw new UsageError(`policy selects "${name}", which the model does not have`);
      if (seen.has(name)) throw new UsageError(`policy selects "${name}" twice (directly and as a LoRA target?)`);
      seen.add(name);
    }
    if (seen.size === 0) throw new UsageError('the freeze policy selects no trainable tensor; nothing would train');
    ps.resident = typeof model.residentParameter === 'function' && typeof model.parametersChanged === 'function';
    for (const name of plan.trainable) {
      const shape = [...model.parameterShape(name)];
      const values = ps.resident ? await model.residentParameter!(name) : Float32Array.from(await model.getParameter(name));
      if (values.length !== numel(shape)) throw new UsageError(`the backend holds ${values.length} values for "${name}", expected ${numel(shape)} (shape [${shape.join(', ')}])`);
      ps.add({ name, shape, size: numel(shape), decay: decaysFor(model.config, name, shape) }, values);
      ps.direct.push(name);
    }
    for (const t of plan.lora) {
      const shape = model.parameterShape(t.name);
      if (shape.length !== 2) throw new UsageError(`LoRA target ${t.name} has shape [${shape}], not a matrix`);
      const [out, inDim] = [shape[0]!, shape[1]!];
      const a = new Float32Array(t.rank * inDim);
      const std = 1 / Math.sqrt(inDim);
      for (let i = 0; i < a.length; i++) a[i] = std * rng.normal();
      ps.add({ name: t.name + LORA_A, shape: [t.rank, inDim], size: a.length, decay: decaysByShape([t.rank, inDim]) }, a);
      ps.add({ name: t.name + LORA_B, shape: [out, t.rank], size: out * t.rank, decay: decaysByShape([out, t.rank]) }, new Float32Array(out * t.rank));
      ps.lora.push({ ...t, out, in: inDim, scale: t.alpha / t.rank, w0: Float32Array.from(await model.getParameter(t.name)) });
    }
    return ps;
  }

  private add(slot: TrainSlot, values: Float32Array): void {
    this.slots.push(slot);
    this.values.set(slot.name, values);
  }

  /** Model tensors whose gradients the backend must return. */
  get modelGradientNames(): string[] {
    return [...this.direct, ...this.lora.map((l) => l.name)];
  }

  /** Model tensors whose values change by training (for export and checks). */
  get updatedModelTensors(): string[] {
    return this.modelGradientNames;
  }

  /** Writes the current values (direct tensors, merged LoRA weights) into the model. */
  async push(model: TrainableLM): Promise<void> {
    if (this.resident) {
      if (this.direct.length > 0) model.parametersChanged!(this.direct);
    } else {
      for (const name of this.direct) await model.setParameter(name, this.values.get(name)!);
    }
    for (const l of this.lora) await model.setParameter(l.name, this.merged(l));
  }

  private merged(l: LoraState): Float32Array {
    return loraMerge(l.w0, this.values.get(l.name + LORA_A)!, this.values.get(l.name + LORA_B)!, l.out, l.in, l.rank, l.scale);
  }

  /** Current model-side values of every updated tensor (LoRA merged). */
  modelTensors(): Map<string, Float32Array> {
    const out = new Map<string, Float32Array>();
    for (const name of this.direct) out.set(name, this.values.get(name)!);
    for (const l of this.lora) out.set(l.name, this.merged(l));
    return out;
  }

  /** Maps model gradients (∂L/∂W for `modelGradientNames`) to slot gradients. */
  slotGradients(modelGrads: ReadonlyMap<string, Float32Array>): Map<string, Float32Array> {
    const get = (name: string, size: number) => {
      const g = modelGrads.get(name);
      if (!g) throw new UsageError(`the backend returned no gradient for "${name}"`);
      if (g.length !== size) throw new UsageError(`the backend returned ${g.length} gradient values for "${name}", expected ${size}`);
      return g;
    };
    const out = new Map<string, Float32Array>();
    // Direct tensors: the backend's arrays as they are (the trainer and AdamW only read gradients).
    for (const name of this.direct) out.set(name, get(name, this.values.get(name)!.length));
    for (const l of this.lora) {
      const g = get(l.name, l.out * l.in);
      const a = this.values.get(l.name + LORA_A)!;
      const b = this.values.get(l.name + LORA_B)!;
      const r = l.rank;
      const dA = new Float32Array(r * l.in);
      const dB = new Float32Array(l.out * r);
      // dB[o, k] = s · Σ_i G[o, i] · A[k, i]
      for (let o = 0; o < l.out; o++) {
        for (let k = 0; k < r; k++) {
          let s = 0;
          for (let i = 0; i < l.in; i++) s += g[o * l.in + i]! * a[k * l.in + i]!;
          dB[o * r + k] = l.scale * s;
        }
      }
      // dA[k, i] = s · Σ_o B[o, k] · G[o, i]
      const acc = new Float64Array(r * l.in);
      for (let o = 0; o < l.out; o++) {
        for (let k = 0; k < r; k++) {
          const bok = b[o * r + k]!;
          if (bok === 0) continue;
          for (let i = 0; i < l.in; i++) acc[k * l.in + i]! += bok * g[o * l.in + i]!;
        }
      }
      for (let j = 0; j < acc.length; j++) dA[j] = l.scale * acc[j]!;
      out.set(l.name + LORA_A, dA);
      out.set(l.name + LORA_B, dB);
    }
    return out;
  }

  /** Replaces the master values (e.g. from a checkpoint); the caller pushes them to the model. */
  load(values: ReadonlyMap<string, Float32Array>): void {
    for (const s of this.slots) {
      const v = values.get(s.name);
      if (!v) throw new UsageError(`checkpoint has no values for trainable "${s.name}"; it belongs to a different policy`);
      if (v.length !== s.size) throw new UsageError(`checkpoint values for "${s.name}" have ${v.length} elements, expected ${s.size}`);
      this.values.get(s.name)!.set(v);
    }
  }
}
