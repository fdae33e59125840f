/**
 * Exports a LLaMA-family checkpoint (any `WeightSource`, e.g. an `HfCheckpoint`) to one ONNX graph
 * (opset 17 plus ONNX Runtime's com.microsoft fused CPU operators) that serves both prefill (empty
 * cache) and KV-cache decode over a preallocated cache that the caller updates in place.
 *
 * Inputs:  input_ids [B,T] int64, position_ids [B,T] int64,
 *          past_key_values.{i}.key / .value [B, kvHeads, C, headDim] float32: a cache of capacity C whose
 *            first past_length[b] entries of row b are valid (the rest is ignored, whatever it holds),
 *          past_length [B] int64,
 *          attention_mask [B, C+T] int64: 1 = real token, 0 = padding, over the cache entries then the new tokens,
 *          logits_to_keep [] int64 (0 = logits for all positions, k = the last k positions only).
 * Outputs: logits [B,T',V] (T' = T, or the last `logits_to_keep` positions),
 *          new_keys / new_values [L*B, kvHeads, T, headDim]: the new tokens' keys and values, layer-major;
 *            the caller writes them into its cache at each row's past_length (no copy of the cache).
 *
 * Query t of row b has sequence index past_length[b] + t; cache entry k has index k. The graph is core's
 * shared decoder (model/decoder) run with symbolic DecoderOps. Layout choices: each projection group
 * (q/k/v, attention output, gate/up, down) is one MatMul (weights stored transposed, [in, out]); the
 * 1/sqrt(headDim) attention scale is folded into the q projection (RoPE is linear, so this commutes);
 * RoPE is ONNX Runtime's fused RotaryEmbedding (rotate-half) over per-token cos/sin computed in-graph
 * from position_ids with core's inverse frequencies and attention scaling (model/rope), so every scaling
 * type (including length-dependent longrope) takes the same path; a residual add followed by an RMSNorm
 * is one SkipSimplifiedLayerNormalization (the first norm too, with a zero skip); grouped-query attention reshapes q to
 * [B, kvHeads, T*group, headDim] and multiplies with the un-repeated K/V; attention scores over the
 * cache and over the new keys are two products (no concatenation of the cache) sharing one softmax; the
 * attention mask follows core's rule (model/positions: causal, padding keys masked except a query's
 * own, per-layer sliding windows). The decoder is in the graph twice, as the two branches of one If on
 * an empty cache (C = 0): the prefill branch attends over the new keys alone (one product, no
 * concatenation and split of the scores around the softmax), the cache branch as above; both read the
 * same initializers, so the weights are held once. The LM head is a Gemm with transB on the [V, D] matrix, so a tied
 * head shares the embedding initializer.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import {
  ConfigError,
  EMBED,
  MASK,
  checkRepresentable,
  decoder,
  layerTensorByRole,
  projections,
  ropeFrequencies,
  type DecoderOps,
  FINAL_NORM,
  LM_HEAD,
  OutputError,
  layerTensorName,
  pathExists,
  recoverTempSiblings,
  renameIntoPlace,
  tempSibling,
  trackTemp,
  type LlamaConfig,
  type WeightSource,
} from '@llama-pro/core';
import { onnx } from 'onnx-proto';
import { DT, EmbeddedSink, GraphBuilder, MS_DOMAIN, encodeModel, valueInfo, type InitializerSink } from './graph';

export const ONNX_OPSET = 17;
/** Bumped whenever the exported graph changes (part of the export cache key). */
export const EXPORT_FORMAT_VERSION = 4;
/** Protobuf cannot hold more than 2 GiB; models above this size need an external data file. */
export const PROTOBUF_LIMIT_BYTES = 2 ** 31 - 1;
/** Default threshold above which `export` writes weights to an external data file. */
export const EXTERNAL_DATA_THRESHOLD_BYTES = 2_000_000_000;

