/**
 * Streaming identity verification: runs the expanded (and, where needed, the base) model through core's
 * one decoder (model/decoder) with a small eager float32 implementation of its ops, reading every weight
 * by byte range from the safetensors as the decoder reaches it (weight rows in chunks of a few MB,
 * embedding rows one token at a time). Peak memory is a weight chunk plus the activations of the verify
 * batch ([B*T, hidden] per layer), not a loaded model. The matrix products run in plain JavaScript or on
 * a MatmulKernel the caller passes (the CLI passes onnxruntime's, from backend-onnx).
 *
 * What it checks (see verifyStreaming):
 * - a byte pre-check: every original block (and every global tensor) of the expanded model is a
 *   byte-identical copy of its base tensor, and every inserted block's residual outputs (o_proj,
 *   down_proj and their biases) are exactly ±0; plus a config check (the same config but for the plan);
 * - a forward check on a probe batch: one pass of the expanded model in which every inserted block must
 *   map its input hidden state to itself exactly; that and the pre-check prove max |Δlogit| = 0.
 *   When anything fails, both models run and the hidden state after every expanded layer is compared
 *   with the base hidden state it must equal, so a difference is measured and located at its first layer.
 *
 * All passes use the same arithmetic, so identical copies give bit-identical states and a block whose
 * residual outputs are zero adds exactly ±0: on a correct expansion every difference is exactly 0.
 */
import * as fs from 'node:fs';
import { Worker } from 'node:worker_threads';
import {
  EMBED,
  HfCheckpoint,
  LM_HEAD,
  UsageError,
  checkRepresentable,
  checkTokenBatch,
  cosSin,
  decodeToFloat32,
  f16BitsToF32Bits,
  decoder,
  dtypeSize,
  layerTensorBySuffix,
  layerTensorName,
  parseLayerTensorName,
  positionIds,
  projections,
  attends,
  type DecoderOps,
  type FloatDType,
  type LlamaConfig,
  type Logits,
  type TokenBatch,
} from '@llama-pro/core';
import type { ExpansionPlan } from './plan';
import { defaultVerificationBatch, maxAbsDiff, type VerifyResult } from './verify';

/** Name of the streaming verifier in reports (in place of a backend name). */
export const STREAM_VERIFIER = 'stream';

/** Bytes of weight read (and decoded) at a time. */
const CHUNK_BYTES = 8 << 20;

/** Result of the byte pre-check. */
export interface PrecheckResult {
  /** Every original block and global tensor is byte-identical to its base tensor. */
  readonly copiesIdentical: boolean;
  /** Every inserted block's residual-output tensors (o_proj, down_proj, their biases) are ±0. */
  readonly newOutputsZero: boolean;
  /** Up to 5 expanded tensors that differ from their base tensor although they must not. */
  readonly differing: readonly string[];
  /** Up to 5 residual-output tensors of inserted blocks that hold a non-zero value. */
  readonly nonZero: readonly string[];
}

export interface StreamVerifyResult extends VerifyResult {
  readonly precheck: PrecheckResult;
  /** The first config field that differs from the base beyond the plan's changes (configDifference), or null. */
  readonly configDiffers: string | null;
  /**
   * `proof`: pre-check and config check clean, and one forward pass of the expanded model showed every
   * inserted block to be the identity on the probe, so max |Δlogit| = 0 follows without running the base
   * (see verifyStreaming); `comparison`: both models ran and were compared.
   */
  readonly method: 'proof' | 'comparison';
  /** Matrix-product kernel of the forward passes: `js` or a MatmulKernel's name. */
  readonly kernel: string;
  /**
   * max |Δ| of the hidden state after each expanded layer against the base state it must equal (by
   * `method: 'proof'` all 0: measured for the inserted blocks, implied for the byte-identical originals).
   */
  readonly layerMaxAbsDiff: readonly number[];
  /** First expanded layer whose hidden state differs (null when none does). */
  readonly firstDifferingLayer: number | null;
}

const RESIDUAL_OUTPUT_ROLES = new Set(['attn_out', 'attn_out_bias', 'mlp_out', 'mlp_out_bias']);

function readAt(fd: number, buf: Buffer, length: number, position: number): Buffer {
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, buf, done, length - done, position + done);
    if (n === 0) throw new UsageError(`unexpected end of file while verifying (read ${done} of ${length} bytes)`, 'VERIFY_READ');
    done += n;
  }
  return buf.subarray(0, length);
}

/** Calls `each(a, b)` on matching chunks of two tensors' bytes; stops early when it returns false. */
function compareChunks(a: HfCheckpoint, an: string, b: HfCheckpoint | null, bn: string, each: (x: Buffer, y: Buffer | null) => boolean, bufs: [Buffer, Buffer]): boolean {
  const ra = a.shardOf(an).byteRange(an);
  const rb = b ? b.shardOf(bn).byteRange(bn) : null;
  for (let off = 0; off < ra.length; off += CHUNK_BYTES) {
    const len = Math.min(CHUNK_BYTES, ra.length - off);
    const x = readAt(ra.fd, bufs[0], len, ra.offset + off);
    const y = rb ? readAt(rb.fd, bufs[1], len, rb.offset + off) : null;
    if (!each(x, y)) return false;
  }
  return true;
}

/** Whether every element of float bytes of element size `size` is +0 or -0 (little-endian: sign bit in the last byte). */
function allZero(bytes: Uint8Array, size: number): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i]! !== 0 && !((i % size === size - 1) && bytes[i] === 0x80)) return false;
  return true;
}

