/**
 * Causal grouped-query softmax attention with an additive mask, and its VJP.
 *
 * Layout: queries are laid out [B, KV, T*G, hd] (rows t, then g; G = H / KV) so that scores multiply
 * un-repeated K/V and dK = dS^T Q sums the group automatically. S = Q K^T * scale + mask, P = softmax(S),
 * ctx = P V. Backward: dP = dctx V^T, dV = P^T dctx, dS = P (dP - rowsum(dP * P)), dQ = dS K * scale,
 * dK = (dS * scale)^T Q. The row sum is taken as rowsum(dP * P) = rowsum(dctx * ctx) (since ctx = P V;
 * FlashAttention's backward does the same): a product over head_dim columns instead of over T keys, and
 * the scale is applied to dP and that row sum before the softmax product (the dP scale fuses into its
 * MatMul), so the [T*G, T] score-sized tensors see two elementwise passes (Sub, Mul) instead of five.
 */
import type { Tape, OpGrad } from './tape';

export interface AttentionShape {
  readonly seqLen: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
}

export interface AttentionOptions extends AttentionShape {
  /** Additive mask initializer [T*G, T] (0 where a query row may attend, the float minimum elsewhere). */
  readonly mask: string;
  /** Scalar initializer: the score scale (1/sqrt(hd)). */
  readonly scale: string;
}

interface Saved {
  readonly o: AttentionOptions;
  readonly qg: string;
  readonly kt: string;
  readonly vt: string;
  readonly P: string;
  /** P V [B, KV, T*G, hd], before the layout change. */
  readonly ctx: string;
}

const PT = [0, 1, 3, 2];

export const attentionGrad: OpGrad<Saved> = {
  kind: 'Attention',
  gradFunc(g, [dy], { o, qg, kt, vt, P, ctx }, [needQ, needK, needV]) {
    const { seqLen: T, heads: H, kvHeads: KV, headDim: hd } = o;
    const G = H / KV;
    const i64 = (v: number[]): string => g.i64(v);
    const dctx = g.op1('Reshape', [g.op1('Transpose', [g.op1('Reshape', [dy!, i64([-1, T, KV, G, hd])])], { perm: [0, 2, 1, 3, 4] }), i64([-1, KV, T * G, hd])]);
    let dq: string | undefined;
    let dk: string | undefined;
    let dv: string | undefined;
    if (needQ || needK) {
      const dPs = g.op1('Mul', [g.op1('MatMul', [dctx, g.op1('Transpose', [vt], { perm: PT })]), o.scale]); // scale * dP
      const rows = g.op1('Mul', [g.op1('ReduceSum', [g.op1('Mul', [dctx, ctx]), i64([-1])], { keepdims: 1 }), o.scale]); // scale * rowsum(dP * P)
      const dSs = g.op1('Mul', [P, g.op1('Sub', [dPs, rows])]); // scale * dS
      if (needQ) {
        const dqg = g.op1('MatMul', [dSs, kt]);
        dq = g.op1('Reshape', [g.op1('Transpose', [g.op1('Reshape', [dqg, i64([-1, KV, T, G, hd])])], { perm: [0, 2, 1, 3, 4] }), i64([-1, T, H, hd])]);
      }
      if (needK) dk = g.op1('Transpose', [g.op1('MatMul', [g.op1('Transpose', [dSs], { perm: PT }), qg])], { perm: [0, 2, 1, 3] });
    }
    if (needV) {
      const dvt = g.op1('MatMul', [g.op1('Transpose', [P], { perm: PT }), dctx]);
      dv = g.op1('Reshape', [g.op1('Transpose', [dvt], { perm: [0, 2, 1, 3] }), i64([-1, KV * hd])]);
    }
    return [dq, dk, dv];
  },
};

/** Attention of q [B, T, H, hd], k [B, T, KV, hd] (both rotated) and v [N, KV*hd]; returns ctx [N, H*hd]. */
export function attention(tape: Tape, q: string, k: string, v: string, o: AttentionOptions): string {
  const g = tape.g;
  const { seqLen: T, heads: H, kvHeads: KV, headDim: hd } = o;
  const G = H / KV;
  const i64 = (x: number[]): string => g.i64(x);
  const qg = g.op1('Reshape', [g.op1('Transpose', [g.op1('Reshape', [q, i64([-1, T, KV, G, hd])])], { perm: [0, 2, 1, 3, 4] }), i64([-1, KV, T * G, hd])]);
  const kt = g.op1('Transpose', [k], { perm: [0, 2, 1, 3] }); // [B,KV,T,hd]
  const vt = g.op1('Transpose', [g.op1('Reshape', [v, i64([-1, T, KV, hd])])], { perm: [0, 2, 1, 3] });
  const S = g.op1('Add', [g.op1('Mul', [g.op1('MatMul', [qg, g.op1('Transpose', [kt], { perm: PT })]), o.scale]), o.mask]);
  const P = g.op1('Softmax', [S], { axis: -1 }); // [B,KV,T*G,T]
  const ctx = g.op1('MatMul', [P, vt]); // [B,KV,T*G,hd]
  const y = g.op1('Reshape', [g.op1('Transpose', [g.op1('Reshape', [ctx, i64([-1, KV, T, G, hd])])], { perm: [0, 2, 1, 3, 4] }), i64([-1, H * hd])]);
  tape.record(attentionGrad, [q, k, v], [y], { o, qg, kt, vt, P, ctx });
  return y;
}
