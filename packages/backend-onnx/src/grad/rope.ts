/**
 * Rotate-half rotary embedding with precomputed tables, and its VJP, as ONNX Runtime's fused
 * `com.microsoft.RotaryEmbedding` (the op the inference export uses). For x [B, T, heads, hd], each pair
 * (x_i, x_{i+rd/2}) of the first `rotaryDim` channels of a head is multiplied by the 2x2 matrix
 * M = [[cos, -sin], [sin, cos]] of its position and frequency (cos and sin carry any RoPE scaling and the
 * attention factor, so the op is the same for every rope type); the other channels of a partial rotary pass
 * through. M^T = [[cos, sin], [-sin, cos]] is the same matrix with sin negated, so the adjoint
 * dx = M^T dy is the same op over the negated sin table (a rotation by -theta, times the same factor).
 * One pass per application, instead of the multiply / swap / multiply / add of the unfused form.
 */
import { MS_DOMAIN, type GraphBuilder } from '../graph';
import type { Tape, OpGrad } from './tape';

/** Initializers of one sequence's rotary tables, each [T, rotaryDim / 2] (position t's row is t). */
export interface RopeTables {
  readonly cos: string;
  readonly sin: string;
  /** -sin: the adjoint's table. */
  readonly sinNegated: string;
  readonly seqLen: number;
  readonly headDim: number;
  /** Rotated channels per head (even, <= headDim). */
  readonly rotaryDim: number;
}

interface Saved {
  readonly tables: RopeTables;
  readonly heads: number;
}

/** RotaryEmbedding of t [B, T, heads*hd] with positions 0..T-1 (a position offset of 0) and the given sin table. */
function rotary(g: GraphBuilder, t: string, r: RopeTables, sin: string, heads: number): string {
  const attrs = { interleaved: 0, num_heads: heads, ...(r.rotaryDim < r.headDim ? { rotary_embedding_dim: r.rotaryDim } : {}) };
  return g.op('RotaryEmbedding', [t, g.i64([0]), r.cos, sin], attrs, 1, undefined, MS_DOMAIN)[0]!;
}

export const ropeGrad: OpGrad<Saved> = {
  kind: 'Rope',
  gradFunc(g, [dy], { tables: r, heads }, [needX]) {
    if (!needX) return [undefined];
    const dx = rotary(g, g.op1('Reshape', [dy!, g.i64([-1, r.seqLen, heads * r.headDim])]), r, r.sinNegated, heads);
    return [g.op1('Reshape', [dx, g.i64([-1, heads * r.headDim])])];
  },
};

/** RoPE of x [N = B*T, heads*hd]; returns [B, T, heads, hd]. */
export function rope(tape: Tape, x: string, tables: RopeTables, heads: number): string {
  const g = tape.g;
  const hd = tables.headDim;
  const x3 = g.op1('Reshape', [x, g.i64([-1, tables.seqLen, heads * hd])]);
  const y = g.op1('Reshape', [rotary(g, x3, tables, tables.sin, heads), g.i64([-1, tables.seqLen, heads, hd])]);
  tape.record(ropeGrad, [x], [y], { tables, heads });
  return y;
}
