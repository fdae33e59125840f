/**
 * Bounds on model sizes, checked before anything is allocated from them. A config.json is input: a
 * 600-byte file must not be able to make a reader build two billion tensor names. Two checks:
 *
 * - `checkConfigBounds` (called by `normalizeConfig`): every size field against a fixed ceiling, and
 *   the implied parameter count against a safe integer. The ceilings sit one to two orders of
 *   magnitude above the largest public LLaMA-family configs (Llama 3.1 405B: 126 layers, hidden 16384,
 *   intermediate 53248, 128 heads; Qwen2 vocab 151936; Gemma vocab 256000; 8-128 experts), so no real
 *   model is refused.
 * - `checkConfigAgainstTensors` (called when a checkpoint is opened, before the per-tensor check): the
 *   tensor count and element count the config implies may not be far beyond what the checkpoint's
 *   files hold (more than twice), so the work of checking names and shapes is bounded by the files'
 *   own size, and a config claiming far more layers than the weights have fails at once, naming the
 *   field. Smaller mismatches get the per-tensor check's precise "missing tensor" / "shape" errors.
 */
import { ConfigError } from '../errors';
import type { LlamaConfig } from './llama-config';
import { layerTensorSuffixes } from './tensor-names';

/** Ceiling per config.json field (inclusive). */
export const CONFIG_LIMITS = {
  num_hidden_layers: 1 << 12,
  hidden_size: 1 << 18,
  intermediate_size: 1 << 20,
  num_attention_heads: 1 << 12,
  num_key_value_heads: 1 << 12,
  head_dim: 1 << 12,
  vocab_size: 1 << 24,
  max_position_embeddings: 1 << 30,
  num_local_experts: 1 << 12,
} as const;

/** Ceiling on the parameter count a config may imply (2^46 ≈ 7e13, ~170x the largest public dense model). */
export const MAX_PARAMETERS = 2 ** 46;

function fields(c: LlamaConfig): [keyof typeof CONFIG_LIMITS, number][] {
  return [
    ['num_hidden_layers', c.numHiddenLayers],
    ['hidden_size', c.hiddenSize],
    ['intermediate_size', c.intermediateSize],
    ['num_attention_heads', c.numAttentionHeads],
    ['num_key_value_heads', c.numKeyValueHeads],
    ['head_dim', c.headDim],
    ['vocab_size', c.vocabSize],
    ['max_position_embeddings', c.maxPositionEmbeddings],
    ['num_local_experts', c.numExperts],
  ];
}

/** Parameters the config implies (same formula as `countParameters`, in floating point so it cannot wrap). */
export function impliedParameters(c: LlamaConfig): number {
  const q = c.numAttentionHeads * c.headDim;
  const kv = c.numKeyValueHeads * c.headDim;
  const h = c.hiddenSize;
  const attn = 2 * h * q + 2 * h * kv + (c.qkvBias ? q + 2 * kv : 0) + (c.oBias ? h : 0);
  const mlpOne = 3 * h * c.intermediateSize + (c.mlpBias ? 2 * c.intermediateSize + h : 0);
  const mlp = c.numExperts > 0 ? c.numExperts * mlpOne + h * c.numExperts : mlpOne;
  const embedding = c.vocabSize * h;
  return embedding * (c.tieWordEmbeddings ? 1 : 2) + c.numHiddenLayers * (attn + mlp + 2 * h) + h;
}

/** Returns `c`; throws ConfigError (naming the field) when a size is beyond any real model. Cheap: no allocation. */
export function checkConfigBounds<T extends LlamaConfig>(c: T): T {
  for (const [key, v] of fields(c)) {
    const max = CONFIG_LIMITS[key];
    if (v > max) {
      throw new ConfigError(`config.json "${key}" = ${v} is beyond any supported model (at most ${max}); the config is corrupt or not meant for this tool`, 'CONFIG_OUT_OF_RANGE');
    }
  }
  if (c.numExperts > 0 && c.numExpertsPerToken > c.numExperts) {
    throw new ConfigError(`config.json "num_experts_per_tok" = ${c.numExpertsPerToken} exceeds "num_local_experts" = ${c.numExperts}`, 'CONFIG_OUT_OF_RANGE');
  }
  const params = impliedParameters(c);
  if (!(params <= MAX_PARAMETERS)) {
    throw new ConfigError(`config.json implies ${params.toExponential(3)} parameters, more than the ${MAX_PARAMETERS.toExponential(3)} supported; the sizes in it are corrupt`, 'CONFIG_OUT_OF_RANGE');
  }
  return c;
}

/** Tensors a checkpoint with this config holds (without building their names). */
export function impliedTensorCount(c: LlamaConfig): number {
  return 2 + (c.tieWordEmbeddings ? 0 : 1) + c.numHiddenLayers * layerTensorSuffixes(c).length;
}

/**
 * Throws ConfigError when the config implies more than twice the tensors or elements the checkpoint's
 * files hold (`tensorCount` tensors with `elements` values in all), before anything is built from it.
 */
export function checkConfigAgainstTensors(c: LlamaConfig, tensorCount: number, elements: number, where: string): void {
  const wantTensors = impliedTensorCount(c);
  if (wantTensors > 2 * tensorCount) {
    const perLayer = layerTensorSuffixes(c).length;
    const layersHeld = Math.max(0, Math.floor((tensorCount - 2) / perLayer));
    throw new ConfigError(
      `${where}/config.json says "num_hidden_layers" = ${c.numHiddenLayers} (${wantTensors} tensors), but the weight files hold only ${tensorCount} tensors (at most ${layersHeld} layers); config.json does not belong to these weights`,
      'CONFIG_WEIGHTS_MISMATCH',
    );
  }
  const wantElements = impliedParameters(c);
  if (wantElements > 2 * elements) {
    throw new ConfigError(
      `${where}/config.json implies ${wantElements} parameters (hidden_size ${c.hiddenSize}, intermediate_size ${c.intermediateSize}, ${c.numAttentionHeads} heads, vocab_size ${c.vocabSize}, ${c.numHiddenLayers} layers), but the weight files hold only ${elements} values; config.json does not belong to these weights`,
      'CONFIG_WEIGHTS_MISMATCH',
    );
  }
}