export const INPUT_IDS = 'input_ids';
export const ATTENTION_MASK = 'attention_mask';
export const POSITION_IDS = 'position_ids';
export const PAST_LENGTH = 'past_length';
export const LOGITS_TO_KEEP = 'logits_to_keep';
export const LOGITS = 'logits';
export const NEW_KEYS = 'new_keys';
export const NEW_VALUES = 'new_values';
export const pastKeyName = (layer: number): string => `past_key_values.${layer}.key`;
export const pastValueName = (layer: number): string => `past_key_values.${layer}.value`;

export interface ExportProgress {
  (done: number, total: number): void;
}

/** Refuses configurations the graph does not implement. */
export function checkExportable(c: LlamaConfig): void {
  checkRepresentable(c, 'onnx');
}

/** Bytes of float32 weights the export will hold. */
export function exportWeightBytes(c: LlamaConfig): number {
  const q = c.numAttentionHeads * c.headDim;
  const kv = c.numKeyValueHeads * c.headDim;
  const D = c.hiddenSize;
  const I = c.intermediateSize;
  const perLayer = 2 * D + D * (q + 2 * kv) + (c.qkvBias ? q + 2 * kv : 0) + q * D + (c.oBias ? D : 0) + 3 * D * I + (c.mlpBias ? 2 * I + D : 0);
  return 4 * (c.vocabSize * D * (c.tieWordEmbeddings ? 1 : 2) + c.numHiddenLayers * perLayer + D);
}

/** [rows, cols] row-major -> [cols, rows]. */
function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  const B = 32;
  for (let r0 = 0; r0 < rows; r0 += B) {
    const r1 = Math.min(rows, r0 + B);
    for (let c0 = 0; c0 < cols; c0 += B) {
      const c1 = Math.min(cols, c0 + B);
      for (let r = r0; r < r1; r++) for (let c = c0; c < c1; c++) out[c * rows + r] = a[r * cols + c]!;
    }
  }
  return out;
}

/** Concatenates [rows_i, cols] matrices (HF [out, in] weights) and returns the transposed [cols, sum rows]. */
function fusedTransposed(parts: readonly Float32Array[], cols: number): Float32Array {
  const total = parts.reduce((a, p) => a + p.length, 0);
  const cat = new Float32Array(total);
  let off = 0;
  for (const p of parts) {
    cat.set(p, off);
    off += p.length;
  }
  return transpose(cat, total / cols, cols);
}