/** What the pre-check requires of one expanded tensor. */
type TensorCheck = { readonly kind: 'copy'; readonly baseName: string } | { readonly kind: 'zero'; readonly size: number } | { readonly kind: 'none' };

function tensorCheck(expanded: HfCheckpoint, plan: ExpansionPlan, name: string): TensorCheck {
  const parsed = parseLayerTensorName(name);
  const layer = parsed ? plan.layers[parsed.layer] : undefined;
  if (parsed && !layer) throw new UsageError(`expanded checkpoint holds "${name}", but the plan has ${plan.newLayerCount} layers`, 'VERIFY_PLAN');
  if (layer?.isNew) {
    const role = layerTensorBySuffix(expanded.config, parsed!.suffix)?.role;
    return role && RESIDUAL_OUTPUT_ROLES.has(role) ? { kind: 'zero', size: dtypeSize(expanded.info(name).dtype) } : { kind: 'none' };
  }
  return { kind: 'copy', baseName: parsed ? layerTensorName(layer!.source, parsed.suffix) : name };
}

/** Whether the base tensor can hold the same bytes as the expanded one (present, same dtype, size and shape). */
function sameLayout(base: HfCheckpoint, baseName: string, expanded: HfCheckpoint, name: string): boolean {
  if (!base.has(baseName)) return false;
  const a = base.info(baseName);
  const b = expanded.info(name);
  return a.dtype === b.dtype && a.byteLength === b.byteLength && a.shape.join(',') === b.shape.join(',');
}

/**
 * The byte pre-check of `expanded` against `base` under `plan` (see the header). `checked` holds results
 * already established for whole tensors (by a StreamingPrecheck): those are not read again.
 */
export function precheckExpansion(base: HfCheckpoint, expanded: HfCheckpoint, plan: ExpansionPlan, checked?: ReadonlyMap<string, boolean>): PrecheckResult {
  const differing: string[] = [];
  const nonZero: string[] = [];
  const bufs: [Buffer, Buffer] = [Buffer.allocUnsafe(CHUNK_BYTES), Buffer.allocUnsafe(CHUNK_BYTES)];
  let copiesIdentical = true;
  let newOutputsZero = true;
  for (const name of expanded.tensorNames()) {
    const t = tensorCheck(expanded, plan, name);
    if (t.kind === 'none') continue;
    const known = checked?.get(name);
    if (t.kind === 'zero') {
      if (!(known ?? compareChunks(expanded, name, null, name, (x) => allZero(x, t.size), bufs))) {
        newOutputsZero = false;
        if (nonZero.length < 5) nonZero.push(name);
      }
      continue;
    }
    const same = known ?? (sameLayout(base, t.baseName, expanded, name) && compareChunks(expanded, name, base, t.baseName, (x, y) => x.equals(y!), bufs));
    if (!same) {
      copiesIdentical = false;
      if (differing.length < 5) differing.push(name);
    }
  }
  return { copiesIdentical, newOutputsZero, differing, nonZero };
}

/**
 * The pre-check done on the bytes a forward pass of the expanded model reads anyway (every weight but
 * the embedding rows): each chunk is compared with the base's bytes at the same offset, or checked for
 * zeros, as it is read; `finish()` checks the tensors the pass did not read whole and returns the same
 * result as precheckExpansion, reading the expanded model's weights once instead of twice.
 */
export class StreamingPrecheck {
  private readonly checks = new Map<string, TensorCheck>();
  /** Per tensor: the next byte offset expected (ranges must arrive in order, without gaps or repeats) and the result so far. */
  private readonly seen = new Map<string, { next: number; inOrder: boolean; ok: boolean }>();
  private buf = Buffer.allocUnsafe(0);

  constructor(
    private readonly base: HfCheckpoint,
    private readonly expanded: HfCheckpoint,
    private readonly plan: ExpansionPlan,
  ) {}

  /** `bytes` are the expanded tensor `name`'s bytes from byte `offset` on (each range reported once). */
  readonly onBytes = (name: string, offset: number, bytes: Buffer): void => {
    let t = this.checks.get(name);
    if (!t) {
      t = tensorCheck(this.expanded, this.plan, name);
      this.checks.set(name, t);
    }
    if (t.kind === 'none') return;
    const s = this.seen.get(name) ?? { next: 0, inOrder: true, ok: t.kind === 'zero' || sameLayout(this.base, t.baseName, this.expanded, name) };
    this.seen.set(name, s);
    if (offset !== s.next) s.inOrder = false;
    s.next = offset + bytes.length;
    if (!s.ok || !s.inOrder) return;
    if (t.kind === 'zero') s.ok = allZero(bytes, t.size);
    else {
      const r = this.base.shardOf(t.baseName).byteRange(t.baseName);
      if (this.buf.length < bytes.length) this.buf = Buffer.allocUnsafe(bytes.length);
      s.ok = readAt(r.fd, this.buf, bytes.length, r.offset + offset).equals(bytes);
    }
  };

  /** The pre-check result: tensors read whole by the pass as checked, the rest read now. */
  finish(): PrecheckResult {
    const whole = new Map<string, boolean>();
    for (const [name, s] of this.seen) if (s.inOrder && s.next === this.expanded.info(name).byteLength) whole.set(name, s.ok);
    return precheckExpansion(this.base, this.expanded, this.plan, whole);
  }
}

