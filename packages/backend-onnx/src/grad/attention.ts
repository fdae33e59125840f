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
 *
 * Causal blocks: the queries are split in BLOCKS blocks of positions [t0, t1), each scored against keys
 * [0, t1) only: every key past t1 is masked for them (score + float minimum, whose exp is exactly 0), so
 * dropping those keys changes no value. Each block runs the forward and backward above on its own rows;
 * the query-side results (ctx, dQ) are concatenated, the key-side ones (dK, dV over [0, t1)) zero-padded
 * and summed. The score-sized work is 3/4 of the full T x T for two blocks; more blocks cost more in the
 * splits, pads and smaller products than they save (measured 2% slower with four at the bench shape).
 *
 * Products with a transposed operand (K^T, V^T, dS^T, P^T) and the score scale are attributes of
 * com.microsoft FusedMatMul, so no transposed copy is written: ORT's own MatMul fusions had caught only
 * the products without a scale (bench:train-onnx shape: Transpose kernels 16 -> 6.6 ms per step).
 */
import { MS_DOMAIN, type GraphBuilder } from '../graph';
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
  /** The score scale (1/sqrt(hd)). */
  readonly scale: number;
}

/** Causal query blocks (see the header): score-sized work (BLOCKS + 1) / (2 BLOCKS) of the full T x T. */
export const BLOCKS = 2;

/** One causal block: query positions [t0, t1), keys [0, t1). */
interface Block {
  readonly t0: number;
  readonly t1: number;
  /** Query rows [B, KV, (t1 - t0) * G, hd], keys / values [B, KV, t1, hd]. */
  readonly q: string;
  readonly k: string;
  readonly v: string;
  readonly P: string;
  /** P V [B, KV, (t1 - t0) * G, hd]. */
  readonly ctx: string;
}

interface Saved {
  readonly o: AttentionOptions;
  readonly blocks: readonly Block[];
  /** The blocks' P V concatenated [B, KV, T*G, hd]. */
  readonly ctx: string;
}

/**
 * a b (or a^T, b^T as asked) times alpha over the batch axes, as com.microsoft FusedMatMul: the
 * transposes and the scale are read by the GEMM itself instead of being materialized (ORT's own fusions
 * found only some of them).
 */
function matmul(g: GraphBuilder, a: string, b: string, { transA = 0, transB = 0, alpha = 1 }: { transA?: number; transB?: number; alpha?: number }): string {
  return g.op('FusedMatMul', [a, b], { transA, transB, alpha: { float: alpha } }, 1, undefined, MS_DOMAIN)[0]!;
}

/** Query-position boundaries of the causal blocks (empty blocks dropped). */
function boundaries(T: number): number[] {
  const b = [0];
  for (let i = 1; i <= BLOCKS; i++) {
    const t = Math.round((i * T) / BLOCKS);
    if (t > b.at(-1)!) b.push(t);
  }
  return b;
}

