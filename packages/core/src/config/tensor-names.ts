/**
 * Hugging Face tensor names of LLaMA-family decoders, derived from the tensor table in `model/arch.ts`.
 * Layer membership is parsed structurally (`model.layers.<i>.<rest>`), never by substring matching.
 */
import type { LlamaConfig } from './llama-config';
import { EMBED, FINAL_NORM, LM_HEAD, layerTensorName, layerTensors, tensorInfo } from '../model/arch';

export { EMBED, FINAL_NORM, LM_HEAD, layerTensorName, parseLayerTensorName } from '../model/arch';

/** Per-layer tensor suffixes the config implies, in canonical order. */
export function layerTensorSuffixes(c: LlamaConfig): string[] {
  return layerTensors(c).map((e) => e.suffix);
}

/** Shape of a per-layer tensor (by suffix) or a global tensor; undefined when the config has no such tensor. */
export function expectedShape(c: LlamaConfig, name: string): number[] | undefined {
  return tensorInfo(c, name)?.shape;
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
