/** Global-norm gradient clipping (as `torch.nn.utils.clip_grad_norm_`). */

/** L2 norm over all gradients together (accumulated in float64). */
export function globalNorm(grads: Iterable<Float32Array>): number {
  let s = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) s += g[i]! * g[i]!;
  return Math.sqrt(s);
}

/**
 * The factor global-norm clipping multiplies every gradient by: `maxNorm / (norm + 1e-6)` when `norm`
 * exceeds `maxNorm`, else 1 (`maxNorm <= 0` or non-finite: off). Passed to `AdamW.update` as its
 * `gradScale`, it gives the same float32 gradients as clipping in place.
 */
export function clipScale(norm: number, maxNorm: number): number {
  return maxNorm > 0 && Number.isFinite(maxNorm) && norm > maxNorm ? maxNorm / (norm + 1e-6) : 1;
}

/**
 * Scales every gradient in place by `maxNorm / (norm + 1e-6)` when the global norm exceeds `maxNorm`.
 * Returns the norm before clipping. `maxNorm <= 0` or non-finite disables clipping.
 */
export function clipGlobalNorm(grads: Iterable<Float32Array>, maxNorm: number): number {
  const list = [...grads];
  const norm = globalNorm(list);
  const scale = clipScale(norm, maxNorm);
  if (scale !== 1) {
    for (const g of list) for (let i = 0; i < g.length; i++) g[i] = g[i]! * scale;
  }
  return norm;
}
