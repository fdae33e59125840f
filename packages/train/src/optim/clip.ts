/** Global-norm gradient clipping (as `torch.nn.utils.clip_grad_norm_`). */

/** L2 norm over all gradients together (accumulated in float64). */
export function globalNorm(grads: Iterable<Float32Array>): number {
  let s = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) s += g[i]! * g[i]!;
  return Math.sqrt(s);
}

/**
 * Scales every gradient in place by `maxNorm / (norm + 1e-6)` when the global norm exceeds `maxNorm`.
 * Returns the norm before clipping. `maxNorm <= 0` or non-finite disables clipping.
 */
export function clipGlobalNorm(grads: Iterable<Float32Array>, maxNorm: number): number {
  const list = [...grads];
  const norm = globalNorm(list);
  if (maxNorm > 0 && Number.isFinite(maxNorm) && norm > maxNorm) {
    const scale = maxNorm / (norm + 1e-6);
    for (const g of list) for (let i = 0; i < g.length; i++) g[i] = g[i]! * scale;
  }
  return norm;
}
