/**
 * GGUF v3 writer (llama.cpp's file format, docs/gguf.md in ggml-org/ggml): header, typed metadata
 * key-values, tensor infos, then tensor data aligned to `general.alignment` (32). Tensors are
 * converted and written one at a time, so memory stays bounded by the largest tensor; the file is
 * written to a temporary sibling and renamed into place.
 *
 * Tensor names, metadata keys and the q/k row permutation follow convert_hf_to_gguf.py's LlamaModel.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { ConfigError, OutputError } from '../errors';
import type { LlamaConfig } from '../config/llama-config';
import { EMBED, FINAL_NORM, LM_HEAD, parseLayerTensorName } from '../config/tensor-names';
import { f32ToBf16Bits, f32ToF16Bits } from './dtype';
import { pathExists, tempSibling } from './atomic';
import type { WeightSource } from './hf-dir';
import { TokenType, type GgufTokenizer } from './gguf-tokenizer';
import { llama3RopeFactors } from '../model/rope';

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
export const GGUF_VERSION = 3;
export const GGUF_ALIGNMENT = 32;

/** gguf_metadata_value_type */
export enum GgufValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/** ggml_type values for the types this writer emits. */
export enum GgmlType {
  F32 = 0,
  F16 = 1,
  Q8_0 = 8,
  BF16 = 30,
}

export type GgufOutType = 'f32' | 'f16' | 'bf16' | 'q8_0';
/** llama_ftype (general.file_type): ALL_F32, MOSTLY_F16, MOSTLY_Q8_0, MOSTLY_BF16. */
const FILE_TYPE: Record<GgufOutType, number> = { f32: 0, f16: 1, q8_0: 7, bf16: 32 };
const GGML_OF: Record<GgufOutType, GgmlType> = { f32: GgmlType.F32, f16: GgmlType.F16, q8_0: GgmlType.Q8_0, bf16: GgmlType.BF16 };
export const QK8_0 = 32;

export type GgufValue =
  | { type: Exclude<GgufValueType, GgufValueType.ARRAY | GgufValueType.STRING | GgufValueType.BOOL>; value: number | bigint }
  | { type: GgufValueType.STRING; value: string }
  | { type: GgufValueType.BOOL; value: boolean }
  | { type: GgufValueType.ARRAY; itemType: GgufValueType; value: readonly (number | string | boolean)[] };

const u32 = (value: number): GgufValue => ({ type: GgufValueType.UINT32, value });
const f32 = (value: number): GgufValue => ({ type: GgufValueType.FLOAT32, value });
const str = (value: string): GgufValue => ({ type: GgufValueType.STRING, value });

