/**
 * Generates one ONNX training graph (opset 17) for a LLaMA-family decoder: forward, mean next-token
 * cross-entropy and its backward pass built from standard operators and ONNX Runtime's fused
 * com.microsoft RotaryEmbedding (the op the inference export uses; forward and adjoint), so that
 * onnxruntime-node (which has no training API in JavaScript) can train.
 *
 * Inputs:  ids [B,T] int64, targets [B,T] int64 (IGNORE_INDEX = -100 is ignored; the loss is the mean
 *          over the other positions), and every trainable tensor under its Hugging Face name and shape.
 * Outputs: loss [] and `grad.<name>` for every trainable tensor (same shape as the tensor).
 * Frozen tensors are initializers. T is fixed per graph (the rotary cos/sin tables and the causal mask
 * are precomputed initializers); B is dynamic.
 *
 * The forward is core's decoder (model/decoder) run over DecoderOps whose every op (../grad: embed,
 * rmsNorm, linear, rope, attention, swiglu, add, and the head fused with the loss) emits its nodes and
 * records itself on a tape; the backward is the tape's reverse walk applying each op kind's VJP. Only
 * tensors that depend on a trainable tensor get gradients, so a frozen prefix is forward-only and
 * activation gradients stop at the lowest trainable stage. RoPE (scaling and attention factor), the
 * attention windows and the mask rule come from core's model description.
 */
import {
  ConfigError,
  EMBED,
  IGNORE_INDEX,
  LM_HEAD,
  MASK,
  UsageError,
  attends,
  cosSin,
  expectedShape,
  expectedTensorNames,
  decoder,
  projections,
  type DecoderOps,
  type LlamaConfig,
  type WeightSource,
} from '@llama-pro/core';
import type { onnx } from 'onnx-proto';
import { DT, GraphBuilder, valueInfo } from '../graph';
import { checkExportable } from '../export';
import { Tape, add, attention, embed, headCrossEntropy, linear, rmsNorm, rope, swiglu, type RopeTables } from '../grad';

export const TRAIN_OPSET = 17;
export const TRAIN_IDS = 'ids';
export const TRAIN_TARGETS = 'targets';
export const TRAIN_LOSS = 'loss';
export const gradName = (param: string): string => `grad.${param}`;

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
  /**
   * Further parameters taken as graph inputs without a gradient (constants of the step whose values may
   * change between runs without a rebuild, e.g. every parameter of a loss-only graph).
   */
  readonly inputs?: readonly string[];
  /** Values to use instead of the source's for frozen tensors (e.g. parameters changed by training). */
  readonly overrides?: ReadonlyMap<string, Float32Array>;
}

export interface TrainGraph {
  readonly model: onnx.ModelProto;
  /** Trainable names in canonical order; graph inputs of these names, outputs `grad.<name>`. */
  readonly trainable: readonly string[];
  /** Every parameter that is a graph input: the trainable ones, then the other `inputs` (canonical order). */
  readonly inputs: readonly string[];
  readonly seqLen: number;
}

/**
 * Rotary tables [T, rd/2] for positions 0..T-1 from core's cosSin (RoPE scaling and attention factor
 * included; dynamic and longrope see the sequence length T as inference does): cos, sin and -sin, one
 * value per rotated pair (cosSin repeats each over the two halves of the rd rotated channels).
 */
async function ropeTables(g: GraphBuilder, c: LlamaConfig, T: number): Promise<RopeTables> {
  const { cos, sin, width: rd } = cosSin(c, Int32Array.from({ length: T }, (_, t) => t), T);
  const half = rd / 2;
  const cosT = new Float32Array(T * half);
  const sinT = new Float32Array(T * half);
  for (let t = 0; t < T; t++) {
    cosT.set(cos.subarray(t * rd, t * rd + half), t * half);
    sinT.set(sin.subarray(t * rd, t * rd + half), t * half);
  }
  return {
    cos: await g.weight('rope.cos', [T, half], cosT),
    sin: await g.weight('rope.sin', [T, half], sinT),
    sinNegated: await g.weight('rope.sin_negated', [T, half], sinT.map((v) => -v)),
    seqLen: T,
    headDim: c.headDim,
    rotaryDim: rd,
  };
}

/** A window that covers the whole sequence is plain causal attention (null). */
function effectiveWindow(window: number | null, T: number): number | null {
  return window !== null && window < T ? window : null;
}

/** Additive mask [T*G, T] for the query rows of grouped attention (row r is query r / G), by core's rule. */
function attentionMask(T: number, G: number, window: number | null): Float32Array {
  const m = new Float32Array(T * G * T);
  for (let r = 0; r < T * G; r++) {
    const q = Math.floor(r / G);
    for (let k = 0; k < T; k++) m[r * T + k] = attends(q, k, true, window) ? 0 : MASK;
  }
  return m;
}

