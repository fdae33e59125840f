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
  readonly width: number;
}

function swap(g: GraphBuilder, t: string, r: RopeTables): string {
  const half = r.rotaryDim / 2;
  const pass = r.headDim - r.rotaryDim;
  const [a, b, rest] = g.op('Split', [t, g.i64(pass > 0 ? [half, half, pass] : [half, half])], { axis: -1 }, pass > 0 ? 3 : 2);
  return g.op1('Concat', rest ? [b!, a!, rest] : [b!, a!], { axis: -1 });
}

export const ropeGrad: OpGrad<Saved> = {
  kind: 'Rope',
  gradFunc(g, [dy], { tables: r, width }, [needX]) {
    if (!needX) return [undefined];
    const dx = g.op1('Add', [g.op1('Mul', [dy!, r.cos]), swap(g, g.op1('Mul', [dy!, r.sinSigned]), r)]);
    return [g.op1('Reshape', [dx, g.i64([-1, width])])];
  },
};

/** RoPE of x [N = B*T, heads*hd]; returns [B, T, heads, hd]. */
export function rope(tape: Tape, x: string, tables: RopeTables, heads: number): string {
  const g = tape.g;
  const hd = tables.headDim;
  const x4 = g.op1('Reshape', [x, g.i64([-1, tables.seqLen, heads, hd])]);
  const y = g.op1('Add', [g.op1('Mul', [x4, tables.cos]), g.op1('Mul', [swap(g, x4, tables), tables.sinSigned])]);
  tape.record(ropeGrad, [x], [y], { tables, width: heads * hd });
  return y;
}