/** y [N, out] = x [N, in] · Wᵀ (+ bias) with W [out, in] streamed from the checkpoint in row chunks. */
function linear(ck: HfCheckpoint, name: string, bias: string | null, x: Float32Array, N: number, buf: Buffer): Float32Array {
  const info = ck.info(name);
  const [outF, inF] = info.shape as [number, number];
  if (x.length !== N * inF) throw new UsageError(`verify: "${name}" has shape [${info.shape}], its input has ${x.length / N} features`, 'VERIFY_SHAPE');
  const dtype = info.dtype as FloatDType;
  const rowBytes = inF * dtypeSize(dtype);
  const rowsPerChunk = Math.max(1, Math.floor(CHUNK_BYTES / rowBytes));
  const range = ck.shardOf(name).byteRange(name);
  const chunkBuf = buf.length >= rowsPerChunk * rowBytes ? buf : Buffer.allocUnsafe(rowsPerChunk * rowBytes);
  const y = new Float32Array(N * outF);
  const wAll = new Float32Array(rowsPerChunk * inF);
  for (let r0 = 0; r0 < outF; r0 += rowsPerChunk) {
    const rows = Math.min(rowsPerChunk, outF - r0);
    const w = decodeInto(readAt(range.fd, chunkBuf, rows * rowBytes, range.offset + r0 * rowBytes), dtype, wAll);
    jsMatmulInto(x, w, N, inF, rows, y, outF, r0);
  }
  if (bias) addBias(y, readVector(ck, bias), N, outF);
  return y;
}

function addBias(y: Float32Array, b: Float32Array, N: number, outF: number): void {
  for (let n = 0; n < N; n++) for (let o = 0; o < outF; o++) y[n * outF + o] = y[n * outF + o]! + b[o]!;
}

/** Columns r0 .. r0 + rows of y [N, outF] = x [N, inF] · wᵀ for w [rows, inF] (sums in float64, in order). */
function jsMatmulInto(x: Float32Array, w: Float32Array, N: number, inF: number, rows: number, y: Float32Array, outF: number, r0: number): void {
  let r = 0;
  // two weight rows by four token rows at a time (each product is still summed over i in order, in float64)
  for (; r + 2 <= rows && N >= 4; r += 2) {
    const wa = r * inF;
    const wb = wa + inF;
    let n = 0;
    for (; n + 4 <= N; n += 4) {
      const x0 = n * inF;
      const x1 = x0 + inF;
      const x2 = x1 + inF;
      const x3 = x2 + inF;
      let a0 = 0;
      let a1 = 0;
      let a2 = 0;
      let a3 = 0;
      let b0 = 0;
      let b1 = 0;
      let b2 = 0;
      let b3 = 0;
      for (let i = 0; i < inF; i++) {
        const u = w[wa + i]!;
        const v = w[wb + i]!;
        const p0 = x[x0 + i]!;
        const p1 = x[x1 + i]!;
        const p2 = x[x2 + i]!;
        const p3 = x[x3 + i]!;
        a0 += u * p0;
        a1 += u * p1;
        a2 += u * p2;
        a3 += u * p3;
        b0 += v * p0;
        b1 += v * p1;
        b2 += v * p2;
        b3 += v * p3;
      }
      const yo = n * outF + r0 + r;
      y[yo] = a0;
      y[yo + outF] = a1;
      y[yo + 2 * outF] = a2;
      y[yo + 3 * outF] = a3;
      y[yo + 1] = b0;
      y[yo + outF + 1] = b1;
      y[yo + 2 * outF + 1] = b2;
      y[yo + 3 * outF + 1] = b3;
    }
    for (; n < N; n++) {
      const xo = n * inF;
      let sa = 0;
      let sb = 0;
      for (let i = 0; i < inF; i++) {
        sa += w[wa + i]! * x[xo + i]!;
        sb += w[wb + i]! * x[xo + i]!;
      }
      y[n * outF + r0 + r] = sa;
      y[n * outF + r0 + r + 1] = sb;
    }
  }
  for (; r < rows; r++) {
    const wo = r * inF;
    let n = 0;
    // eight token rows at a time: each weight element is loaded once per eight products
    for (; n + 8 <= N; n += 8) {
      const x0 = n * inF;
      const x1 = x0 + inF;
      const x2 = x1 + inF;
      const x3 = x2 + inF;
      const x4 = x3 + inF;
      const x5 = x4 + inF;
      const x6 = x5 + inF;
      const x7 = x6 + inF;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      let s4 = 0;
      let s5 = 0;
      let s6 = 0;
      let s7 = 0;
      for (let i = 0; i < inF; i++) {
        const wv = w[wo + i]!;
        s0 += wv * x[x0 + i]!;
        s1 += wv * x[x1 + i]!;
        s2 += wv * x[x2 + i]!;
        s3 += wv * x[x3 + i]!;
        s4 += wv * x[x4 + i]!;
        s5 += wv * x[x5 + i]!;
        s6 += wv * x[x6 + i]!;
        s7 += wv * x[x7 + i]!;
      }
      const yo = n * outF + r0 + r;
      y[yo] = s0;
      y[yo + outF] = s1;
      y[yo + 2 * outF] = s2;
      y[yo + 3 * outF] = s3;
      y[yo + 4 * outF] = s4;
      y[yo + 5 * outF] = s5;
      y[yo + 6 * outF] = s6;
      y[yo + 7 * outF] = s7;
    }
    for (; n + 4 <= N; n += 4) {
      const x0 = n * inF;
      const x1 = x0 + inF;
      const x2 = x1 + inF;
      const x3 = x2 + inF;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let i = 0; i < inF; i++) {
        const wv = w[wo + i]!;
        s0 += wv * x[x0 + i]!;
        s1 += wv * x[x1 + i]!;
        s2 += wv * x[x2 + i]!;
        s3 += wv * x[x3 + i]!;
      }
      y[n * outF + r0 + r] = s0;
      y[(n + 1) * outF + r0 + r] = s1;
      y[(n + 2) * outF + r0 + r] = s2;
      y[(n + 3) * outF + r0 + r] = s3;
    }
    for (; n < N; n++) {
      const xo = n * inF;
      let s = 0;
      for (let i = 0; i < inF; i++) s += w[wo + i]! * x[xo + i]!;
      y[n * outF + r0 + r] = s;
    }
  }
}