export const attentionGrad: OpGrad<Saved> = {
  kind: 'Attention',
  gradFunc(g, [dy], { o, blocks, ctx }, [needQ, needK, needV]) {
    const { seqLen: T, heads: H, kvHeads: KV, headDim: hd } = o;
    const G = H / KV;
    const i64 = (v: number[]): string => g.i64(v);
    const dctx = g.op1('Reshape', [g.op1('Transpose', [g.op1('Reshape', [dy!, i64([-1, T, KV, G, hd])])], { perm: [0, 2, 1, 3, 4] }), i64([-1, KV, T * G, hd])]);
    const split = (t: string): string[] => (blocks.length === 1 ? [t] : g.op('Split', [t, i64(blocks.map((b) => (b.t1 - b.t0) * G))], { axis: 2 }, blocks.length));
    const dctxs = split(dctx);
    // scale * rowsum(dP * P), over all rows at once (then split by block: [B, KV, rows, 1])
    const rows = needQ || needK ? split(g.op1('Mul', [g.op1('ReduceSum', [g.op1('Mul', [dctx, ctx]), i64([-1])], { keepdims: 1 }), g.f32([o.scale], true)])) : [];
    /** Key-side gradients [B, KV, t1, hd] of the blocks, summed into [B, KV, T, hd] (zero-padded past t1). */
    const keySum = (parts: string[]): string => g.op1(parts.length === 1 ? 'Identity' : parts.length === 2 ? 'Add' : 'Sum', parts.map((p, i) => (blocks[i]!.t1 === T ? p : g.op1('Pad', [p, i64([0, 0, 0, 0, 0, 0, T - blocks[i]!.t1, 0])]))));
    const dqs: string[] = [];
    const dks: string[] = [];
    const dvs: string[] = [];
    blocks.forEach((b, i) => {
      const dc = dctxs[i]!;
      if (needQ || needK) {
        const dPs = matmul(g, dc, b.v, { transB: 1, alpha: o.scale }); // scale * dP
        const dSs = g.op1('Mul', [b.P, g.op1('Sub', [dPs, rows[i]!])]); // scale * dS
        if (needQ) dqs.push(g.op1('MatMul', [dSs, b.k]));
        if (needK) dks.push(matmul(g, dSs, b.q, { transA: 1 }));
      }
      if (needV) dvs.push(matmul(g, b.P, dc, { transA: 1 }));
    });
    let dq: string | undefined;
    let dk: string | undefined;
    let dv: string | undefined;
    if (needQ) {
      const dqg = dqs.length === 1 ? dqs[0]! : g.op1('Concat', dqs, { axis: 2 });
      dq = g.op1('Reshape', [g.op1('Transpose', [g.op1('Reshape', [dqg, i64([-1, KV, T, G, hd])])], { perm: [0, 2, 1, 3, 4] }), i64([-1, T, H, hd])]);
    }
    if (needK) dk = g.op1('Transpose', [keySum(dks)], { perm: [0, 2, 1, 3] });
    if (needV) dv = g.op1('Reshape', [g.op1('Transpose', [keySum(dvs)], { perm: [0, 2, 1, 3] }), i64([-1, KV * hd])]);
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
  const ts = boundaries(T);
  const n = ts.length - 1;
  const qs = n === 1 ? [qg] : g.op('Split', [qg, i64(ts.slice(1).map((t, i) => (t - ts[i]!) * G))], { axis: 2 }, n);
  const prefix = (x: string, t1: number): string => (t1 === T ? x : g.op1('Slice', [x, i64([0]), i64([t1]), i64([2])]));
  const blocks: Block[] = qs.map((qb, i) => {
    const t0 = ts[i]!;
    const t1 = ts[i + 1]!;
    const kb = prefix(kt, t1);
    const vb = prefix(vt, t1);
    // the mask rows of these queries over keys [0, t1) (a Slice of an initializer: folded by ORT)
    const mask = n === 1 ? o.mask : g.op1('Slice', [o.mask, i64([t0 * G, 0]), i64([t1 * G, t1]), i64([0, 1])]);
    const S = g.op1('Add', [matmul(g, qb, kb, { transB: 1, alpha: o.scale }), mask]);
    const P = g.op1('Softmax', [S], { axis: -1 }); // [B,KV,(t1-t0)*G,t1]
    return { t0, t1, q: qb, k: kb, v: vb, P, ctx: g.op1('MatMul', [P, vb]) };
  });
  const ctx = n === 1 ? blocks[0]!.ctx : g.op1('Concat', blocks.map((b) => b.ctx), { axis: 2 }); // [B,KV,T*G,hd]
  const y = g.op1('Reshape', [g.op1('Transpose', [g.op1('Reshape', [ctx, i64([-1, KV, T, G, hd])])], { perm: [0, 2, 1, 3, 4] }), i64([-1, H * hd])]);
  tape.record(attentionGrad, [q, k, v], [y], { o, blocks, ctx });
  return y;
}
