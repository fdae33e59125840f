/**
 * GGUF export, read back by a reader written here from the format spec (ggml-org/ggml docs/gguf.md):
 * little-endian; magic "GGUF", u32 version, u64 tensor_count, u64 kv_count; each KV is a gguf string
 * (u64 length + UTF-8) key, u32 value type and the value (arrays: u32 item type, u64 count, items);
 * tensor infos (name, u32 n_dims, u64 ne[n_dims] with ne[0] the contiguous axis, u32 ggml_type,
 * u64 offset); then padding to general.alignment and the data section. ggml_type ids: F32 0, F16 1,
 * Q8_0 8, BF16 30. Q8_0 blocks (ggml-common.h block_q8_0): f16 d then 32 int8 q, x = d * q.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { HfCheckpoint, exportGguf, ggufWarnings, llama3RopeFactors, quantizeQ8_0, normalizeConfig, f16BitsToF32, bf16BitsToF32, OutputError, ConfigError, ggufTokenizerFromDir, byteTokenizerJson, writeTokenizerFiles, type WeightSource, type TensorInfo } from '@llama-pro/core';
import { fixturePath, haveFixtures, writeSentencePieceTokenizer } from '@llama-pro/core/testing';
import { tmpDir } from './helpers';

type Val = number | bigint | string | boolean | Val[];

function readGguf(buf: Buffer) {
  let p = 0;
  const u32 = () => ((p += 4), buf.readUInt32LE(p - 4));
  const u64 = () => ((p += 8), Number(buf.readBigUInt64LE(p - 8)));
  const s = () => {
    const n = u64();
    p += n;
    return buf.toString('utf8', p - n, p);
  };
  const scalar = (t: number): Val => {
    switch (t) {
      case 0: return buf.readUInt8(p++);
      case 1: return buf.readInt8(p++);
      case 2: return (p += 2), buf.readUInt16LE(p - 2);
      case 3: return (p += 2), buf.readInt16LE(p - 2);
      case 4: return u32();
      case 5: return (p += 4), buf.readInt32LE(p - 4);
      case 6: return (p += 4), buf.readFloatLE(p - 4);
      case 7: return buf.readUInt8(p++) !== 0;
      case 8: return s();
      case 9: {
        const it = u32();
        const n = u64();
        return Array.from({ length: n }, () => scalar(it));
      }
      case 10: return (p += 8), buf.readBigUInt64LE(p - 8);
      case 11: return (p += 8), buf.readBigInt64LE(p - 8);
      case 12: return (p += 8), buf.readDoubleLE(p - 8);
      default: throw new Error(`bad value type ${t}`);
    }
  };
  expect(buf.toString('latin1', 0, 4)).toBe('GGUF');
  p = 4;
  const version = u32();
  const nTensors = u64();
  const nKv = u64();
  const kv = new Map<string, { type: number; value: Val }>();
  for (let i = 0; i < nKv; i++) {
    const k = s();
    const type = u32();
    kv.set(k, { type, value: scalar(type) });
  }
  const tensors = Array.from({ length: nTensors }, () => {
    const name = s();
    const nd = u32();
    const ne = Array.from({ length: nd }, u64);
    return { name, ne, type: u32(), offset: u64() };
  });
  const align = Number(kv.get('general.alignment')?.value ?? 32);
  const dataStart = Math.ceil(p / align) * align;
  return { version, kv, tensors, dataStart, align };
}

function dequant(buf: Buffer, type: number, at: number, n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    if (type === 0) out[i] = buf.readFloatLE(at + 4 * i);
    else if (type === 1) out[i] = f16BitsToF32(buf.readUInt16LE(at + 2 * i));
    else if (type === 30) out[i] = bf16BitsToF32(buf.readUInt16LE(at + 2 * i));
    else if (type === 8) {
      const b = at + Math.floor(i / 32) * 34;
      out[i] = f16BitsToF32(buf.readUInt16LE(b)) * buf.readInt8(b + 2 + (i % 32));
    } else throw new Error(`type ${type}`);
  }
  return out;
}

/** A small seeded LLaMA (GQA: 4 heads, 2 kv heads) held in memory, HF names and row-major shapes. */
function source(): { src: WeightSource; w: Map<string, { shape: number[]; data: Float32Array }> } {
  const config = normalizeConfig({
    architectures: ['LlamaForCausalLM'], hidden_size: 64, intermediate_size: 96, num_hidden_layers: 2, num_attention_heads: 4,
    num_key_value_heads: 2, vocab_size: 300, max_position_embeddings: 128, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false,
    hidden_act: 'silu', bos_token_id: 1, eos_token_id: 2,
  });
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5) * (seed % 7 === 0 ? 8 : 1);
  const w = new Map<string, { shape: number[]; data: Float32Array }>();
  const add = (name: string, shape: number[]) => w.set(name, { shape, data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, rnd) });
  add('model.embed_tokens.weight', [300, 64]);
  for (let l = 0; l < 2; l++) {
    const pre = `model.layers.${l}.`;
    add(pre + 'input_layernorm.weight', [64]);
    add(pre + 'self_attn.q_proj.weight', [64, 64]);
    add(pre + 'self_attn.k_proj.weight', [32, 64]);
    add(pre + 'self_attn.v_proj.weight', [32, 64]);
    add(pre + 'self_attn.o_proj.weight', [64, 64]);
    add(pre + 'post_attention_layernorm.weight', [64]);
    add(pre + 'mlp.gate_proj.weight', [96, 64]);
    add(pre + 'mlp.up_proj.weight', [96, 64]);
    add(pre + 'mlp.down_proj.weight', [64, 96]);
  }
  add('model.norm.weight', [64]);
  add('lm_head.weight', [300, 64]);
  const src: WeightSource = {
    config,
    tensorNames: () => [...w.keys()],
    info: (n) => ({ name: n, dtype: 'F32', shape: w.get(n)!.shape }) as unknown as TensorInfo,
    readFloat32: async (n) => w.get(n)!.data.slice(),
  };
  return { src, w };
}