function concat(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function scaled(a: Float32Array, s: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! * s;
  return out;
}

/** Fused initializers of one projection group of a layer: weight [in, sum out] (transposed), bias, output widths. */
interface FusedProjection {
  readonly w: string;
  readonly b: string | undefined;
  readonly splits: readonly number[];
}

/**
 * Builds the graph, reading weights tensor by tensor from `source` into `sink`, then writing the
 * shared decoder (core's model/decoder) with symbolic DecoderOps over graph value names.
 */
export async function buildLlamaModel(source: WeightSource, sink: InitializerSink = new EmbeddedSink(), onProgress?: ExportProgress): Promise<onnx.ModelProto> {
  const c = source.config;
  checkExportable(c);
  const g = new GraphBuilder(sink);
  const D = c.hiddenSize;
  const H = c.numAttentionHeads;
  const KV = c.numKeyValueHeads;
  const hd = c.headDim;
  const G = H / KV;
  const V = c.vocabSize;
  const L = c.numHiddenLayers;
  const totalSteps = L + 2;
  let step = 0;
  const tick = () => onProgress?.(++step, totalSteps);

  g.inputs.push(valueInfo(INPUT_IDS, DT.INT64, ['batch_size', 'sequence_length']));
  g.inputs.push(valueInfo(ATTENTION_MASK, DT.INT64, ['batch_size', 'total_sequence_length']));
  g.inputs.push(valueInfo(POSITION_IDS, DT.INT64, ['batch_size', 'sequence_length']));
  for (let i = 0; i < L; i++) {
    g.inputs.push(valueInfo(pastKeyName(i), DT.FLOAT, ['batch_size', KV, 'cache_capacity', hd]));
    g.inputs.push(valueInfo(pastValueName(i), DT.FLOAT, ['batch_size', KV, 'cache_capacity', hd]));
  }
  g.inputs.push(valueInfo(PAST_LENGTH, DT.INT64, ['batch_size']));
  // 0 = logits for every position; k > 0 = only the last k positions (prefill for generation needs 1).
  g.inputs.push(valueInfo(LOGITS_TO_KEEP, DT.INT64, []));

  const r = (name: string) => source.readFloat32(name);

  // --- weights, one tensor at a time (memory stays bounded): norms as stored; each projection group
  // fused into one transposed [in, sum out] matrix (and bias), the 1/sqrt(headDim) scale folded into q.
  const qScale = 1 / Math.sqrt(hd);
  const embed = await g.weight(EMBED, [V, D], await r(EMBED));
  tick();
  const norms = new Map<string, string>();
  const fused = new Map<string, FusedProjection>();
  for (let i = 0; i < L; i++) {
    for (const role of ['attn_norm', 'mlp_norm'] as const) {
      const name = layerTensorName(i, layerTensorByRole(c, role)!.suffix);
      norms.set(name, await g.weight(name, [D], await r(name)));
    }
    for (const group of ['qkv', 'attn_out', 'gate_up', 'mlp_out'] as const) {
      const ps = projections(c, i, group);
      const parts = await Promise.all(ps.map(async (p, j) => (group === 'qkv' && j === 0 ? scaled(await r(p.weight), qScale) : r(p.weight))));
      const inF = parts[0]!.length / ps[0]!.outFeatures;
      const outF = ps.reduce((a, p) => a + p.outFeatures, 0);
      const w = await g.weight(`layers.${i}.${group}.weight_t`, [inF, outF], fusedTransposed(parts, inF));
      let b: string | undefined;
      if (ps.every((p) => p.bias !== null)) {
        const biases = await Promise.all(ps.map(async (p, j) => (group === 'qkv' && j === 0 ? scaled(await r(p.bias!), qScale) : r(p.bias!))));
        b = await g.weight(`layers.${i}.${group}.bias`, [outF], concat(biases));
      } else if (ps.some((p) => p.bias !== null)) throw new ConfigError(`layer ${i}: the ${group} projections have biases on some outputs only, which the onnx exporter does not fuse`);
      fused.set(`${i}.${group}`, { w, b, splits: ps.map((p) => p.outFeatures) });
    }
    tick();
  }
  norms.set(FINAL_NORM, await g.weight(FINAL_NORM, [D], await r(FINAL_NORM)));
  const headW = c.tieWordEmbeddings ? embed : await g.weight(LM_HEAD, [V, D], await r(LM_HEAD));
  tick();

  // --- rotary cos/sin per token, [B*T, hd/2] (times the attention scaling of yarn and longrope), for
  // RotaryEmbedding with position ids 0..B*T-1 into that table
  const posF = g.op1('Cast', [POSITION_IDS], { to: DT.FLOAT });
  const rs = c.ropeScaling;
  const short = ropeFrequencies(c);
  let inv = g.f32([...short.invFreq]);
  if (rs?.type === 'longrope') {
    // transformers switches to the long factors when a forward's largest position + 1 exceeds the original length.
    const long = ropeFrequencies(c, rs.originalMaxPositionEmbeddings + 1);
    const seqLen = g.op1('Add', [g.op1('ReduceMax', [POSITION_IDS], { keepdims: 0 }), g.i64([1], true)]);
    inv = g.op1('Where', [g.op1('Greater', [seqLen, g.i64([rs.originalMaxPositionEmbeddings], true)]), g.f32([...long.invFreq]), inv]);
  }
  const freqs = g.op1('Reshape', [g.op1('Mul', [g.op1('Unsqueeze', [posF, g.i64([2])]), inv]), g.i64([-1, hd / 2])]); // [B*T,hd/2]
  let cosTable = g.op1('Cos', [freqs]);
  let sinTable = g.op1('Sin', [freqs]);
  if (short.attentionScaling !== 1) {
    const a = g.f32([short.attentionScaling], true);
    cosTable = g.op1('Mul', [cosTable, a]);
    sinTable = g.op1('Mul', [sinTable, a]);
  }
  const idsShape = g.op1('Shape', [INPUT_IDS]);
  const ropeIdx = g.op1('Reshape', [g.op1('Range', [g.i64([0], true), g.op1('Size', [INPUT_IDS]), g.i64([1], true)]), idsShape]); // [B,T]

  // --- additive attention masks (core's model/positions rule). Key sequence indices: cache entry k is k
  // when k < past_length[b] and never attended otherwise (a huge index fails the causal test); new key j
  // is past_length[b] + j. Query t is past_length[b] + t. Query q sees key k iff k <= q, k is real or
  // k = q, and q - k < window on sliding-window layers; one mask per window kind.
  const C = g.op1('Shape', [pastKeyName(0)], { start: 2, end: 3 });
  const T = g.op1('Shape', [INPUT_IDS], { start: 1, end: 2 });
  const Cs = g.op1('Squeeze', [C, g.i64([0])]);
  const Ts = g.op1('Squeeze', [T, g.i64([0])]);
  const S = g.op1('Add', [Cs, Ts]);
  const zeroS = g.i64([0], true);
  const oneS = g.i64([1], true);
  const pl = g.op1('Unsqueeze', [PAST_LENGTH, g.i64([1])]); // [B,1]
  const kr = g.op1('Unsqueeze', [g.op1('Range', [zeroS, S, oneS]), g.i64([0])]); // [1,S]
  const inCache = g.op1('Less', [kr, Cs]); // [1,S]
  const cacheIdx = g.op1('Where', [g.op1('Less', [kr, pl]), kr, g.i64([2 ** 40], true)]); // [B,S]
  const kseq = g.op1('Where', [inCache, cacheIdx, g.op1('Sub', [g.op1('Add', [pl, kr]), Cs])]); // [B,S]
  const qseq = g.op1('Add', [pl, g.op1('Unsqueeze', [g.op1('Range', [zeroS, Ts, oneS]), g.i64([0])])]); // [B,T]
  const kseq3 = g.op1('Unsqueeze', [kseq, g.i64([1])]); // [B,1,S]
  const qseq3 = g.op1('Unsqueeze', [qseq, g.i64([2])]); // [B,T,1]
  const causal = g.op1('LessOrEqual', [kseq3, qseq3]); // [B,T,S]
  const own = g.op1('Equal', [kseq3, qseq3]);
  const notPad = g.op1('Unsqueeze', [g.op1('Cast', [ATTENTION_MASK], { to: DT.BOOL }), g.i64([1])]); // [B,1,S]
  const allowed = g.op1('And', [causal, g.op1('Or', [notPad, own])]); // [B,T,S]
  const maskFor = (window: number | null): string => {
    const ok = window === null ? allowed : g.op1('And', [allowed, g.op1('Less', [g.op1('Sub', [qseq3, kseq3]), g.i64([window], true)])]);
    const mask3 = g.op1('Where', [ok, g.f32([0], true), g.f32([MASK], true)]); // [B,T,S]
    // Scores are laid out [B, KV, T*G, S] (rows ordered t, then g): repeat each mask row G times once here.
    if (G === 1) return g.op1('Unsqueeze', [mask3, g.i64([1])]);
    const rep = g.op1('Expand', [g.op1('Unsqueeze', [mask3, g.i64([2])]), g.i64([1, 1, G, 1])]); // [B,T,G,S]
    const shp = g.op1('Concat', [g.op1('Shape', [INPUT_IDS], { start: 0, end: 1 }), g.i64([1, -1]), g.op1('Unsqueeze', [S, g.i64([0])])], { axis: 0 });
    return g.op1('Reshape', [rep, shp]); // [B,1,T*G,S]
  };
  const masks = new Map<number | null, string>();
  for (const w of c.attentionWindows) if (!masks.has(w)) masks.set(w, maskFor(w));
  const cacheAndNew = g.op1('Concat', [C, T], { axis: 0 }); // split sizes of the scores' last axis
  const emptyCache = g.op1('Equal', [Cs, zeroS]);
  const newKeys: string[] = [];
  const newValues: string[] = [];
  /** Building the prefill branch (empty cache), else the cache branch. */
  let prefill = false;
  // Residual sums: an RMSNorm of one becomes a SkipSimplifiedLayerNormalization (add and norm in one kernel).
  const sums = new Map<string, onnx.INodeProto>();

  const linear = (t: string, w: string, b?: string): string => {
    const y = g.op1('MatMul', [t, w]);
    return b ? g.op1('Add', [y, b]) : y;
  };

  // --- the shared decoder over symbolic values: activations [B,T,D], heads [B,T,heads,hd]
  const ops: DecoderOps<string> = {
    embed: () => g.op1('Gather', [embed, INPUT_IDS], { axis: 0 }),
    rmsNorm: (t, weight) => {
      const add = sums.get(t);
      if (add) {
        // the Add that produced t becomes the fused kernel; t stays its (fourth) sum output
        const y = g.fresh('SkipSimplifiedLayerNormalization');
        g.rewrite(add, 'SkipSimplifiedLayerNormalization', [add.input![0]!, add.input![1]!, norms.get(weight)!], [y, '', '', t], { epsilon: { float: c.rmsNormEps } }, MS_DOMAIN);
        sums.delete(t);
        return y;
      }
      // Not after a residual add (the first norm): the same kernel with a zero skip, so that every norm
      // rounds alike (an identity block inserted first must leave the logits bit-exact; expand --verify).
      const zeros = g.op1('ConstantOfShape', [g.op1('Shape', [t])]);
      return g.op('SkipSimplifiedLayerNormalization', [t, zeros, norms.get(weight)!], { epsilon: { float: c.rmsNormEps } }, 1, undefined, MS_DOMAIN)[0]!;
    },
    project: (t, layer, group) => {
      const f = fused.get(`${layer}.${group}`)!;
      const y = linear(t, f.w, f.b);
      return f.splits.length === 1 ? [y] : g.op('Split', [y, g.i64([...f.splits])], { axis: -1 }, f.splits.length);
    },
    rope: (t, kind) => g.op('RotaryEmbedding', [t, ropeIdx, cosTable, sinTable], { interleaved: 0, num_heads: kind === 'q' ? H : KV }, 1, undefined, MS_DOMAIN)[0]!,
    // q arrives pre-scaled by 1/sqrt(headDim) (folded into the q projection above).
    attention: (q, k, v, i) => {
      const heads = (x: string) => g.op1('Transpose', [g.op1('Reshape', [x, g.i64([0, 0, KV, hd])])], { perm: [0, 2, 1, 3] }); // [B,KV,T,hd]
      const qg = G === 1 ? heads(q) : g.op1('Reshape', [g.op1('Transpose', [g.op1('Reshape', [q, g.i64([0, 0, KV, G, hd])])], { perm: [0, 2, 1, 3, 4] }), g.i64([0, 0, -1, hd])]); // [B,KV,T*G,hd]
      const kNew = heads(k);
      const vNew = heads(v);
      newKeys.push(kNew);
      newValues.push(vNew);
      const kT = (x: string) => g.op1('Transpose', [x], { perm: [0, 1, 3, 2] });
      const mask = masks.get(c.attentionWindows[i]!)!;
      const toTokens = (ctx: string) => {
        const merged = G === 1 ? ctx : g.op1('Reshape', [ctx, g.i64([0, 0, -1, G * hd])]); // [B,KV,T,G*hd]
        return g.op1('Reshape', [g.op1('Transpose', [merged], { perm: [0, 2, 1, 3] }), g.i64([0, 0, -1])]); // [B,T,H*hd]
      };
      if (prefill) {
        // empty cache: the new keys alone (no empty products, no concatenation and split of the scores)
        const probs = g.op1('Softmax', [g.op1('Add', [g.op1('MatMul', [qg, kT(kNew)]), mask])], { axis: -1 });
        return toTokens(g.op1('MatMul', [probs, vNew]));
      }
      const scores = g.op1('Concat', [g.op1('MatMul', [qg, kT(pastKeyName(i))]), g.op1('MatMul', [qg, kT(kNew)])], { axis: -1 }); // [B,KV,T*G,C+T]
      const probs = g.op1('Softmax', [g.op1('Add', [scores, mask])], { axis: -1 });
      const [pCache, pNew] = g.op('Split', [probs, cacheAndNew], { axis: -1 }, 2);
      return toTokens(g.op1('Add', [g.op1('MatMul', [pCache!, pastValueName(i)]), g.op1('MatMul', [pNew!, vNew])])); // [B,KV,T*G,hd]
    },
    swiglu: (gate, up) => g.op1('Mul', [g.op1('Mul', [gate, g.op1('Sigmoid', [gate])]), up]),
    add: (a, b) => {
      const y = g.op1('Add', [a, b]);
      sums.set(y, g.nodes[g.nodes.length - 1]!);
      return y;
    },
    // keep the last `logits_to_keep` positions (0 = all), then the LM head
    head: (xn) => {
      const keep = g.op1('Unsqueeze', [LOGITS_TO_KEEP, g.i64([0])]);
      const start = g.op1('Where', [g.op1('Greater', [keep, g.i64([0])]), g.op1('Neg', [keep]), g.i64([0])]);
      const xs = g.op1('Slice', [xn, start, g.i64([2 ** 53 - 1]), g.i64([1])]); // [B,T',D]
      const logits2d = g.op1('Gemm', [g.op1('Reshape', [xs, g.i64([-1, D])]), headW], { transB: 1 });
      const outShape = g.op1('Concat', [g.op1('Shape', [xs], { start: 0, end: 2 }), g.i64([V])], { axis: 0 });
      return g.op1('Reshape', [logits2d, outShape]);
    },
  };
  // Two copies of the decoder over the same initializers (held once): the prefill branch when the cache
  // is empty, the cache branch otherwise; one If per run picks one.
  const body = (p: boolean) => () => {
    prefill = p;
    newKeys.length = 0;
    newValues.length = 0;
    sums.clear();
    const logits = decoder(c, ops);
    return [logits, g.op1('Concat', newKeys, { axis: 0 }), g.op1('Concat', newValues, { axis: 0 })];
  };
  const prefillGraph = g.branch('prefill', body(true));
  const cachedGraph = g.branch('cached', body(false));
  g.op('If', [emptyCache], { then_branch: { graph: prefillGraph }, else_branch: { graph: cachedGraph } }, 3, [LOGITS, NEW_KEYS, NEW_VALUES]);
  g.outputs.push(valueInfo(LOGITS, DT.FLOAT, ['batch_size', 'logits_length', V]));
  g.outputs.push(valueInfo(NEW_KEYS, DT.FLOAT, ['layers_x_batch', KV, 'sequence_length', hd]));
  g.outputs.push(valueInfo(NEW_VALUES, DT.FLOAT, ['layers_x_batch', KV, 'sequence_length', hd]));

  return g.model({
    opset: ONNX_OPSET,
    producerVersion: String(EXPORT_FORMAT_VERSION),
    docString: `${c.architectureClass}: ${L} layers, hidden ${D}, ${H} heads (${KV} kv), vocab ${V}`,
    metadata: {
      'llama_pro.export_format': String(EXPORT_FORMAT_VERSION),
      'llama_pro.architecture': c.architectureClass,
      'llama_pro.num_layers': String(L),
      'llama_pro.num_key_value_heads': String(KV),
      'llama_pro.head_dim': String(hd),
      'llama_pro.vocab_size': String(V),
    },
  });
}

/** Exports to an in-memory ONNX model (weights embedded). Refuses models beyond protobuf's 2 GiB. */
export async function exportLlamaOnnxBytes(source: WeightSource, onProgress?: ExportProgress): Promise<Uint8Array> {
  const bytes = exportWeightBytes(source.config);
  if (bytes >= PROTOBUF_LIMIT_BYTES - 16_000_000) {
    throw new ConfigError(
      `the model's ${bytes} bytes of float32 weights do not fit in one in-memory ONNX protobuf (2 GiB limit); export to a file with an external data file instead (llama-pro export-onnx)`,
      'ONNX_TOO_LARGE',
    );
  }
  return encodeModel(await buildLlamaModel(source, new EmbeddedSink(), onProgress));
}

/** Appends initializer bytes to an open file (4 KiB aligned, so ORT can map them). */
class ExternalFileSink implements InitializerSink {
  private offset = 0;
  constructor(
    private readonly fh: fsp.FileHandle,
    private readonly location: string,
  ) {}

  async place(_name: string, bytes: Uint8Array): Promise<Partial<onnx.ITensorProto>> {
    const aligned = Math.ceil(this.offset / 4096) * 4096;
    if (aligned > this.offset) await this.fh.write(new Uint8Array(aligned - this.offset), 0, aligned - this.offset, this.offset);
    let written = 0;
    while (written < bytes.byteLength) {
      const { bytesWritten } = await this.fh.write(bytes, written, bytes.byteLength - written, aligned + written);
      written += bytesWritten;
    }
    this.offset = aligned + bytes.byteLength;
    return {
      dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: [
        { key: 'location', value: this.location },
        { key: 'offset', value: String(aligned) },
        { key: 'length', value: String(bytes.byteLength) },
      ],
    };
  }

  get size(): number {
    return this.offset;
  }
}

export interface ExportOnnxOptions {
  /** Weights in an external data file `<out>.data`: true, false, or 'auto' (default: when weights exceed 2 GB). */
  externalData?: boolean | 'auto';
  /** Replace existing outputs. */
  force?: boolean;
  onProgress?: ExportProgress;
}

export interface ExportOnnxResult {
  file: string;
  /** The external data file, when one was written. */
  dataFile?: string;
  modelBytes: number;
  dataBytes: number;
}

async function syncFile(tmp: string): Promise<void> {
  const fh = await fsp.open(tmp, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Writes `outFile` (and `<outFile>.data` when weights go external) atomically: both are written under
 * temporary names and renamed into place only when complete, the data file first and the model last,
 * so a model file at the final path always refers to complete data.
 */
export async function exportLlamaOnnx(source: WeightSource, outFile: string, options: ExportOnnxOptions = {}): Promise<ExportOnnxResult> {
  checkExportable(source.config);
  const out = path.resolve(outFile);
  const dataFile = `${out}.data`;
  const mode = options.externalData ?? 'auto';
  const external = mode === 'auto' ? exportWeightBytes(source.config) > EXTERNAL_DATA_THRESHOLD_BYTES : mode;
  if (!options.force) {
    for (const p of external ? [out, dataFile] : [out]) {
      if (await pathExists(p)) throw new OutputError(`output ${p} already exists; choose another path or pass --force to replace it`, 'OUTPUT_EXISTS');
    }
  }
  await fsp.mkdir(path.dirname(out), { recursive: true });
  await recoverTempSiblings(path.dirname(out));
  const tmpModel = tempSibling(out);
  const tmpData = tempSibling(dataFile);
  trackTemp(tmpModel);
  trackTemp(tmpData);
  try {
    let modelBytes: Uint8Array;
    let dataBytes = 0;
    if (external) {
      const fh = await fsp.open(tmpData, 'wx');
      try {
        const sink = new ExternalFileSink(fh, path.basename(dataFile));
        modelBytes = encodeModel(await buildLlamaModel(source, sink, options.onProgress));
        dataBytes = sink.size;
      } finally {
        await fh.close();
      }
    } else {
      modelBytes = await exportLlamaOnnxBytes(source, options.onProgress);
    }
    await fsp.writeFile(tmpModel, modelBytes, { flag: 'wx' });
    if (external) await syncFile(tmpData);
    await syncFile(tmpModel);
    // Data first, model last; replaced files stay aside until both are in (crash-safe, see renameIntoPlace).
    await renameIntoPlace([...(external ? [{ tmp: tmpData, target: dataFile }] : []), { tmp: tmpModel, target: out }]);
    return { file: out, dataFile: external ? dataFile : undefined, modelBytes: modelBytes.byteLength, dataBytes };
  } catch (e) {
    await fsp.rm(tmpModel, { force: true });
    await fsp.rm(tmpData, { force: true });
    throw e;
  }
}
