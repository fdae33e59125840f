/**
 * core/src/model: the tensor table, RoPE parsing (both config.json spellings), attention windows,
 * positions/masks and validation. Expected values come from transformers' documented behaviour (cited
 * per test) and from the transformers-written configs in ../shared/hf-conformance.
 */
import { promises as fsp } from 'node:fs';
import {
  ConfigError,
  IGNORE_INDEX,
  MASK,
  additiveMask,
  checkRepresentable,
  checkTargets,
  checkTokenBatch,
  countedTargets,
  decays,
  decoder,
  type DecoderOps,
  layerTensorSuffixes,
  layerTensors,
  normalizeConfig,
  positionIds,
  ropeFrequencies,
  stagePosition,
  tensorInfo,
} from '../src';
import { fixturePath, haveFixtures, tinyRawConfig } from '../src/testing';

const base = tinyRawConfig({ layers: 4, hiddenSize: 64, heads: 8, kvHeads: 2, maxPositions: 256 });

describe('tensor table', () => {
  it('names the per-layer tensors in checkpoint order, with roles, stages and decay flags', () => {
    const c = normalizeConfig({ ...base, attention_bias: true, mlp_bias: true });
    // The order llama-pro wrote before the table existed (tensor-names.ts), so checkpoints stay byte-identical.
    expect(layerTensorSuffixes(c)).toEqual([
      'input_layernorm.weight', 'post_attention_layernorm.weight',
      'self_attn.q_proj.weight', 'self_attn.q_proj.bias', 'self_attn.k_proj.weight', 'self_attn.k_proj.bias', 'self_attn.v_proj.weight', 'self_attn.v_proj.bias',
      'self_attn.o_proj.weight', 'self_attn.o_proj.bias',
      'mlp.gate_proj.weight', 'mlp.gate_proj.bias', 'mlp.up_proj.weight', 'mlp.up_proj.bias', 'mlp.down_proj.weight', 'mlp.down_proj.bias',
    ]);
    const roles = Object.fromEntries(layerTensors(c).map((e) => [e.suffix, e.role]));
    expect(roles).toMatchObject({ 'self_attn.q_proj.weight': 'q', 'self_attn.o_proj.bias': 'attn_out_bias', 'mlp.down_proj.weight': 'mlp_out', 'post_attention_layernorm.weight': 'mlp_norm' });
    expect(layerTensors(c).filter((e) => e.residualOutput).map((e) => e.suffix)).toEqual(['self_attn.o_proj.weight', 'self_attn.o_proj.bias', 'mlp.down_proj.weight', 'mlp.down_proj.bias']);
    // nanoGPT's rule: matrices decay, norms and biases do not.
    expect(decays([64, 64], c, 'model.layers.0.self_attn.q_proj.weight')).toBe(true);
    expect(decays([64], c, 'model.layers.0.self_attn.q_proj.bias')).toBe(false);
    expect(decays([64], c, 'model.norm.weight')).toBe(false);
    expect(decays([3, 3])).toBe(true);
    expect(tensorInfo(c, 'model.layers.1.self_attn.k_proj.weight')).toMatchObject({ role: 'k', layer: 1, shape: [16, 64] });
    expect(tensorInfo(c, 'model.layers.4.self_attn.k_proj.weight')).toBeUndefined();
    expect(stagePosition(c, 'model.embed_tokens.weight')).toBe(0);
    expect(stagePosition(c, 'model.layers.1.mlp.up_proj.weight')).toBe(1 + 6 + 4);
    expect(() => stagePosition(c, 'model.layers.9.mlp.up_proj.weight')).toThrow(/not a parameter of this model/);
  });
});