class ByteSink {
  private parts: Buffer[] = [];
  length = 0;
  push(b: Buffer): void {
    this.parts.push(b);
    this.length += b.length;
  }
  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }
  u64(v: number | bigint): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  string(s: string): void {
    const bytes = Buffer.from(s, 'utf8');
    this.u64(bytes.length);
    this.push(bytes);
  }
  scalar(type: GgufValueType, v: number | bigint | string | boolean): void {
    const size = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 }[type as 0];
    if (type === GgufValueType.STRING) return this.string(v as string);
    const b = Buffer.alloc(size);
    switch (type) {
      case GgufValueType.UINT8: b.writeUInt8(Number(v)); break;
      case GgufValueType.INT8: b.writeInt8(Number(v)); break;
      case GgufValueType.UINT16: b.writeUInt16LE(Number(v)); break;
      case GgufValueType.INT16: b.writeInt16LE(Number(v)); break;
      case GgufValueType.UINT32: b.writeUInt32LE(Number(v)); break;
      case GgufValueType.INT32: b.writeInt32LE(Number(v)); break;
      case GgufValueType.FLOAT32: b.writeFloatLE(Number(v)); break;
      case GgufValueType.BOOL: b.writeUInt8(v ? 1 : 0); break;
      case GgufValueType.UINT64: b.writeBigUInt64LE(BigInt(v as number)); break;
      case GgufValueType.INT64: b.writeBigInt64LE(BigInt(v as number)); break;
      case GgufValueType.FLOAT64: b.writeDoubleLE(Number(v)); break;
      default: throw new Error(`unsupported GGUF scalar type ${type}`);
    }
    this.push(b);
  }
  value(v: GgufValue): void {
    this.u32(v.type);
    if (v.type === GgufValueType.ARRAY) {
      this.u32(v.itemType);
      this.u64(v.value.length);
      for (const x of v.value) this.scalar(v.itemType, x);
    } else this.scalar(v.type, v.value);
  }
  concat(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** Row-major HF shape -> GGUF dims (ne[0] is the fastest-varying axis). */
function ggufDims(shape: readonly number[]): number[] {
  return [...shape].reverse();
}

/** Bytes of a tensor of `numel` elements (`rowLen` = ne[0]) stored as `type`. */
export function ggmlByteSize(type: GgmlType, numel: number): number {
  switch (type) {
    case GgmlType.F32: return numel * 4;
    case GgmlType.F16:
    case GgmlType.BF16: return numel * 2;
    case GgmlType.Q8_0: return (numel / QK8_0) * 34;
  }
}

/**
 * Q8_0 as ggml's quantize_row_q8_0_ref: per 32-element block d = max|x| / 127 stored as f16,
 * id = 1 / d, q = roundf(x * id) as int8 (round half away from zero) — every step in float32, as the C
 * reference and gguf-py's Q8_0.quantize_blocks compute it (doubles round some x * id differently).
 */
export function quantizeQ8_0(x: Float32Array): Buffer {
  if (x.length % QK8_0 !== 0) throw new ConfigError(`q8_0 needs a multiple of ${QK8_0} elements, got ${x.length}`);
  const out = Buffer.alloc((x.length / QK8_0) * 34);
  for (let b = 0, o = 0; b < x.length; b += QK8_0, o += 34) {
    let amax = 0;
    for (let i = 0; i < QK8_0; i++) amax = Math.max(amax, Math.abs(x[b + i]!));
    const d = Math.fround(amax / 127);
    const id = d ? Math.fround(1 / d) : 0;
    out.writeUInt16LE(f32ToF16Bits(d), o);
    for (let i = 0; i < QK8_0; i++) {
      const v = Math.fround(x[b + i]! * id);
      out.writeInt8(Math.sign(v) * Math.round(Math.abs(v)), o + 2 + i);
    }
  }
  return out;
}

function encode(type: GgmlType, x: Float32Array): Buffer {
  switch (type) {
    case GgmlType.F32: return Buffer.from(x.buffer, x.byteOffset, x.byteLength);
    case GgmlType.F16:
    case GgmlType.BF16: {
      const out = Buffer.alloc(x.length * 2);
      const conv = type === GgmlType.F16 ? f32ToF16Bits : f32ToBf16Bits;
      for (let i = 0; i < x.length; i++) out.writeUInt16LE(conv(x[i]!), i * 2);
      return out;
    }
    case GgmlType.Q8_0: return quantizeQ8_0(x);
  }
}

/**
 * convert_hf_to_gguf.py LlamaModel.permute: HF stores q/k rows in "rotate half" order; llama.cpp
 * expects interleaved pairs. reshape(heads, 2, rows/heads/2, cols).swapaxes(1, 2).
 */
export function permuteQK(w: Float32Array, rows: number, cols: number, heads: number): Float32Array {
  const half = rows / heads / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++)
    for (let two = 0; two < 2; two++)
      for (let j = 0; j < half; j++) {
        const src = (h * 2 * half + two * half + j) * cols;
        const dst = (h * 2 * half + j * 2 + two) * cols;
        out.set(w.subarray(src, src + cols), dst);
      }
  return out;
}

