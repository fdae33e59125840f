import { ConfigError, countParameters, normalizeConfig, withLayerCount } from '@llama-pro/core';

const llama7b = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  hidden_size: 4096,
  intermediate_size: 11008,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 32,
  vocab_size: 32000,
  max_position_embeddings: 4096,
  rms_norm_eps: 1e-5,
  tie_word_embeddings: false,
  torch_dtype: 'float16',
  bos_token_id: 1,
  eos_token_id: 2,
};

describe('config normalization', () => {
  it('LLaMA-2-7B: defaults, dtype and a parameter count of 6.74B', () => {
    const c = normalizeConfig(llama7b);
    expect(c).toMatchObject({ architecture: 'llama', headDim: 128, ropeTheta: 10000, torchDtype: 'F16', qkvBias: false, oBias: false, eosTokenIds: [2] });
    // 6,738,415,616 is the published parameter count of Llama-2-7b.
    expect(countParameters(c).total).toBe(6_738_415_616);
  });

  it('Mistral: GQA, rope_theta, sliding window kept in raw', () => {
    const c = normalizeConfig({ ...llama7b, architectures: ['MistralForCausalLM'], model_type: 'mistral', num_key_value_heads: 8, rope_theta: 1e6, sliding_window: 4096, torch_dtype: 'bfloat16' });
    expect(c).toMatchObject({ architecture: 'mistral', numKeyValueHeads: 8, ropeTheta: 1e6, torchDtype: 'BF16' });
    expect(c.raw['sliding_window']).toBe(4096);
    expect(c.attentionWindows).toEqual(new Array(32).fill(4096));
  });

  it("keys config.json leaves out take the architecture's transformers default (LlamaConfig, MistralConfig, Qwen2Config, MixtralConfig in transformers 5.18)", () => {
    const trimmed = (cls: string, type: string, extra: Record<string, unknown> = {}): Record<string, unknown> => {
      const raw: Record<string, unknown> = { ...llama7b, architectures: [cls], model_type: type, ...extra };
      for (const k of ['num_key_value_heads', 'max_position_embeddings', 'rms_norm_eps', 'rope_theta', 'sliding_window']) delete raw[k];
      return raw;
    };
    // Values as printed by `transformers.<Class>(num_attention_heads=32, hidden_size=4096)` in 5.18.
    expect(normalizeConfig(trimmed('LlamaForCausalLM', 'llama'))).toMatchObject({ numKeyValueHeads: 32, maxPositionEmbeddings: 2048, rmsNormEps: 1e-6, ropeTheta: 10000 });
    const mistral = normalizeConfig(trimmed('MistralForCausalLM', 'mistral'));
    expect(mistral).toMatchObject({ numKeyValueHeads: 8, maxPositionEmbeddings: 131072, rmsNormEps: 1e-6, ropeTheta: 10000 });
    expect(mistral.attentionWindows).toEqual(new Array(32).fill(4096));
    // An explicit null is no window, in transformers too.
    expect(normalizeConfig({ ...trimmed('MistralForCausalLM', 'mistral'), sliding_window: null }).attentionWindows).toEqual(new Array(32).fill(null));
    const qwen2 = normalizeConfig(trimmed('Qwen2ForCausalLM', 'qwen2'));
    expect(qwen2).toMatchObject({ numKeyValueHeads: 32, maxPositionEmbeddings: 32768, rmsNormEps: 1e-6, ropeTheta: 10000 });
    expect(qwen2.attentionWindows).toEqual(new Array(32).fill(null));
    const mixtral = normalizeConfig(trimmed('MixtralForCausalLM', 'mixtral', { num_local_experts: 8 }));
    expect(mixtral).toMatchObject({ numKeyValueHeads: 8, maxPositionEmbeddings: 131072, rmsNormEps: 1e-5, ropeTheta: 1e6, numExpertsPerToken: 2 });
    expect(mixtral.attentionWindows).toEqual(new Array(32).fill(null));
    // Qwen2's default of 32 key/value heads does not divide 28 attention heads: refused, naming the default.
    expect(() => normalizeConfig(trimmed('Qwen2ForCausalLM', 'qwen2', { num_attention_heads: 28, hidden_size: 3584 }))).toThrow(/num_key_value_heads \(32\) \(not in config.json: qwen2's default in transformers\)/);
  });

  it('Qwen2: q/k/v biases but no o_proj bias, tied head, explicit head_dim, eos list', () => {
    const c = normalizeConfig({ ...llama7b, architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', tie_word_embeddings: true, head_dim: 64, eos_token_id: [151643, 151645] });
    expect(c).toMatchObject({ qkvBias: true, oBias: false, tieWordEmbeddings: true, headDim: 64, eosTokenIds: [151643, 151645] });
  });

  it('attention_bias and mlp_bias on LLaMA; rope_scaling typed', () => {
    const scaling = { rope_type: 'llama3', factor: 8.0, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
    const c = normalizeConfig({ ...llama7b, attention_bias: true, mlp_bias: true, rope_scaling: scaling });
    expect(c).toMatchObject({ qkvBias: true, oBias: true, mlpBias: true, ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } });
  });

  it('bias keys only where the architecture reads them: Mistral and Mixtral none, Qwen2 q/k/v only (transformers ignores the rest)', () => {
    const keys = { attention_bias: true, mlp_bias: true };
    const mistral = { ...llama7b, ...keys, architectures: ['MistralForCausalLM'], model_type: 'mistral' };
    expect(normalizeConfig(mistral)).toMatchObject({ qkvBias: false, oBias: false, mlpBias: false });
    const mixtral = { ...mistral, architectures: ['MixtralForCausalLM'], model_type: 'mixtral', num_local_experts: 8 };
    expect(normalizeConfig(mixtral)).toMatchObject({ qkvBias: false, oBias: false, mlpBias: false });
    expect(normalizeConfig({ ...mistral, architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2' })).toMatchObject({ qkvBias: true, oBias: false, mlpBias: false });
    // LLaMA reads both, so there a bad value is still an error naming the key.
    expect(() => normalizeConfig({ ...llama7b, mlp_bias: 'yes' })).toThrow('config.json "mlp_bias" must be true or false, got "yes"');
  });

  it('model_type alone is enough when architectures is absent', () => {
    const { architectures: _, ...rest } = llama7b;
    expect(normalizeConfig(rest).architecture).toBe('llama');
  });

  it.each([
    [{ ...llama7b, architectures: ['GPT2LMHeadModel'], model_type: 'gpt2' }, /unsupported architecture GPT2LMHeadModel.*LlamaForCausalLM/],
    [{ ...llama7b, architectures: undefined, model_type: 'bert' }, /unsupported architecture bert/],
    [{ ...llama7b, hidden_size: undefined }, /missing "hidden_size"/],
    [{ ...llama7b, num_key_value_heads: 5 }, /multiple of num_key_value_heads \(5\)/],
    [{ ...llama7b, hidden_size: 4097 }, /not divisible by num_attention_heads/],
    [{ ...llama7b, hidden_act: 'gelu' }, /hidden_act "gelu" is not supported/],
    [{ ...llama7b, num_hidden_layers: 0 }, /"num_hidden_layers" must be a positive integer/],
    [{ ...llama7b, torch_dtype: 'int8' }, /unsupported torch_dtype "int8"/],
    [{ ...llama7b, tie_word_embeddings: 'yes' }, /"tie_word_embeddings" must be true or false/],
    [[1, 2], /must hold a JSON object/],
  ])('rejects %#', (raw, msg) => {
    expect(() => normalizeConfig(raw)).toThrow(ConfigError);
    expect(() => normalizeConfig(raw)).toThrow(msg);
  });

  it('withLayerCount remaps per-layer arrays by source index', () => {
    const raw = { ...llama7b, num_hidden_layers: 4, layer_types: ['a', 'b', 'c', 'd'] };
    const out = withLayerCount(raw, 5, [0, 1, 2, 3, 3]);
    expect(out['num_hidden_layers']).toBe(5);
    expect(out['layer_types']).toEqual(['a', 'b', 'c', 'd', 'd']);
    expect(out['architectures']).toEqual(['LlamaForCausalLM']);
  });

  it("withLayerCount keeps Qwen2's max_window_layers meaning: full-attention layers stay full, sliding stay sliding", () => {
    const qwen = { ...llama7b, architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', num_hidden_layers: 24, max_window_layers: 21, use_sliding_window: false };
    // Interleaved groups of 6: copies of 5, 11, 17 (full) and 23 (sliding) -> 24 full then 4 sliding.
    const src = Array.from({ length: 24 }, (_, i) => i).flatMap((i) => (i % 6 === 5 ? [i, i] : [i]));
    const out = withLayerCount(qwen, 28, src);
    expect(out['max_window_layers']).toBe(24);
    expect(out['layer_types']).toBeUndefined();
    // All layers full (max_window_layers >= layers): still all full.
    expect(withLayerCount({ ...qwen, max_window_layers: 24 }, 28, src)['max_window_layers']).toBe(28);
    // Bottom stacking puts copies of layer 0 (full) first: the prefix grows by the copies.
    expect(withLayerCount(qwen, 26, [0, 0, ...Array.from({ length: 24 }, (_, i) => i)])['max_window_layers']).toBe(23);
    // A full layer's copy after sliding ones cannot be a scalar: with sliding windows on, layer_types says it.
    const mixed = [0, 1, 2, 1];
    const small = { ...qwen, num_hidden_layers: 3, max_window_layers: 2 };
    expect(withLayerCount(small, 4, mixed)).toMatchObject({ max_window_layers: 2 });
    expect(withLayerCount(small, 4, mixed)['layer_types']).toBeUndefined();
    expect(withLayerCount({ ...small, use_sliding_window: true }, 4, mixed)).toMatchObject({
      max_window_layers: 2,
      layer_types: ['full_attention', 'full_attention', 'sliding_attention', 'full_attention'],
    });
  });
});
