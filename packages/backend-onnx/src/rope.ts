/**
 * Rotary-embedding inverse frequencies, as Hugging Face computes them (float32), including the
 * `linear` and `llama3` rope_scaling variants. Other scaling types are refused.
 */
import { ConfigError, type LlamaConfig } from '@llama-pro/core';

function numberField(s: Readonly<Record<string, unknown>>, key: string, fallback?: number): number {
  const v = s[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(`rope_scaling.${key} must be a number, got ${JSON.stringify(v)}`);
  return v;
}

/** inv_freq[i] = 1 / theta^(2i / headDim), with rope_scaling applied; length headDim / 2. */
export function ropeInvFreq(c: LlamaConfig): Float32Array {
  const half = c.headDim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(c.ropeTheta, (2 * i) / c.headDim);
  const s = c.ropeScaling;
  if (!s) return inv;
  const type = (s['rope_type'] ?? s['type'] ?? 'default') as string;
  if (type === 'default') return inv;
  if (type === 'linear') {
    const factor = numberField(s, 'factor');
    for (let i = 0; i < half; i++) inv[i] = inv[i]! / factor;
    return inv;
  }
  if (type === 'llama3') {
    const factor = numberField(s, 'factor');
    const low = numberField(s, 'low_freq_factor', 1);
    const high = numberField(s, 'high_freq_factor', 4);
    const oldCtx = numberField(s, 'original_max_position_embeddings', 8192);
    const lowWavelen = oldCtx / low;
    const highWavelen = oldCtx / high;
    for (let i = 0; i < half; i++) {
      const f = inv[i]!;
      const wavelen = (2 * Math.PI) / f;
      if (wavelen > lowWavelen) inv[i] = f / factor;
      else if (wavelen >= highWavelen) {
        const smooth = (oldCtx / wavelen - low) / (high - low);
        inv[i] = (1 - smooth) * (f / factor) + smooth * f;
      }
    }
    return inv;
  }
  throw new ConfigError(`rope_scaling type "${type}" is not supported by the onnx backend (supported: default, linear, llama3)`, 'CONFIG_UNSUPPORTED_ROPE');
}
