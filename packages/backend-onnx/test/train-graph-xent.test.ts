/**
 * The head + cross-entropy op of the training graph (src/grad/xent.ts) in isolation, against the
 * definition written here in float64 from the logits: loss = mean over the valid rows of
 * logsumexp(logits) - logits[target] (PyTorch's `cross_entropy` with `ignore_index`), d loss / d logits =
 * (softmax - onehot(target)) / count on the valid rows, pushed through logits = x W^T.
 *
 * W is the identity (V = D), so x is the logits and every value is set exactly. The op reads the loss
 * from P[target] while it is a normal float32 and otherwise takes its max/log-sum-exp branch: a row
 * whose target logit is 100 (or 120) below the row's max has P[target] ~ e^-100 ~ 4e-44 (a denormal) or
 * e^-120 (zero in float32), where -log(P[target]) would be off by ~0.1 or infinite, so these cases fail
 * unless the exact branch runs. Tolerances: float32 rounding of values up to ~120 (~1e-5 absolute).
 */
import * as ort from 'onnxruntime-node';
import { DT, GraphBuilder, encodeModel, valueInfo } from '../src/graph';
import { Tape, headCrossEntropy } from '../src/grad';

const V = 6;
const IGNORE = -100;

function reference(logits: number[][], targets: number[]): { loss: number; dLogits: number[][] } {
  const valid = targets.filter((t) => t !== IGNORE).length;
  let loss = 0;
  const dLogits = logits.map((row, r) => {
    const t = targets[r]!;
    if (t === IGNORE) return row.map(() => 0);
    const max = Math.max(...row);
    const sum = row.reduce((a, v) => a + Math.exp(v - max), 0);
    loss += max + Math.log(sum) - row[t]!;
    return row.map((v, j) => (Math.exp(v - max) / sum - (j === t ? 1 : 0)) / valid);
  });
  return { loss: loss / valid, dLogits };
}

async function runHead(logits: number[][], targets: number[], denormalsAsZero: boolean) {
  const N = logits.length;
  const g = new GraphBuilder();
  g.inputs.push(valueInfo('x', DT.FLOAT, [N, V]), valueInfo('w', DT.FLOAT, [V, V]), valueInfo('targets', DT.INT64, [N]));
  const tape = new Tape(g);
  tape.watch('x');
  tape.watch('w');
  const loss = headCrossEntropy(tape, 'x', 'w', 'targets', IGNORE, 'loss');
  const grads = tape.backward(loss, g.f32([1], true));
  g.op1('Identity', [grads.get('x')![0]!], {}, 'dx');
  g.op1('Identity', [grads.get('w')![0]!], {}, 'dw');
  g.outputs.push(valueInfo('loss', DT.FLOAT, []), valueInfo('dx', DT.FLOAT, [N, V]), valueInfo('dw', DT.FLOAT, [V, V]));
  const so: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 1, logSeverityLevel: 3, ...(denormalsAsZero ? { extra: { session: { set_denormal_as_zero: '1' } } } : {}) };
  const s = await ort.InferenceSession.create(encodeModel(g.model({ opset: 17, producerVersion: '1' })), so);
  try {
    const eye = Float32Array.from({ length: V * V }, (_, i) => (i % (V + 1) === 0 ? 1 : 0));
    const out = await s.run({
      x: new ort.Tensor('float32', Float32Array.from(logits.flat()), [N, V]),
      w: new ort.Tensor('float32', eye, [V, V]),
      targets: new ort.Tensor('int64', BigInt64Array.from(targets, BigInt), [N]),
    });
    return { loss: (out['loss']!.data as Float32Array)[0]!, dx: out['dx']!.data as Float32Array, dw: out['dw']!.data as Float32Array };
  } finally {
    await s.release();
  }
}

const TYPICAL = [
  [0.5, -1.25, 2, 0.75, -0.5, 1],
  [3, 2.5, -2, 0, 1.5, -3.5],
  [-1, -1, -1, -1, -1, 4],
  [0, 0.25, 0.5, 0.75, 1, 1.25],
];

describe('grad/xent (head + cross-entropy)', () => {
  it.each([
    ['typical logits (P[target] read directly)', TYPICAL, [2, 4, 0, IGNORE], false],
    ['a target logit 100 below the max (P[target] denormal)', [...TYPICAL, [40, 2, -60, 3, 1, 0]], [2, 4, 0, IGNORE, 2], false],
    ['a target logit 120 below the max (P[target] zero)', [...TYPICAL, [60, 2, -60, 3, 1, 0]], [2, 4, 0, 1, 2], false],
    ['a target logit 100 below the max, denormals flushed to zero', [[40, 2, -60, 3, 1, 0], ...TYPICAL], [2, 2, 4, 0, 1], true],
    ['an ignored row whose (unused) target-0 probability is zero', [...TYPICAL, [-200, 2, -60, 3, 1, 0]], [2, 4, 0, 1, IGNORE], false],
  ] as const)('%s: loss and gradients match the float64 definition', async (_label, logits, targets, daz) => {
    const L = logits.map((r) => [...r]);
    const r = await runHead(L, [...targets], daz);
    const ref = reference(L, [...targets]);
    expect(Math.abs(r.loss - ref.loss)).toBeLessThan(1e-5 * Math.max(1, ref.loss));
    // W = I: dx = dLogits W = dLogits, dW = dLogits^T x
    for (let i = 0; i < L.length; i++) for (let j = 0; j < V; j++) expect([i, j, Math.abs(r.dx[i * V + j]! - ref.dLogits[i]![j]!) < 1e-6]).toEqual([i, j, true]);
    for (let a = 0; a < V; a++) {
      for (let b = 0; b < V; b++) {
        let want = 0;
        for (let i = 0; i < L.length; i++) want += ref.dLogits[i]![a]! * L[i]![b]!;
        expect([a, b, Math.abs(r.dw[a * V + b]! - want) < 1e-5 * Math.max(1, Math.abs(want))]).toEqual([a, b, true]);
      }
    }
  });
});
