/**
 * Seeded random LLaMA checkpoints for tests and benchmarks: any shape, dtype, sharding, tied or untied
 * head, biases, grouped-query ratio.
 */
import { normalizeConfig, type LlamaConfig } from '../config/llama-config';
import { expectedShape, expectedTensorNames } from '../config/tensor-names';
import { type FloatDType, dtypeToTorch, encodeFromFloat32 } from '../io/dtype';
import { saveModelDir, writeModelFiles, type OutputTensor, type WeightSource } from '../io/hf-dir';
import { numel, type TensorInfo } from '../io/safetensors';
import { Rng } from '../rng';

export interface TinyConfigOptions {
  hiddenSize?: number;
  intermediateSize?: number;
  layers?: number;
  heads?: number;
  kvHeads?: number;
  vocab?: number;
  maxPositions?: number;
  tie?: boolean;
  attentionBias?: boolean;
  mlpBias?: boolean;
  architecture?: 'LlamaForCausalLM' | 'MistralForCausalLM' | 'Qwen2ForCausalLM';
  dtype?: FloatDType;
  ropeTheta?: number;
  extra?: Record<string, unknown>;
}

/** A raw config.json object for a small LLaMA-family model. */
export function tinyRawConfig(o: TinyConfigOptions = {}): Record<string, unknown> {
  const arch = o.architecture ?? 'LlamaForCausalLM';
  return {
    architectures: [arch],
    model_type: arch === 'LlamaForCausalLM' ? 'llama' : arch === 'MistralForCausalLM' ? 'mistral' : 'qwen2',
    hidden_size: o.hiddenSize ?? 32,
    intermediate_size: o.intermediateSize ?? 64,
    num_hidden_layers: o.layers ?? 2,
    num_attention_heads: o.heads ?? 4,
    num_key_value_heads: o.kvHeads ?? 2,
    vocab_size: o.vocab ?? 64,
    max_position_embeddings: o.maxPositions ?? 128,
    rms_norm_eps: 1e-5,
    rope_theta: o.ropeTheta ?? 10000,
    hidden_act: 'silu',
    tie_word_embeddings: o.tie ?? false,
    attention_bias: o.attentionBias ?? false,
    mlp_bias: o.mlpBias ?? false,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: dtypeToTorch(o.dtype ?? 'F32'),
    ...o.extra,
  };
}

/** Seeded random values for one tensor (norm weights near 1, matrices ~ N(0, std)). */
export function randomTensorValues(name: string, shape: readonly number[], rng: Rng, std = 0.08): Float32Array {
  const n = numel(shape);
  const out = new Float32Array(n);
  const isNorm = name.endsWith('layernorm.weight') || name === 'model.norm.weight';
  for (let i = 0; i < n; i++) out[i] = isNorm ? 1 + 0.1 * rng.normal() : std * rng.normal();
  return out;
}

/** In-memory seeded weights (float32) for a config, in canonical order. */
export function randomWeights(config: LlamaConfig, seed = 0, std?: number): Map<string, { shape: number[]; values: Float32Array }> {
  const rng = new Rng(seed);
  const out = new Map<string, { shape: number[]; values: Float32Array }>();
  for (const name of expectedTensorNames(config)) {
    const shape = expectedShape(config, name)!;
    out.set(name, { shape, values: randomTensorValues(name, shape, rng, std) });
  }
  return out;
}

/** An in-memory float32 WeightSource over `weights` (laid out contiguously); reads return fresh copies. */
export function weightSourceOf(config: LlamaConfig, weights: ReadonlyMap<string, { readonly shape: readonly number[]; readonly values: Float32Array }>): WeightSource {
  const infos = new Map<string, TensorInfo>();
  let begin = 0;
  for (const [name, w] of weights) {
    const byteLength = numel(w.shape) * 4;
    infos.set(name, { name, dtype: 'F32', shape: [...w.shape], begin, byteLength });
    begin += byteLength;
  }
  return {
    config,
    tensorNames: () => [...weights.keys()],
    info: (name) => {
      const i = infos.get(name);
      if (!i) throw new Error(`no tensor named "${name}"`);
      return i;
    },
    readFloat32: async (name) => {
      const w = weights.get(name);
      if (!w) throw new Error(`no tensor named "${name}"`);
      return w.values.slice();
    },
  };
}

/** Seeded random weights for `config` as an in-memory WeightSource (benchmarks, backend tests). */
export function randomWeightSource(config: LlamaConfig, seed = 0, std?: number): WeightSource {
  return weightSourceOf(config, randomWeights(config, seed, std));
}

export interface RandomCheckpointOptions {
  seed?: number;
  dtype?: FloatDType;
  maxShardBytes?: number;
  std?: number;
  /** Write directly into an existing directory instead of creating `dir` atomically. */
  inPlace?: boolean;
}

/** Writes a seeded random checkpoint for `rawConfig` to `dir`. Returns the normalized config. */
export async function writeRandomCheckpoint(dir: string, rawConfig: Record<string, unknown>, o: RandomCheckpointOptions = {}): Promise<LlamaConfig> {
  const config = normalizeConfig(rawConfig);
  const dtype = o.dtype ?? 'F32';
  const weights = randomWeights(config, o.seed ?? 0, o.std);
  const tensors: OutputTensor[] = [...weights].map(([name, w]) => ({ name, dtype, shape: w.shape, source: encodeFromFloat32(w.values, dtype) }));
  const opts = { config: { ...rawConfig, torch_dtype: dtypeToTorch(dtype) }, tensors, maxShardBytes: o.maxShardBytes };
  if (o.inPlace) await writeModelFiles(dir, opts);
  else await saveModelDir(dir, opts);
  return config;
}
