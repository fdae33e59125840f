/**
 * Which tensors AdamW decays comes from core's tensor table (model/arch `decays` per role), not from
 * shapes. Expected flags are written out by hand from the documented rule the table implements:
 * transformers' TrainingArguments.weight_decay applies "to all layers except all bias and LayerNorm
 * weights" (and LLaMA / nanoGPT decay matrices and embeddings only), so on a Qwen2 model (q/k/v biases)
 * the projection matrices, the embedding and the head decay, the norms and the three biases do not.
 */
import { Rng, expectedShape, expectedTensorNames, layerTensorName, normalizeConfig, type LlamaConfig, type TrainableLM } from '@llama-pro/core';
import { tinyRawConfig } from '@llama-pro/core/testing';
import { ParameterSet, decaysByShape, decaysFor } from '../src';

/** Just enough of a TrainableLM for ParameterSet.create (names, shapes, values of `config`). */
function modelOf(config: LlamaConfig): TrainableLM {
  const names = expectedTensorNames(config);
  const shape = (n: string): number[] => expectedShape(config, n)!;
  const unused = (): never => {
    throw new Error('not used by ParameterSet.create');
  };
  return {
    config,
    device: 'test',
    parameterNames: () => [...names],
    parameterShape: shape,
    getParameter: async (n) => new Float32Array(shape(n).reduce((a, b) => a * b, 1)),
    setParameter: unused,
    loss: unused,
    lossAndGradients: unused,
    forward: unused,
    tokenLogprobs: unused,
    startSession: unused,
    dispose: async () => undefined,
  };
}

const LAYER_DECAY: Record<string, boolean> = {
  'input_layernorm.weight': false,
  'self_attn.q_proj.weight': true,
  'self_attn.q_proj.bias': false,
  'self_attn.k_proj.weight': true,
  'self_attn.k_proj.bias': false,
  'self_attn.v_proj.weight': true,
  'self_attn.v_proj.bias': false,
  'self_attn.o_proj.weight': true,
  'post_attention_layernorm.weight': false,
  'mlp.gate_proj.weight': true,
  'mlp.up_proj.weight': true,
  'mlp.down_proj.weight': true,
};

function expected(config: LlamaConfig): Map<string, boolean> {
  const m = new Map<string, boolean>([
    ['model.embed_tokens.weight', true],
    ['model.norm.weight', false],
  ]);
  if (!config.tieWordEmbeddings) m.set('lm_head.weight', true);
  for (let l = 0; l < config.numHiddenLayers; l++) {
    for (const [s, d] of Object.entries(LAYER_DECAY)) if (!s.endsWith('.bias') || config.qkvBias) m.set(layerTensorName(l, s), d);
  }
  return m;
}

describe('weight decay selection reads core tensor table', () => {
  it('Qwen2 (q/k/v biases): matrices, embedding and head decay; norms and biases do not', async () => {
    const config = normalizeConfig(tinyRawConfig({ architecture: 'Qwen2ForCausalLM', attentionBias: true, layers: 2 }));
    expect(config.qkvBias).toBe(true);
    const want = expected(config);
    expect(new Set(expectedTensorNames(config))).toEqual(new Set(want.keys()));
    for (const [n, d] of want) expect([n, decaysFor(config, n, expectedShape(config, n)!)]).toEqual([n, d]);
    // The flag is the role's, not the shape's: a shape that says otherwise does not change it.
    expect(decaysFor(config, layerTensorName(0, 'self_attn.k_proj.bias'), [4, 4])).toBe(false);
    expect(decaysFor(config, layerTensorName(0, 'self_attn.k_proj.weight'), [4])).toBe(true);
    // What the optimizer gets: every slot of a full plan carries the table's flag.
    const ps = await ParameterSet.create(modelOf(config), { trainable: [...want.keys()], lora: [], summary: 'all' }, new Rng(0));
    expect(new Map(ps.slots.map((s) => [s.name, s.decay]))).toEqual(want);
  });

  it('LLaMA: identical to the previous rank rule on every tensor', () => {
    const config = normalizeConfig(tinyRawConfig({ layers: 2, tie: false }));
    const want = expected(config);
    for (const n of expectedTensorNames(config)) {
      const shape = expectedShape(config, n)!;
      expect([n, decaysFor(config, n, shape)]).toEqual([n, want.get(n)]);
      expect([n, decaysFor(config, n, shape)]).toEqual([n, decaysByShape(shape)]);
    }
  });

  it('LoRA factors (not in the table) keep the rank rule', async () => {
    const config = normalizeConfig(tinyRawConfig({ layers: 1 }));
    const target = layerTensorName(0, 'self_attn.q_proj.weight');
    const ps = await ParameterSet.create(modelOf(config), { trainable: [layerTensorName(0, 'input_layernorm.weight')], lora: [{ name: target, rank: 2, alpha: 4 }], summary: 'lora' }, new Rng(0));
    expect(ps.slots.map((s) => [s.name, s.decay])).toEqual([
      [layerTensorName(0, 'input_layernorm.weight'), false],
      [`${target}.lora_A`, true],
      [`${target}.lora_B`, true],
    ]);
  });
});
