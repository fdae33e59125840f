/**
 * RMSNorm, y = x / sqrt(mean(x^2) + eps) * w over the last axis, and its VJP.
 * With r = 1 / sqrt(mean(x^2) + eps), xh = x r:  dw = sum over rows of dy * xh;
 * dx = r (dxh - xh mean(dxh * xh)), dxh = dy * w.
 */
import type { Tape, OpGrad } from './tape';

interface Saved {
  readonly w: string;
  readonly r: string;
  readonly xh: string;
}

const AXIS_LAST = { axes: [-1], keepdims: 1 };

export const rmsNormGrad: OpGrad<Saved> = {
  kind: 'RmsNorm',
  gradFunc(g, [dy], { w, r, xh }, [needX, needW]) {
    const dw = needW ? g.op1('ReduceSum', [g.op1('Mul', [dy!, xh]), g.i64([0])], { keepdims: 0 }) : undefined;
    if (!needX) return [undefined, dw];
    const dxh = g.op1('Mul', [dy!, w]);
    const m = g.op1('ReduceMean', [g.op1('Mul', [dxh, xh])], AXIS_LAST);
    return [g.op1('Mul', [r, g.op1('Sub', [dxh, g.op1('Mul', [xh, m])])]), dw];
  },
};

/** RMSNorm of x [N, D] with weight w [D]. */
export function rmsNorm(tape: Tape, x: string, w: string, eps: number): string {
  const g = tape.g;
  const ms = g.op1('ReduceMean', [g.op1('Mul', [x, x])], AXIS_LAST);
  const r = g.op1('Reciprocal', [g.op1('Sqrt', [g.op1('Add', [ms, g.f32([eps], true)])])]);
  const xh = g.op1('Mul', [x, r]);
  const y = g.op1('Mul', [xh, w]);
  tape.record(rmsNormGrad, [x, w], [y], { w, r, xh });
  return y;
}