/** decodeToFloat32 into a reused array (no allocation per chunk); `bytes` starts at an aligned offset. */
function decodeInto(bytes: Buffer, dtype: FloatDType, out: Float32Array): Float32Array {
  const n = bytes.length / dtypeSize(dtype);
  const view = out.subarray(0, n);
  if (dtype === 'F32' || bytes.byteOffset % 2 !== 0) {
    view.set(decodeToFloat32(bytes, dtype));
    return view;
  }
  const src = new Uint16Array(bytes.buffer, bytes.byteOffset, n);
  const bits = new Uint32Array(view.buffer, view.byteOffset, n);
  if (dtype === 'BF16') {
    if (bytes.byteOffset % 4 === 0) {
      // two bf16 values per 32-bit read (little-endian: the lower half is the first value)
      const pairs = new Uint32Array(bytes.buffer, bytes.byteOffset, n >> 1);
      for (let i = 0, j = 0; i < pairs.length; i++, j += 2) {
        const v = pairs[i]!;
        bits[j] = v << 16;
        bits[j + 1] = v & 0xffff0000;
      }
      if (n % 2) bits[n - 1] = src[n - 1]! << 16;
    } else for (let i = 0; i < n; i++) bits[i] = src[i]! << 16;
  }
  else for (let i = 0; i < n; i++) bits[i] = f16BitsToF32Bits(src[i]!);
  return view;
}

/** Called with every weight range a pass reads: tensor name, byte offset in the tensor, the bytes. */
export type OnWeightBytes = (name: string, offset: number, bytes: Buffer) => void;

function readVector(ck: HfCheckpoint, name: string, onBytes?: OnWeightBytes): Float32Array {
  const info = ck.info(name);
  const r = ck.shardOf(name).byteRange(name);
  const bytes = readAt(r.fd, Buffer.allocUnsafe(r.length), r.length, r.offset);
  onBytes?.(name, 0, bytes);
  return decodeToFloat32(bytes, info.dtype as FloatDType);
}

/** Matrix products for the streaming forward pass (the default is plain JavaScript with float64 sums). */
export interface MatmulKernel {
  /** Shown in reports, e.g. `onnxruntime`. */
  readonly name: string;
  /** y [n, m] = x [n, k] · wᵀ for w [m, k], row-major float32; the caller reuses `w` once the promise settles. */
  matmulT(x: Float32Array, w: Float32Array, n: number, k: number, m: number): Promise<Float32Array>;
}

/** A forward pass: logits, and the hidden state after the embedding (index 0) and after each layer l (index l + 1). */
export interface StreamForward {
  readonly logits: Logits;
  readonly hidden: Float32Array[];
}

/** Raw weight bytes read per kernel call (decoded to float32 in a reused buffer, twice this size). */
const KERNEL_CHUNK_BYTES = 4 << 20;