/** Builds the training graph for `source` (weights read tensor by tensor). */
export async function buildTrainingGraph(source: WeightSource, opts: TrainGraphOptions): Promise<TrainGraph> {
  const c = source.config;
  checkExportable(c);
  const T = opts.seqLen;
  if (!Number.isInteger(T) || T < 1) throw new UsageError(`sequence length must be a positive integer, got ${T}`);
  if (T > c.maxPositionEmbeddings) throw new ConfigError(`sequence length ${T} exceeds max_position_embeddings ${c.maxPositionEmbeddings}`);
  const trainable = checkTrainable(c, opts.trainable);
  const trainSet = new Set(trainable);
  const fed = [...trainable, ...checkTrainable(c, opts.inputs ?? []).filter((n) => !trainSet.has(n))];
  const fedSet = new Set(fed);
  const g = new GraphBuilder();
  const D = c.hiddenSize;
  const H = c.numAttentionHeads;
  const KV = c.numKeyValueHeads;
  const hd = c.headDim;
  const G = H / KV;
  const V = c.vocabSize;
  const L = c.numHiddenLayers;
  const headName = c.tieWordEmbeddings ? EMBED : LM_HEAD;

  g.inputs.push(valueInfo(TRAIN_IDS, DT.INT64, ['batch_size', T]));
  g.inputs.push(valueInfo(TRAIN_TARGETS, DT.INT64, ['batch_size', T]));
  for (const n of fed) g.inputs.push(valueInfo(n, DT.FLOAT, expectedShape(c, n)!));

  // ---- parameters: trainable (and other fed) ones are graph inputs, frozen ones initializers (read one
  // tensor at a time)
  const params = new Map<string, string>();
  for (const name of expectedTensorNames(c)) {
    if (fedSet.has(name)) params.set(name, name);
    else params.set(name, await g.weight(name, expectedShape(c, name)!, opts.overrides?.get(name) ?? (await source.readFloat32(name))));
  }
  const param = (name: string): string => params.get(name)!;
  const tape = new Tape(g);
  for (const n of trainable) tape.watch(n);

  // ---- constants: rotary tables for positions 0..T-1, one additive mask per attention window, the score scale
  const scale = 1 / Math.sqrt(hd);
  const tables = await ropeTables(g, c, T);
  const masks = new Map<number | null, string>();
  for (const window of c.attentionWindows) {
    const w = effectiveWindow(window, T);
    if (!masks.has(w)) masks.set(w, await g.weight(w === null ? 'attention.causal_mask' : `attention.window_${w}_mask`, [T * G, T], attentionMask(T, G, w)));
  }

  // ---- forward: core's decoder over ops that emit nodes and record themselves on the tape; activations
  // [N = B*T, D], q/k after RoPE [B, T, heads, hd]. The head is fused with the loss (headCrossEntropy).
  const idsFlat = g.op1('Reshape', [TRAIN_IDS, g.i64([-1])]);
  const tFlat = g.op1('Reshape', [TRAIN_TARGETS, g.i64([-1])]);
  const ops: DecoderOps<string> = {
    embed: () => embed(tape, param(EMBED), idsFlat, [V, D]),
    rmsNorm: (x, weight) => rmsNorm(tape, x, param(weight), c.rmsNormEps),
    project: (x, layer, group) => linear(tape, x, projections(c, layer, group).map((p) => ({ w: param(p.weight), b: p.bias === null ? undefined : param(p.bias), out: p.outFeatures }))),
    rope: (x, kind) => rope(tape, x, tables, kind === 'q' ? H : KV),
    attention: (q, k, v, layer) => attention(tape, q, k, v, { seqLen: T, heads: H, kvHeads: KV, headDim: hd, mask: masks.get(effectiveWindow(c.attentionWindows[layer] ?? null, T))!, scale }),
    swiglu: (gate, up) => swiglu(tape, gate, up),
    add: (a, b) => add(tape, a, b),
    head: (x) => headCrossEntropy(tape, x, param(headName), tFlat, IGNORE_INDEX, TRAIN_LOSS),
  };
  const loss = decoder(c, ops);
  g.outputs.push(valueInfo(TRAIN_LOSS, DT.FLOAT, []));

  // ---- backward: the tape's reverse walk (d loss / d loss = 1)
  if (trainable.length > 0) {
    const grads = tape.backward(loss, g.f32([1], true));
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
  return { model, trainable, inputs: fed, seqLen: T };
}
