/**
 * Rotary position embeddings: the typed `RopeScaling` read from `config.json` (both spellings) and the
 * one inverse-frequency function every backend uses.
 *
 * Spellings (transformers `RotaryEmbeddingConfigMixin.convert_rope_params_to_dict` /
 * `standardize_rope_params`): transformers >= 5 writes `rope_parameters: { rope_type, rope_theta, ... }`;
 * 4.x writes a top-level `rope_theta` and `rope_scaling: { rope_type | type, ... }` (or null). When both
 * are present `rope_scaling` wins; a `rope_theta` inside the dict wins over the top-level one; for
 * `llama3`, `yarn` and `longrope` a top-level `original_max_position_embeddings` wins over the dict's
 * (transformers gives it priority), and without either it is `max_position_embeddings`.
 *
 * Frequencies follow transformers' `modeling_rope_utils.py` (`_compute_*_parameters`) step by step in
 * float32 arithmetic (torch computes them as float32 tensors), so that cos/sin agree to the last bits.
 */
import { ConfigError } from '../errors';

export type RopeType = 'default' | 'linear' | 'dynamic' | 'yarn' | 'longrope' | 'llama3';
export const ROPE_TYPES: readonly RopeType[] = ['default', 'linear', 'dynamic', 'yarn', 'longrope', 'llama3'];

/** Rotary scaling as transformers defines it; null in `LlamaConfig.ropeScaling` means plain (default) RoPE. */
export type RopeScaling =
  | { readonly type: 'linear'; readonly factor: number }
  /** Dynamic NTK: the base grows only beyond max_position_embeddings, which llama-pro never runs (inputs are bounded by it). */
  | { readonly type: 'dynamic'; readonly factor: number }
  | {
      readonly type: 'llama3';
      readonly factor: number;
      readonly lowFreqFactor: number;
      readonly highFreqFactor: number;
      readonly originalMaxPositionEmbeddings: number;
    }
  | {
      readonly type: 'yarn';
      readonly factor: number;
      readonly originalMaxPositionEmbeddings: number;
      /** Explicit cos/sin scale, or null for the paper's default from factor / mscale / mscale_all_dim. */
      readonly attentionFactor: number | null;
      readonly betaFast: number;
      readonly betaSlow: number;
      readonly mscale: number | null;
      readonly mscaleAllDim: number | null;
      readonly truncate: boolean;
    }
  | {
      readonly type: 'longrope';
      readonly shortFactor: readonly number[];
      readonly longFactor: readonly number[];
      readonly factor: number | null;
      readonly attentionFactor: number | null;
      readonly originalMaxPositionEmbeddings: number;
    };

/** What `normalizeConfig` stores about RoPE. */
export interface RopeParams {
  readonly ropeTheta: number;
  readonly ropeScaling: RopeScaling | null;
  /** Fraction of head_dim that is rotated (transformers' `partial_rotary_factor`, default 1). */
  readonly partialRotaryFactor: number;
}

/** The config fields RoPE depends on. */
export interface RopeConfig extends RopeParams {
  readonly headDim: number;
  readonly maxPositionEmbeddings: number;
}

type Raw = Readonly<Record<string, unknown>>;

/** transformers' layer-type keys under which `rope_parameters` may be nested per layer kind. */
const ROPE_LAYER_TYPES = ['full_attention', 'sliding_attention', 'chunked_attention'];