/** The decoder's ops other than the projections and the head, eager on Float32Array; weights read as needed. */
function eagerOps(ck: HfCheckpoint, batch: TokenBatch, onBytes?: OnWeightBytes): Pick<DecoderOps<Float32Array>, 'embed' | 'rmsNorm' | 'rope' | 'attention' | 'swiglu' | 'add'> & { N: number } {
  const c: LlamaConfig = ck.config;
  checkRepresentable(c, STREAM_VERIFIER);
  checkTokenBatch(c, batch);
  const { batchSize: B, seqLen: T, ids, attentionMask: mask } = batch;
  const N = B * T;
  const D = c.hiddenSize;
  const H = c.numAttentionHeads;
  const KV = c.numKeyValueHeads;
  const hd = c.headDim;
  const rep = H / KV;
  const positions = positionIds(mask, B, T);
  let maxPos = 0;
  for (const p of positions) maxPos = Math.max(maxPos, p);
  const { cos, sin, width } = cosSin(c, positions, maxPos + 1);
  const scale = 1 / Math.sqrt(hd);
  return {
    N,
    embed: () => {
      const info = ck.info(EMBED);
      const r = ck.shardOf(EMBED).byteRange(EMBED);
      const rowBytes = D * dtypeSize(info.dtype);
      const buf = Buffer.allocUnsafe(rowBytes);
      const h = new Float32Array(N * D);
      for (let n = 0; n < N; n++) h.set(decodeToFloat32(readAt(r.fd, buf, rowBytes, r.offset + ids[n]! * rowBytes), info.dtype as FloatDType), n * D);
      return h;
    },
    rmsNorm: (x, weight) => {
      const w = readVector(ck, weight, onBytes);
      const y = new Float32Array(x.length);
      for (let n = 0; n < N; n++) {
        let ss = 0;
        for (let i = 0; i < D; i++) ss += x[n * D + i]! * x[n * D + i]!;
        const r = Math.fround(1 / Math.sqrt(Math.fround(ss / D) + c.rmsNormEps));
        for (let i = 0; i < D; i++) y[n * D + i] = Math.fround(x[n * D + i]! * r) * w[i]!;
      }
      return y;
    },
    rope: (x, kind) => {
      const heads = kind === 'q' ? H : KV;
      const half = width / 2;
      const y = new Float32Array(x.length);
      for (let n = 0; n < N; n++) {
        for (let h = 0; h < heads; h++) {
          const o = n * heads * hd + h * hd;
          for (let i = 0; i < hd; i++) {
            if (i >= width) {
              y[o + i] = x[o + i]!;
              continue;
            }
            const rot = i < half ? -x[o + i + half]! : x[o + i - half]!;
            y[o + i] = Math.fround(x[o + i]! * cos[n * width + i]!) + Math.fround(rot * sin[n * width + i]!);
          }
        }
      }
      return y;
    },
    attention: (q, k, v, layer) => {
      const window = c.attentionWindows[layer] ?? null;
      const out = new Float32Array(N * H * hd);
      const scores = new Float64Array(T);
      for (let b = 0; b < B; b++) {
        for (let h = 0; h < H; h++) {
          const kh = Math.floor(h / rep);
          for (let t = 0; t < T; t++) {
            const qo = (b * T + t) * H * hd + h * hd;
            let max = -Infinity;
            for (let s = 0; s <= t; s++) {
              if (!attends(t, s, !mask || mask[b * T + s] !== 0, window)) {
                scores[s] = NaN;
                continue;
              }
              const ko = (b * T + s) * KV * hd + kh * hd;
              let dot = 0;
              for (let i = 0; i < hd; i++) dot += q[qo + i]! * k[ko + i]!;
              scores[s] = dot * scale;
              if (scores[s]! > max) max = scores[s]!;
            }
            let sum = 0;
            for (let s = 0; s <= t; s++) {
              const e = Number.isNaN(scores[s]!) ? 0 : Math.exp(scores[s]! - max);
              scores[s] = e;
              sum += e;
            }
            for (let s = 0; s <= t; s++) {
              const p = scores[s]! / sum;
              if (p === 0) continue;
              const vo = (b * T + s) * KV * hd + kh * hd;
              for (let i = 0; i < hd; i++) out[qo + i] = out[qo + i]! + p * v[vo + i]!;
            }
          }
        }
      }
      return out;
    },
    swiglu: (g, u) => {
      const y = new Float32Array(g.length);
      for (let i = 0; i < g.length; i++) y[i] = (g[i]! / (1 + Math.exp(-g[i]!))) * u[i]!;
      return y;
    },
    add: (a, b2) => {
      const y = new Float32Array(a.length);
      for (let i = 0; i < a.length; i++) y[i] = a[i]! + b2[i]!;
      return y;
    },
  };
}

/**
 * One forward pass of `ck` on `batch` in this thread (plain JavaScript), weights streamed from disk;
 * `onLayer(l)` is called after each layer.
 */
export function streamForward(ck: HfCheckpoint, batch: TokenBatch, onLayer?: (layer: number) => void): StreamForward {
  const c = ck.config;
  const e = eagerOps(ck, batch);
  const buf = Buffer.allocUnsafe(CHUNK_BYTES);
  const hidden: Float32Array[] = [];
  const ops: DecoderOps<Float32Array> = {
    ...e,
    embed: () => {
      const h = e.embed();
      hidden[0] = h;
      return h;
    },
    project: (x, layer, group) => projections(c, layer, group).map((p) => linear(ck, p.weight, p.bias, x, e.N, buf)),
    head: (x) => linear(ck, c.tieWordEmbeddings ? EMBED : LM_HEAD, null, x, e.N, buf),
    // the decoder's layer-end hook: the residual stream after each block
    onLayerEnd: (layer, h) => {
      hidden[layer + 1] = h;
      onLayer?.(layer);
    },
  };
  const data = decoder(c, ops);
  return { logits: { data, batchSize: batch.batchSize, seqLen: batch.seqLen, vocabSize: c.vocabSize }, hidden };
}

/**
 * Buffers reused across a forward pass's kernel calls (a kernel may read one until its call settles):
 * float32 weights and raw bytes. Reuse matters: a fresh multi-MB buffer per call is external memory
 * that makes V8 collect garbage again and again.
 */
class BufferPool {
  private readonly free: Float32Array[] = [];
  private readonly freeRaw: Buffer[] = [];
  take(n: number): Float32Array {
    const i = this.free.findIndex((b) => b.length >= n);
    return i >= 0 ? this.free.splice(i, 1)[0]! : new Float32Array(n);
  }
  give(...bufs: Float32Array[]): void {
    this.free.push(...bufs);
  }
  takeRaw(n: number): Buffer {
    const i = this.freeRaw.findIndex((b) => b.length >= n);
    // allocUnsafeSlow: its own ArrayBuffer at offset 0 (aligned for the 16- and 32-bit views of decodeInto)
    return i >= 0 ? this.freeRaw.splice(i, 1)[0]! : Buffer.allocUnsafeSlow(n);
  }
  giveRaw(b: Buffer): void {
    this.freeRaw.push(b);
  }
}

