/** The built-in freeze policies: new-blocks (the paper), full, layers, lora. */
import { UsageError, parseLayerTensorName } from '@llama-pro/core';
import type { FreezePlan, FreezePolicy, LayerSelection, PolicyContext } from './types';

/** Number of decoder layers, from the tensor names. */
export function layerCount(names: readonly string[]): number {
  let n = 0;
  for (const name of names) {
    const p = parseLayerTensorName(name);
    if (p) n = Math.max(n, p.layer + 1);
  }
  return n;
}

/** Resolves a layer selection to sorted, distinct indices in [0, numLayers). */
export function selectLayers(sel: LayerSelection | undefined, numLayers: number, what = 'layers'): number[] {
  if (!sel) throw new UsageError(`policy needs a layer selection (${what}: every / top / bottom / indices)`);
  const out = new Set<number>();
  const checkInt = (v: number | undefined, key: string, min: number) => {
    if (v !== undefined && (!Number.isInteger(v) || v < min)) throw new UsageError(`${what}.${key} must be an integer ≥ ${min}, got ${v}`);
  };
  checkInt(sel.every, 'every', 1);
  checkInt(sel.offset, 'offset', 0);
  checkInt(sel.top, 'top', 1);
  checkInt(sel.bottom, 'bottom', 1);
  if (sel.every !== undefined) for (let i = sel.offset ?? 0; i < numLayers; i += sel.every) out.add(i);
  if (sel.top !== undefined) for (let i = Math.max(0, numLayers - sel.top); i < numLayers; i++) out.add(i);
  if (sel.bottom !== undefined) for (let i = 0; i < Math.min(numLayers, sel.bottom); i++) out.add(i);
  for (const i of sel.indices ?? []) {
    if (!Number.isInteger(i) || i < 0 || i >= numLayers) throw new UsageError(`${what}.indices: layer ${i} does not exist; the model has layers 0..${numLayers - 1}`);
    out.add(i);
  }
  if (out.size === 0) throw new UsageError(`${what} selects no layer of the ${numLayers}; set every, top, bottom or indices`);
  return [...out].sort((a, b) => a - b);
}

function inLayers(names: readonly string[], layers: readonly number[]): string[] {
  const set = new Set(layers);
  return names.filter((n) => {
    const p = parseLayerTensorName(n);
    return p !== null && set.has(p.layer);
  });
}

export const newBlocksPolicy: FreezePolicy = {
  name: 'new-blocks',
  description: 'LLaMA Pro: train only the inserted blocks listed in the expansion manifest; everything else frozen',
  plan(ctx: PolicyContext): FreezePlan {
    if (!ctx.manifest) {
      throw new UsageError('policy "new-blocks" needs the expansion manifest (llama_pro.json) of an expanded model; run `llama-pro expand` first, or choose --policy full / layers / lora', 'USAGE');
    }
    const known = new Set(ctx.parameterNames);
    const missing = ctx.manifest.trainable.filter((n) => !known.has(n));
    if (missing.length) throw new UsageError(`the expansion manifest lists trainable tensors the model lacks, e.g. ${missing.slice(0, 3).join(', ')}; the manifest does not belong to this model`);
    if (ctx.manifest.trainable.length === 0) throw new UsageError('the expansion manifest lists no trainable tensors');
    // Model order, so optimizer state and checkpoints do not depend on the manifest's order.
    const wanted = new Set(ctx.manifest.trainable);
    const trainable = ctx.parameterNames.filter((n) => wanted.has(n));
    return { trainable, lora: [], summary: `new-blocks: ${trainable.length} tensors of new layers [${ctx.manifest.newLayers.join(', ')}]` };
  },
};

export const fullPolicy: FreezePolicy = {
  name: 'full',
  description: 'full fine-tuning: every parameter trains',
  plan(ctx) {
    return { trainable: [...ctx.parameterNames], lora: [], summary: `full: all ${ctx.parameterNames.length} tensors` };
  },
};

export const layersPolicy: FreezePolicy = {
  name: 'layers',
  description: 'train chosen existing layers (every k-th, top-N, bottom-N or explicit indices); embeddings, final norm and head frozen',
  plan(ctx) {
    const layers = selectLayers(ctx.options.layers, layerCount(ctx.parameterNames), 'policy.layers');
    const trainable = inLayers(ctx.parameterNames, layers);
    return { trainable, lora: [], summary: `layers: ${trainable.length} tensors of layers [${layers.join(', ')}]` };
  },
};

export const loraPolicy: FreezePolicy = {
  name: 'lora',
  description: 'low-rank adapters B·A (scaled alpha/rank) on chosen modules of a frozen model; merged on export',
  plan(ctx) {
    const o = ctx.options.lora;
    if (!o) throw new UsageError('policy "lora" needs lora options (rank, alpha, targets)');
    if (!Number.isInteger(o.rank) || o.rank < 1) throw new UsageError(`lora.rank must be a positive integer, got ${o.rank}`);
    if (!(o.alpha > 0)) throw new UsageError(`lora.alpha must be positive, got ${o.alpha}`);
    if (o.targets.length === 0) throw new UsageError('lora.targets is empty; name modules such as self_attn.q_proj, self_attn.v_proj');
    const n = layerCount(ctx.parameterNames);
    const layers = o.layers ? selectLayers(o.layers, n, 'policy.lora.layers') : [...Array(n).keys()];
    const layerSet = new Set(layers);
    const targets = new Set(o.targets.map((t) => `${t}.weight`));
    const names = ctx.parameterNames.filter((name) => {
      const p = parseLayerTensorName(name);
      return p !== null && layerSet.has(p.layer) && targets.has(p.suffix);
    });
    const foundSuffixes = new Set(names.map((x) => parseLayerTensorName(x)!.suffix));
    const unmatched = [...targets].filter((t) => !foundSuffixes.has(t));
    if (unmatched.length) throw new UsageError(`lora target(s) ${unmatched.map((t) => t.replace(/\.weight$/, '')).join(', ')} match no 2-D weight of the model; valid targets are module names such as self_attn.q_proj or mlp.down_proj`);
    for (const name of names) {
      const shape = ctx.shapeOf(name);
      if (shape.length !== 2) throw new UsageError(`lora target ${name} has shape [${shape}], not a matrix`);
      if (o.rank > Math.min(shape[0]!, shape[1]!)) throw new UsageError(`lora.rank ${o.rank} exceeds the smaller dimension of ${name} [${shape}]`);
    }
    return {
      trainable: [],
      lora: names.map((name) => ({ name, rank: o.rank, alpha: o.alpha })),
      summary: `lora: rank ${o.rank}, alpha ${o.alpha} on ${names.length} weights (${o.targets.join(', ')})`,
    };
  },
};

export const BUILTIN_POLICIES: readonly FreezePolicy[] = [newBlocksPolicy, fullPolicy, layersPolicy, loraPolicy];