const LAYER_MAP: Record<string, string> = {
  'input_layernorm.weight': 'attn_norm.weight',
  'post_attention_layernorm.weight': 'ffn_norm.weight',
  'self_attn.q_proj.weight': 'attn_q.weight',
  'self_attn.k_proj.weight': 'attn_k.weight',
  'self_attn.v_proj.weight': 'attn_v.weight',
  'self_attn.o_proj.weight': 'attn_output.weight',
  'self_attn.q_proj.bias': 'attn_q.bias',
  'self_attn.k_proj.bias': 'attn_k.bias',
  'self_attn.v_proj.bias': 'attn_v.bias',
  'mlp.gate_proj.weight': 'ffn_gate.weight',
  'mlp.up_proj.weight': 'ffn_up.weight',
  'mlp.down_proj.weight': 'ffn_down.weight',
};

/** llama.cpp's name for an HF LLaMA tensor, or null for tensors GGUF does not carry (e.g. rotary buffers). */
export function ggufTensorName(hfName: string): string | null {
  if (hfName === EMBED) return 'token_embd.weight';
  if (hfName === FINAL_NORM) return 'output_norm.weight';
  if (hfName === LM_HEAD) return 'output.weight';
  const l = parseLayerTensorName(hfName);
  if (!l) return null;
  const m = LAYER_MAP[l.suffix];
  return m ? `blk.${l.layer}.${m}` : null;
}

/** llama.cpp's architecture for a config: `llama` (LLaMA, Mistral) or `qwen2` (rotate-half RoPE, q/k/v biases). */
function ggufArchitecture(c: LlamaConfig): 'llama' | 'qwen2' {
  if (c.architecture === 'llama' || c.architecture === 'mistral') return 'llama';
  if (c.architecture === 'qwen2') return 'qwen2';
  throw new ConfigError(`export-gguf supports LLaMA, Mistral and Qwen2 dense models, not ${c.architectureClass}`);
}

/**
 * What the GGUF computes differently from the checkpoint, as warnings (the file is still written, as llama.cpp's
 * converter writes it): llama.cpp's llama and qwen2 architectures have no sliding-window attention, so a model with
 * attention windows attends to the whole context there and matches transformers only up to the window.
 */
export function ggufWarnings(c: LlamaConfig): string[] {
  const windows = [...new Set(c.attentionWindows.filter((w): w is number => w !== null))];
  if (windows.length === 0) return [];
  const layers = c.attentionWindows.filter((w) => w !== null).length;
  return [
    `export-gguf: ${layers} of ${c.numHiddenLayers} layers attend within a sliding window of ${windows.join('/')} tokens, which llama.cpp's ${ggufArchitecture(c)} architecture does not implement: in llama.cpp they attend to the whole context (as convert_hf_to_gguf writes such models), so its outputs match the checkpoint's only for sequences of up to ${Math.min(...windows)} tokens`,
  ];
}

