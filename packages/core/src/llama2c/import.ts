/**
 * llama2.c checkpoints (karpathy/llama2.c) -> Hugging Face LLaMA directories.
 *
 * Formats:
 * - legacy (version 0): 7 int32 header fields (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
 *   seq_len; negative vocab_size = separate classifier), then float32 weights grouped by kind across layers,
 *   the (unused) rotary tables, and the classifier when not shared.
 * - version 1: 256-byte header (magic "ak42", version, the 7 fields, shared-classifier flag), float32 norms
 *   first, then the matrices.
 * - version 2: like version 1 with a group size; matrices stored Q8_0 (int8 values + float32 scale per group),
 *   dequantized on import.
 *
 * llama2.c keeps q/k rows in Meta's interleaved rotary layout; HF expects rotate-half, so q/k rows are
 * permuted per head: hf[h*D + j*D/2 + i] = meta[h*D + 2*i + j].
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Llama2cError } from '../errors';
import { EMBED, FINAL_NORM, LM_HEAD, layerTensorName } from '../config/tensor-names';
import { type FloatDType, dtypeToTorch, encodeFromFloat32 } from '../io/dtype';
import type { OutputTensor } from '../io/hf-dir';
import { openRegularFile, readFully } from '../io/input-files';
import { CONFIG_LIMITS } from '../config/bounds';

export const LLAMA2C_MAGIC = 0x616b3432;

export interface Llama2cHeader {
  version: 0 | 1 | 2;
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  seqLen: number;
  sharedClassifier: boolean;
  groupSize: number;
}

interface Segment {
  /** HF tensor name. */
  name: string;
  shape: [number] | [number, number];
  /** Absolute byte offset of the stored data. */
  offset: number;
  /** Stored as Q8_0 (int8 + float32 scales following the values). */
  quantized: boolean;
  /** q/k projection needing the rotary permutation, with its head count. */
  permuteHeads?: number;
}

export interface Llama2cLayout {
  header: Llama2cHeader;
  segments: Segment[];
  expectedSize: number;
}

function validateHeader(file: string, h: Llama2cHeader): void {
  const fields: [string, number][] = [
    ['dim', h.dim],
    ['hidden_dim', h.hiddenDim],
    ['n_layers', h.nLayers],
    ['n_heads', h.nHeads],
    ['n_kv_heads', h.nKvHeads],
    ['vocab_size', h.vocabSize],
    ['seq_len', h.seqLen],
  ];
  // Ceilings: the config.json bounds of the same quantities (see config/bounds.ts), so a header cannot
  // make the reader lay out more tensors than any real model has.
  const limits: Record<string, number> = {
    dim: CONFIG_LIMITS.hidden_size,
    hidden_dim: CONFIG_LIMITS.intermediate_size,
    n_layers: CONFIG_LIMITS.num_hidden_layers,
    n_heads: CONFIG_LIMITS.num_attention_heads,
    n_kv_heads: CONFIG_LIMITS.num_key_value_heads,
    vocab_size: CONFIG_LIMITS.vocab_size,
    seq_len: 1 << 24,
  };
  for (const [k, v] of fields) {
    if (!Number.isInteger(v) || v <= 0 || v > limits[k]!) {
      throw new Llama2cError(file, `header field ${k} = ${v} is not a plausible size (1..${limits[k]}); this is not a llama2.c checkpoint or it is corrupt`);
    }
  }
  if (h.dim % h.nHeads !== 0) throw new Llama2cError(file, `dim ${h.dim} is not divisible by n_heads ${h.nHeads}`);
  if (h.nHeads % h.nKvHeads !== 0) throw new Llama2cError(file, `n_heads ${h.nHeads} is not a multiple of n_kv_heads ${h.nKvHeads}`);
  if ((h.dim / h.nHeads) % 2 !== 0) throw new Llama2cError(file, `head size ${h.dim / h.nHeads} must be even`);
}

