import { createAppContainer, normalizeConfig, RegistryError, UsageError, CheckpointError, TOKENS, PLUGIN_API_VERSION, type LlamaConfig } from '@llama-pro/core';
import { tinyRawConfig } from '@llama-pro/core/testing';
import {
  expandPlugin,
  strategyRegistry,
  initializerRegistry,
  formatPlanTable,
  zeroOutputInitializer,
  copyInitializer,
  type ExpansionStrategy,
  planFromLayout,
} from '../src';

const cfg = (layers: number, extra: Record<string, unknown> = {}): LlamaConfig => normalizeConfig(tinyRawConfig({ layers, extra }));

async function registries() {
  const c = await createAppContainer([expandPlugin]);
  return { strategies: strategyRegistry(c), initializers: initializerRegistry(c) };
}

describe('strategy registry', () => {
  it('holds the four built-ins and lists them for an unknown name', async () => {
    const { strategies, initializers } = await registries();
    expect(strategies.names()).toEqual(['bottom', 'interleaved', 'positions', 'top']);
    expect(initializers.names()).toEqual(['copy', 'zero-output']);
    expect(() => strategies.get('middle')).toThrow(RegistryError);
    expect(() => strategies.get('middle')).toThrow('unknown expansion strategy "middle"; known: bottom, interleaved, positions, top');
    expect(() => initializers.get('random')).toThrow('known: copy, zero-output');
  });

  it('accepts a third-party strategy registered as a plugin', async () => {
    const everyOther: ExpansionStrategy = {
      name: 'after-each',
      description: 'a copy after every block',
      params: [],
      plan(config, params) {
        const layout = [];
        for (let i = 0; i < config.numHiddenLayers; i++) layout.push({ source: i, isNew: false }, { source: i, isNew: true });
        return planFromLayout(this.name, params, config.numHiddenLayers, layout);
      },
    };
    const third = { meta: { name: 'third', version: '1.0.0', apiVersion: PLUGIN_API_VERSION }, register: (c: import('tsyringe').DependencyContainer) => void c.register(TOKENS.ExpansionStrategy, { useValue: everyOther }) };
    const c = await createAppContainer([expandPlugin], [third]);
    const plan = strategyRegistry(c).get('after-each').plan(cfg(3), {});
    expect(plan.newLayers).toEqual([1, 3, 5]);
    expect(plan.originalToNew).toEqual([0, 2, 4]);
  });
});

describe('interleaved', () => {
  it('paper default: 32 layers, 8 groups -> new blocks 4, 9, ..., 39 copied from 3, 7, ..., 31', async () => {
    const { strategies } = await registries();
    const plan = strategies.get('interleaved').plan(cfg(32), { groups: 8 });
    expect(plan.newLayerCount).toBe(40);
    expect(plan.newLayers).toEqual([4, 9, 14, 19, 24, 29, 34, 39]);
    expect(plan.layers.filter((l) => l.isNew).map((l) => l.source)).toEqual([3, 7, 11, 15, 19, 23, 27, 31]);
    // original block i -> i + floor(i / 4)
    expect(plan.originalToNew).toEqual(Array.from({ length: 32 }, (_, i) => i + Math.floor(i / 4)));
    expect(plan.params).toEqual({ groups: 8, copies: 1 });
  });

  it('P copies per group, parameters given as CLI strings', async () => {
    const { strategies } = await registries();
    const plan = strategies.get('interleaved').plan(cfg(6), { groups: '2', copies: '2' });
    // groups [0,1,2] [3,4,5]; two copies of block 2 then two of block 5
    expect(plan.layers.map((l) => `${l.source}${l.isNew ? '*' : ''}`)).toEqual(['0', '1', '2', '2*', '2*', '3', '4', '5', '5*', '5*']);
    expect(plan.originalToNew).toEqual([0, 1, 2, 5, 6, 7]);
  });

  it('refuses N that does not divide L, listing the valid N', async () => {
    const { strategies } = await registries();
    const s = strategies.get('interleaved');
    expect(() => s.plan(cfg(32), { groups: 6 })).toThrow(UsageError);
    expect(() => s.plan(cfg(32), { groups: 6 })).toThrow('valid --groups for 32 layers: 1, 2, 4, 8, 16, 32');
    expect(() => s.plan(cfg(12), { groups: 24 })).toThrow(/exceeds the 12 layers/);
    expect(() => s.plan(cfg(12), { groups: 0 })).toThrow(/--groups must be at least 1/);
    expect(() => s.plan(cfg(12), {})).toThrow(/needs --groups/);
    expect(() => s.plan(cfg(12), { groups: 'four' })).toThrow(/--groups must be an integer/);
    expect(() => s.plan(cfg(12), { groups: 4, blocks: 2 })).toThrow('strategy "interleaved" has no parameter --blocks; its parameters: --groups, --copies');
  });
});

describe('top / bottom', () => {
  it('top stacks copies of the last K blocks after the last block', async () => {
    const { strategies } = await registries();
    const plan = strategies.get('top').plan(cfg(5), { blocks: 2 });
    expect(plan.layers.map((l) => [l.index, l.source, l.isNew])).toEqual([
      [0, 0, false], [1, 1, false], [2, 2, false], [3, 3, false], [4, 4, false], [5, 3, true], [6, 4, true],
    ]);
    expect(plan.originalToNew).toEqual([0, 1, 2, 3, 4]);
  });

  it('bottom stacks copies of the first K blocks before the first block', async () => {
    const { strategies } = await registries();
    const plan = strategies.get('bottom').plan(cfg(4), { blocks: 3 });
    expect(plan.newLayers).toEqual([0, 1, 2]);
    expect(plan.layers.slice(0, 3).map((l) => l.source)).toEqual([0, 1, 2]);
    expect(plan.originalToNew).toEqual([3, 4, 5, 6]);
  });

  it('refuses more copies than blocks', async () => {
    const { strategies } = await registries();
    expect(() => strategies.get('top').plan(cfg(4), { blocks: 5 })).toThrow(/--blocks 5 exceeds the 4 layers/);
    expect(() => strategies.get('bottom').plan(cfg(4), { blocks: 0 })).toThrow(/at least 1/);
  });
});