export function llamaMetadata(c: LlamaConfig, type: GgufOutType, name: string, tok: GgufTokenizer | null): [string, GgufValue][] {
  const arch = ggufArchitecture(c);
  if (c.numExperts > 0 || c.oBias || c.mlpBias) throw new ConfigError('export-gguf: MoE models and o/mlp biases are not supported');
  if (arch === 'llama' && c.qkvBias) throw new ConfigError("export-gguf: q/k/v biases on a LLaMA model (attention_bias) are not supported by llama.cpp's llama architecture");
  if (c.partialRotaryFactor !== 1) throw new ConfigError(`export-gguf: partial_rotary_factor ${c.partialRotaryFactor} is not supported (llama.cpp's ${arch} architecture, as its converter writes it, rotates every channel of a head)`);
  const a = (k: string): string => `${arch}.${k}`;
  const kv: [string, GgufValue][] = [
    ['general.architecture', str(arch)],
    ['general.name', str(name)],
    ['general.file_type', u32(FILE_TYPE[type])],
    ['general.alignment', u32(GGUF_ALIGNMENT)],
    // GGML_QUANT_VERSION (gguf-py constants.py); convert_hf_to_gguf writes it for every output type.
    ['general.quantization_version', u32(2)],
    // LlamaModel writes vocab_size and rope.dimension_count; Qwen2Model neither (llama.cpp derives both).
    ...(arch === 'llama' ? [[a('vocab_size'), u32(c.vocabSize)] as [string, GgufValue]] : []),
    [a('context_length'), u32(c.maxPositionEmbeddings)],
    [a('embedding_length'), u32(c.hiddenSize)],
    [a('block_count'), u32(c.numHiddenLayers)],
    [a('feed_forward_length'), u32(c.intermediateSize)],
    [a('attention.head_count'), u32(c.numAttentionHeads)],
    [a('attention.head_count_kv'), u32(c.numKeyValueHeads)],
    ...(arch === 'llama' ? [[a('rope.dimension_count'), u32(c.headDim)] as [string, GgufValue]] : []),
    [a('rope.freq_base'), f32(c.ropeTheta)],
    [a('attention.layer_norm_rms_epsilon'), f32(c.rmsNormEps)],
  ];
  // Always, as convert_hf_to_gguf does for configs with head_dim (llama.cpp derives n_embd / n_head without them).
  kv.push([a('attention.key_length'), u32(c.headDim)], [a('attention.value_length'), u32(c.headDim)]);
  const rs = c.ropeScaling;
  if (rs) {
    if (rs.type === 'linear' || rs.type === 'yarn') {
      kv.push([a('rope.scaling.type'), str(rs.type)], [a('rope.scaling.factor'), f32(rs.factor)]);
      if (rs.type === 'yarn') {
        kv.push([a('rope.scaling.original_context_length'), u32(rs.originalMaxPositionEmbeddings)]);
        // As convert_hf_to_gguf: only what the config sets explicitly (llama.cpp's defaults are transformers' 32 / 1).
        if (rs.attentionFactor !== null) kv.push([a('rope.scaling.yarn_attn_factor'), f32(rs.attentionFactor)]);
        if (rs.betaFast !== 32) kv.push([a('rope.scaling.yarn_beta_fast'), f32(rs.betaFast)]);
        if (rs.betaSlow !== 1) kv.push([a('rope.scaling.yarn_beta_slow'), f32(rs.betaSlow)]);
        if (rs.mscale !== null || rs.mscaleAllDim !== null || !rs.truncate) throw new ConfigError('export-gguf: yarn with mscale / mscale_all_dim / truncate false is not supported by llama.cpp\'s llama architecture');
      }
    } else if (rs.type === 'llama3') {
      // carried by the rope_freqs tensor (llama3RopeFactors), as convert_hf_to_gguf writes it; no scaling keys
    } else {
      throw new ConfigError(`export-gguf: rope_scaling type "${rs.type}" is not supported (linear, yarn and llama3 are)`);
    }
  }
  // Without a tokenizer (e.g. a converted llama2.c checkpoint), an id-only vocab: llama.cpp's
  // no_vocab models cannot be evaluated by node-llama-cpp (it asserts on tokenizer use), so token i is
  // written as the placeholder piece "<id_i>", with bos/eos/unk from the config marked as control.
  tok ??= idOnlyTokenizer(c);
  kv.push(['tokenizer.ggml.model', str(tok.model)]);
  if (tok.pre) kv.push(['tokenizer.ggml.pre', str(tok.pre)]);
  if (tok.tokens.length !== c.vocabSize) throw new ConfigError(`export-gguf: the tokenizer has ${tok.tokens.length} tokens, the model's vocab_size is ${c.vocabSize}`);
  kv.push(['tokenizer.ggml.tokens', { type: GgufValueType.ARRAY, itemType: GgufValueType.STRING, value: tok.tokens }]);
  if (tok.scores) kv.push(['tokenizer.ggml.scores', { type: GgufValueType.ARRAY, itemType: GgufValueType.FLOAT32, value: tok.scores }]);
  kv.push(['tokenizer.ggml.token_type', { type: GgufValueType.ARRAY, itemType: GgufValueType.INT32, value: tok.tokenTypes }]);
  if (tok.merges) kv.push(['tokenizer.ggml.merges', { type: GgufValueType.ARRAY, itemType: GgufValueType.STRING, value: tok.merges }]);
  const ids: [string, number | null | undefined][] = [
    ['bos', tok.bosId ?? c.bosTokenId],
    ['eos', tok.eosId ?? c.eosTokenIds[0]],
    ['unknown', tok.unkId],
    ['padding', tok.padId],
  ];
  for (const [k, id] of ids) if (id !== null && id !== undefined) kv.push([`tokenizer.ggml.${k}_token_id`, u32(id)]);
  const bool = (value: boolean): GgufValue => ({ type: GgufValueType.BOOL, value });
  if (tok.addBos !== undefined) kv.push(['tokenizer.ggml.add_bos_token', bool(tok.addBos)]);
  if (tok.addEos !== undefined) kv.push(['tokenizer.ggml.add_eos_token', bool(tok.addEos)]);
  if (tok.addSpacePrefix !== undefined) kv.push(['tokenizer.ggml.add_space_prefix', bool(tok.addSpacePrefix)]);
  if (tok.chatTemplate) kv.push(['tokenizer.chat_template', str(tok.chatTemplate)]);
  return kv;
}

