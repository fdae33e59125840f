/**
 * Generates one ONNX training graph (opset 17) for a LLaMA-family decoder: forward, mean next-token
 * cross-entropy and a hand-written backward pass built from standard operators, so that onnxruntime-node
 * (which has no training API in JavaScript) can train.
 *
 * Inputs:  ids [B,T] int64, targets [B,T] int64 (IGNORE_INDEX = -100 is ignored; the loss is the mean
 *          over the other positions), and every trainable tensor under its Hugging Face name and shape.
 * Outputs: loss [] and `grad.<name>` for every trainable tensor (same shape as the tensor).
 * Frozen tensors are initializers. T is fixed per graph (the rotary cos/sin tables and the causal mask
 * are precomputed initializers); B is dynamic.
 *
 * Layout: the residual stream is [N = B*T, D]; linear layers are Gemm with transB on the HF [out, in]
 * matrices (dX = dY W, dW = dY^T X); grouped-query attention lays queries out [B, KV, T*G, hd] (rows t, then
 * g) so scores multiply un-repeated K/V, and dK = dS^T Q sums the group automatically.
 * Backward pruning: every stage has a position in forward order; activation gradients are propagated only
 * while some trainable tensor sits below the current stage, so a frozen prefix is forward-only.
 */
import {
  ConfigError,
  EMBED,
  FINAL_NORM,
  IGNORE_INDEX,
  LM_HEAD,
  UsageError,
  cosSin,
  expectedShape,
  expectedTensorNames,
  layerTensorName,
  parseLayerTensorName,
  type LlamaConfig,
  type WeightSource,
} from '@llama-pro/core';
import type { onnx } from 'onnx-proto';
import { DT, GraphBuilder, valueInfo } from '../graph';
import { checkExportable } from '../export';

export const TRAIN_OPSET = 17;
export const TRAIN_IDS = 'ids';
export const TRAIN_TARGETS = 'targets';
export const TRAIN_LOSS = 'loss';
export const gradName = (param: string): string => `grad.${param}`;

const MASK_MIN = -3.4028234663852886e38;

const STAGES_PER_LAYER = 6;
const LAYER_STAGE: Record<string, number> = {
  'input_layernorm.weight': 0,
  'self_attn.q_proj.weight': 1,
  'self_attn.k_proj.weight': 1,
  'self_attn.v_proj.weight': 1,
  'self_attn.q_proj.bias': 1,
  'self_attn.k_proj.bias': 1,
  'self_attn.v_proj.bias': 1,
  'self_attn.o_proj.weight': 2,
  'self_attn.o_proj.bias': 2,
  'post_attention_layernorm.weight': 3,
  'mlp.gate_proj.weight': 4,
  'mlp.up_proj.weight': 4,
  'mlp.gate_proj.bias': 4,
  'mlp.up_proj.bias': 4,
  'mlp.down_proj.weight': 5,
  'mlp.down_proj.bias': 5,
};

/** Position of a tensor's first use in forward order (embedding 0, then the layers, final norm, head). */
export function stagePosition(c: LlamaConfig, name: string): number {
  if (name === EMBED) return 0;
  const L = c.numHiddenLayers;
  if (name === FINAL_NORM) return 1 + L * STAGES_PER_LAYER;
  if (name === LM_HEAD) return 2 + L * STAGES_PER_LAYER;
  const p = parseLayerTensorName(name);
  const s = p ? LAYER_STAGE[p.suffix] : undefined;
  if (!p || s === undefined || p.layer >= L) throw new UsageError(`"${name}" is not a parameter of this model`, 'UNKNOWN_PARAMETER');
  return 1 + p.layer * STAGES_PER_LAYER + s;
}

/** Checks trainable names against the model; returns them deduplicated in canonical order. */
export function checkTrainable(c: LlamaConfig, trainable: readonly string[]): string[] {
  const all = expectedTensorNames(c);
  const known = new Set(all);
  for (const n of trainable) {
    if (!known.has(n)) {
      const hint = n === LM_HEAD && c.tieWordEmbeddings ? ` (the head is tied to ${EMBED}; train that instead)` : '';
      throw new UsageError(`cannot train "${n}": the model has no such tensor${hint}`, 'UNKNOWN_PARAMETER');
    }
  }
  const want = new Set(trainable);
  return all.filter((n) => want.has(n));
}