function isObject(v: unknown): v is Raw {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/**
 * Reads the RoPE parameters from a raw config.json object (either spelling). `defaultTheta`: the
 * architecture's rope_theta when the config gives none (transformers' class default).
 */
export function parseRope(raw: Raw, maxPositionEmbeddings: number, defaultTheta = 10000): RopeParams {
  const scaling = raw['rope_scaling'];
  const params = raw['rope_parameters'];
  for (const [k, v] of [['rope_scaling', scaling], ['rope_parameters', params]] as const) {
    if (v !== undefined && v !== null && !isObject(v)) throw new ConfigError(`config.json "${k}" must be an object or null, got ${JSON.stringify(v)}`);
  }
  const usesScaling = isObject(scaling) && Object.keys(scaling).length > 0;
  const key = usesScaling ? 'rope_scaling' : 'rope_parameters';
  const d: Raw = usesScaling ? scaling : isObject(params) ? params : {};
  if (ROPE_LAYER_TYPES.some((t) => isObject(d[t]))) {
    throw new ConfigError(`config.json "${key}" holds per-layer-type RoPE parameters (${Object.keys(d).join(', ')}); llama-pro supports one RoPE for all layers`, 'CONFIG_UNSUPPORTED_ROPE');
  }
  const field = (name: string): unknown => d[name];
  const num = (name: string, fallback?: number | null, positive = true): number => {
    const v = field(name) ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || (positive && v <= 0)) {
      throw new ConfigError(`config.json "${key}.${name}" must be a ${positive ? 'positive ' : ''}number, got ${JSON.stringify(v ?? null)}`);
    }
    return v;
  };
  const optNum = (name: string): number | null => (field(name) === undefined || field(name) === null ? null : num(name));
  const theta = d['rope_theta'] ?? raw['rope_theta'] ?? defaultTheta;
  if (typeof theta !== 'number' || !Number.isFinite(theta) || theta <= 0) {
    throw new ConfigError(`config.json "rope_theta" must be a positive number, got ${JSON.stringify(theta)}`);
  }
  const prf = d['partial_rotary_factor'] ?? raw['partial_rotary_factor'] ?? 1;
  if (typeof prf !== 'number' || !(prf > 0 && prf <= 1)) {
    throw new ConfigError(`config.json "partial_rotary_factor" must be a number in (0, 1], got ${JSON.stringify(prf)}`);
  }
  const typeKey = (d['rope_type'] ?? null) === null && (d['type'] ?? null) !== null ? 'type' : 'rope_type'; // the key the message names
  const typeRaw = d['rope_type'] ?? d['type'] ?? 'default';
  if (typeof typeRaw !== 'string' || !(ROPE_TYPES as readonly string[]).includes(typeRaw)) {
    throw new ConfigError(
      `config.json "${key}.${typeKey}" is ${JSON.stringify(typeRaw)}, which llama-pro does not implement (known: ${ROPE_TYPES.join(', ')})`,
      'CONFIG_UNSUPPORTED_ROPE',
    );
  }
  const type = typeRaw as RopeType;
  // transformers' standardize_rope_params (run again by every _compute_*_parameters): a top-level
  // original_max_position_embeddings (Phi-3 style) overrides the dict's; else the dict's; else max_position_embeddings.
  const top = raw['original_max_position_embeddings'];
  const orig = (): number => {
    const fromTop = top !== undefined && top !== null;
    const v = fromTop ? top : (field('original_max_position_embeddings') ?? maxPositionEmbeddings);
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
      throw new ConfigError(`config.json "${fromTop ? '' : `${key}.`}original_max_position_embeddings" must be a positive integer, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const factorList = (name: string): number[] => {
    const v = field(name);
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'number' || !Number.isFinite(x) || x <= 0)) {
      throw new ConfigError(`config.json "${key}.${name}" must be a list of positive numbers, got ${JSON.stringify(v ?? null)}`);
    }
    return v as number[];
  };
  let ropeScaling: RopeScaling | null;
  switch (type) {
    case 'default':
      ropeScaling = null;
      break;
    case 'linear':
    case 'dynamic':
      ropeScaling = { type, factor: num('factor') };
      break;
    case 'llama3':
      ropeScaling = { type, factor: num('factor'), lowFreqFactor: num('low_freq_factor'), highFreqFactor: num('high_freq_factor'), originalMaxPositionEmbeddings: orig() };
      if (ropeScaling.highFreqFactor === ropeScaling.lowFreqFactor) throw new ConfigError(`config.json "${key}": llama3 high_freq_factor must differ from low_freq_factor (both ${ropeScaling.lowFreqFactor})`);
      break;
    case 'yarn': {
      const o = orig();
      const truncate = field('truncate') ?? true;
      if (typeof truncate !== 'boolean') throw new ConfigError(`config.json "${key}.truncate" must be true or false, got ${JSON.stringify(truncate)}`);
      ropeScaling = {
        type,
        // transformers: a null factor means max_position_embeddings / original_max_position_embeddings.
        factor: field('factor') === undefined || field('factor') === null ? maxPositionEmbeddings / o : num('factor'),
        originalMaxPositionEmbeddings: o,
        attentionFactor: optNum('attention_factor'),
        // transformers: `beta_fast or 32`, `beta_slow or 1`.
        betaFast: field('beta_fast') ? num('beta_fast') : 32,
        betaSlow: field('beta_slow') ? num('beta_slow') : 1,
        mscale: optNum('mscale'),
        mscaleAllDim: optNum('mscale_all_dim'),
        truncate,
      };
      break;
    }
    case 'longrope':
      ropeScaling = { type, shortFactor: factorList('short_factor'), longFactor: factorList('long_factor'), factor: optNum('factor'), attentionFactor: optNum('attention_factor'), originalMaxPositionEmbeddings: orig() };
      break;
  }
  return { ropeTheta: theta, ropeScaling, partialRotaryFactor: prf };
}

/** Number of rotated channels per head: int(head_dim * partial_rotary_factor), as transformers computes it. */
export function rotaryDim(c: RopeConfig): number {
  return Math.floor(c.headDim * c.partialRotaryFactor);
}

const f = Math.fround;

/** base ** (arange(0, dim, 2) / dim) in float32: the shared first step of every rope type. */
function posFreqs(base: number, dim: number): Float32Array {
  const out = new Float32Array(dim / 2);
  const b = f(base);
  for (let i = 0; i < out.length; i++) out[i] = f(Math.pow(b, f((2 * i) / dim)));
  return out;
}

/**
 * llama3 scaling as one divisor per frequency (length headDim / 2, for a `llama3` RopeScaling): 1 where the
 * wavelength is below `original / high_freq_factor`, `factor` above `original / low_freq_factor`, and
 * 1 / ((1 - smooth) / factor + smooth) between. This is the form llama.cpp takes it in, the GGUF `rope_freqs`
 * tensor (its converter's LlamaModel.generate_extra_tensors, which computes the same float32 tensor steps as here);
 * the inverse frequencies llama-pro itself runs come from `ropeFrequencies`.
 */
export function llama3RopeFactors(c: RopeConfig): Float32Array {
  const s = c.ropeScaling;
  if (s?.type !== 'llama3') throw new ConfigError(`llama3 rope factors need rope_type llama3, got ${s ? s.type : 'default'}`);
  const inv = posFreqs(c.ropeTheta, c.headDim).map((p) => f(1 / p));
  const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  return inv.map((x) => {
    const wavelen = f(f(2 * Math.PI) / x);
    if (wavelen < highWavelen) return 1;
    if (wavelen > lowWavelen) return s.factor;
    const smooth = f(f(f(s.originalMaxPositionEmbeddings / wavelen) - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor));
    return f(1 / f(f(f(1 - smooth) / s.factor) + smooth));
  });
}

/**
 * Inverse frequencies (length rotaryDim / 2) and the attention scaling transformers multiplies cos and
 * sin by (1 except for yarn and longrope). `seqLen` (the largest position + 1 of a forward) matters only
 * for longrope, which switches from short to long factors beyond its original length.
 */
export function ropeFrequencies(c: RopeConfig, seqLen = 0): { invFreq: Float32Array; attentionScaling: number } {
  const dim = rotaryDim(c);
  const s = c.ropeScaling;
  const pf = posFreqs(c.ropeTheta, dim);
  const inv = pf.map((p) => f(1 / p));
  if (!s || s.type === 'dynamic') return { invFreq: inv, attentionScaling: 1 };
  switch (s.type) {
    case 'linear':
      return { invFreq: inv.map((x) => f(x / s.factor)), attentionScaling: 1 };
    case 'llama3': {
      const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
      const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
      const out = new Float32Array(inv.length);
      for (let i = 0; i < inv.length; i++) {
        const x = inv[i]!;
        const wavelen = f(f(2 * Math.PI) / x);
        const llama = wavelen > lowWavelen ? f(x / s.factor) : x;
        if (wavelen < highWavelen || wavelen > lowWavelen) out[i] = llama;
        else {
          const smooth = f(f(f(s.originalMaxPositionEmbeddings / wavelen) - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor));
          out[i] = f(f(f(1 - smooth) * llama) / s.factor + f(smooth * llama));
        }
      }
      return { invFreq: out, attentionScaling: 1 };
    }
    case 'yarn': {
      const getMscale = (scale: number, m = 1): number => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1);
      let attention = s.attentionFactor;
      if (attention === null) attention = s.mscale && s.mscaleAllDim ? getMscale(s.factor, s.mscale) / getMscale(s.factor, s.mscaleAllDim) : getMscale(s.factor);
      const base = c.ropeTheta;
      const corrDim = (rot: number): number => (dim * Math.log(s.originalMaxPositionEmbeddings / (rot * 2 * Math.PI))) / (2 * Math.log(base));
      let low = corrDim(s.betaFast);
      let high = corrDim(s.betaSlow);
      if (s.truncate) {
        low = Math.floor(low);
        high = Math.ceil(high);
      }
      low = Math.max(low, 0);
      high = Math.min(high, dim - 1);
      if (low === high) high += 0.001; // transformers: prevent singularity
      const out = new Float32Array(inv.length);
      for (let i = 0; i < inv.length; i++) {
        const extrapolation = inv[i]!;
        const interpolation = f(1 / f(s.factor * pf[i]!));
        const ramp = Math.min(1, Math.max(0, f(f(i - low) / f(high - low))));
        const extrapolationFactor = f(1 - ramp);
        out[i] = f(f(interpolation * f(1 - extrapolationFactor)) + f(extrapolation * extrapolationFactor));
      }
      return { invFreq: out, attentionScaling: attention };
    }
    case 'longrope': {
      const factor = s.factor ?? c.maxPositionEmbeddings / s.originalMaxPositionEmbeddings;
      const attention = s.attentionFactor ?? (factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(s.originalMaxPositionEmbeddings)));
      const ext = seqLen > s.originalMaxPositionEmbeddings ? s.longFactor : s.shortFactor;
      if (ext.length !== inv.length) throw new ConfigError(`rope longrope factors have ${ext.length} entries; rotary dim ${dim} needs ${inv.length}`);
      return { invFreq: pf.map((p, i) => f(1 / f(f(ext[i]!) * p))), attentionScaling: attention };
    }
  }
}

/**
 * cos and sin for rotate-half RoPE at the given positions: row r holds cat(freqs, freqs) of
 * `positions[r]`, each [rotaryDim] wide, multiplied by the attention scaling (float32, like transformers).
 */
export function cosSin(c: RopeConfig, positions: ArrayLike<number>, seqLen = 0): { cos: Float32Array; sin: Float32Array; width: number } {
  const { invFreq, attentionScaling } = ropeFrequencies(c, seqLen);
  const half = invFreq.length;
  const w = 2 * half;
  const a = f(attentionScaling);
  const cos = new Float32Array(positions.length * w);
  const sin = new Float32Array(positions.length * w);
  for (let r = 0; r < positions.length; r++) {
    const pos = f(positions[r]!);
    for (let i = 0; i < half; i++) {
      const angle = f(invFreq[i]! * pos);
      const cv = f(f(Math.cos(angle)) * a);
      const sv = f(f(Math.sin(angle)) * a);
      cos[r * w + i] = cv;
      cos[r * w + half + i] = cv;
      sin[r * w + i] = sv;
      sin[r * w + half + i] = sv;
    }
  }
  return { cos, sin, width: w };
}