describe('RoPE config', () => {
  const pairs: [string, string][] = [
    ['llama-linear-scaling-bf16', 'llama-linear-scaling-v4config-bf16'],
    ['llama3-scaling-fp16', 'llama3-scaling-v4config-fp16'],
    ['qwen2-sliding-mixed-bf16', 'qwen2-sliding-mixed-v4config-bf16'],
  ];
  const have = haveFixtures(...pairs.flat().map((n) => ['hf-conformance', n, 'config.json']));
  (have ? it : it.skip)('reads transformers 5 (rope_parameters) and 4.x (rope_theta + rope_scaling) spellings to the same config', async () => {
    const read = async (n: string) => normalizeConfig(JSON.parse(await fsp.readFile(fixturePath('hf-conformance', n, 'config.json'), 'utf8')));
    for (const [v5, v4] of pairs) {
      const a = await read(v5);
      const b = await read(v4);
      expect({ theta: a.ropeTheta, s: a.ropeScaling, w: a.attentionWindows }).toEqual({ theta: b.ropeTheta, s: b.ropeScaling, w: b.attentionWindows });
    }
    // Values as written in the configs (README: llama3 factor 8, original 32, θ 5e5; Qwen2 2 full + 2 sliding, window 24).
    expect((await read('llama3-scaling-fp16')).ropeScaling).toEqual({ type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 32 });
    expect((await read('llama3-scaling-fp16')).ropeTheta).toBe(5e5);
    expect((await read('qwen2-sliding-mixed-v4config-bf16')).attentionWindows).toEqual([null, null, 24, 24]);
  });

  it('rope_scaling wins over rope_parameters; rope_theta inside the dict wins over the top level (convert_rope_params_to_dict)', () => {
    const c = normalizeConfig({ ...base, rope_theta: 1e4, rope_parameters: { rope_type: 'default', rope_theta: 5e5 }, rope_scaling: { type: 'linear', factor: 2 } });
    expect(c.ropeScaling).toEqual({ type: 'linear', factor: 2 });
    expect(c.ropeTheta).toBe(1e4);
    expect(normalizeConfig({ ...base, rope_theta: 1e4, rope_parameters: { rope_type: 'default', rope_theta: 5e5 } }).ropeTheta).toBe(5e5);
  });

  it('llama3 / yarn default original_max_position_embeddings to max_position_embeddings (standardize_rope_params)', () => {
    const c = normalizeConfig({ ...base, rope_parameters: { rope_type: 'yarn', factor: 4, rope_theta: 1e4 } });
    expect(c.ropeScaling).toMatchObject({ type: 'yarn', factor: 4, originalMaxPositionEmbeddings: 256, betaFast: 32, betaSlow: 1, truncate: true });
    // _compute_yarn_parameters: attention_factor = 0.1 * ln(factor) + 1 when not given.
    expect(ropeFrequencies(c).attentionScaling).toBeCloseTo(0.1 * Math.log(4) + 1, 12);
  });

  it('a top-level original_max_position_embeddings wins over the dict\'s for llama3 / yarn / longrope (standardize_rope_params)', () => {
    const longrope = { rope_type: 'longrope', short_factor: [1, 1, 1, 1], long_factor: [2, 2, 2, 2], original_max_position_embeddings: 128 };
    for (const rope_scaling of [
      { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 128 },
      { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 128 },
      longrope,
    ]) {
      const c = normalizeConfig({ ...base, original_max_position_embeddings: 32, rope_scaling });
      expect([rope_scaling.rope_type, c.ropeScaling]).toEqual([rope_scaling.rope_type, expect.objectContaining({ originalMaxPositionEmbeddings: 32 })]);
    }
    expect(() => normalizeConfig({ ...base, original_max_position_embeddings: 3.5, rope_scaling: longrope })).toThrow('config.json "original_max_position_embeddings" must be a positive integer, got 3.5');
  });

  it('dynamic NTK equals default RoPE within max_position_embeddings (_compute_dynamic_ntk_parameters: base * (factor*L/L - (factor-1))^... = base)', () => {
    const dyn = normalizeConfig({ ...base, rope_scaling: { rope_type: 'dynamic', factor: 4 } });
    const plain = normalizeConfig(base);
    expect(ropeFrequencies(dyn).invFreq).toEqual(ropeFrequencies(plain).invFreq);
  });

  it('linear divides every inverse frequency by the factor', () => {
    const lin = ropeFrequencies(normalizeConfig({ ...base, rope_scaling: { rope_type: 'linear', factor: 2 } })).invFreq;
    const plain = ropeFrequencies(normalizeConfig(base)).invFreq;
    lin.forEach((v, i) => expect(v).toBe(Math.fround(plain[i]! / 2)));
    // Default: 1 / 10000^(2i/8) for head_dim 8.
    plain.forEach((v, i) => expect(v).toBeCloseTo(1 / Math.pow(1e4, (2 * i) / 8), 6));
  });

  it('refuses unknown rope types and bad fields in one line naming the key and the value', () => {
    expect(() => normalizeConfig({ ...base, rope_parameters: { rope_type: 'ntk-by-parts', rope_theta: 1e4 } })).toThrow(new ConfigError('config.json "rope_parameters.rope_type" is "ntk-by-parts", which llama-pro does not implement (known: default, linear, dynamic, yarn, longrope, llama3)', 'CONFIG_UNSUPPORTED_ROPE'));
    // 4.x configs spell the type `type` (Qwen2-VL's mrope): the message names that key.
    expect(() => normalizeConfig({ ...base, rope_scaling: { type: 'mrope', mrope_section: [16, 24, 24] } })).toThrow(/^config\.json "rope_scaling\.type" is "mrope", which llama-pro does not implement/);
    expect(() => normalizeConfig({ ...base, rope_scaling: { type: 'linear' } })).toThrow(/"rope_scaling.factor" must be a positive number, got null/);
    expect(() => normalizeConfig({ ...base, rope_scaling: 'linear' })).toThrow(/"rope_scaling" must be an object or null/);
  });
});

