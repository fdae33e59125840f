/**
 * Linear projections of one input, y_k = x W_k^T + b_k (HF [out, in] weights, Gemm with transB), and
 * their VJP: dW_k = dy_k^T x, db_k = sum over rows of dy_k, dx = sum_k dy_k W_k.
 *
 * Several projections of the same input (q/k/v, gate/up) are one op: the forward runs separate Gemms (a
 * fused Gemm would need a Split, which copies slowly in ORT), and so does the backward: one product per
 * projection and a Sum of the [N, in] parts, rather than a Concat of the [N, out] gradients feeding one
 * product (measured ~14% less CPU for gate/up at the bench shape: the Concat copies the wide side).
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
    const dxs: (string | undefined)[] = new Array<string | undefined>(needs.length).fill(undefined);
    let biasAt = 1 + n;
    ps.forEach((p, k) => {
      const dy = dys[k];
      const at = p.b ? biasAt++ : -1;
      if (!dy) return;
      if (needs[1 + k]) dxs[1 + k] = g.op1('Gemm', [dy, x], { transA: 1 });
      if (at >= 0 && needs[at]) dxs[at] = g.op1('ReduceSum', [dy, g.i64([0])], { keepdims: 0 });
    });
    if (needs[0]) {
      const parts = ps.flatMap((p, k) => (dys[k] ? [g.op1('MatMul', [dys[k]!, p.w])] : []));
      dxs[0] = parts.length === 0 ? undefined : parts.length === 1 ? parts[0] : g.op1(parts.length === 2 ? 'Add' : 'Sum', parts);
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