/**
 * Placeholder vocabulary for models that come without tokenizer files; callers then work in token
 * ids. It keeps the SentencePiece/llama2.c id layout llama.cpp's SPM vocab relies on (0 <unk>,
 * 1 <s>, 2 </s>, 3..258 the byte pieces <0x00>..<0xFF>, so "\n" resolves); every other id i is the
 * piece "<id_i>".
 */
export function idOnlyTokenizer(c: LlamaConfig): GgufTokenizer {
  const n = c.vocabSize;
  const hex = (b: number): string => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
  const tokens = Array.from({ length: n }, (_, i) => (i === 0 ? '<unk>' : i === 1 ? '<s>' : i === 2 ? '</s>' : i < 259 ? hex(i - 3) : `<id_${i}>`));
  const tokenTypes = tokens.map((_, i) => (i === 0 ? TokenType.UNKNOWN : i < 3 ? TokenType.CONTROL : i < 259 ? TokenType.BYTE : TokenType.NORMAL));
  if (n < 259) throw new ConfigError(`export-gguf: a model without tokenizer files needs vocab_size >= 259 for the byte-piece placeholder vocab, got ${n}`);
  return { model: 'llama', tokens, scores: tokens.map(() => 0), tokenTypes, bosId: 1, eosId: 2, unkId: 0 };
}

export interface GgufExportOptions {
  type?: GgufOutType;
  force?: boolean;
  name?: string;
  tokenizer?: GgufTokenizer | null;
  onProgress?: (done: number, total: number) => void;
}

export interface GgufExportResult {
  file: string;
  bytes: number;
  tensors: number;
  type: GgufOutType;
}

interface Planned {
  hf: string;
  name: string;
  dims: number[];
  type: GgmlType;
  offset: number;
  bytes: number;
}

/** llama.cpp's per-frequency RoPE divisors (gguf-py MODEL_TENSOR.ROPE_FREQS). */
const ROPE_FREQS = 'rope_freqs.weight';

const pad = (n: number): number => (GGUF_ALIGNMENT - (n % GGUF_ALIGNMENT)) % GGUF_ALIGNMENT;

