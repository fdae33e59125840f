/** Freeze policies (plugins under TOKENS.FreezePolicy): which tensors train, and how. */
import type { Named } from '@llama-pro/core';

export interface LayerSelection {
  /** Every k-th layer, starting at `offset` (default 0). */
  every?: number;
  offset?: number;
  /** The N highest layers. */
  top?: number;
  /** The N lowest layers. */
  bottom?: number;
  /** Explicit layer indices. */
  indices?: number[];
}

export interface LoraOptions {
  rank: number;
  alpha: number;
  /** Module names inside a block, e.g. `self_attn.q_proj`; the adapted tensor is `<module>.weight`. */
  targets: string[];
  /** Restrict adapters to these layers (default: every layer). */
  layers?: LayerSelection;
}

export interface PolicyOptions {
  layers?: LayerSelection;
  lora?: LoraOptions;
}

/** What a policy sees: the model's parameters and, for expanded models, the expansion manifest's lists. */
export interface PolicyContext {
  readonly parameterNames: readonly string[];
  shapeOf(name: string): readonly number[];
  /** From the expansion manifest (`llama_pro.json`), read by the caller. */
  readonly manifest?: { readonly trainable: readonly string[]; readonly newLayers: readonly number[] };
  readonly options: PolicyOptions;
}

export interface LoraTarget {
  /** The adapted weight, [out, in]. */
  readonly name: string;
  readonly rank: number;
  readonly alpha: number;
}

export interface FreezePlan {
  /** Model tensors updated directly (they get gradients and optimizer state). */
  readonly trainable: string[];
  /** Frozen weights adapted by low-rank adapters (the adapters get gradients and optimizer state). */
  readonly lora: LoraTarget[];
  /** One line for logs and the run manifest. */
  readonly summary: string;
}

export interface FreezePolicy extends Named {
  readonly description: string;
  plan(ctx: PolicyContext): FreezePlan;
}
