/**
 * The one place that reads raw Hugging Face `config.json` keys. Everything else uses `LlamaConfig`.
 *
 * Supported: LLaMA (`LlamaForCausalLM`), Mistral (`MistralForCausalLM`), Qwen2 (`Qwen2ForCausalLM`, q/k/v
 * biases) and Mixtral (`MixtralForCausalLM`, MoE MLPs; expansion only). They share the decoder
 * layout: RMSNorm, rotate-half rotary embeddings, grouped-query attention, SwiGLU MLP.
 */
import { ConfigError } from '../errors';
import { type FloatDType, dtypeFromTorch } from '../io/dtype';
import { parseRope, type RopeScaling } from '../model/rope';
import { parseAttentionWindows, type AttentionWindows } from '../model/positions';
import { CONFIG_LIMITS, checkConfigBounds } from './bounds';

export type Architecture = 'llama' | 'mistral' | 'qwen2' | 'mixtral';

export interface LlamaConfig {
  readonly architecture: Architecture;
  /** The `architectures[0]` class name, e.g. `LlamaForCausalLM`. */
  readonly architectureClass: string;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numHiddenLayers: number;
  readonly numAttentionHeads: number;
  readonly numKeyValueHeads: number;
  readonly headDim: number;
  readonly vocabSize: number;
  readonly maxPositionEmbeddings: number;
  readonly rmsNormEps: number;
  /** RoPE base, from `rope_parameters.rope_theta` (transformers >= 5) or the top-level `rope_theta` (4.x). */
  readonly ropeTheta: number;
  /** RoPE scaling, typed (null = plain RoPE), from `rope_parameters` or `rope_scaling`; see model/rope. */
  readonly ropeScaling: RopeScaling | null;
  /** Fraction of head_dim that is rotated (`partial_rotary_factor`, default 1). */
  readonly partialRotaryFactor: number;
  /** Attention window per layer (null = full causal attention); see model/positions. */
  readonly attentionWindows: AttentionWindows;
  /** Llama 4 style chunked attention (`attention_chunk_size`), or null. No backend implements it. */
  readonly attentionChunkSize: number | null;
  readonly tieWordEmbeddings: boolean;
  /** Biases on q/k/v projections. */
  readonly qkvBias: boolean;
  /** Bias on the attention output projection. */
  readonly oBias: boolean;
  readonly mlpBias: boolean;
  readonly hiddenAct: string;
  readonly torchDtype: FloatDType | null;
  readonly bosTokenId: number | null;
  readonly eosTokenIds: readonly number[];
  readonly padTokenId: number | null;
  /** Mixture-of-experts: number of experts per MLP (0 for dense). */
  readonly numExperts: number;
  readonly numExpertsPerToken: number;
  /** The raw config, for writers that must preserve unknown keys. Never read model facts from it. */
  readonly raw: Readonly<Record<string, unknown>>;
}

const ARCHITECTURES: Record<string, Architecture> = {
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'mistral',
  Qwen2ForCausalLM: 'qwen2',
  MixtralForCausalLM: 'mixtral',
};
const MODEL_TYPES: Record<string, Architecture> = { llama: 'llama', mistral: 'mistral', qwen2: 'qwen2', mixtral: 'mixtral' };

export const SUPPORTED_ARCHITECTURES = Object.keys(ARCHITECTURES);

