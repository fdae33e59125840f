/**
 * Hugging Face tensor names of LLaMA-family decoders. Layer membership is parsed structurally
 * (`model.layers.<i>.<rest>`), never by substring matching.
 */
import type { LlamaConfig } from './llama-config';

export const EMBED = 'model.embed_tokens.weight';
export const FINAL_NORM = 'model.norm.weight';
export const LM_HEAD = 'lm_head.weight';

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

/** Per-layer tensor suffixes the config implies (dense models). */
export function layerTensorSuffixes(c: LlamaConfig): string[] {
  const s = ['input_layernorm.weight', 'post_attention_layernorm.weight'];
  for (const p of ['q_proj', 'k_proj', 'v_proj']) {
    s.push(`self_attn.${p}.weight`);
    if (c.qkvBias) s.push(`self_attn.${p}.bias`);
  }
  s.push('self_attn.o_proj.weight');
  if (c.oBias) s.push('self_attn.o_proj.bias');
  if (c.numExperts > 0) {
    s.push('block_sparse_moe.gate.weight');
    for (let e = 0; e < c.numExperts; e++) for (const w of ['w1', 'w2', 'w3']) s.push(`block_sparse_moe.experts.${e}.${w}.weight`);
  } else {
    for (const p of ['gate_proj', 'up_proj', 'down_proj']) {
      s.push(`mlp.${p}.weight`);
      if (c.mlpBias) s.push(`mlp.${p}.bias`);
    }
  }
  return s;
}

/** Shape of a per-layer tensor (by suffix) or a global tensor. */
export function expectedShape(c: LlamaConfig, name: string): number[] | undefined {
  const q = c.numAttentionHeads * c.headDim;
  const kv = c.numKeyValueHeads * c.headDim;
  if (name === EMBED || name === LM_HEAD) return [c.vocabSize, c.hiddenSize];
  if (name === FINAL_NORM) return [c.hiddenSize];
  const p = parseLayerTensorName(name);
  if (!p) return undefined;
  const table: Record<string, number[]> = {
    'input_layernorm.weight': [c.hiddenSize],
    'post_attention_layernorm.weight': [c.hiddenSize],
    'self_attn.q_proj.weight': [q, c.hiddenSize],
    'self_attn.k_proj.weight': [kv, c.hiddenSize],
    'self_attn.v_proj.weight': [kv, c.hiddenSize],
    'self_attn.o_proj.weight': [c.hiddenSize, q],
    'self_attn.q_proj.bias': [q],
    'self_attn.k_proj.bias': [kv],
    'self_attn.v_proj.bias': [kv],
    'self_attn.o_proj.bias': [c.hiddenSize],
    'mlp.gate_proj.weight': [c.intermediateSize, c.hiddenSize],
    'mlp.up_proj.weight': [c.intermediateSize, c.hiddenSize],
    'mlp.down_proj.weight': [c.hiddenSize, c.intermediateSize],
    'mlp.gate_proj.bias': [c.intermediateSize],
    'mlp.up_proj.bias': [c.intermediateSize],
    'mlp.down_proj.bias': [c.hiddenSize],
    'block_sparse_moe.gate.weight': [c.numExperts, c.hiddenSize],
  };
  const direct = table[p.suffix];
  if (direct) return direct;
  const moe = /^block_sparse_moe\.experts\.\d+\.(w[123])\.weight$/.exec(p.suffix);
  if (moe) return moe[1] === 'w2' ? [c.hiddenSize, c.intermediateSize] : [c.intermediateSize, c.hiddenSize];
  return undefined;
}

/** Every tensor name a checkpoint with this config must hold, in canonical order. */
export function expectedTensorNames(c: LlamaConfig): string[] {
  const names = [EMBED];
  const suffixes = layerTensorSuffixes(c);
  for (let i = 0; i < c.numHiddenLayers; i++) for (const s of suffixes) names.push(layerTensorName(i, s));
  names.push(FINAL_NORM);
  if (!c.tieWordEmbeddings) names.push(LM_HEAD);
  return names;
}
