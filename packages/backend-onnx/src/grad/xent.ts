/**
 * The LM head and the mean next-token cross-entropy, as one op (so the [N, V] logits are materialized
 * once forward and once backward), and its VJP.
 *
 * Forward: logits = x W^T [N, V], P = softmax(logits) (which the backward needs anyway), and the
 * per-row loss nll = lse - logit[target] = -log(P[target]), read from the softmax output: no further
 * pass over the [N, V] tensors. That is exact to float32 rounding while P[target] is a normal float32
 * computed to relative precision; it is not once exp(logit[target] - max) leaves the normal range
 * (denormal or zero, and training sessions flush denormals to zero). So the graph checks the smallest
 * P[target] over the valid rows against SAFE_PROB and, only when some row is below it, runs the
 * max/log-sum-exp path in an If branch: P_max = 1 / sum(exp(x - max)) >= 1/V never underflows, so
 * lse = max - log(P_max) (ORT's ReduceLogSumExp is a slow single pass with exp+log per element), at the
 * cost of two ReduceMax passes over [N, V].
 * loss = sum(valid * nll) / max(count(valid), 1); targets equal to `ignoreIndex` are not valid.
 *
 * Backward: d loss / d logits = wrow * (softmax - onehot(target)) with wrow = dy * valid / count. The
 * per-row factor is applied on the [N, D] side: dx = wrow * (G W) and dW = G^T (wrow * x), with
 * G = softmax - onehot (the softmax minus the valid rows' one-hot, scattered in place). A frozen head needs
 * only G W = P W - W[target]: a row gather instead of a second [N, V] tensor.
 */
import { DT } from '../graph';
import type { Tape, OpGrad } from './tape';

interface Saved {
  readonly x: string;
  readonly w: string;
  readonly probs: string;
  readonly safe: string;
  readonly validF: string;
  readonly denom: string;
}

export const xentGrad: OpGrad<Saved> = {
  kind: 'CrossEntropy',
  gradFunc(g, [dy], { x, w, probs, safe, validF, denom }, [needX, needW]) {
    const wrow = g.op1('Mul', [g.op1('Div', [validF, denom]), dy!]); // [N,1]
    let dx: string | undefined;
    let dw: string | undefined;
    if (needW) {
      const G0 = g.op1('ScatterElements', [probs, safe, g.op1('Neg', [validF])], { axis: 1, reduction: 'add' });
      dw = g.op1('Gemm', [G0, g.op1('Mul', [x, wrow])], { transA: 1 });
      if (needX) dx = g.op1('Mul', [g.op1('MatMul', [G0, w]), wrow]);
    } else if (needX) {
      const picked = g.op1('Gather', [w, g.op1('Reshape', [safe, g.i64([-1])])], { axis: 0 }); // [N,D]
      dx = g.op1('Mul', [g.op1('Sub', [g.op1('MatMul', [probs, w]), picked]), wrow]);
    }
    return [dx, dw, undefined];
  },
};

/**
 * The smallest P[target] read directly: 2^-100 (~7.9e-31). Then exp(logit[target] - max) = P[target] * sum
 * (sum in [1, V]) is at least that, a normal float32 (>= 1.2e-38) with 2^26 to spare, which ORT's
 * exp and division compute to a few ulp: -log(P[target]) is then off by a few 1e-7 absolute, the same
 * rounding as lse - logit[target]. Below it the exact max/log-sum-exp branch runs.
 */
export const SAFE_PROB = 2 ** -100;

/**
 * Mean cross-entropy of the logits x W^T (x [N, D], W [V, D]) against flat targets [N] (int64);
 * returns the scalar loss, named `name`.
 */
export function headCrossEntropy(tape: Tape, x: string, w: string, targets: string, ignoreIndex: number, name: string): string {
  const g = tape.g;
  const logits = g.op1('Gemm', [x, w], { transB: 1 }); // [N,V]
  const probs = g.op1('Softmax', [logits], { axis: -1 });
  const validB = g.op1('Not', [g.op1('Equal', [targets, g.i64([ignoreIndex], true)])]);
  const safe = g.op1('Unsqueeze', [g.op1('Where', [validB, targets, g.i64([0], true)]), g.i64([1])]); // [N,1]
  const valid1 = g.op1('Unsqueeze', [validB, g.i64([1])]); // [N,1]
  const validF = g.op1('Cast', [valid1], { to: DT.FLOAT }); // [N,1]
  // P[target] of the valid rows, 1 on the others (whose log is 0, never -inf times 0)
  const picked = g.op1('Where', [valid1, g.op1('GatherElements', [probs, safe], { axis: 1 }), g.f32([1], true)]); // [N,1]
  const direct = g.op1('GreaterOrEqual', [g.op1('ReduceMin', [picked], { keepdims: 0 }), g.f32([SAFE_PROB], true)]);
  const fromProbs = g.branch('nll_from_probs', () => [g.op1('Neg', [g.op1('Log', [picked])])]);
  const fromMax = g.branch('nll_from_max', () => {
    const lse = g.op1('Sub', [g.op1('ReduceMax', [logits], { axes: [1], keepdims: 1 }), g.op1('Log', [g.op1('ReduceMax', [probs], { axes: [1], keepdims: 1 })])]); // [N,1]
    return [g.op1('Sub', [lse, g.op1('GatherElements', [logits, safe], { axis: 1 })])];
  });
  const [nll] = g.op('If', [direct], { then_branch: { graph: fromProbs }, else_branch: { graph: fromMax } }, 1); // [N,1]
  const denom = g.op1('Max', [g.op1('ReduceSum', [validF], { keepdims: 0 }), g.f32([1], true)]);
  const loss = g.op1('Div', [g.op1('ReduceSum', [g.op1('Mul', [nll!, validF])], { keepdims: 0 }), denom], {}, name);
  tape.record(xentGrad, [x, w, targets], [loss], { x, w, probs, safe, validF, denom });
  return loss;
}
