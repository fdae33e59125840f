/**
 * The paper's training recipe (LLaMA Pro, arXiv 2401.02415, §4.1: AdamW β1 0.9, β2 0.95, weight decay
 * 0.1, gradient clipping 1.0, lr 2e-4, cosine schedule with 6% warmup), in one place: the experiment
 * schema's defaults, the optimizer's defaults and the external engines' settings all read it.
 */
import { DEFAULT_BACKEND, tensorInfo, type LlamaConfig } from '@llama-pro/core';

export const PAPER_RECIPE = {
  optimizer: { lr: 2e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clip: 1.0 },
  schedule: { name: 'cosine', warmupRatio: 0.06, minLr: 0 },
} as const;

/** The backend an experiment trains on unless it names one (the toolkit-wide default). */
export const DEFAULT_TRAIN_BACKEND: string = DEFAULT_BACKEND;

/**
 * The rank rule for tensors outside the model's tensor table (LoRA factors): rank ≥ 2 decays
 * (matrices), vectors do not (nanoGPT's `p.dim() >= 2` rule, which core's table follows).
 */
export function decaysByShape(shape: readonly number[]): boolean {
  return shape.length >= 2;
}

/**
 * Whether AdamW's weight decay applies to a model tensor: the `decays` flag of core's tensor table
 * (model/arch: matrices and embeddings yes; norm scales and biases no) for the tensor's role under
 * `config`. Names the table does not have fall back to `decaysByShape`. The one place the trainer decides it.
 */
export function decaysFor(config: LlamaConfig, name: string, shape: readonly number[]): boolean {
  return tensorInfo(config, name)?.decays ?? decaysByShape(shape);
}
