/**
 * Rotate-half rotary embedding with precomputed tables, and its VJP. For x [B, T, heads, hd]:
 * y = x * cos + swap(x) * sinS, where swap exchanges the two halves of the last axis and sinS is sin with
 * the first half negated; the adjoint is dx = dy * cos + swap(dy * sinS). The tables carry any RoPE
 * scaling (frequencies and attention factor), so the op is the same for every rope type.
 */
import type { GraphBuilder } from '../graph';
import type { Tape, OpGrad } from './tape';

/** Initializers of one sequence's rotary tables, each [T, 1, hd]. */
export interface RopeTables {
  readonly cos: string;
  readonly sinSigned: string;
  readonly seqLen: number;
  readonly headDim: number;
}

interface Saved {
  readonly tables: RopeTables;
  readonly width: number;
}

function swap(g: GraphBuilder, t: string, hd: number): string {
  const [a, b] = g.op('Split', [t, g.i64([hd / 2, hd / 2])], { axis: -1 }, 2);
  return g.op1('Concat', [b!, a!], { axis: -1 });
}

export const ropeGrad: OpGrad<Saved> = {
  kind: 'Rope',
  gradFunc(g, [dy], { tables: r, width }, [needX]) {
    if (!needX) return [undefined];
    const dx = g.op1('Add', [g.op1('Mul', [dy!, r.cos]), swap(g, g.op1('Mul', [dy!, r.sinSigned]), r.headDim)]);
    return [g.op1('Reshape', [dx, g.i64([-1, width])])];
  },
};

/** RoPE of x [N = B*T, heads*hd]; returns [B, T, heads, hd]. */
export function rope(tape: Tape, x: string, tables: RopeTables, heads: number): string {
  const g = tape.g;
  const hd = tables.headDim;
  const x4 = g.op1('Reshape', [x, g.i64([-1, tables.seqLen, heads, hd])]);
  const y = g.op1('Add', [g.op1('Mul', [x4, tables.cos]), g.op1('Mul', [swap(g, x4, hd), tables.sinSigned])]);
  tape.record(ropeGrad, [x], [y], { tables, width: heads * hd });
  return y;
}
