/**
 * Positions and attention masks: one rule for every backend.
 *
 * - Position of a token = number of real (mask 1) tokens before it in its row, so left- and right-padded
 *   rows give their real tokens the positions an unpadded row would (transformers' generate computes
 *   `attention_mask.cumsum(-1) - 1` for real tokens; padding positions carry no meaning).
 * - Query at sequence index q may attend key k iff k <= q (causal over sequence indices, which include
 *   padding), q - k < window for a sliding-window layer (transformers' `sliding_window_overlay`:
 *   `kv_idx > q_idx - sliding_window`), and k is a real token — or k = q, so that a padding query's row
 *   is never empty (its output is unspecified and ignored; see contracts/targets).
 * - Disallowed scores get MASK added (float32's lowest finite value, as transformers' eager attention).
 */
import { ConfigError } from '../errors';

/** Additive attention bias for disallowed keys: float32's lowest finite value (torch.finfo(float32).min). */
export const MASK = -3.4028234663852886e38;

/** Per-layer attention window (null = full causal attention). */
export type AttentionWindows = readonly (number | null)[];

type Raw = Readonly<Record<string, unknown>>;

/**
 * Each layer's attention window, as transformers computes it:
 * - Mistral / Mixtral: `sliding_window` (null = full) on every layer;
 * - Qwen2: the window is `sliding_window` when `use_sliding_window`, and applies to the layers that
 *   `layer_types` marks `sliding_attention`; without `layer_types`, to layers i >= `max_window_layers`
 *   (Qwen2Config default 28);
 * - LLaMA: none (LlamaConfig has no sliding window).
 * `defaultWindow` is the architecture's `sliding_window` when the key is absent (transformers' class
 * default: MistralConfig and Qwen2Config 4096, MixtralConfig none); an explicit null is no window.
 */
export function parseAttentionWindows(raw: Raw, architecture: string, numLayers: number, defaultWindow: number | null = null): AttentionWindows {
  const full = new Array<number | null>(numLayers).fill(null);
  const windowValue = (v: unknown): number | null => {
    if (v === undefined || v === null) return null;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw new ConfigError(`config.json "sliding_window" must be a positive integer or null, got ${JSON.stringify(v)}`);
    return v;
  };
  const given = raw['sliding_window'] === undefined ? defaultWindow : raw['sliding_window'];
  if (architecture === 'mistral' || architecture === 'mixtral') {
    const w = windowValue(given);
    return full.map(() => w);
  }
  if (architecture !== 'qwen2') return full;
  const use = raw['use_sliding_window'] ?? false;
  if (typeof use !== 'boolean') throw new ConfigError(`config.json "use_sliding_window" must be true or false, got ${JSON.stringify(use)}`);
  const w = use ? windowValue(given) : null;
  const types = raw['layer_types'];
  let sliding: boolean[];
  if (types === undefined || types === null) {
    const mwl = raw['max_window_layers'] ?? 28;
    if (typeof mwl !== 'number' || !Number.isSafeInteger(mwl) || mwl < 0) throw new ConfigError(`config.json "max_window_layers" must be a non-negative integer, got ${JSON.stringify(mwl)}`);
    sliding = full.map((_, i) => w !== null && i >= mwl);
  } else {
    if (!Array.isArray(types) || types.length !== numLayers) {
      throw new ConfigError(`config.json "layer_types" must list one entry per layer (${numLayers}), got ${JSON.stringify(types)}`);
    }
    sliding = types.map((t, i) => {
      if (t !== 'full_attention' && t !== 'sliding_attention') {
        throw new ConfigError(`config.json "layer_types[${i}]" is ${JSON.stringify(t)}; llama-pro implements "full_attention" and "sliding_attention"`, 'CONFIG_UNSUPPORTED_ATTENTION');
      }
      return t === 'sliding_attention';
    });
    const bad = sliding.indexOf(true);
    if (bad >= 0 && w === null) {
      throw new ConfigError(
        `config.json "layer_types[${bad}]" is "sliding_attention" but no window is set ("use_sliding_window" ${JSON.stringify(raw['use_sliding_window'] ?? null)}, "sliding_window" ${JSON.stringify(raw['sliding_window'] ?? null)}); transformers cannot run this config either`,
        'CONFIG_UNSUPPORTED_ATTENTION',
      );
    }
  }
  return sliding.map((s) => (s ? w : null));
}

/**
 * Positions [B*T] of T new tokens per row: the number of real tokens before each one, counting
 * `pastReal[b]` real tokens already in the row's cache.
 */
export function positionIds(mask: ArrayLike<number> | undefined, B: number, T: number, pastReal?: ArrayLike<number>): Int32Array {
  const out = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    let n = pastReal?.[b] ?? 0;
    for (let t = 0; t < T; t++) {
      out[b * T + t] = n;
      if (!mask || mask[b * T + t] !== 0) n++;
    }
  }
  return out;
}

/** Whether a query at sequence index q may attend the key at index k (the rule in the header). */
export function attends(q: number, k: number, keyIsReal: boolean, window: number | null): boolean {
  return k <= q && (window === null || q - k < window) && (keyIsReal || k === q);
}

/**
 * Additive mask [B, T, S] for T new queries at sequence indices S-T .. S-1 over S keys, from the mask of
 * all S tokens (cache and new, [B, S], 1 = real; absent = all real).
 */
export function additiveMask(fullMask: ArrayLike<number> | undefined, B: number, T: number, S: number, window: number | null): Float32Array {
  const out = new Float32Array(B * T * S).fill(MASK);
  const P = S - T;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const q = P + t;
      const row = (b * T + t) * S;
      const lo = window === null ? 0 : Math.max(0, q - window + 1);
      for (let k = lo; k <= q; k++) if (attends(q, k, !fullMask || fullMask[b * S + k] !== 0, window)) out[row + k] = 0;
    }
  }
  return out;
}

/** The distinct windows of a config (null = full), so a backend builds one mask per kind. */
export function distinctWindows(windows: AttentionWindows): (number | null)[] {
  return [...new Set(windows)];
}