/** convert_hf_to_gguf.py LlamaModel.permute, written from its numpy definition:
 *  w.reshape(H, 2, R/H/2, C).swapaxes(1, 2).reshape(R, C)  =>  out[h][j][t] = in[h][t][j]. */
function npPermute(x: Float32Array, rows: number, cols: number, heads: number): Float32Array {
  const half = rows / heads / 2;
  const out = new Float32Array(x.length);
  for (let r = 0; r < rows; r++) {
    const h = Math.floor(r / (2 * half));
    const j = Math.floor((r % (2 * half)) / 2);
    const t = r % 2;
    const srcRow = h * 2 * half + t * half + j;
    for (let c = 0; c < cols; c++) out[r * cols + c] = x[srcRow * cols + c]!;
  }
  return out;
}

const HF_OF: Record<string, string> = {
  'token_embd.weight': 'model.embed_tokens.weight', 'output_norm.weight': 'model.norm.weight', 'output.weight': 'lm_head.weight',
  attn_norm: 'input_layernorm', attn_q: 'self_attn.q_proj', attn_k: 'self_attn.k_proj', attn_v: 'self_attn.v_proj',
  attn_output: 'self_attn.o_proj', ffn_norm: 'post_attention_layernorm', ffn_gate: 'mlp.gate_proj', ffn_up: 'mlp.up_proj', ffn_down: 'mlp.down_proj',
};
function hfName(g: string): string {
  if (HF_OF[g]) return HF_OF[g];
  const m = /^blk\.(\d+)\.(\w+)\.weight$/.exec(g)!;
  return `model.layers.${m[1]}.${HF_OF[m[2]!]}.weight`;
}