function int(raw: Record<string, unknown>, key: string, fallback?: number): number {
  const v = raw[key] ?? fallback;
  if (v === undefined) throw new ConfigError(`config.json is missing "${key}"`, 'CONFIG_MISSING_KEY');
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
    throw new ConfigError(`config.json "${key}" must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

function num(raw: Record<string, unknown>, key: string, fallback: number): number {
  const v = raw[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new ConfigError(`config.json "${key}" must be a positive number, got ${JSON.stringify(v)}`);
  return v;
}

function bool(raw: Record<string, unknown>, key: string, fallback: boolean): boolean {
  const v = raw[key] ?? fallback;
  if (typeof v !== 'boolean') throw new ConfigError(`config.json "${key}" must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

function optId(v: unknown, key: string): number | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new ConfigError(`config.json "${key}" must be a token id, got ${JSON.stringify(v)}`);
  return v;
}

/**
 * Which projections carry biases, as each architecture's transformers modeling file builds them: LLaMA reads
 * `attention_bias` (q/k/v/o) and `mlp_bias`; Qwen2 always has q/k/v biases and no others; Mistral and
 * Mixtral have none. Keys an architecture does not read are ignored, as transformers ignores them (a
 * Mistral config.json saying `"attention_bias": true` still loads weights without biases).
 */
function biasFlags(raw: Record<string, unknown>, architecture: Architecture): { qkvBias: boolean; oBias: boolean; mlpBias: boolean } {
  switch (architecture) {
    case 'llama': {
      const attention = bool(raw, 'attention_bias', false);
      return { qkvBias: attention, oBias: attention, mlpBias: bool(raw, 'mlp_bias', false) };
    }
    case 'qwen2':
      return { qkvBias: true, oBias: false, mlpBias: false };
    case 'mistral':
    case 'mixtral':
      return { qkvBias: false, oBias: false, mlpBias: false };
  }
}

/**
 * What each architecture's transformers configuration class (checked against 5.18) uses for a key that
 * config.json leaves out: `save_pretrained` writes every key, but hand-written or trimmed configs rely on
 * these, and a default that differs from transformers' computes a different function.
 * `numKeyValueHeads: null` means "as many as the attention heads" (LlamaConfig); Mistral's and Mixtral's
 * default is 8 and Qwen2's 32, whatever the head count (a config that leaves it out is then checked
 * against its weights' shapes like any other). `slidingWindow` is the window of an absent
 * `sliding_window` key (Qwen2's applies only with `use_sliding_window`; see parseAttentionWindows).
 */
const ARCH_DEFAULTS: Record<Architecture, { maxPositionEmbeddings: number; rmsNormEps: number; ropeTheta: number; numKeyValueHeads: number | null; slidingWindow: number | null }> = {
  llama: { maxPositionEmbeddings: 2048, rmsNormEps: 1e-6, ropeTheta: 10000, numKeyValueHeads: null, slidingWindow: null },
  mistral: { maxPositionEmbeddings: 4096 * 32, rmsNormEps: 1e-6, ropeTheta: 10000, numKeyValueHeads: 8, slidingWindow: 4096 },
  qwen2: { maxPositionEmbeddings: 32768, rmsNormEps: 1e-6, ropeTheta: 10000, numKeyValueHeads: 32, slidingWindow: 4096 },
  mixtral: { maxPositionEmbeddings: 4096 * 32, rmsNormEps: 1e-5, ropeTheta: 1e6, numKeyValueHeads: 8, slidingWindow: null },
};

/** Normalizes a raw HF `config.json` object. Throws ConfigError for unsupported or invalid configs. */
export function normalizeConfig(rawInput: unknown): LlamaConfig {
  if (rawInput === null || typeof rawInput !== 'object' || Array.isArray(rawInput)) throw new ConfigError('config.json must hold a JSON object');
  const raw = rawInput as Record<string, unknown>;
  const archs = raw['architectures'];
  const cls = Array.isArray(archs) && typeof archs[0] === 'string' ? archs[0] : undefined;
  const modelType = typeof raw['model_type'] === 'string' ? (raw['model_type'] as string) : undefined;
  const architecture = (cls !== undefined ? ARCHITECTURES[cls] : undefined) ?? (cls === undefined && modelType ? MODEL_TYPES[modelType] : undefined);
  if (!architecture) {
    throw new ConfigError(
      `unsupported architecture ${cls ?? modelType ?? '(none given)'}: llama-pro handles LLaMA-family decoders (${SUPPORTED_ARCHITECTURES.join(', ')})`,
      'CONFIG_UNSUPPORTED_ARCHITECTURE',
    );
  }
  const hiddenSize = int(raw, 'hidden_size');
  const numAttentionHeads = int(raw, 'num_attention_heads');
  const defaults = ARCH_DEFAULTS[architecture];
  const numKeyValueHeads = int(raw, 'num_key_value_heads', defaults.numKeyValueHeads ?? numAttentionHeads);
  if (numAttentionHeads % numKeyValueHeads !== 0) {
    const given = raw['num_key_value_heads'] === undefined || raw['num_key_value_heads'] === null ? ` (not in config.json: ${architecture}'s default in transformers); set "num_key_value_heads"` : '';
    throw new ConfigError(`num_attention_heads (${numAttentionHeads}) must be a multiple of num_key_value_heads (${numKeyValueHeads})${given}`);
  }
  const headDimRaw = raw['head_dim'];
  let headDim: number;
  if (headDimRaw === undefined || headDimRaw === null) {
    if (hiddenSize % numAttentionHeads !== 0) throw new ConfigError(`hidden_size (${hiddenSize}) is not divisible by num_attention_heads (${numAttentionHeads}); set head_dim`);
    headDim = hiddenSize / numAttentionHeads;
  } else headDim = int(raw, 'head_dim');
  if (headDim % 2 !== 0) throw new ConfigError(`head_dim (${headDim}) must be even for rotary embeddings`);
  const act = raw['hidden_act'] ?? raw['hidden_activation'] ?? 'silu';
  if (act !== 'silu' && act !== 'swish') throw new ConfigError(`hidden_act "${String(act)}" is not supported; LLaMA-family models use "silu"`);
  const maxPositionEmbeddings = int(raw, 'max_position_embeddings', defaults.maxPositionEmbeddings);
  const rope = parseRope(raw, maxPositionEmbeddings, defaults.ropeTheta);
  const numHiddenLayers = int(raw, 'num_hidden_layers');
  // Bounded before anything sized by the layer count (per-layer attention windows) is built.
  if (numHiddenLayers > CONFIG_LIMITS.num_hidden_layers) {
    throw new ConfigError(`config.json "num_hidden_layers" = ${numHiddenLayers} is beyond any supported model (at most ${CONFIG_LIMITS.num_hidden_layers}); the config is corrupt or not meant for this tool`, 'CONFIG_OUT_OF_RANGE');
  }
  const chunk = raw['attention_chunk_size'];
  if (chunk !== undefined && chunk !== null && (typeof chunk !== 'number' || !Number.isSafeInteger(chunk) || chunk <= 0)) {
    throw new ConfigError(`config.json "attention_chunk_size" must be a positive integer or null, got ${JSON.stringify(chunk)}`);
  }
  const biases = biasFlags(raw, architecture);
  let torchDtype: FloatDType | null = null;
  const dtypeRaw = raw['torch_dtype'] ?? raw['dtype'];
  if (typeof dtypeRaw === 'string') {
    try {
      torchDtype = dtypeFromTorch(dtypeRaw);
    } catch (e) {
      throw new ConfigError(`config.json: ${(e as Error).message}`);
    }
  }
  const eos = raw['eos_token_id'];
  const eosTokenIds = Array.isArray(eos) ? eos.map((e, i) => optId(e, `eos_token_id[${i}]`)!) : eos === undefined || eos === null ? [] : [optId(eos, 'eos_token_id')!];
  const numExperts = architecture === 'mixtral' ? int(raw, 'num_local_experts') : 0;
  return checkConfigBounds({
    architecture,
    architectureClass: cls ?? Object.entries(ARCHITECTURES).find(([, a]) => a === architecture)![0],
    hiddenSize,
    intermediateSize: int(raw, 'intermediate_size'),
    numHiddenLayers,
    numAttentionHeads,
    numKeyValueHeads,
    headDim,
    vocabSize: int(raw, 'vocab_size'),
    maxPositionEmbeddings,
    rmsNormEps: num(raw, 'rms_norm_eps', defaults.rmsNormEps),
    ...rope,
    attentionWindows: parseAttentionWindows(raw, architecture, numHiddenLayers, defaults.slidingWindow),
    attentionChunkSize: (chunk as number | null | undefined) ?? null,
    tieWordEmbeddings: bool(raw, 'tie_word_embeddings', false),
    ...biases,
    hiddenAct: 'silu',
    torchDtype,
    bosTokenId: optId(raw['bos_token_id'], 'bos_token_id'),
    eosTokenIds,
    padTokenId: optId(raw['pad_token_id'], 'pad_token_id'),
    numExperts,
    numExpertsPerToken: architecture === 'mixtral' ? int(raw, 'num_experts_per_tok', 2) : 0,
    raw: { ...raw },
  });
}

/**
 * Returns a raw config with `num_hidden_layers` changed and per-layer settings remapped (for expansion):
 * every array with one entry per layer (e.g. `layer_types`) takes its source layer's entry, and Qwen2's
 * scalar `max_window_layers` (layer i uses sliding-window attention iff `use_sliding_window` and
 * i >= max_window_layers) becomes the number of leading layers whose source used full attention. When
 * the new layers' kinds are no longer "full, then sliding" (a full layer's copy placed after a sliding
 * one) and sliding windows are on, a scalar cannot say it: `layer_types` is written as well, which
 * transformers (>= 4.53) reads in preference to `max_window_layers`.
 */
export function withLayerCount(raw: Readonly<Record<string, unknown>>, newCount: number, sourceOfNewIndex: readonly number[]): Record<string, unknown> {
  const out: Record<string, unknown> = { ...raw, num_hidden_layers: newCount };
  const oldCount = raw['num_hidden_layers'];
  for (const [k, v] of Object.entries(raw)) {
    if (Array.isArray(v) && v.length === oldCount && k !== 'architectures') {
      out[k] = sourceOfNewIndex.map((src) => v[src]);
    }
  }
  const mwl = raw['max_window_layers'];
  if (typeof mwl === 'number' && Number.isInteger(mwl) && mwl >= 0) {
    const full = sourceOfNewIndex.map((src) => src < mwl);
    const lead = full.indexOf(false);
    const leading = lead < 0 ? full.length : lead;
    out['max_window_layers'] = leading;
    const expressible = full.slice(leading).every((f) => !f);
    if (!expressible && raw['use_sliding_window'] === true && !Array.isArray(raw['layer_types'])) {
      out['layer_types'] = full.map((f) => (f ? 'full_attention' : 'sliding_attention'));
    }
  }
  return out;
}

/** Parameter counts per group, for `inspect`. */
export interface ParamCounts {
  embedding: number;
  perLayer: number;
  layers: number;
  finalNorm: number;
  lmHead: number;
  total: number;
}

export function countParameters(c: LlamaConfig): ParamCounts {
  const q = c.numAttentionHeads * c.headDim;
  const kv = c.numKeyValueHeads * c.headDim;
  const attn = c.hiddenSize * q + 2 * c.hiddenSize * kv + q * c.hiddenSize + (c.qkvBias ? q + 2 * kv : 0) + (c.oBias ? c.hiddenSize : 0);
  const mlpOne = 3 * c.hiddenSize * c.intermediateSize + (c.mlpBias ? 2 * c.intermediateSize + c.hiddenSize : 0);
  const mlp = c.numExperts > 0 ? c.numExperts * mlpOne + c.hiddenSize * c.numExperts : mlpOne;
  const perLayer = attn + mlp + 2 * c.hiddenSize;
  const embedding = c.vocabSize * c.hiddenSize;
  const lmHead = c.tieWordEmbeddings ? 0 : embedding;
  const layers = perLayer * c.numHiddenLayers;
  return { embedding, perLayer, layers, finalNorm: c.hiddenSize, lmHead, total: embedding + layers + c.hiddenSize + lmHead };
}
