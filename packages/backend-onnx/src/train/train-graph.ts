/**
 * Generates one ONNX training graph (opset 17) for a LLaMA-family decoder: forward, mean next-token
 * cross-entropy and its backward pass built from standard operators, so that onnxruntime-node (which has
 * no training API in JavaScript) can train.
 *
 * Inputs:  ids [B,T] int64, targets [B,T] int64 (IGNORE_INDEX = -100 is ignored; the loss is the mean
 *          over the other positions), and every trainable tensor under its Hugging Face name and shape.
 * Outputs: loss [] and `grad.<name>` for every trainable tensor (same shape as the tensor).
 * Frozen tensors are initializers. T is fixed per graph (the rotary cos/sin tables and the causal mask
 * are precomputed initializers); B is dynamic.
 *
 * The forward is written once, op by op (../grad: embed, rmsNorm, linear, rope, attention, swiglu, add,
 * headCrossEntropy), each op recording itself on a tape; the backward is the tape's reverse walk applying
 * each op kind's VJP. Only tensors that depend on a trainable tensor get gradients, so a frozen prefix is
 * forward-only and activation gradients stop at the lowest trainable stage. The residual stream is
 * [N = B*T, D]; layouts are described in the op files.
 */
import {
  ConfigError,
  EMBED,
  FINAL_NORM,
  IGNORE_INDEX,
  LM_HEAD,
  UsageError,
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
import { ropeInvFreq } from '../rope';
import { Tape, add, attention, embed, headCrossEntropy, linear, rmsNorm, rope, swiglu, type AttentionOptions, type Projection, type RopeTables } from '../grad';

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
  if (c.ropeScaling) ropeInvFreq(c);
  const T = opts.seqLen;
  if (!Number.isInteger(T) || T < 1) throw new UsageError(`sequence length must be a positive integer, got ${T}`);
  if (T > c.maxPositionEmbeddings) throw new ConfigError(`sequence length ${T} exceeds max_position_embeddings ${c.maxPositionEmbeddings}`);
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
  const tape = new Tape(g);
  for (const n of trainable) tape.watch(n);

  // ---- constants: rotary tables for positions 0..T-1, the causal mask, the score scale
  const scale = g.f32([1 / Math.sqrt(hd)], true);
  const inv = ropeInvFreq(c);
  const cosT = new Float32Array(T * hd);
  const sinT = new Float32Array(T * hd);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < hd / 2; i++) {
      const a = Math.fround(t * inv[i]!);
      const co = Math.cos(a);
      const si = Math.sin(a);
      cosT[t * hd + i] = co;
      cosT[t * hd + hd / 2 + i] = co;
      sinT[t * hd + i] = -si;
      sinT[t * hd + hd / 2 + i] = si;
    }
  }
  const tables: RopeTables = {
    cos: await g.weight('rope.cos', [T, 1, hd], cosT),
    sinSigned: await g.weight('rope.sin_signed', [T, 1, hd], sinT),
    seqLen: T,
    headDim: hd,
    rotaryDim: hd,
  };
  const maskV = new Float32Array(T * G * T);
  for (let r = 0; r < T * G; r++) for (let s = 0; s < T; s++) maskV[r * T + s] = s <= Math.floor(r / G) ? 0 : MASK_MIN;
  const mask = await g.weight('attention.causal_mask', [T * G, T], maskV);
  const attn: AttentionOptions = { seqLen: T, heads: H, kvHeads: KV, headDim: hd, mask, scale };

  const proj = async (i: number, p: string, out: number, hasBias: boolean): Promise<Projection> => ({
    w: await param(layerTensorName(i, `${p}.weight`)),
    b: hasBias ? await param(layerTensorName(i, `${p}.bias`)) : undefined,
    out,
  });

  // ---- forward (recorded on the tape)
  const idsFlat = g.op1('Reshape', [TRAIN_IDS, g.i64([-1])]);
  let x = embed(tape, await param(EMBED), idsFlat, [V, D]); // [N, D]
  for (let i = 0; i < L; i++) {
    const norm = (s: string): Promise<string> => param(layerTensorName(i, `${s}.weight`));
    // attention: rmsnorm, q/k/v projections, RoPE on q and k, softmax attention, output projection, residual
    const h = rmsNorm(tape, x, await norm('input_layernorm'), c.rmsNormEps);
    const [q, k, v] = linear(tape, h, [
      await proj(i, 'self_attn.q_proj', qd, c.qkvBias),
      await proj(i, 'self_attn.k_proj', kvd, c.qkvBias),
      await proj(i, 'self_attn.v_proj', kvd, c.qkvBias),
    ]) as [string, string, string];
    const ctx = attention(tape, rope(tape, q, tables, H), rope(tape, k, tables, KV), v, attn);
    x = add(tape, x, linear(tape, ctx, [await proj(i, 'self_attn.o_proj', D, c.oBias)])[0]!);
    // MLP: rmsnorm, gate/up projections, SwiGLU, down projection, residual
    const h2 = rmsNorm(tape, x, await norm('post_attention_layernorm'), c.rmsNormEps);
    const [gate, up] = linear(tape, h2, [await proj(i, 'mlp.gate_proj', I, c.mlpBias), await proj(i, 'mlp.up_proj', I, c.mlpBias)]) as [string, string];
    x = add(tape, x, linear(tape, swiglu(tape, gate, up), [await proj(i, 'mlp.down_proj', D, c.mlpBias)])[0]!);
  }
  const xf = rmsNorm(tape, x, await param(FINAL_NORM), c.rmsNormEps);
  const tFlat = g.op1('Reshape', [TRAIN_TARGETS, g.i64([-1])]);
  const loss = headCrossEntropy(tape, xf, await param(headName), tFlat, IGNORE_INDEX, TRAIN_LOSS);
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
  return { model, trainable, seqLen: T };
}