describe('export-gguf', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tmpDir();
  });

  it.each(['f32', 'f16', 'bf16', 'q8_0'] as const)('writes a GGUF v3 %s file an independent reader parses back to the source', async (type) => {
    const { src, w } = source();
    const file = path.join(dir, `m-${type}.gguf`);
    const res = await exportGguf(src, file, { type });
    const buf = await fsp.readFile(file);
    expect(res.bytes).toBe(buf.length);
    const g = readGguf(buf);
    expect(g.version).toBe(3);
    expect(g.align).toBe(32);
    const v = (k: string) => g.kv.get(k)?.value;
    // Keys and value types as convert_hf_to_gguf / gguf-py constants.py write them for LLaMA.
    expect(v('general.architecture')).toBe('llama');
    expect(g.kv.get('llama.block_count')).toEqual({ type: 4, value: 2 });
    expect(v('llama.embedding_length')).toBe(64);
    expect(v('llama.feed_forward_length')).toBe(96);
    expect(v('llama.context_length')).toBe(128);
    expect(v('llama.attention.head_count')).toBe(4);
    expect(v('llama.attention.head_count_kv')).toBe(2);
    expect(v('llama.rope.dimension_count')).toBe(16);
    expect(g.kv.get('llama.rope.freq_base')).toEqual({ type: 6, value: 10000 });
    expect(v('llama.attention.layer_norm_rms_epsilon')).toBeCloseTo(1e-5, 10);
    expect(v('general.file_type')).toBe({ f32: 0, f16: 1, q8_0: 7, bf16: 32 }[type]); // llama_ftype
    // gguf-py constants.py: GGML_QUANT_VERSION = 2, written by convert_hf_to_gguf (ModelBase.prepare_metadata) for
    // every type; {arch}.attention.key_length / value_length = head_dim (TextModel.set_gguf_parameters).
    expect(g.kv.get('general.quantization_version')).toEqual({ type: 4, value: 2 });
    expect(g.kv.get('llama.attention.key_length')).toEqual({ type: 4, value: 16 });
    expect(g.kv.get('llama.attention.value_length')).toEqual({ type: 4, value: 16 });
    expect(v('tokenizer.ggml.model')).toBe('llama');
    expect((v('tokenizer.ggml.tokens') as string[]).length).toBe(300);
    expect((v('tokenizer.ggml.tokens') as string[])[3 + 10]).toBe('<0x0A>');
    expect(v('tokenizer.ggml.bos_token_id')).toBe(1);

    expect(g.tensors.map((t) => t.name).sort()).toEqual(
      ['token_embd.weight', 'output_norm.weight', 'output.weight',
        ...[0, 1].flatMap((l) => ['attn_norm', 'attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_norm', 'ffn_gate', 'ffn_up', 'ffn_down'].map((n) => `blk.${l}.${n}.weight`))].sort(),
    );
    const want = { f32: 0, f16: 1, bf16: 30, q8_0: 8 }[type];
    let end = 0;
    for (const t of g.tensors) {
      expect(t.offset % 32).toBe(0);
      expect(t.offset).toBeGreaterThanOrEqual(end); // no overlap
      const ref = w.get(hfName(t.name))!;
      expect(t.ne).toEqual([...ref.shape].reverse());
      const n = ref.data.length;
      expect(t.type).toBe(ref.shape.length === 1 ? 0 : want);
      const size = t.type === 0 ? 4 * n : t.type === 8 ? (n / 32) * 34 : 2 * n;
      end = t.offset + size;
      expect(g.dataStart + end).toBeLessThanOrEqual(buf.length);
      let x = ref.data;
      if (t.name.endsWith('attn_q.weight')) x = npPermute(x, ref.shape[0]!, ref.shape[1]!, 4);
      if (t.name.endsWith('attn_k.weight')) x = npPermute(x, ref.shape[0]!, ref.shape[1]!, 2);
      const got = dequant(buf, t.type, g.dataStart + t.offset, n);
      for (let i = 0; i < n; i++) {
        if (t.type === 0) expect(got[i]).toBe(x[i]);
        // f16: 11-bit significand, relative error <= 2^-11 (plus subnormal floor); bf16: 8 bits, <= 2^-8.
        else if (t.type === 1) expect(Math.abs(got[i]! - x[i]!)).toBeLessThanOrEqual(Math.abs(x[i]!) * 2 ** -11 + 2 ** -24);
        else if (t.type === 30) expect(Math.abs(got[i]! - x[i]!)).toBeLessThanOrEqual(Math.abs(x[i]!) * 2 ** -8);
      }
      if (t.type === 8) {
        // Per block: d = amax/127 (rounded to f16), q = round(x/d) => |x - d*q| <= d/2 + 127*d*2^-11.
        for (let b = 0; b < n; b += 32) {
          let amax = 0;
          for (let i = b; i < b + 32; i++) amax = Math.max(amax, Math.abs(x[i]!));
          const d = amax / 127;
          for (let i = b; i < b + 32; i++) expect(Math.abs(got[i]! - x[i]!)).toBeLessThanOrEqual(d * (0.5 + 127 * 2 ** -11) + 1e-7);
          // The block's largest element maps to |q| = 127, as in ggml's reference quantizer.
          const qs = Array.from({ length: 32 }, (_, i) => Math.abs(buf.readInt8(g.dataStart + t.offset + (b / 32) * 34 + 2 + i)));
          expect(Math.max(...qs)).toBe(127);
        }
      }
    }
  });

  it('quantizes q8_0 bit-exactly as llama.cpp does (float32 arithmetic throughout)', () => {
    // Input: block 20 (32 float32 values, given as bits) of model.layers.0.self_attn.o_proj.weight in
    // /work/shared/hf-conformance/llama-gqa-untied-bf16. Expected bytes: llama.cpp's own gguf-py 0.19.0 (gguf-py/gguf/
    // quants.py, class Q8_0.quantize_blocks, "bit-exact same results as reference implementation in ggml-quants.c":
    // d = max|x| / 127, id = 1 / d, q = np_roundf(x * id), all float32; d stored as float16), run by hand as
    // gguf.quants.quantize(x, GGMLQuantizationType.Q8_0). Element 22 (0x3db10000) is where doing the same in float64
    // gives q = 64 instead of 63; convert_hf_to_gguf.py --outtype q8_0 wrote the same bytes for that tensor.
    const bits = '3c720000 3e170000 bd760000 3d420000 3d820000 bbb70000 bb450000 bdb80000 3aad0000 bd6c0000 3dc70000 3cbb0000 be120000 3e290000 bd820000 3db00000 3e060000 3d1d0000 bd5d0000 bd870000 3d330000 be050000 3db10000 bd9a0000 bda00000 3e310000 be0f0000 bde50000 bdff0000 bc800000 3e150000 bcee0000';
    const x = new Float32Array(new Uint32Array(bits.split(' ').map((h) => parseInt(h, 16))).buffer);
    expect(quantizeQ8_0(x).toString('hex')).toBe('93150b6cd4232ffcfebe01d647119779d13f601cd8d020a13fc9c77f99aea5f56beb');
    // An all-zero block: quants.py takes id = 0 where d == 0, so d and every q are 0.
    expect(quantizeQ8_0(new Float32Array(32)).toString('hex')).toBe('00'.repeat(34));
  });

  it('refuses to replace an existing file without force, and leaves no temp file', async () => {
    const { src } = source();
    const file = path.join(dir, 'exists.gguf');
    await fsp.writeFile(file, 'keep');
    await expect(exportGguf(src, file)).rejects.toBeInstanceOf(OutputError);
    expect(await fsp.readFile(file, 'utf8')).toBe('keep');
    await exportGguf(src, file, { force: true });
    expect((await fsp.readFile(file)).toString('latin1', 0, 4)).toBe('GGUF');
    expect((await fsp.readdir(dir)).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  // Expected values from the tokenizer files themselves and from llama.cpp's key names / token types
  // (gguf-py constants.py: TokenType NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4, UNUSED 5, BYTE 6).
  it('writes a byte-level BPE tokenizer.json (hf-conformance) as tokenizer.ggml.model gpt2 with its vocab, merges and specials', async () => {
    if (!haveFixtures(['hf-conformance', 'llama-tied-fp32', 'tokenizer.json'])) return;
    const caseDir = fixturePath('hf-conformance', 'llama-tied-fp32');
    const tj = JSON.parse(await fsp.readFile(path.join(caseDir, 'tokenizer.json'), 'utf8'));
    const tok = await ggufTokenizerFromDir(caseDir, 320);
    const { src } = source();
    const file = path.join(dir, 'tok-gpt2.gguf');
    await exportGguf({ ...src, config: { ...src.config, vocabSize: 320 } }, file, { tokenizer: tok });
    const g = readGguf(await fsp.readFile(file));
    const v = (k: string) => g.kv.get(k)?.value;
    expect(v('tokenizer.ggml.model')).toBe('gpt2');
    expect(v('tokenizer.ggml.pre')).toBe('gpt-2');
    const tokens = v('tokenizer.ggml.tokens') as string[];
    for (const [piece, id] of Object.entries(tj.model.vocab as Record<string, number>)) expect(tokens[id]).toBe(piece);
    expect(v('tokenizer.ggml.merges')).toEqual((tj.model.merges as [string, string][]).map((m) => m.join(' ')));
    expect(g.kv.get('tokenizer.ggml.token_type')!.type).toBe(9);
    expect((v('tokenizer.ggml.token_type') as number[]).slice(0, 4)).toEqual([3, 3, 3, 1]); // added special tokens are control
    expect(v('tokenizer.ggml.bos_token_id')).toBe(1); // tokenizer_config.json bos_token "<s>"
    expect(v('tokenizer.ggml.eos_token_id')).toBe(2);
    expect(v('tokenizer.ggml.unknown_token_id')).toBe(0);
    expect(v('tokenizer.ggml.scores')).toBeUndefined();
  });

  it('writes a SentencePiece-style tokenizer.json as llama with byte tokens, scores in merge order and add_bos', async () => {
    const d = path.join(dir, 'sp');
    await writeSentencePieceTokenizer(d);
    const tj = JSON.parse(await fsp.readFile(path.join(d, 'tokenizer.json'), 'utf8'));
    const tok = (await ggufTokenizerFromDir(d, 512))!;
    expect(tok.model).toBe('llama');
    expect(tok.addSpacePrefix).toBe(true); // the Prepend("▁") normalizer
    expect(tok.addBos).toBe(true); // tokenizer_config.json add_bos_token
    expect(tok.tokenTypes.slice(0, 4)).toEqual([3, 3, 3, 6]);
    expect(tok.tokens[3 + 0x0a]).toBe('<0x0A>');
    // Every merged piece scores above the pieces merged after it.
    const merges = tj.model.merges as string[];
    const id = (p: string) => tj.model.vocab[p] as number;
    for (let r = 1; r < merges.length; r++) expect(tok.scores![id(merges[r - 1]!.replace(' ', ''))]!).toBeGreaterThan(tok.scores![id(merges[r]!.replace(' ', ''))]!);
    // The ids past the tokenizer's vocabulary are unused pad pieces (as convert_hf_to_gguf pads).
    const n = Object.keys(tj.model.vocab).length;
    expect(tok.tokens[n]).toBe(`[PAD${n}]`);
    expect(tok.tokenTypes[n]).toBe(5);
  });

  it('writes the byte tokenizer as gpt2 byte pieces (bytes_to_unicode) and refuses tokenizers it cannot map', async () => {
    const d = path.join(dir, 'bytes');
    await fsp.mkdir(d, { recursive: true });
    await writeTokenizerFiles(d, byteTokenizerJson(300));
    const tok = (await ggufTokenizerFromDir(d, 300))!;
    expect([tok.model, tok.pre, tok.merges]).toEqual(['gpt2', 'gpt-2', []]);
    // GPT-2 bytes_to_unicode: printable bytes map to themselves, byte 0x20 (space) to U+0120 "Ġ", 0x0A to U+010A.
    expect([tok.tokens[3 + 0x41], tok.tokens[3 + 0x20], tok.tokens[3 + 0x0a], tok.tokens[3 + 0xad]]).toEqual(['A', '\u0120', '\u010a', '\u0143']);
    const w = path.join(dir, 'wordpiece');
    await fsp.mkdir(w, { recursive: true });
    await fsp.writeFile(path.join(w, 'tokenizer.json'), JSON.stringify({ model: { type: 'WordPiece', vocab: { a: 0 } } }));
    await expect(ggufTokenizerFromDir(w, 300)).rejects.toThrow(ConfigError);
    await expect(ggufTokenizerFromDir(w, 300)).rejects.toThrow(/WordPiece tokenizer.*--no-tokenizer/);
    const u = path.join(dir, 'unigram');
    await fsp.mkdir(u, { recursive: true });
    await fsp.writeFile(path.join(u, 'tokenizer.json'), JSON.stringify({ model: { type: 'Unigram', unk_id: 0, vocab: [['<unk>', 0], ['\u2581a', -1]] } }));
    await expect(ggufTokenizerFromDir(u, 300)).rejects.toThrow(/Unigram tokenizer.*Viterbi/);
    expect(await ggufTokenizerFromDir(path.join(dir, 'none'), 300)).toBeNull();
  });

  it('llama3 rope scaling: a rope_freqs tensor first (as convert_hf_to_gguf LlamaModel.generate_extra_tensors), no scaling keys', async () => {
    const m = fixturePath('hf-conformance', 'llama3-scaling-fp16');
    if (!haveFixtures(['hf-conformance', 'llama3-scaling-fp16', 'config.json'])) return;
    const ckpt = await HfCheckpoint.open(m);
    const file = path.join(dir, 'llama3.gguf');
    try {
      await exportGguf(ckpt, file);
    } finally {
      await ckpt.close();
    }
    const buf = await fsp.readFile(file);
    const g = readGguf(buf);
    expect(g.tensors[0]).toMatchObject({ name: 'rope_freqs.weight', type: 0, ne: [4] });
    // convert_hf_to_gguf on this checkpoint (llama.cpp's own converter, run by hand) writes [1, 8, 8, 8]: head_dim 8,
    // theta 5e5, original 32 positions, so one frequency is above the high-frequency cut and three below the low one.
    expect([...dequant(buf, 0, g.dataStart + g.tensors[0]!.offset, 4)]).toEqual([1, 8, 8, 8]);
    expect([...g.kv.keys()].filter((k) => k.includes('rope.scaling'))).toEqual([]);
    // Llama-3.1-8B's rope parameters (head_dim 128, theta 5e5, factor 8, low 1, high 4, original 8192): the
    // converter's factors, from its generate_extra_tensors run in torch by hand: 29 ones, six smoothed, 29 eights.
    const c31 = normalizeConfig({
      architectures: ['LlamaForCausalLM'], hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 1, num_attention_heads: 32,
      num_key_value_heads: 8, vocab_size: 300, max_position_embeddings: 131072, rms_norm_eps: 1e-5, hidden_act: 'silu',
      rope_theta: 500000, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
    });
    const f = llama3RopeFactors(c31);
    expect(f.length).toBe(64);
    expect([...f.subarray(0, 29)]).toEqual(new Array(29).fill(1));
    expect([...f.subarray(35)]).toEqual(new Array(29).fill(8));
    const smooth = [1.2074838876724243, 1.5534145832061768, 2.026313066482544, 2.6945300102233887, 3.684253215789795, 5.257327079772949];
    smooth.forEach((x, i) => expect(f[29 + i]).toBeCloseTo(x, 6));
  });

  it('Qwen2: llama.cpp\'s qwen2 architecture, q/k/v biases, q/k rows as stored (rotate-half, no permute)', async () => {
    if (!haveFixtures(['hf-conformance', 'qwen2-bias-tied-bf16', 'config.json'])) return;
    const ckpt = await HfCheckpoint.open(fixturePath('hf-conformance', 'qwen2-bias-tied-bf16'));
    const file = path.join(dir, 'qwen2.gguf');
    try {
      await exportGguf(ckpt, file);
      const buf = await fsp.readFile(file);
      const g = readGguf(buf);
      // The keys convert_hf_to_gguf's Qwen2Model writes (TextModel.set_gguf_parameters): no vocab_size, no
      // rope.dimension_count (llama.cpp derives both).
      expect(g.kv.get('general.architecture')?.value).toBe('qwen2');
      expect(g.kv.get('qwen2.rope.freq_base')).toEqual({ type: 6, value: 1e6 });
      expect(g.kv.get('qwen2.attention.head_count_kv')?.value).toBe(2);
      expect(g.kv.has('qwen2.vocab_size') || g.kv.has('qwen2.rope.dimension_count') || [...g.kv.keys()].some((k) => k.startsWith('llama.'))).toBe(false);
      const byName = new Map(g.tensors.map((t) => [t.name, t]));
      for (const [gg, hf] of [['blk.0.attn_q.weight', 'model.layers.0.self_attn.q_proj.weight'], ['blk.1.attn_k.bias', 'model.layers.1.self_attn.k_proj.bias']] as const) {
        const t = byName.get(gg)!;
        const want = await ckpt.readFloat32(hf);
        expect([...dequant(buf, t.type, g.dataStart + t.offset, want.length)]).toEqual([...want]);
      }
      expect(ggufWarnings(ckpt.config)).toEqual([]);
    } finally {
      await ckpt.close();
    }
  });

  it('warns that llama.cpp has no sliding window (Mistral, Qwen2 layer_types) and refuses partial rotary', async () => {
    if (!haveFixtures(['hf-conformance', 'mistral-sliding-bf16', 'config.json'])) return;
    for (const [name, layers] of [['mistral-sliding-bf16', '4 of 4'], ['qwen2-sliding-mixed-bf16', '2 of 4']] as const) {
      const ckpt = await HfCheckpoint.open(fixturePath('hf-conformance', name));
      try {
        const w = ggufWarnings(ckpt.config);
        expect(w).toHaveLength(1);
        expect(w[0]).toMatch(new RegExp(`${layers} layers attend within a sliding window of 24 tokens.*only for sequences of up to 24 tokens`));
      } finally {
        await ckpt.close();
      }
    }
    const { src } = source();
    const partial = { ...src, config: { ...src.config, partialRotaryFactor: 0.5 } };
    await expect(exportGguf(partial, path.join(dir, 'partial.gguf'))).rejects.toThrow(/partial_rotary_factor 0.5 is not supported/);
  });
});