export interface TrainGraphOptions {
  /** Fixed sequence length T of the graph. */
  readonly seqLen: number;
  /** Trainable tensor names (HF names); empty = a loss-only graph. */
  readonly trainable: readonly string[];
  /** Values to use instead of the source's for frozen tensors (e.g. parameters changed by training). */
  readonly overrides?: ReadonlyMap<string, Float32Array>;
}

export interface TrainGraph {
  readonly model: onnx.ModelProto;
  /** Trainable names in canonical order; graph inputs of these names, outputs `grad.<name>`. */
  readonly trainable: readonly string[];
  readonly seqLen: number;
}

/** Builds the training graph for `source` (weights read tensor by tensor). */
export async function buildTrainingGraph(source: WeightSource, opts: TrainGraphOptions): Promise<TrainGraph> {
  const c = source.config;
  checkExportable(c);
  const T = opts.seqLen;
  if (!Number.isInteger(T) || T < 1) throw new UsageError(`sequence length must be a positive integer, got ${T}`);
  if (T > c.maxPositionEmbeddings) throw new ConfigError(`sequence length ${T} exceeds max_position_embeddings ${c.maxPositionEmbeddings}`);
  // Not in this graph yet: sliding-window layers (its mask is plain causal).
  const windowed = c.attentionWindows.findIndex((w) => w !== null && w < T);
  if (windowed >= 0) throw new ConfigError(`layer ${windowed} uses a sliding attention window (${c.attentionWindows[windowed]}) shorter than the sequence (${T}), which the onnx training graph does not implement yet; train with the tfjs backend`, 'CONFIG_UNSUPPORTED_ATTENTION');
  const trainable = checkTrainable(c, opts.trainable);
  const trainSet = new Set(trainable);
  const g = new GraphBuilder();
  const D = c.hiddenSize;
  const H = c.numAttentionHeads;
  const KV = c.numKeyValueHeads;
  const hd = c.headDim;
  const G = H / KV;
  const V = c.vocabSize;
  const I = c.intermediateSize;
  const L = c.numHiddenLayers;
  const qd = H * hd;
  const kvd = KV * hd;
  const headName = c.tieWordEmbeddings ? EMBED : LM_HEAD;

  // Lowest stage holding a trainable tensor (a tied embedding counts at position 0).
  let minPos = Infinity;
  for (const n of trainable) minPos = Math.min(minPos, stagePosition(c, n));
  const below = (pos: number): boolean => minPos < pos;

  g.inputs.push(valueInfo(TRAIN_IDS, DT.INT64, ['batch_size', T]));
  g.inputs.push(valueInfo(TRAIN_TARGETS, DT.INT64, ['batch_size', T]));
  for (const n of trainable) g.inputs.push(valueInfo(n, DT.FLOAT, expectedShape(c, n)!));

  const params = new Map<string, string>();
  const param = async (name: string): Promise<string> => {
    const have = params.get(name);
    if (have) return have;
    let v: string;
    if (trainSet.has(name)) v = name;
    else {
      const values = opts.overrides?.get(name) ?? (await source.readFloat32(name));
      v = await g.weight(name, expectedShape(c, name)!, values);
    }
    params.set(name, v);
    return v;
  };
  const grads = new Map<string, string[]>();
  const addGrad = (name: string, t: string): void => {
    const list = grads.get(name) ?? [];
    list.push(t);
    grads.set(name, list);
  };

  // ---- constants
  const axisLast = { axes: [-1], keepdims: 1 };
  const i64 = (v: number[]): string => g.i64(v);
  const eps = g.f32([c.rmsNormEps], true);
  const one = g.f32([1], true);
  const scale = g.f32([1 / Math.sqrt(hd)], true);
  // core's model/rope (scaling and attention factor included); sin signed as cat(-sin, sin).
  const { cos: cosT, sin: sinT } = cosSin(c, Int32Array.from({ length: T }, (_, t) => t), T);
  for (let t = 0; t < T; t++) for (let i = 0; i < hd / 2; i++) sinT[t * hd + i] = -sinT[t * hd + i]!;
  const cos = await g.weight('rope.cos', [T, 1, hd], cosT);
  const sinS = await g.weight('rope.sin_signed', [T, 1, hd], sinT);
  const maskV = new Float32Array(T * G * T);
  for (let r = 0; r < T * G; r++) for (let s = 0; s < T; s++) maskV[r * T + s] = s <= Math.floor(r / G) ? 0 : MASK_MIN;
  const mask = await g.weight('attention.causal_mask', [T * G, T], maskV);
  const halves = i64([hd / 2, hd / 2]);
  const swap = (t: string): string => {
    const [a, b] = g.op('Split', [t, halves], { axis: -1 }, 2);
    return g.op1('Concat', [b!, a!], { axis: -1 });
  };
  // x [B,T,heads,hd]: y = x*cos + swap(x)*sinS; the adjoint: dx = dy*cos + swap(dy*sinS).
  const rope = (t: string): string => g.op1('Add', [g.op1('Mul', [t, cos]), g.op1('Mul', [swap(t), sinS])]);
  const unrope = (d: string): string => g.op1('Add', [g.op1('Mul', [d, cos]), swap(g.op1('Mul', [d, sinS]))]);

  interface Norm {
    y: string;
    r: string;
    xh: string;
  }
  const rmsF = (x: string, w: string): Norm => {
    const ms = g.op1('ReduceMean', [g.op1('Mul', [x, x])], axisLast);
    const r = g.op1('Reciprocal', [g.op1('Sqrt', [g.op1('Add', [ms, eps])])]);
    const xh = g.op1('Mul', [x, r]);
    return { y: g.op1('Mul', [xh, w]), r, xh };
  };
  /** Weight gradient (when trainable) and, when `needX`, the input gradient of y = xh * w. */
  const rmsB = (dy: string, st: Norm, w: string, wName: string, needX: boolean): string | undefined => {
    if (trainSet.has(wName)) addGrad(wName, g.op1('ReduceSum', [g.op1('Mul', [dy, st.xh]), i64([0])], { keepdims: 0 }));
    if (!needX) return undefined;
    const dxh = g.op1('Mul', [dy, w]);
    const m = g.op1('ReduceMean', [g.op1('Mul', [dxh, st.xh])], axisLast);
    return g.op1('Mul', [st.r, g.op1('Sub', [dxh, g.op1('Mul', [st.xh, m])])]);
  };
  const linF = (x: string, w: string, b?: string): string => g.op1('Gemm', b ? [x, w, b] : [x, w], { transB: 1 });
  /** Parameter gradients of y = x W^T + b, and dX when `needX`. */
  const linB = (dy: string, x: string, w: string, wName: string, bName: string | undefined, needX: boolean): string | undefined => {
    if (trainSet.has(wName)) addGrad(wName, g.op1('Gemm', [dy, x], { transA: 1 }));
    if (bName && trainSet.has(bName)) addGrad(bName, g.op1('ReduceSum', [dy, i64([0])], { keepdims: 0 }));
    return needX ? g.op1('MatMul', [dy, w]) : undefined;
  };

  /**
   * Several projections of the same input: separate Gemms forward (a fused Gemm would need a Split, which
   * copies slowly in ORT); the backward pass fuses them (see fusedB). Returns the outputs and the weights.
   */
  const fusedF = (x: string, ws: readonly string[], bs: readonly (string | undefined)[]): { outs: string[]; ws: readonly string[] } => ({
    outs: ws.map((w, k) => linF(x, w, bs[k])),
    ws,
  });
  /**
   * Backward of fusedF: parameter gradients of the trainable parts (one Gemm and a Split when all are
   * trainable), and dX = concat(dY) · concat(W) as one MatMul when `needX` (ORT constant-folds the Concat of
   * frozen weights).
   */
  const fusedB = (dys: readonly string[], x: string, ws: readonly string[], wNames: readonly string[], bNames: readonly (string | undefined)[], dims: readonly number[], needX: boolean): string | undefined => {
    const train = wNames.map((n) => trainSet.has(n));
    const dY = needX || train.every((t) => t) ? g.op1('Concat', [...dys], { axis: 1 }) : undefined;
    if (dY && train.every((t) => t)) {
      const parts = g.op('Split', [g.op1('Gemm', [dY, x], { transA: 1 }), i64([...dims])], { axis: 0 }, dims.length);
      wNames.forEach((n, k) => addGrad(n, parts[k]!));
    } else wNames.forEach((n, k) => train[k] && addGrad(n, g.op1('Gemm', [dys[k]!, x], { transA: 1 })));
    bNames.forEach((n, k) => n && trainSet.has(n) && addGrad(n, g.op1('ReduceSum', [dys[k]!, i64([0])], { keepdims: 0 })));
    return needX ? g.op1('MatMul', [dY!, g.op1('Concat', [...ws], { axis: 0 })]) : undefined;
  };

  // ---- forward
  const idsFlat = g.op1('Reshape', [TRAIN_IDS, i64([-1])]);
  const embed = await param(EMBED);
  let x = g.op1('Gather', [embed, idsFlat], { axis: 0 }); // [N,D]

  interface LayerState {
    n1: Norm;
    n2: Norm;
    h1: string;
    h2: string;
    qg: string;
    kt: string;
    vt: string;
    P: string;
    ctx2: string;
    gate: string;
    up: string;
    sg: string;
    sl: string;
    a: string;
    w: Record<string, string>;
    b: Record<string, string | undefined>;
    Wqkv: readonly string[];
    Wgu: readonly string[];
  }
  const QKV = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'];
  const GU = ['mlp.gate_proj', 'mlp.up_proj'];
  const states: LayerState[] = [];
  const pt = [0, 1, 3, 2];
  for (let i = 0; i < L; i++) {
    const n = (s: string): string => layerTensorName(i, s);
    const w: Record<string, string> = {};
    const b: Record<string, string | undefined> = {};
    for (const s of ['input_layernorm', 'post_attention_layernorm']) w[s] = await param(n(`${s}.weight`));
    for (const s of ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj']) {
      w[s] = await param(n(`${s}.weight`));
      const hasBias = s === 'self_attn.o_proj' ? c.oBias : s.startsWith('mlp.') ? c.mlpBias : c.qkvBias;
      b[s] = hasBias ? await param(n(`${s}.bias`)) : undefined;
    }
    const n1 = rmsF(x, w['input_layernorm']!);
    const h1 = n1.y;
    const qkv = fusedF(h1, QKV.map((p) => w[p]!), QKV.map((p) => b[p]));
    const [q2, k2, v2] = qkv.outs as [string, string, string];
    const qr = rope(g.op1('Reshape', [q2, i64([-1, T, H, hd])]));
    const qg = g.op1('Reshape', [g.op1('Transpose', [g.op1('Reshape', [qr, i64([-1, T, KV, G, hd])])], { perm: [0, 2, 1, 3, 4] }), i64([-1, KV, T * G, hd])]);
    const kt = g.op1('Transpose', [rope(g.op1('Reshape', [k2, i64([-1, T, KV, hd])]))], { perm: [0, 2, 1, 3] }); // [B,KV,T,hd]
    const vt = g.op1('Transpose', [g.op1('Reshape', [v2, i64([-1, T, KV, hd])])], { perm: [0, 2, 1, 3] });
    const S = g.op1('Add', [g.op1('Mul', [g.op1('MatMul', [qg, g.op1('Transpose', [kt], { perm: pt })]), scale]), mask]);
    const P = g.op1('Softmax', [S], { axis: -1 }); // [B,KV,T*G,T]
    const ctx = g.op1('MatMul', [P, vt]); // [B,KV,T*G,hd]
    const ctx2 = g.op1('Reshape', [g.op1('Transpose', [g.op1('Reshape', [ctx, i64([-1, KV, T, G, hd])])], { perm: [0, 2, 1, 3, 4] }), i64([-1, qd])]);
    const x1 = g.op1('Add', [x, linF(ctx2, w['self_attn.o_proj']!, b['self_attn.o_proj'])]);
    const n2 = rmsF(x1, w['post_attention_layernorm']!);
    const h2 = n2.y;
    const gu = fusedF(h2, GU.map((p) => w[p]!), GU.map((p) => b[p]));
    const [gate, up] = gu.outs as [string, string];
    const sg = g.op1('Sigmoid', [gate]);
    const sl = g.op1('Mul', [gate, sg]);
    const a = g.op1('Mul', [sl, up]);
    x = g.op1('Add', [x1, linF(a, w['mlp.down_proj']!, b['mlp.down_proj'])]);
    states.push({ n1, n2, h1, h2, qg, kt, vt, P, ctx2, gate, up, sg, sl, a, w, b, Wqkv: qkv.ws, Wgu: gu.ws });
  }
  const normW = await param(FINAL_NORM);
  const nf = rmsF(x, normW);
  const head = await param(headName);
  const logits = g.op1('Gemm', [nf.y, head], { transB: 1 }); // [N,V]
  // The [N, V] logits dominate memory traffic: the loss needs only per-row log-sum-exp and the picked
  // logit; the backward pass materializes one more [N, V] tensor (softmax, minus 1 at the target, in place).
  // log-sum-exp from the softmax: P_max = 1 / sum(exp(x - max)) >= 1/V never underflows, so
  // lse = max - log(P_max). (ORT's ReduceLogSumExp is a slow single pass with exp+log per element.)
  const probs = g.op1('Softmax', [logits], { axis: -1 });
  const lse = g.op1('Sub', [g.op1('ReduceMax', [logits], { axes: [1], keepdims: 1 }), g.op1('Log', [g.op1('ReduceMax', [probs], { axes: [1], keepdims: 1 })])]); // [N,1]
  const tFlat = g.op1('Reshape', [TRAIN_TARGETS, i64([-1])]);
  const validB = g.op1('Not', [g.op1('Equal', [tFlat, g.i64([IGNORE_INDEX], true)])]);
  const safe = g.op1('Unsqueeze', [g.op1('Where', [validB, tFlat, g.i64([0], true)]), i64([1])]); // [N,1]
  const validF = g.op1('Unsqueeze', [g.op1('Cast', [validB], { to: DT.FLOAT }), i64([1])]); // [N,1]
  const nll = g.op1('Sub', [lse, g.op1('GatherElements', [logits, safe], { axis: 1 })]); // [N,1]
  const denom = g.op1('Max', [g.op1('ReduceSum', [validF], { keepdims: 0 }), one]);
  g.op1('Div', [g.op1('ReduceSum', [g.op1('Mul', [nll, validF])], { keepdims: 0 }), denom], {}, TRAIN_LOSS);
  g.outputs.push(valueInfo(TRAIN_LOSS, DT.FLOAT, []));

  // ---- backward
  if (trainable.length > 0) {
    // d loss / d logits = wrow * (softmax - onehot(target)), wrow = valid / count. The per-row factor is
    // applied on the [N, D] side: dX = wrow * (G W) and dW = G^T (wrow * X), with G = softmax - onehot.
    // A frozen head needs only G W = P W - W[target]: a row gather instead of a second [N, V] tensor.
    const wrow = g.op1('Div', [validF, denom]); // [N,1]
    const headPos = stagePosition(c, LM_HEAD);
    let dx: string | undefined;
    if (trainSet.has(headName)) {
      const G0 = g.op1('ScatterElements', [probs, safe, g.op1('Neg', [validF])], { axis: 1, reduction: 'add' });
      addGrad(headName, g.op1('Gemm', [G0, g.op1('Mul', [nf.y, wrow])], { transA: 1 }));
      if (below(headPos)) dx = g.op1('Mul', [g.op1('MatMul', [G0, head]), wrow]);
    } else if (below(headPos)) {
      const picked = g.op1('Gather', [head, g.op1('Reshape', [safe, i64([-1])])], { axis: 0 }); // [N,D]
      dx = g.op1('Mul', [g.op1('Sub', [g.op1('MatMul', [probs, head]), picked]), wrow]);
    }
    if (dx) dx = rmsB(dx, nf, normW, FINAL_NORM, below(headPos - 1));
    for (let i = L - 1; i >= 0 && dx; i--) {
      const s = states[i]!;
      const n = (suffix: string): string => layerTensorName(i, suffix);
      const base = 1 + i * STAGES_PER_LAYER;
      const bn = (p: string): string | undefined => (s.b[p] ? n(`${p}.bias`) : undefined);
      // MLP branch: d(down output) = dx (the residual passes dx through unchanged).
      const dx2 = dx;
      let dx1: string | undefined;
      const da = linB(dx2, s.a, s.w['mlp.down_proj']!, n('mlp.down_proj.weight'), bn('mlp.down_proj'), below(base + 5));
      if (da) {
        const dup = g.op1('Mul', [da, s.sl]);
        const dsl = g.op1('Mul', [da, s.up]);
        // d silu(x)/dx = s * (1 + x * (1 - s)), s = sigmoid(x)
        const dsilu = g.op1('Mul', [s.sg, g.op1('Add', [one, g.op1('Mul', [s.gate, g.op1('Sub', [one, s.sg])])])]);
        const dgate = g.op1('Mul', [dsl, dsilu]);
        const need = below(base + 4);
        const dh2 = fusedB([dgate, dup], s.h2, s.Wgu, GU.map((p) => n(`${p}.weight`)), GU.map(bn), [I, I], need);
        if (dh2) {
          const dn = rmsB(dh2, s.n2, s.w['post_attention_layernorm']!, n('post_attention_layernorm.weight'), below(base + 3));
          if (dn) dx1 = g.op1('Add', [dx2, dn]);
        }
      }
      dx = undefined;
      if (!dx1) break;
      // Attention branch.
      const dctx2 = linB(dx1, s.ctx2, s.w['self_attn.o_proj']!, n('self_attn.o_proj.weight'), bn('self_attn.o_proj'), below(base + 2));
      if (!dctx2) break;
      const dctx = g.op1('Reshape', [g.op1('Transpose', [g.op1('Reshape', [dctx2, i64([-1, T, KV, G, hd])])], { perm: [0, 2, 1, 3, 4] }), i64([-1, KV, T * G, hd])]);
      const dP = g.op1('MatMul', [dctx, g.op1('Transpose', [s.vt], { perm: pt })]);
      const dvt = g.op1('MatMul', [g.op1('Transpose', [s.P], { perm: pt }), dctx]);
      const dS = g.op1('Mul', [s.P, g.op1('Sub', [dP, g.op1('ReduceSum', [g.op1('Mul', [dP, s.P]), i64([-1])], { keepdims: 1 })])]);
      const dSs = g.op1('Mul', [dS, scale]);
      const dqg = g.op1('MatMul', [dSs, s.kt]);
      const dkt = g.op1('MatMul', [g.op1('Transpose', [dSs], { perm: pt }), s.qg]);
      const dq2 = g.op1('Reshape', [
        unrope(g.op1('Reshape', [g.op1('Transpose', [g.op1('Reshape', [dqg, i64([-1, KV, T, G, hd])])], { perm: [0, 2, 1, 3, 4] }), i64([-1, T, H, hd])])),
        i64([-1, qd]),
      ]);
      const dk2 = g.op1('Reshape', [unrope(g.op1('Transpose', [dkt], { perm: [0, 2, 1, 3] })), i64([-1, kvd])]);
      const dv2 = g.op1('Reshape', [g.op1('Transpose', [dvt], { perm: [0, 2, 1, 3] }), i64([-1, kvd])]);
      const need = below(base + 1);
      const dh1 = fusedB([dq2, dk2, dv2], s.h1, s.Wqkv, QKV.map((p) => n(`${p}.weight`)), QKV.map(bn), [qd, kvd, kvd], need);
      if (!dh1) break;
      const dn = rmsB(dh1, s.n1, s.w['input_layernorm']!, n('input_layernorm.weight'), below(base));
      if (dn) dx = g.op1('Add', [dx1, dn]);
    }
    if (dx && trainSet.has(EMBED)) {
      const zeros = g.op1('ConstantOfShape', [i64([V, D])]);
      addGrad(EMBED, g.op1('ScatterND', [zeros, g.op1('Unsqueeze', [idsFlat, i64([1])]), dx], { reduction: 'add' }));
    }
    for (const name of trainable) {
      const list = grads.get(name);
      if (!list) throw new Error(`internal: no gradient was generated for ${name}`);
      g.op1(list.length === 1 ? 'Identity' : 'Sum', list, {}, gradName(name));
      g.outputs.push(valueInfo(gradName(name), DT.FLOAT, expectedShape(c, name)!));
    }
  }

  const model = g.model({
    opset: TRAIN_OPSET,
    producerVersion: '1',
    docString: `training graph: ${L} layers, T=${T}, ${trainable.length} trainable tensors`,
  });
  return { model, trainable, seqLen: T };
}