/** Reads the header and computes where every tensor lives; checks the file size. */
export async function readLlama2cLayout(file: string): Promise<Llama2cLayout> {
  const pre = await fsp.stat(file).catch(() => null);
  if (pre?.isDirectory()) {
    const bins = (await fsp.readdir(file).catch(() => [] as string[])).filter((f) => f.endsWith('.bin')).sort();
    throw new Llama2cError(
      file,
      `is a directory; pass the llama2.c checkpoint file itself${bins.length ? ` (here: ${bins.map((b) => path.join(file, b)).join(', ')})` : ' (a .bin file written by llama2.c export.py)'}`,
    );
  }
  const { fh, stat: st } = await openRegularFile(file, (detail) => new Llama2cError(file, detail));
  try {
    const size = st.size;
    const head = Buffer.alloc(Math.min(size, 256));
    await readFully(fh, head, 0, (detail) => new Llama2cError(file, detail));
    if (size < 28) throw new Llama2cError(file, `file is ${size} bytes, shorter than a llama2.c header (28 bytes); it is truncated`);
    const magic = head.readUInt32LE(0);
    let h: Llama2cHeader;
    let dataStart: number;
    if (magic === LLAMA2C_MAGIC) {
      if (size < 256) throw new Llama2cError(file, `file is ${size} bytes, shorter than the 256-byte versioned header; it is truncated`);
      const version = head.readInt32LE(4);
      if (version !== 1 && version !== 2) throw new Llama2cError(file, `llama2.c format version ${version} is not supported (versions 0, 1 and 2 are)`);
      const f = [0, 1, 2, 3, 4, 5, 6].map((i) => head.readInt32LE(8 + 4 * i)) as number[];
      h = {
        version,
        dim: f[0]!,
        hiddenDim: f[1]!,
        nLayers: f[2]!,
        nHeads: f[3]!,
        nKvHeads: f[4]!,
        vocabSize: f[5]!,
        seqLen: f[6]!,
        sharedClassifier: head.readUInt8(36) !== 0,
        groupSize: version === 2 ? head.readInt32LE(37) : 0,
      };
      if (version === 2 && !(h.groupSize > 0)) throw new Llama2cError(file, `invalid Q8_0 group size ${h.groupSize}`);
      dataStart = 256;
    } else {
      const f = [0, 1, 2, 3, 4, 5, 6].map((i) => head.readInt32LE(4 * i)) as number[];
      h = {
        version: 0,
        dim: f[0]!,
        hiddenDim: f[1]!,
        nLayers: f[2]!,
        nHeads: f[3]!,
        nKvHeads: f[4]!,
        vocabSize: Math.abs(f[5]!),
        seqLen: f[6]!,
        sharedClassifier: f[5]! > 0,
        groupSize: 0,
      };
      dataStart = 28;
    }
    validateHeader(file, h);
    const layout = computeLayout(file, h, dataStart);
    if (size < layout.expectedSize) {
      throw new Llama2cError(file, `file is ${size} bytes but the header (dim ${h.dim}, ${h.nLayers} layers, vocab ${h.vocabSize}) needs ${layout.expectedSize}; it is truncated`);
    }
    if (size > layout.expectedSize) {
      throw new Llama2cError(file, `file is ${size} bytes but the header needs exactly ${layout.expectedSize}; it has trailing data or a wrong header`);
    }
    return layout;
  } finally {
    await fh.close();
  }
}

function computeLayout(file: string, h: Llama2cHeader, dataStart: number): Llama2cLayout {
  const { dim, hiddenDim, nLayers: L, nHeads, nKvHeads, vocabSize: V, seqLen } = h;
  const headSize = dim / nHeads;
  const kvDim = nKvHeads * headSize;
  const segments: Segment[] = [];
  let off = dataStart;
  const q8 = h.version === 2;
  const add = (name: string, shape: [number] | [number, number], quantized: boolean, permuteHeads?: number) => {
    segments.push({ name, shape, offset: off, quantized, permuteHeads });
    const n = shape.reduce((a, b) => a * b, 1);
    if (quantized) {
      if (n % h.groupSize !== 0) throw new Llama2cError(file, `tensor ${name} (${n} values) is not a multiple of group size ${h.groupSize}`);
      off += n + (n / h.groupSize) * 4;
    } else off += n * 4;
  };
  const perLayer = (suffix: string, shape: [number] | [number, number], quantized: boolean, permuteHeads?: number) => {
    for (let l = 0; l < L; l++) add(layerTensorName(l, suffix), shape, quantized, permuteHeads);
  };
  const mats = (quantized: boolean) => {
    perLayer('self_attn.q_proj.weight', [dim, dim], quantized, nHeads);
    perLayer('self_attn.k_proj.weight', [kvDim, dim], quantized, nKvHeads);
    perLayer('self_attn.v_proj.weight', [kvDim, dim], quantized);
    perLayer('self_attn.o_proj.weight', [dim, dim], quantized);
    perLayer('mlp.gate_proj.weight', [hiddenDim, dim], quantized);
    perLayer('mlp.down_proj.weight', [dim, hiddenDim], quantized);
    perLayer('mlp.up_proj.weight', [hiddenDim, dim], quantized);
  };
  if (h.version === 0) {
    add(EMBED, [V, dim], false);
    perLayer('input_layernorm.weight', [dim], false);
    perLayer('self_attn.q_proj.weight', [dim, dim], false, nHeads);
    perLayer('self_attn.k_proj.weight', [kvDim, dim], false, nKvHeads);
    perLayer('self_attn.v_proj.weight', [kvDim, dim], false);
    perLayer('self_attn.o_proj.weight', [dim, dim], false);
    perLayer('post_attention_layernorm.weight', [dim], false);
    perLayer('mlp.gate_proj.weight', [hiddenDim, dim], false);
    perLayer('mlp.down_proj.weight', [dim, hiddenDim], false);
    perLayer('mlp.up_proj.weight', [hiddenDim, dim], false);
    add(FINAL_NORM, [dim], false);
    off += seqLen * headSize * 4; // freq_cis_real + freq_cis_imag (seq_len * head_size/2 each), unused
    if (!h.sharedClassifier) add(LM_HEAD, [V, dim], false);
  } else {
    perLayer('input_layernorm.weight', [dim], false);
    perLayer('post_attention_layernorm.weight', [dim], false);
    add(FINAL_NORM, [dim], false);
    add(EMBED, [V, dim], q8);
    mats(q8);
    if (!h.sharedClassifier) add(LM_HEAD, [V, dim], q8);
  }
  return { header: h, segments, expectedSize: off };
}