/** `linear` through a kernel: weight row chunks decoded in JavaScript while the kernel multiplies the previous chunk. */
async function kernelLinear(kernel: MatmulKernel, ck: HfCheckpoint, name: string, bias: string | null, x: Float32Array, N: number, pool: BufferPool, onBytes?: OnWeightBytes): Promise<Float32Array> {
  const info = ck.info(name);
  const [outF, inF] = info.shape as [number, number];
  if (x.length !== N * inF) throw new UsageError(`verify: "${name}" has shape [${info.shape}], its input has ${x.length / N} features`, 'VERIFY_SHAPE');
  const dtype = info.dtype as FloatDType;
  const rowBytes = inF * dtypeSize(dtype);
  const rowsPerChunk = Math.min(outF, Math.max(1, Math.floor(KERNEL_CHUNK_BYTES / rowBytes)));
  const range = ck.shardOf(name).byteRange(name);
  const raw = pool.takeRaw(rowsPerChunk * rowBytes);
  const bufs = [pool.take(rowsPerChunk * inF), pool.take(rowsPerChunk * inF)];
  const inflight: (Promise<void> | undefined)[] = [undefined, undefined];
  let y: Float32Array | undefined = rowsPerChunk === outF ? undefined : new Float32Array(N * outF);
  try {
    for (let r0 = 0, i = 0; r0 < outF; r0 += rowsPerChunk, i++) {
      const rows = Math.min(rowsPerChunk, outF - r0);
      await inflight[i % 2];
      const bytes = readAt(range.fd, raw, rows * rowBytes, range.offset + r0 * rowBytes);
      onBytes?.(name, r0 * rowBytes, bytes);
      const w = decodeInto(bytes, dtype, bufs[i % 2]!);
      inflight[i % 2] = kernel.matmulT(x, w, N, inF, rows).then((out) => {
        if (out.length !== N * rows) throw new UsageError(`verify: matmul kernel ${kernel.name} returned ${out.length} values for [${N}, ${rows}]`, 'VERIFY_KERNEL');
        if (!y) y = out;
        else for (let n = 0; n < N; n++) y.set(out.subarray(n * rows, (n + 1) * rows), n * outF + r0);
      });
    }
    await Promise.all(inflight);
  } finally {
    await Promise.allSettled(inflight);
    pool.give(...bufs);
    pool.giveRaw(raw);
  }
  if (bias) addBias(y!, readVector(ck, bias, onBytes), N, outF);
  return y!;
}

/** One forward pass of `ck` on `batch` with the projections and the head on `kernel` (the rest eager in JavaScript). */
export async function streamForwardWith(ck: HfCheckpoint, batch: TokenBatch, kernel: MatmulKernel, onLayer?: (layer: number) => void, onBytes?: OnWeightBytes): Promise<StreamForward> {
  const c = ck.config;
  const e = eagerOps(ck, batch, onBytes);
  const pool = new BufferPool();
  const hidden: Float32Array[] = [];
  type P = Promise<Float32Array>;
  // The decoder builds the whole chain at once; each op runs when its inputs resolve (a layer's q, k, v in parallel).
  const ops: DecoderOps<P> = {
    embed: async () => (hidden[0] = e.embed()),
    rmsNorm: async (x, w) => e.rmsNorm(await x, w),
    project: (x, layer, group) => projections(c, layer, group).map(async (p) => kernelLinear(kernel, ck, p.weight, p.bias, await x, e.N, pool, onBytes)),
    rope: async (x, kind) => e.rope(await x, kind),
    // several inputs: awaited together, so a failure in any of them is handled (never an unhandled rejection)
    attention: async (q, k, v, layer) => {
      const [qv, kv, vv] = await Promise.all([q, k, v]);
      return e.attention(qv, kv, vv, layer);
    },
    swiglu: async (g, u) => {
      const [gv, uv] = await Promise.all([g, u]);
      return e.swiglu(gv, uv);
    },
    add: async (a, b) => {
      const [av, bv] = await Promise.all([a, b]);
      return e.add(av, bv);
    },
    head: async (x) => kernelLinear(kernel, ck, c.tieWordEmbeddings ? EMBED : LM_HEAD, null, await x, e.N, pool, onBytes),
    onLayerEnd: (layer, h) => {
      h.then(
        (v) => {
          hidden[layer + 1] = v;
          onLayer?.(layer);
        },
        () => undefined, // the failure reaches the caller through the logits
      );
    },
  };
  const data = await decoder(c, ops);
  return { logits: { data, batchSize: batch.batchSize, seqLen: batch.seqLen, vocabSize: c.vocabSize }, hidden };
}

/** @llama-pro/core as this module resolves it (an eval'd worker would resolve from the cwd). */
const CORE_MODULE = require.resolve('@llama-pro/core');

