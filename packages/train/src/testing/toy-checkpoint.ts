/** Writes seeded toy checkpoints (HF layout: config.json + model.safetensors) for trainer tests. */
import { Rng, encodeFromFloat32, saveModelDir, type OutputTensor, layerTensorName } from '@llama-pro/core';
import { type ToyShape, toyRawConfig, toyTensorShapes } from './toy-lm';

export interface ToyCheckpointOptions extends ToyShape {
  seed?: number;
  /** Layers whose o_proj is zero (identity blocks, as LLaMA Pro's inserted blocks). */
  zeroLayers?: number[];
  /** Extra files written next to the weights (e.g. a tokenizer or a manifest). */
  extraFiles?: Record<string, string | Uint8Array>;
}

/** Seeded toy values: embeddings/head ~ N(0, 0.5²), o_proj ~ N(0, 0.2²) (zero for `zeroLayers`), norms ≈ 1. */
export function toyValues(o: ToyCheckpointOptions): Map<string, Float32Array> {
  const rng = new Rng(o.seed ?? 0);
  const zero = new Set((o.zeroLayers ?? []).map((i) => layerTensorName(i, 'self_attn.o_proj.weight')));
  const out = new Map<string, Float32Array>();
  for (const [name, shape] of toyTensorShapes(o)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const v = new Float32Array(n);
    const isNorm = shape.length === 1;
    const std = name.includes('o_proj') ? 0.2 : 0.5;
    for (let i = 0; i < n; i++) v[i] = isNorm ? 1 + 0.1 * rng.normal() : std * rng.normal();
    if (zero.has(name)) v.fill(0);
    out.set(name, v);
  }
  return out;
}

export async function writeToyCheckpoint(dir: string, o: ToyCheckpointOptions): Promise<void> {
  const values = toyValues(o);
  const shapes = toyTensorShapes(o);
  const tensors: OutputTensor[] = [...values].map(([name, v]) => ({ name, dtype: 'F32', shape: shapes.get(name)!, source: encodeFromFloat32(v, 'F32') }));
  await saveModelDir(dir, { config: toyRawConfig(o), tensors, extraFiles: o.extraFiles });
}