describe('attention windows (transformers config classes)', () => {
  it('Mistral: sliding_window on every layer; null means full', () => {
    expect(normalizeConfig({ ...tinyRawConfig({ architecture: 'MistralForCausalLM', layers: 3 }), sliding_window: 24 }).attentionWindows).toEqual([24, 24, 24]);
    expect(normalizeConfig({ ...tinyRawConfig({ architecture: 'MistralForCausalLM', layers: 2 }), sliding_window: null }).attentionWindows).toEqual([null, null]);
  });
  it('Qwen2: only with use_sliding_window, on layers >= max_window_layers or as layer_types says (Qwen2Config.__post_init__)', () => {
    const q = tinyRawConfig({ architecture: 'Qwen2ForCausalLM', layers: 4 });
    expect(normalizeConfig({ ...q, sliding_window: 8, max_window_layers: 1, use_sliding_window: false }).attentionWindows).toEqual([null, null, null, null]);
    expect(normalizeConfig({ ...q, sliding_window: 8, max_window_layers: 1, use_sliding_window: true }).attentionWindows).toEqual([null, 8, 8, 8]);
    const types = ['sliding_attention', 'full_attention', 'sliding_attention', 'full_attention'];
    expect(normalizeConfig({ ...q, sliding_window: 8, max_window_layers: 1, use_sliding_window: true, layer_types: types }).attentionWindows).toEqual([8, null, 8, null]);
    expect(() => normalizeConfig({ ...q, sliding_window: 8, use_sliding_window: false, layer_types: types })).toThrow(/"layer_types\[0\]" is "sliding_attention" but no window is set/);
    expect(() => normalizeConfig({ ...q, layer_types: ['chunked_attention', 'full_attention', 'full_attention', 'full_attention'] })).toThrow(/"layer_types\[0\]" is "chunked_attention"/);
  });
  it('LLaMA: no windows', () => {
    expect(normalizeConfig({ ...base, sliding_window: 4 }).attentionWindows).toEqual([null, null, null, null]);
  });
});

describe('positions and masks', () => {
  it('positions count real tokens before each token, continuing from the cache', () => {
    expect([...positionIds(Uint8Array.of(0, 0, 1, 1, 1, 1, 0, 0), 2, 4)]).toEqual([0, 0, 0, 1, 0, 1, 2, 2]);
    expect([...positionIds(undefined, 1, 3, [5])]).toEqual([5, 6, 7]);
  });
  it('sliding window 3 over 5 positions is the pattern of transformers masking_utils sdpa_mask docstring', () => {
    const m = additiveMask(undefined, 1, 5, 5, 3);
    const allowed = [...Array(5).keys()].map((q) => [...Array(5).keys()].map((k) => (m[q * 5 + k] === 0 ? 1 : 0)));
    expect(allowed).toEqual([
      [1, 0, 0, 0, 0],
      [1, 1, 0, 0, 0],
      [1, 1, 1, 0, 0],
      [0, 1, 1, 1, 0],
      [0, 0, 1, 1, 1],
    ]);
    expect(m[4]).toBe(MASK);
  });
  it('padding keys are masked; a padding query still sees itself; decode queries sit after the cache', () => {
    const m = additiveMask(Uint8Array.of(0, 1, 1), 1, 3, 3, null);
    expect([...m].map((v) => (v === 0 ? 1 : 0))).toEqual([1, 0, 0, 0, 1, 0, 0, 1, 1]);
    const step = additiveMask(Uint8Array.of(0, 1, 1, 1), 1, 1, 4, 2);
    expect([...step].map((v) => (v === 0 ? 1 : 0))).toEqual([0, 0, 1, 1]);
  });
});