describe('positions', () => {
  it('--at lists indices in the expanded model; copies default to the block below', async () => {
    const { strategies } = await registries();
    const plan = strategies.get('positions').plan(cfg(32), { at: '4,9,14' });
    expect(plan.newLayerCount).toBe(35);
    expect(plan.newLayers).toEqual([4, 9, 14]);
    expect(plan.layers.filter((l) => l.isNew).map((l) => l.source)).toEqual([3, 7, 11]);
    expect(plan.originalToNew.slice(0, 13)).toEqual([0, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12, 13, 15]);
    expect(plan.originalToNew[31]).toBe(34);
  });

  it('--at 0 copies block 0; --from picks sources (order follows --at)', async () => {
    const { strategies } = await registries();
    const s = strategies.get('positions');
    expect(s.plan(cfg(3), { at: [0] }).layers.map((l) => [l.source, l.isNew])).toEqual([[0, true], [0, false], [1, false], [2, false]]);
    const p = s.plan(cfg(4), { at: '5,1', from: '0,3' });
    expect(p.layers.map((l) => [l.source, l.isNew])).toEqual([[0, false], [3, true], [1, false], [2, false], [3, false], [0, true]]);
    expect(p.params).toEqual({ at: [1, 5], from: [3, 0] });
  });

  it('refuses impossible positions', async () => {
    const { strategies } = await registries();
    const s = strategies.get('positions');
    expect(() => s.plan(cfg(4), { at: '4,6' })).toThrow('positions: --at 6 is impossible: with 2 new block(s) the expanded model has 6 layers (indices 0..5)');
    expect(() => s.plan(cfg(4), { at: '2,2' })).toThrow(/lists index 2 twice/);
    expect(() => s.plan(cfg(4), { at: '-1' })).toThrow(/--at must be at least 0/);
    expect(() => s.plan(cfg(4), { at: '' })).toThrow(/needs at least one value/);
    expect(() => s.plan(cfg(4), { at: '1,x' })).toThrow(/--at must be an integer/);
    expect(() => s.plan(cfg(4), { at: '1', from: '4' })).toThrow('positions: --from 4 does not exist; the model has blocks 0..3');
    expect(() => s.plan(cfg(4), { at: '1,2', from: '0' })).toThrow(/--from has 1 entries but --at has 2/);
  });
});

describe('plan table', () => {
  it('prints one row per layer of the expanded model', async () => {
    const { strategies } = await registries();
    const text = formatPlanTable(strategies.get('interleaved').plan(cfg(4), { groups: 2 }));
    expect(text.split('\n')).toEqual([
      'strategy interleaved {"groups":2,"copies":1}: 4 -> 6 layers, new blocks at 2, 5',
      'new  from  kind',
      '0    0     original',
      '1    1     original',
      '2    1     NEW copy (trainable)',
      '3    2     original',
      '4    3     original',
      '5    3     NEW copy (trainable)',
    ]);
  });
});

describe('initializers', () => {
  const dense = ['input_layernorm.weight', 'self_attn.q_proj.weight', 'self_attn.o_proj.weight', 'self_attn.o_proj.bias', 'mlp.gate_proj.weight', 'mlp.down_proj.weight', 'mlp.down_proj.bias', 'mlp.up_proj.weight'];
  it('zero-output zeroes exactly o_proj and down_proj (weights and biases)', () => {
    expect(zeroOutputInitializer.zeroedSuffixes(cfg(2), dense)).toEqual(['self_attn.o_proj.weight', 'self_attn.o_proj.bias', 'mlp.down_proj.weight', 'mlp.down_proj.bias']);
    expect(copyInitializer.zeroedSuffixes(cfg(2), dense)).toEqual([]);
  });

  it('zero-output zeroes every expert w2 in MoE blocks', () => {
    const moe = normalizeConfig({ ...tinyRawConfig({ layers: 2 }), architectures: ['MixtralForCausalLM'], model_type: 'mixtral', num_local_experts: 3 });
    const suffixes = ['self_attn.o_proj.weight', 'block_sparse_moe.gate.weight', ...[0, 1, 2].flatMap((e) => ['w1', 'w2', 'w3'].map((w) => `block_sparse_moe.experts.${e}.${w}.weight`))];
    expect(zeroOutputInitializer.zeroedSuffixes(moe, suffixes)).toEqual([
      'self_attn.o_proj.weight',
      'block_sparse_moe.experts.0.w2.weight',
      'block_sparse_moe.experts.1.w2.weight',
      'block_sparse_moe.experts.2.w2.weight',
    ]);
    expect(() => zeroOutputInitializer.zeroedSuffixes(moe, suffixes.filter((s) => !s.includes('experts.2.w2')))).toThrow(CheckpointError);
  });

  it('zero-output refuses a block without output projections', () => {
    expect(() => zeroOutputInitializer.zeroedSuffixes(cfg(2), ['self_attn.q_proj.weight', 'mlp.down_proj.weight'])).toThrow(/no self_attn.o_proj.weight/);
    expect(() => zeroOutputInitializer.zeroedSuffixes(cfg(2), ['self_attn.o_proj.weight'])).toThrow(/lacks mlp.down_proj.weight/);
  });
});
