/**
 * Rotate-half rotary embedding with precomputed tables, and its VJP. For x [B, T, heads, hd]:
 * y = x * cos + swap(x) * sinS, where swap exchanges the two halves of the first `rotaryDim` channels
 * (partial rotary: the other channels stay in place, with cos 1 and sin 0 in the tables) and sinS is sin
 * with the first half negated. swap is its own transpose, so the adjoint is dx = dy * cos + swap(dy * sinS).
 * The tables carry any RoPE scaling (frequencies and attention factor), so the op is the same for every
 * rope type.
 */
import type { GraphBuilder } from '../graph';
import type { Tape, OpGrad } from './tape';

/** Initializers of one sequence's rotary tables, each [T, 1, hd]. */
export interface RopeTables {
  readonly cos: string;
  readonly sinSigned: string;
  readonly seqLen: number;
  readonly headDim: number;
  /** Rotated channels per head (even, <= headDim). */
  readonly rotaryDim: number;
}

interface Saved {
  readonly tables: RopeTables;
  readonly heads: number;
}

/**
 * swap of t [B, T, heads, hd]. With every channel rotated it is one copy: the halves as an axis of two,
 * reversed by a Slice with step -1 (instead of a Split and a Concat, two copies).
 */
function swap(g: GraphBuilder, t: string, r: RopeTables, heads: number): string {
  const half = r.rotaryDim / 2;
  const pass = r.headDim - r.rotaryDim;
  if (pass === 0) {
    const pairs = g.op1('Reshape', [t, g.i64([-1, r.seqLen, heads, 2, half])]);
    const reversed = g.op1('Slice', [pairs, g.i64([-1]), g.i64([-3]), g.i64([-2]), g.i64([-1])]);
    return g.op1('Reshape', [reversed, g.i64([-1, r.seqLen, heads, r.headDim])]);
  }
  const [a, b, rest] = g.op('Split', [t, g.i64([half, half, pass])], { axis: -1 }, 3);
  return g.op1('Concat', [b!, a!, rest!], { axis: -1 });
}

export const ropeGrad: OpGrad<Saved> = {
  kind: 'Rope',
  gradFunc(g, [dy], { tables: r, heads }, [needX]) {
    if (!needX) return [undefined];
    const dx = g.op1('Add', [g.op1('Mul', [dy!, r.cos]), swap(g, g.op1('Mul', [dy!, r.sinSigned]), r, heads)]);
    return [g.op1('Reshape', [dx, g.i64([-1, heads * r.headDim])])];
  },
};

/** RoPE of x [N = B*T, heads*hd]; returns [B, T, heads, hd]. */
export function rope(tape: Tape, x: string, tables: RopeTables, heads: number): string {
  const g = tape.g;
  const hd = tables.headDim;
  const x4 = g.op1('Reshape', [x, g.i64([-1, tables.seqLen, heads, hd])]);
  const y = g.op1('Add', [g.op1('Mul', [x4, tables.cos]), g.op1('Mul', [swap(g, x4, tables, heads), tables.sinSigned])]);
  tape.record(ropeGrad, [x], [y], { tables, heads });
  return y;
}