describe('validation and the padded-targets contract', () => {
  const c = normalizeConfig({ ...base, vocab_size: 10, max_position_embeddings: 8 });
  it('checks token batches: sizes, vocabulary, mask values, maximum positions', () => {
    expect(() => checkTokenBatch(c, { ids: Int32Array.of(1, 10), batchSize: 1, seqLen: 2 })).toThrow(/token id 10 at row 0, position 1 is outside the vocabulary \[0, 10\)/);
    expect(() => checkTokenBatch(c, { ids: Int32Array.of(1, 2, 3), batchSize: 2, seqLen: 2 })).toThrow(/ids has 3 elements/);
    expect(() => checkTokenBatch(c, { ids: Int32Array.of(1, 2), batchSize: 1, seqLen: 2, attentionMask: Uint8Array.of(1, 2) })).toThrow(/must be 0 or 1/);
    expect(() => checkTokenBatch(c, { ids: Int32Array.of(1), batchSize: 1, seqLen: 1 }, { pastLength: 8 })).toThrow(/sequence length 9 exceeds the model's 8 positions/);
    expect(() => checkTokenBatch(c, { ids: Int32Array.of(1), batchSize: 1, seqLen: 1 }, { pastLength: 7 })).not.toThrow();
  });
  it('checks targets and counts only real, non-ignored ones', () => {
    expect(() => checkTargets(c, { ids: Int32Array.of(1, 2), targets: Int32Array.of(2, 10), batchSize: 1, seqLen: 2 })).toThrow(/target 10 at row 0, position 1 .* not the ignore index -100/);
    const { counted, count } = countedTargets(Int32Array.of(3, IGNORE_INDEX, 4, 5), Uint8Array.of(1, 1, 0, 1));
    expect([...counted]).toEqual([1, 0, 0, 1]);
    expect(count).toBe(2);
  });
  it('refuses what no backend implements, naming the key and value', () => {
    expect(() => checkRepresentable(normalizeConfig({ ...base, attention_chunk_size: 16 }), 'onnx')).toThrow(/config.json "attention_chunk_size" is 16 \(chunked attention\), which the onnx backend does not implement/);
    expect(() => checkRepresentable(normalizeConfig({ ...base, partial_rotary_factor: 0.5 }), 'tfjs')).toThrow(/"partial_rotary_factor" is 0.5/);
    expect(() => checkRepresentable(normalizeConfig({ ...base, architectures: ['MixtralForCausalLM'], model_type: 'mixtral', num_local_experts: 4 }), 'tfjs')).toThrow(/"num_local_experts" is 4/);
  });
});

describe('decoder layer-end hook', () => {
  it('onLayerEnd(l, h) gets each block\'s output (the residual stream after its MLP add), in layer order, before the final norm', () => {
    const c = normalizeConfig(tinyRawConfig({ layers: 3 }));
    const calls: string[] = [];
    // a symbolic T: each op returns the expression it computes
    const ops: DecoderOps<string> = {
      embed: () => 'e',
      rmsNorm: (x, w) => `norm(${x.length > 12 ? '…' : x},${w})`,
      project: (_x, l, g) => (g === 'qkv' ? ['q', 'k', 'v'] : g === 'gate_up' ? ['g', 'u'] : [`${g}${l}`]),
      rope: (x) => x,
      attention: () => 'ctx',
      swiglu: () => 's',
      add: (a, b) => `(${a.length > 12 ? `h${calls.length}` : a}+${b})`,
      head: (x) => {
        calls.push(`head ${x}`);
        return 'logits';
      },
      onLayerEnd: (l, h) => calls.push(`${l}: ${h}`),
    };
    expect(decoder(c, ops)).toBe('logits');
    expect(calls).toEqual(['0: (h0+mlp_out0)', '1: (h1+mlp_out1)', '2: (h2+mlp_out2)', 'head norm(…,model.norm.weight)']);
    // without the hook the decoder runs the same ops
    const { onLayerEnd: _, ...plain } = ops;
    expect(decoder(c, plain)).toBe('logits');
  });
});