/** Meta interleaved rotary rows -> HF rotate-half rows, per head. */
export function permuteRotaryRows(w: Float32Array, nHeads: number, rows: number, cols: number): Float32Array {
  const D = rows / nHeads;
  const half = D / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < nHeads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const src = (h * D + 2 * i + j) * cols;
        const dst = (h * D + j * half + i) * cols;
        out.set(w.subarray(src, src + cols), dst);
      }
    }
  }
  return out;
}

async function readSegment(file: string, fh: fsp.FileHandle, seg: Segment, groupSize: number): Promise<Float32Array> {
  const n = seg.shape.reduce((a, b) => a * b, 1);
  const fail = (detail: string) => new Llama2cError(file, detail);
  let values: Float32Array;
  if (!seg.quantized) {
    const buf = Buffer.alloc(n * 4);
    await readFully(fh, buf, seg.offset, fail);
    values = new Float32Array(buf.buffer, buf.byteOffset, n);
  } else {
    const q = Buffer.alloc(n);
    await readFully(fh, q, seg.offset, fail);
    const s = Buffer.alloc((n / groupSize) * 4);
    await readFully(fh, s, seg.offset + n, fail);
    const scales = new Float32Array(s.buffer, s.byteOffset, n / groupSize);
    const qi = new Int8Array(q.buffer, q.byteOffset, n);
    values = new Float32Array(n);
    for (let i = 0; i < n; i++) values[i] = qi[i]! * scales[Math.floor(i / groupSize)]!;
  }
  if (seg.permuteHeads) values = permuteRotaryRows(values, seg.permuteHeads, seg.shape[0], seg.shape[1]!);
  return values;
}

/** The HF config.json for a llama2.c header. */
export function llama2cConfig(h: Llama2cHeader, dtype: FloatDType = 'F32'): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: h.dim,
    intermediate_size: h.hiddenDim,
    num_hidden_layers: h.nLayers,
    num_attention_heads: h.nHeads,
    num_key_value_heads: h.nKvHeads,
    head_dim: h.dim / h.nHeads,
    vocab_size: h.vocabSize,
    max_position_embeddings: h.seqLen,
    rms_norm_eps: 1e-5,
    rope_theta: 10000.0,
    rope_scaling: null,
    hidden_act: 'silu',
    attention_bias: false,
    attention_dropout: 0.0,
    mlp_bias: false,
    tie_word_embeddings: h.sharedClassifier,
    bos_token_id: 1,
    eos_token_id: 2,
    initializer_range: 0.02,
    pretraining_tp: 1,
    use_cache: true,
    torch_dtype: dtypeToTorch(dtype),
  };
}

/** Output tensors (HF names, canonical order) that read the llama2.c file lazily, one tensor at a time. */
export function llama2cTensors(file: string, layout: Llama2cLayout, dtype: FloatDType = 'F32'): OutputTensor[] {
  const order = new Map<string, number>();
  const canonical = [EMBED];
  const suffixes = [
    'input_layernorm.weight',
    'self_attn.q_proj.weight',
    'self_attn.k_proj.weight',
    'self_attn.v_proj.weight',
    'self_attn.o_proj.weight',
    'post_attention_layernorm.weight',
    'mlp.gate_proj.weight',
    'mlp.up_proj.weight',
    'mlp.down_proj.weight',
  ];
  for (let l = 0; l < layout.header.nLayers; l++) for (const s of suffixes) canonical.push(layerTensorName(l, s));
  canonical.push(FINAL_NORM, LM_HEAD);
  canonical.forEach((n, i) => order.set(n, i));
  const segs = [...layout.segments].sort((a, b) => order.get(a.name)! - order.get(b.name)!);
  return segs.map((seg) => ({
    name: seg.name,
    dtype,
    shape: seg.shape,
    source: async function* () {
      const { fh } = await openRegularFile(file, (detail) => new Llama2cError(file, detail));
      try {
        yield encodeFromFloat32(await readSegment(file, fh, seg, layout.header.groupSize), dtype);
      } finally {
        await fh.close();
      }
    },
  }));
}
