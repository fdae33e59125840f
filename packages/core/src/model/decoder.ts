/**
 * The LLaMA-family decoder, written once (STYLE.md §5). Backends implement `DecoderOps` — eagerly
 * (tfjs: tensors) or symbolically (onnx: graph value names) — and run `decoder(config, ops)`; which
 * tensors a projection reads comes from the tensor table (model/arch), RoPE from model/rope, masks
 * and positions from model/positions.
 */
import type { LlamaConfig } from '../config/llama-config';
import { ConfigError } from '../errors';
import { FINAL_NORM, layerTensorByRole, layerTensorName, type TensorRole } from './arch';

/** Projection groups the block asks for; a backend may fuse a group into one product. */
export type ProjectionGroup = 'qkv' | 'attn_out' | 'gate_up' | 'mlp_out';

/** Weight and bias roles of each group's outputs, in output order. */
export const PROJECTION_GROUPS: Readonly<Record<ProjectionGroup, readonly (readonly [TensorRole, TensorRole])[]>> = {
  qkv: [
    ['q', 'q_bias'],
    ['k', 'k_bias'],
    ['v', 'v_bias'],
  ],
  attn_out: [['attn_out', 'attn_out_bias']],
  gate_up: [
    ['gate', 'gate_bias'],
    ['up', 'up_bias'],
  ],
  mlp_out: [['mlp_out', 'mlp_out_bias']],
};

/** One linear map of a projection group: its weight name ([out, in]) and bias name (null when the config has none). */
export interface Projection {
  readonly weight: string;
  readonly bias: string | null;
  /** Output width. */
  readonly outFeatures: number;
}

/** The tensors behind a projection group of a layer, from the tensor table. */
export function projections(c: LlamaConfig, layer: number, group: ProjectionGroup): Projection[] {
  return PROJECTION_GROUPS[group].map(([w, b]) => {
    const we = layerTensorByRole(c, w);
    if (!we) throw new ConfigError(`${c.architectureClass} has no ${w} projection (mixture-of-experts layers are not a dense decoder)`, 'CONFIG_UNSUPPORTED_MOE');
    const be = layerTensorByRole(c, b);
    return { weight: layerTensorName(layer, we.suffix), bias: be ? layerTensorName(layer, be.suffix) : null, outFeatures: we.shape(c)[0]! };
  });
}

/** The primitives the decoder is written in. `T` is a backend's value type. */
export interface DecoderOps<T> {
  /** Embeddings of the batch's token ids. */
  embed(): T;
  /** RMSNorm with the named weight and the config's epsilon. */
  rmsNorm(x: T, weight: string): T;
  /** The group's linear maps of x (biases included), in PROJECTION_GROUPS order. */
  project(x: T, layer: number, group: ProjectionGroup): T[];
  /** Rotary embedding of queries or keys at the batch's positions (model/rope, model/positions). */
  rope(x: T, kind: 'q' | 'k'): T;
  /**
   * softmax(q kᵀ / sqrt(head_dim) + mask) v with grouped-query heads, over cached and new keys, the mask
   * of model/positions with this layer's window; heads merged back to [.., heads * head_dim].
   */
  attention(q: T, k: T, v: T, layer: number): T;
  /** silu(gate) * up. */
  swiglu(gate: T, up: T): T;
  add(a: T, b: T): T;
  /** The LM head (tied or not) on final-normed hidden states: logits. */
  head(x: T): T;
  /** Optional: called with the residual stream after each block (its output hidden state), in layer order. */
  onLayerEnd?(layer: number, hidden: T): void;
}

/** The decoder: embeddings, L pre-norm blocks (attention, SwiGLU MLP, residuals), final norm, head. */
export function decoder<T>(c: LlamaConfig, ops: DecoderOps<T>): T {
  const attnNorm = layerTensorByRole(c, 'attn_norm')!.suffix;
  const mlpNorm = layerTensorByRole(c, 'mlp_norm')!.suffix;
  let h = ops.embed();
  for (let l = 0; l < c.numHiddenLayers; l++) {
    // attention: RMSNorm, q/k/v projections, rotary embeddings, masked attention, output projection
    const x = ops.rmsNorm(h, layerTensorName(l, attnNorm));
    const [q, k, v] = ops.project(x, l, 'qkv');
    const ctx = ops.attention(ops.rope(q!, 'q'), ops.rope(k!, 'k'), v!, l);
    h = ops.add(h, ops.project(ctx, l, 'attn_out')[0]!);
    // MLP: RMSNorm, SwiGLU of the gate and up projections, down projection
    const x2 = ops.rmsNorm(h, layerTensorName(l, mlpNorm));
    const [gate, up] = ops.project(x2, l, 'gate_up');
    h = ops.add(h, ops.project(ops.swiglu(gate!, up!), l, 'mlp_out')[0]!);
    ops.onLayerEnd?.(l, h);
  }
  // final RMSNorm and LM head
  return ops.head(ops.rmsNorm(h, FINAL_NORM));
}
