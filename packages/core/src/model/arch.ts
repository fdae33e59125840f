/**
 * The tensor table of a LLaMA-family decoder: every weight with its Hugging Face name, shape, role,
 * forward stage and weight-decay flag. Backends, the expander's initializers, the training graph and
 * the optimizer read roles from here instead of matching names (mergekit's `architecture` data, as a
 * TypeScript table).
 */
import type { LlamaConfig } from '../config/llama-config';
import { UsageError } from '../errors';

export const EMBED = 'model.embed_tokens.weight';
export const FINAL_NORM = 'model.norm.weight';
export const LM_HEAD = 'lm_head.weight';

/** What a tensor does in the block. Bias roles end in `_bias`; MoE roles start with `expert_` or are `router`. */
export type TensorRole =
  | 'embed'
  | 'attn_norm'
  | 'q'
  | 'k'
  | 'v'
  | 'attn_out'
  | 'mlp_norm'
  | 'gate'
  | 'up'
  | 'mlp_out'
  | 'final_norm'
  | 'head'
  | 'q_bias'
  | 'k_bias'
  | 'v_bias'
  | 'attn_out_bias'
  | 'gate_bias'
  | 'up_bias'
  | 'mlp_out_bias'
  | 'router'
  | 'expert_gate'
  | 'expert_up'
  | 'expert_out';

/**
 * Forward stages inside one layer, in order: 0 attention norm, 1 q/k/v projections, 2 attention output,
 * 3 MLP norm, 4 gate/up projections, 5 MLP output.
 */
export const STAGES_PER_LAYER = 6;

export interface LayerTensor {
  /** Name after `model.layers.<i>.`, e.g. `self_attn.q_proj.weight`. */
  readonly suffix: string;
  readonly role: TensorRole;
  /** Forward stage inside the layer (see STAGES_PER_LAYER). */
  readonly stage: number;
  readonly shape: (c: LlamaConfig) => number[];
  /** Whether AdamW's decoupled weight decay applies (matrices yes; norms and biases no). */
  readonly decays: boolean;
  /**
   * Whether the tensor writes into the residual stream (the output projections of the attention and
   * MLP branches, weights and biases): zeroing all of them makes a block the identity (LLaMA Pro).
   */
  readonly residualOutput: boolean;
}

const qDim = (c: LlamaConfig): number => c.numAttentionHeads * c.headDim;
const kvDim = (c: LlamaConfig): number => c.numKeyValueHeads * c.headDim;

function t(suffix: string, role: TensorRole, stage: number, shape: (c: LlamaConfig) => number[], residualOutput = false): LayerTensor {
  // Matrices decay; norm scales and biases (vectors) do not.
  return { suffix, role, stage, shape, decays: !(role.endsWith('_bias') || role.endsWith('_norm')), residualOutput };
}

const ATTN_NORM = t('input_layernorm.weight', 'attn_norm', 0, (c) => [c.hiddenSize]);
const MLP_NORM = t('post_attention_layernorm.weight', 'mlp_norm', 3, (c) => [c.hiddenSize]);
const Q = t('self_attn.q_proj.weight', 'q', 1, (c) => [qDim(c), c.hiddenSize]);
const K = t('self_attn.k_proj.weight', 'k', 1, (c) => [kvDim(c), c.hiddenSize]);
const V = t('self_attn.v_proj.weight', 'v', 1, (c) => [kvDim(c), c.hiddenSize]);
const QB = t('self_attn.q_proj.bias', 'q_bias', 1, (c) => [qDim(c)]);
const KB = t('self_attn.k_proj.bias', 'k_bias', 1, (c) => [kvDim(c)]);
const VB = t('self_attn.v_proj.bias', 'v_bias', 1, (c) => [kvDim(c)]);
const O = t('self_attn.o_proj.weight', 'attn_out', 2, (c) => [c.hiddenSize, qDim(c)], true);
const OB = t('self_attn.o_proj.bias', 'attn_out_bias', 2, (c) => [c.hiddenSize], true);
const GATE = t('mlp.gate_proj.weight', 'gate', 4, (c) => [c.intermediateSize, c.hiddenSize]);
const UP = t('mlp.up_proj.weight', 'up', 4, (c) => [c.intermediateSize, c.hiddenSize]);
const DOWN = t('mlp.down_proj.weight', 'mlp_out', 5, (c) => [c.hiddenSize, c.intermediateSize], true);
const GATE_B = t('mlp.gate_proj.bias', 'gate_bias', 4, (c) => [c.intermediateSize]);
const UP_B = t('mlp.up_proj.bias', 'up_bias', 4, (c) => [c.intermediateSize]);
const DOWN_B = t('mlp.down_proj.bias', 'mlp_out_bias', 5, (c) => [c.hiddenSize], true);
const ROUTER = t('block_sparse_moe.gate.weight', 'router', 4, (c) => [c.numExperts, c.hiddenSize]);

function expertTensors(e: number): LayerTensor[] {
  const p = `block_sparse_moe.experts.${e}`;
  return [
    t(`${p}.w1.weight`, 'expert_gate', 4, (c) => [c.intermediateSize, c.hiddenSize]),
    t(`${p}.w2.weight`, 'expert_out', 5, (c) => [c.hiddenSize, c.intermediateSize], true),
    t(`${p}.w3.weight`, 'expert_up', 4, (c) => [c.intermediateSize, c.hiddenSize]),
  ];
}

