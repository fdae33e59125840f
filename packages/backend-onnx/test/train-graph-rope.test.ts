/**
 * The rotary op of the training graph (src/grad/rope.ts) in isolation, with full and partial rotary
 * channels: its forward against transformers' definition (`apply_rotary_pos_emb` on the first
 * rotary_dim channels of each head, `rotate_half`, the rest passed through; written here in float64),
 * and its VJP against the exact adjoint: y is linear in x, so <dL/dx, e_j> = <R, y(e_j)> for the unit
 * vectors e_j, computed with the same float64 forward.
 */
import * as ort from 'onnxruntime-node';
import { DT, GraphBuilder, encodeModel, valueInfo } from '../src/graph';
import { Tape, rope } from '../src/grad';

const T = 3;
const B = 2;
const heads = 2;

function tables(hd: number, rd: number): { cos: Float32Array; sin: Float32Array } {
  const cos = new Float32Array(T * rd);
  const sin = new Float32Array(T * rd);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < rd / 2; i++) {
      const a = t * 0.7 ** i + 0.1 * hd; // any angles: the op takes the tables as data
      cos[t * rd + i] = cos[t * rd + rd / 2 + i] = Math.fround(Math.cos(a) * 1.2);
      sin[t * rd + i] = sin[t * rd + rd / 2 + i] = Math.fround(Math.sin(a) * 1.2);
    }
  }
  return { cos, sin };
}

/** transformers: q_rot, q_pass = q[..., :rd], q[..., rd:]; q_rot * cos + rotate_half(q_rot) * sin; cat. */
function reference(x: ArrayLike<number>, hd: number, rd: number, cos: Float32Array, sin: Float32Array): Float64Array {
  const y = Float64Array.from(x);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < heads; h++) {
        const o = ((b * T + t) * heads + h) * hd;
        for (let i = 0; i < rd; i++) {
          const rot = i < rd / 2 ? -x[o + i + rd / 2]! : x[o + i - rd / 2]!;
          y[o + i] = x[o + i]! * cos[t * rd + i]! + rot * sin[t * rd + i]!;
        }
      }
    }
  }
  return y;
}

async function runOp(hd: number, rd: number, x: Float32Array, R: Float32Array) {
  const { cos, sin } = tables(hd, rd);
  const g = new GraphBuilder();
  // the op's tables: one cos / sin per rotated pair (the halves of `tables` repeat them), and -sin for the adjoint
  const half = new Float32Array(T * (rd / 2));
  const cosH = half.map((_, i) => cos[Math.floor(i / (rd / 2)) * rd + (i % (rd / 2))]!);
  const sinH = half.map((_, i) => sin[Math.floor(i / (rd / 2)) * rd + (i % (rd / 2))]!);
  const tab = {
    cos: await g.weight('cos', [T, rd / 2], cosH),
    sin: await g.weight('sin', [T, rd / 2], sinH),
    sinNegated: await g.weight('sin_negated', [T, rd / 2], sinH.map((v) => -v)),
    seqLen: T,
    headDim: hd,
    rotaryDim: rd,
  };
  g.inputs.push(valueInfo('x', DT.FLOAT, [B * T, heads * hd]), valueInfo('R', DT.FLOAT, [B, T, heads, hd]));
  const tape = new Tape(g);
  tape.watch('x');
  const y = rope(tape, 'x', tab, heads);
  g.op1('Identity', [y], {}, 'y');
  const [dx] = tape.backward(y, 'R').get('x')!;
  g.op1('Identity', [dx!], {}, 'dx');
  g.outputs.push(valueInfo('y', DT.FLOAT, [B, T, heads, hd]), valueInfo('dx', DT.FLOAT, [B * T, heads * hd]));
  const s = await ort.InferenceSession.create(encodeModel(g.model({ opset: 17, producerVersion: '1' })), { logSeverityLevel: 3 });
  try {
    const out = await s.run({ x: new ort.Tensor('float32', x, [B * T, heads * hd]), R: new ort.Tensor('float32', R, [B, T, heads, hd]) });
    return { y: out['y']!.data as Float32Array, dx: out['dx']!.data as Float32Array, cos, sin };
  } finally {
    await s.release();
  }
}

describe('grad/rope', () => {
  it.each([
    ['full rotary', 8, 8],
    ['partial rotary (4 of 12 channels)', 12, 4],
  ])('%s: forward matches the definition, VJP the exact adjoint', async (_label, hd, rd) => {
    const n = B * T * heads * hd;
    const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 1.37) * 0.9);
    const R = Float32Array.from({ length: n }, (_, i) => Math.cos(i * 0.61));
    const r = await runOp(hd, rd, x, R);
    const yRef = reference(x, hd, rd, r.cos, r.sin);
    for (let i = 0; i < n; i++) expect(Math.abs(r.y[i]! - yRef[i]!)).toBeLessThan(1e-6);
    const e = new Float64Array(n);
    for (let j = 0; j < n; j++) {
      e.fill(0);
      e[j] = 1;
      const yj = reference(e, hd, rd, r.cos, r.sin);
      let want = 0;
      for (let i = 0; i < n; i++) want += R[i]! * yj[i]!;
      expect([j, Math.abs(r.dx[j]! - want) < 1e-5]).toEqual([j, true]);
    }
  });
});