/** Worker body: opens the checkpoint, runs streamForward and posts progress, then the result (buffers transferred). */
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { HfCheckpoint } = require(workerData.core);
const { streamForward } = require(workerData.module);
(async () => {
  const ck = await HfCheckpoint.open(workerData.dir, { validate: false });
  try {
    const r = streamForward(ck, workerData.batch, (layer) => parentPort.postMessage({ layer }));
    parentPort.postMessage({ result: r }, [r.logits.data.buffer, ...r.hidden.map((h) => h.buffer)]);
  } finally {
    await ck.close();
  }
})().catch((e) => parentPort.postMessage({ error: String(e && e.message || e) }));
`;

/**
 * A forward pass of the checkpoint in `dir`: through `kernel` when given, else plain JavaScript on a
 * worker thread when running from the built JavaScript (else in this thread).
 */
async function forwardOf(dir: string, ck: HfCheckpoint, batch: TokenBatch, onLayer: (layer: number) => void, kernel?: MatmulKernel): Promise<StreamForward> {
  if (kernel) return streamForwardWith(ck, batch, kernel, onLayer);
  if (!__filename.endsWith('.js')) return streamForward(ck, batch, onLayer);
  return new Promise((resolve, reject) => {
    const w = new Worker(WORKER, { eval: true, workerData: { module: __filename, core: CORE_MODULE, dir, batch } });
    let settled = false;
    w.on('message', (m: { layer?: number; result?: StreamForward; error?: string }) => {
      if (m.layer !== undefined) onLayer(m.layer);
      else if (m.result) {
        settled = true;
        resolve(m.result);
      } else if (m.error !== undefined) {
        settled = true;
        reject(new UsageError(`verify: forward pass of ${dir} failed: ${m.error}`, 'VERIFY_FORWARD'));
      }
    });
    w.on('error', (e) => {
      settled = true;
      reject(e);
    });
    w.on('exit', (code) => {
      if (!settled) reject(new UsageError(`verify: the forward pass of ${dir} stopped (worker exit ${code})`, 'VERIFY_FORWARD'));
    });
  });
}

const PRECHECK_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { HfCheckpoint } = require(workerData.core);
const { precheckExpansion } = require(workerData.module);
(async () => {
  const base = await HfCheckpoint.open(workerData.baseDir, { validate: false });
  try {
    const expanded = await HfCheckpoint.open(workerData.expandedDir, { validate: false });
    try {
      parentPort.postMessage({ result: precheckExpansion(base, expanded, workerData.plan) });
    } finally {
      await expanded.close();
    }
  } finally {
    await base.close();
  }
})().catch((e) => parentPort.postMessage({ error: String(e && e.message || e), code: e && e.code }));
`;

/** precheckExpansion, on a worker thread when running from the built JavaScript (else in this thread). */
async function precheckOf(baseDir: string, expandedDir: string, base: HfCheckpoint, expanded: HfCheckpoint, plan: ExpansionPlan): Promise<PrecheckResult> {
  if (!__filename.endsWith('.js')) return precheckExpansion(base, expanded, plan);
  return new Promise((resolve, reject) => {
    const w = new Worker(PRECHECK_WORKER, { eval: true, workerData: { module: __filename, core: CORE_MODULE, baseDir, expandedDir, plan } });
    let settled = false;
    w.on('message', (m: { result?: PrecheckResult; error?: string; code?: string }) => {
      settled = true;
      if (m.result) resolve(m.result);
      else reject(new UsageError(m.error ?? 'verify: the byte pre-check failed', m.code ?? 'VERIFY_PRECHECK'));
    });
    w.on('error', (e) => {
      settled = true;
      reject(e);
    });
    w.on('exit', (code) => {
      if (!settled) reject(new UsageError(`verify: the byte pre-check stopped (worker exit ${code})`, 'VERIFY_PRECHECK'));
    });
  });
}

/**
 * The first field in which the expanded config differs from the base config beyond what the plan
 * changes (the layer count; per-layer settings of inserted blocks), or null when there is none.
 */
export function configDifference(base: LlamaConfig, expanded: LlamaConfig, plan: ExpansionPlan): string | null {
  for (const k of Object.keys(base) as (keyof LlamaConfig)[]) {
    if (k === 'raw' || k === 'numHiddenLayers' || k === 'attentionWindows') continue;
    if (JSON.stringify(base[k]) !== JSON.stringify(expanded[k])) return k;
  }
  for (let j = 0; j < plan.newLayerCount; j++) {
    const l = plan.layers[j]!;
    if (!l.isNew && (expanded.attentionWindows[j] ?? null) !== (base.attentionWindows[l.source] ?? null)) return `attentionWindows[${j}]`;
  }
  return null;
}

/** Whether every value is finite. */
function allFinite(a: Float32Array): boolean {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i]!)) return false;
  return true;
}

const asLogits = (a: Float32Array): Logits => ({ data: a, batchSize: 1, seqLen: 1, vocabSize: a.length });

export interface StreamVerifyOptions {
  /** Matrix products on this kernel (e.g. onnxruntime's); default plain JavaScript. */
  readonly kernel?: MatmulKernel;
}

/**
 * Verifies `expandedDir` against `baseDir` under `plan` without loading either model. `onProgress(done, total)`
 * counts the pre-check and layers.
 *
 * The config check, then the byte pre-check alongside ONE forward pass of the expanded model on the probe
 * batch. When both checks pass, that pass decides: if every inserted block maps the hidden state it receives to itself
 * exactly (its zero residual outputs add ±0 to finite values) and the logits are finite, the expanded
 * model's computation on the probe is, op for op, the base model's (every other op reads byte-identical
 * weights, under the same config, from the same inputs), so its logits are the base logits and
 * max |Δlogit| = 0 is proven without running the base model (`method: 'proof'`). Otherwise (a pre-check
 * or config failure, an inserted block that is not the identity, non-finite values) both models run and
 * are compared layer by layer (`method: 'comparison'`), which measures the difference and locates it.
 */