/** Writes `src` as a llama-architecture GGUF v3 file at `out`. */
export async function exportGguf(src: WeightSource, out: string, opts: GgufExportOptions = {}): Promise<GgufExportResult> {
  const type = opts.type ?? 'f32';
  if (!(type in FILE_TYPE)) throw new ConfigError(`--type must be f32, f16, bf16 or q8_0, got "${type}"`, 'USAGE');
  const c = src.config;
  if ((await pathExists(out)) && !opts.force) throw new OutputError(`${out} exists; pass --force to replace it`, 'OUTPUT_EXISTS');
  const kv = llamaMetadata(c, type, opts.name ?? path.basename(out, '.gguf'), opts.tokenizer ?? null);
  const arch = ggufArchitecture(c);

  const planned: Planned[] = [];
  let offset = 0;
  // convert_hf_to_gguf yields its extra tensors (llama3's rope_freqs) before the checkpoint's.
  const extra = new Map<string, Float32Array>();
  if (c.ropeScaling?.type === 'llama3') extra.set(ROPE_FREQS, llama3RopeFactors(c));
  for (const [name, data] of extra) {
    const bytes = ggmlByteSize(GgmlType.F32, data.length);
    planned.push({ hf: name, name, dims: [data.length], type: GgmlType.F32, offset, bytes });
    offset += bytes + pad(bytes);
  }
  for (const hf of src.tensorNames()) {
    const name = ggufTensorName(hf);
    if (!name) continue;
    if (hf === LM_HEAD && c.tieWordEmbeddings) continue;
    const shape = src.info(hf).shape;
    const dims = ggufDims(shape);
    const numel = shape.reduce((a, b) => a * b, 1);
    // As convert_hf_to_gguf: 1-D tensors (norms, biases) stay F32; q8_0 needs rows that are whole blocks.
    let t = shape.length === 1 ? GgmlType.F32 : GGML_OF[type];
    if (t === GgmlType.Q8_0 && dims[0]! % QK8_0 !== 0) t = GgmlType.F16;
    const bytes = ggmlByteSize(t, numel);
    planned.push({ hf, name, dims, type: t, offset, bytes });
    offset += bytes + pad(bytes);
  }

  const head = new ByteSink();
  head.u32(GGUF_MAGIC);
  head.u32(GGUF_VERSION);
  head.u64(planned.length);
  head.u64(kv.length);
  for (const [k, v] of kv) {
    head.string(k);
    head.value(v);
  }
  for (const p of planned) {
    head.string(p.name);
    head.u32(p.dims.length);
    for (const d of p.dims) head.u64(d);
    head.u32(p.type);
    head.u64(p.offset);
  }
  head.push(Buffer.alloc(pad(head.length)));

  const tmp = tempSibling(out);
  const fh = await fsp.open(tmp, 'wx');
  try {
    const header = head.concat();
    let pos = 0;
    const write = async (b: Buffer): Promise<void> => {
      await fh.write(b, 0, b.length, pos);
      pos += b.length;
    };
    await write(header);
    for (let i = 0; i < planned.length; i++) {
      const p = planned[i]!;
      let w = extra.get(p.hf) ?? (await src.readFloat32(p.hf));
      const l = parseLayerTensorName(p.hf);
      // llama.cpp's llama architecture rotates interleaved pairs, so q/k rows are permuted from transformers'
      // rotate-half order (convert_hf_to_gguf LlamaModel.permute); its qwen2 architecture rotates halves, as HF.
      if (arch === 'llama' && l && (l.suffix === 'self_attn.q_proj.weight' || l.suffix === 'self_attn.q_proj.bias')) {
        w = permuteQK(w, p.dims[1] ?? p.dims[0]!, p.dims.length > 1 ? p.dims[0]! : 1, c.numAttentionHeads);
      } else if (arch === 'llama' && l && (l.suffix === 'self_attn.k_proj.weight' || l.suffix === 'self_attn.k_proj.bias')) {
        w = permuteQK(w, p.dims[1] ?? p.dims[0]!, p.dims.length > 1 ? p.dims[0]! : 1, c.numKeyValueHeads);
      }
      const enc = encode(p.type, w);
      if (enc.length !== p.bytes) throw new Error(`internal: ${p.name} encoded to ${enc.length} bytes, planned ${p.bytes}`);
      await write(enc);
      await write(Buffer.alloc(pad(enc.length)));
      opts.onProgress?.(i + 1, planned.length);
    }
    await fh.sync();
    await fh.close();
    await fsp.rename(tmp, out);
    return { file: out, bytes: pos, tensors: planned.length, type };
  } catch (e) {
    await fh.close().catch(() => undefined);
    await fsp.rm(tmp, { force: true });
    throw e;
  }
}
