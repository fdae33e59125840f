/**
 * Linear projections of one input, y_k = x W_k^T + b_k (HF [out, in] weights, Gemm with transB), and
 * their VJP: dW_k = dy_k^T x, db_k = sum over rows of dy_k, dx = sum_k dy_k W_k.
 *
 * Several projections of the same input (q/k/v, gate/up) are one op: the forward runs separate Gemms (a
 * fused Gemm would need a Split, which copies slowly in ORT); the backward fuses them: dx = concat(dy) ·
 * concat(W) as one MatMul (ORT constant-folds the Concat of frozen weights), and when every weight is
 * trainable their gradients come from one Gemm and a Split.
 */
import type { Tape, OpGrad } from './tape';

export interface LinearMap {
  /** Weight [out, in]. */
  readonly w: string;
  readonly b?: string | undefined;
  /** Output width (rows of w). */
  readonly out: number;
}

interface Saved {
  readonly x: string;
  readonly ps: readonly LinearMap[];
}

export const linearGrad: OpGrad<Saved> = {
  kind: 'Linear',
  gradFunc(g, dys, { x, ps }, needs) {
    const n = ps.length;
    const needX = needs[0]!;
    const needW = ps.map((_, k) => needs[1 + k]!);
    const biasAt: number[] = [];
    let next = 1 + n;
    for (const p of ps) biasAt.push(p.b ? next++ : -1);
    const dxs: (string | undefined)[] = new Array<string | undefined>(next).fill(undefined);
    const all = dys.every((d) => d !== undefined);
    // Several projections with every output gradient present: the concatenated gradient serves both sides.
    const dY = n > 1 && all && (needX || needW.every(Boolean)) ? g.op1('Concat', dys as string[], { axis: 1 }) : n === 1 ? dys[0] : undefined;
    if (n > 1 && dY && needW.every(Boolean)) {
      const parts = g.op('Split', [g.op1('Gemm', [dY, x], { transA: 1 }), g.i64(ps.map((p) => p.out))], { axis: 0 }, n);
      parts.forEach((p, k) => (dxs[1 + k] = p));
    } else {
      ps.forEach((_, k) => {
        if (needW[k] && dys[k]) dxs[1 + k] = g.op1('Gemm', [dys[k]!, x], { transA: 1 });
      });
    }
    ps.forEach((_, k) => {
      const at = biasAt[k]!;
      if (at >= 0 && needs[at] && dys[k]) dxs[at] = g.op1('ReduceSum', [dys[k]!, g.i64([0])], { keepdims: 0 });
    });
    if (needX) {
      if (dY) dxs[0] = g.op1('MatMul', [dY, n === 1 ? ps[0]!.w : g.op1('Concat', ps.map((p) => p.w), { axis: 0 })]);
      else {
        const parts = ps.flatMap((p, k) => (dys[k] ? [g.op1('MatMul', [dys[k]!, p.w])] : []));
        dxs[0] = parts.length === 0 ? undefined : parts.length === 1 ? parts[0] : g.op1('Sum', parts);
      }
    }
    return dxs;
  },
};

/** y_k = x W_k^T + b_k for x [N, in]; returns one [N, out_k] output per projection. */
export function linear(tape: Tape, x: string, ps: readonly LinearMap[]): string[] {
  const g = tape.g;
  const outs = ps.map((p) => g.op1('Gemm', p.b ? [x, p.w, p.b] : [x, p.w], { transB: 1 }));
  const biases = ps.flatMap((p) => (p.b ? [p.b] : []));
  tape.record(linearGrad, [x, ...ps.map((p) => p.w), ...biases], outs, { x, ps });
  return outs;
}