export async function verifyStreaming(
  baseDir: string,
  expandedDir: string,
  plan: ExpansionPlan,
  tokens?: TokenBatch,
  onProgress?: (done: number, total: number) => void,
  options: StreamVerifyOptions = {},
): Promise<StreamVerifyResult> {
  const base = await HfCheckpoint.open(baseDir, { validate: false });
  try {
    const expanded = await HfCheckpoint.open(expandedDir, { validate: false });
    try {
      const { vocabSize, maxPositionEmbeddings } = base.config;
      const batch = tokens ?? defaultVerificationBatch(vocabSize, maxPositionEmbeddings);
      for (const id of batch.ids) if (id < 0 || id >= vocabSize) throw new UsageError(`verification token ${id} is outside the vocabulary (0..${vocabSize - 1})`, 'VERIFY_TOKENS');
      if (plan.originalLayers !== base.config.numHiddenLayers || plan.newLayerCount !== expanded.config.numHiddenLayers || plan.layers.length !== plan.newLayerCount) {
        throw new UsageError(`verify: the plan maps ${plan.originalLayers} -> ${plan.newLayerCount} layers, the checkpoints have ${base.config.numHiddenLayers} and ${expanded.config.numHiddenLayers}`, 'VERIFY_PLAN');
      }
      const originals = plan.layers.filter((l) => !l.isNew).map((l) => l.source);
      if (originals.length !== plan.originalLayers || originals.some((s, i) => s !== i)) {
        throw new UsageError(`verify: the plan does not keep every original block exactly once, in order (sources ${originals.join(',')})`, 'VERIFY_PLAN');
      }
      const kernel = options.kernel;
      const L = base.config.numHiddenLayers;
      const Lx = expanded.config.numHiddenLayers;
      let total = 1 + Lx;
      let done = 0;
      const tick = () => onProgress?.(++done, total);
      const configDiffers = configDifference(base.config, expanded.config, plan);
      // Refuse what the decoder ops cannot run here, with the typed error, before starting a pass.
      for (const c of [base.config, expanded.config]) {
        checkRepresentable(c, STREAM_VERIFIER);
        checkTokenBatch(c, batch);
      }
      let precheck: PrecheckResult;
      let e: StreamForward | undefined;
      if (kernel && configDiffers === null) {
        // The pass on the kernel runs here: it pre-checks the weight bytes it reads, the rest is read after it.
        const streaming = new StreamingPrecheck(base, expanded, plan);
        e = await streamForwardWith(expanded, batch, kernel, tick, streaming.onBytes);
        precheck = streaming.finish();
        tick();
      } else {
        // The byte pre-check (on a worker thread when built) runs alongside the expanded model's pass.
        const prechecking = precheckOf(baseDir, expandedDir, base, expanded, plan).then((r) => {
          tick();
          return r;
        });
        const forward = configDiffers === null ? forwardOf(expandedDir, expanded, batch, tick, kernel) : undefined;
        const [pc, pass] = await Promise.allSettled([prechecking, forward ?? Promise.resolve(undefined)]);
        if (pc.status === 'rejected') throw pc.reason;
        if (pass.status === 'rejected') throw pass.reason;
        precheck = pc.value;
        e = pass.value;
      }
      const common = { backend: STREAM_VERIFIER, device: 'cpu', batchSize: batch.batchSize, seqLen: batch.seqLen, tokens: [...batch.ids], precheck, configDiffers, kernel: kernel?.name ?? 'js' };
      if (e && precheck.copiesIdentical && precheck.newOutputsZero) {
        // each inserted block j maps the state it receives (hidden[j]) to itself (hidden[j + 1])
        const identity = plan.layers.every((l, j) => !l.isNew || maxAbsDiff(asLogits(e.hidden[j]!), asLogits(e.hidden[j + 1]!)) === 0);
        if (identity && allFinite(e.logits.data)) {
          return { ...common, method: 'proof', maxAbsDiff: 0, baseLogits: e.logits, layerMaxAbsDiff: new Array<number>(Lx).fill(0), firstDifferingLayer: null };
        }
      }
      // Measure: both passes (at once), compared layer by layer.
      total = done + L + (e ? 0 : Lx);
      const [b, x] = await Promise.all([forwardOf(baseDir, base, batch, tick, kernel), e ? Promise.resolve(e) : forwardOf(expandedDir, expanded, batch, tick, kernel)]);
      // The hidden state after expanded layer j must equal the base state after the last original block at or below j.
      const layerMaxAbsDiff: number[] = [];
      let lastOriginal = 0; // index into b.hidden: 0 = embeddings, l + 1 = after base layer l
      for (let j = 0; j < plan.newLayerCount; j++) {
        const l = plan.layers[j]!;
        if (!l.isNew) lastOriginal = l.source + 1;
        layerMaxAbsDiff.push(maxAbsDiff(asLogits(b.hidden[lastOriginal]!), asLogits(x.hidden[j + 1]!)));
      }
      const first = layerMaxAbsDiff.findIndex((d) => d !== 0);
      return { ...common, method: 'comparison', maxAbsDiff: maxAbsDiff(b.logits, x.logits), baseLogits: b.logits, layerMaxAbsDiff, firstDifferingLayer: first < 0 ? null : first };
    } finally {
      await expanded.close();
    }
  } finally {
    await base.close();
  }
}