/** The per-layer tensors this config implies, in canonical (checkpoint) order. */
export function layerTensors(c: LlamaConfig): LayerTensor[] {
  const out: LayerTensor[] = [ATTN_NORM, MLP_NORM, Q];
  if (c.qkvBias) out.push(QB);
  out.push(K);
  if (c.qkvBias) out.push(KB);
  out.push(V);
  if (c.qkvBias) out.push(VB);
  out.push(O);
  if (c.oBias) out.push(OB);
  if (c.numExperts > 0) {
    out.push(ROUTER);
    for (let e = 0; e < c.numExperts; e++) out.push(...expertTensors(e));
  } else {
    out.push(GATE);
    if (c.mlpBias) out.push(GATE_B);
    out.push(UP);
    if (c.mlpBias) out.push(UP_B);
    out.push(DOWN);
    if (c.mlpBias) out.push(DOWN_B);
  }
  return out;
}

/** A global (not per-layer) tensor: embedding, final norm, head. */
export interface GlobalTensor {
  readonly name: string;
  readonly role: 'embed' | 'final_norm' | 'head';
  readonly shape: (c: LlamaConfig) => number[];
  readonly decays: boolean;
}

export const GLOBAL_TENSORS: readonly GlobalTensor[] = [
  { name: EMBED, role: 'embed', shape: (c) => [c.vocabSize, c.hiddenSize], decays: true },
  { name: FINAL_NORM, role: 'final_norm', shape: (c) => [c.hiddenSize], decays: false },
  { name: LM_HEAD, role: 'head', shape: (c) => [c.vocabSize, c.hiddenSize], decays: true },
];

const LAYER_RE = /^model\.layers\.(\d+)\.(.+)$/;

export function layerTensorName(layer: number, suffix: string): string {
  return `model.layers.${layer}.${suffix}`;
}

/** `{layer, suffix}` for a per-layer tensor name, or null for global tensors. */
export function parseLayerTensorName(name: string): { layer: number; suffix: string } | null {
  const m = LAYER_RE.exec(name);
  if (!m) return null;
  return { layer: Number(m[1]), suffix: m[2]! };
}

/** The layer-tensor entry for a suffix under this config, or undefined when the config has no such tensor. */
export function layerTensorBySuffix(c: LlamaConfig, suffix: string): LayerTensor | undefined {
  return layerTensors(c).find((e) => e.suffix === suffix);
}

const KNOWN_LAYER_TENSORS: readonly LayerTensor[] = [ATTN_NORM, MLP_NORM, Q, QB, K, KB, V, VB, O, OB, GATE, GATE_B, UP, UP_B, DOWN, DOWN_B, ROUTER];
const EXPERT_RE = /^block_sparse_moe\.experts\.(\d+)\.(w[123])\.weight$/;

/**
 * The table entry of a per-layer suffix whatever the config's bias flags or expert count say (for
 * tensors a checkpoint holds beyond what its config implies), or undefined for an unknown suffix.
 */
export function layerTensorEntry(suffix: string): LayerTensor | undefined {
  const known = KNOWN_LAYER_TENSORS.find((e) => e.suffix === suffix);
  if (known) return known;
  const m = EXPERT_RE.exec(suffix);
  return m ? expertTensors(Number(m[1])).find((e) => e.suffix === suffix) : undefined;
}

/** The per-layer tensor with this role (first expert's for MoE roles), or undefined when the config has none. */
export function layerTensorByRole(c: LlamaConfig, role: TensorRole): LayerTensor | undefined {
  return layerTensors(c).find((e) => e.role === role);
}

export interface ModelTensorInfo {
  readonly name: string;
  readonly role: TensorRole;
  /** Layer index, or null for global tensors. */
  readonly layer: number | null;
  readonly shape: number[];
  readonly decays: boolean;
}

/** Role, layer, shape and decay flag of a tensor name under this config, or undefined if the config has no such tensor. */
export function tensorInfo(c: LlamaConfig, name: string): ModelTensorInfo | undefined {
  const g = GLOBAL_TENSORS.find((e) => e.name === name);
  if (g) return { name, role: g.role, layer: null, shape: g.shape(c), decays: g.decays };
  const p = parseLayerTensorName(name);
  if (!p || p.layer >= c.numHiddenLayers) return undefined;
  const e = layerTensorBySuffix(c, p.suffix);
  return e ? { name, role: e.role, layer: p.layer, shape: e.shape(c), decays: e.decays } : undefined;
}

/**
 * Whether weight decay applies to a parameter: by its table entry when the name is known, else by rank
 * (matrices decay, vectors do not; nanoGPT's rule, which the table follows).
 */
export function decays(shape: readonly number[], c?: LlamaConfig, name?: string): boolean {
  if (c && name) {
    const info = tensorInfo(c, name);
    if (info) return info.decays;
  }
  return shape.length >= 2;
}

/** Position of a tensor's first use in forward order: embedding 0, then layer stages, final norm, head. */
export function stagePosition(c: LlamaConfig, name: string): number {
  if (name === EMBED) return 0;
  const L = c.numHiddenLayers;
  if (name === FINAL_NORM) return 1 + L * STAGES_PER_LAYER;
  if (name === LM_HEAD) return 2 + L * STAGES_PER_LAYER;
  const p = parseLayerTensorName(name);
  const e = p ? layerTensorBySuffix(c, p.suffix) : undefined;
  if (!p || !e || p.layer >= L) throw new UsageError(`"${name}" is not a parameter of this model`, 'UNKNOWN_PARAMETER');
  return 1 + p.layer * STAGES_PER_LAYER + e.stage;
}
