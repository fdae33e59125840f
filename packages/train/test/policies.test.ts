import { Rng, createAppContainer, layerTensorName } from '@llama-pro/core';
import { ParameterSet, freezePolicies, lrSchedules, trainPlugin, fullPolicy, layersPolicy, loraPolicy, newBlocksPolicy, selectLayers, LORA_A, LORA_B } from '../src';
import { ToyLM, toyValues } from '../src/testing';

const shape = { vocab: 6, dim: 4, layers: 4 };
const model = () => new ToyLM(shape, toyValues({ ...shape, seed: 1, zeroLayers: [1, 3] }));
const ctx = (m: ToyLM, options = {}, manifest?: { trainable: string[]; newLayers: number[] }) => ({ parameterNames: m.parameterNames(), shapeOf: (n: string) => m.parameterShape(n), manifest, options });

describe('freeze policies', () => {
  it('new-blocks takes exactly the manifest list, in model order', () => {
    const m = model();
    const trainable = [layerTensorName(3, 'self_attn.o_proj.weight'), layerTensorName(1, 'input_layernorm.weight'), layerTensorName(1, 'self_attn.o_proj.weight')];
    const plan = newBlocksPolicy.plan(ctx(m, {}, { trainable, newLayers: [1, 3] }));
    expect(plan.trainable).toEqual([layerTensorName(1, 'input_layernorm.weight'), layerTensorName(1, 'self_attn.o_proj.weight'), layerTensorName(3, 'self_attn.o_proj.weight')]);
    expect(() => newBlocksPolicy.plan(ctx(m))).toThrow(/expansion manifest/);
    expect(() => newBlocksPolicy.plan(ctx(m, {}, { trainable: ['model.layers.9.x'], newLayers: [9] }))).toThrow(/does not belong/);
  });
  it('full takes everything', () => {
    const m = model();
    expect(fullPolicy.plan(ctx(m)).trainable).toEqual(m.parameterNames());
  });
  it('layers: every k-th, top, bottom, indices', () => {
    expect(selectLayers({ every: 2 }, 8)).toEqual([0, 2, 4, 6]);
    expect(selectLayers({ every: 4, offset: 3 }, 8)).toEqual([3, 7]);
    expect(selectLayers({ top: 2 }, 8)).toEqual([6, 7]);
    expect(selectLayers({ bottom: 1, indices: [5] }, 8)).toEqual([0, 5]);
    expect(() => selectLayers({ indices: [8] }, 8)).toThrow(/layer 8 does not exist/);
    expect(() => selectLayers({}, 8)).toThrow(/selects no layer/);
    const m = model();
    expect(layersPolicy.plan(ctx(m, { layers: { top: 1 } })).trainable).toEqual([layerTensorName(3, 'input_layernorm.weight'), layerTensorName(3, 'self_attn.o_proj.weight')]);
  });
  it('lora: matrices of the chosen modules; unknown modules are an error', () => {
    const m = model();
    const plan = loraPolicy.plan(ctx(m, { lora: { rank: 2, alpha: 4, targets: ['self_attn.o_proj'], layers: { indices: [0, 2] } } }));
    expect(plan.trainable).toEqual([]);
    expect(plan.lora.map((l) => l.name)).toEqual([layerTensorName(0, 'self_attn.o_proj.weight'), layerTensorName(2, 'self_attn.o_proj.weight')]);
    expect(() => loraPolicy.plan(ctx(m, { lora: { rank: 2, alpha: 4, targets: ['mlp.up_proj'] } }))).toThrow(/match no 2-D weight/);
    expect(() => loraPolicy.plan(ctx(m, { lora: { rank: 9, alpha: 4, targets: ['self_attn.o_proj'] } }))).toThrow(/exceeds/);
  });
});

describe('LoRA chain rule', () => {
  it('adapter gradients equal finite differences of the loss through W_eff = W0 + (alpha/r)·B·A', async () => {
    const m = model();
    const W = layerTensorName(0, 'self_attn.o_proj.weight');
    const ps = await ParameterSet.create(m, { trainable: [], lora: [{ name: W, rank: 2, alpha: 3 }], summary: '' }, new Rng(5));
    // Make B non-zero so both adapter gradients are informative.
    const b = ps.values.get(W + LORA_B)!;
    for (let i = 0; i < b.length; i++) b[i] = 0.1 * ((i % 5) - 2);
    await ps.push(m);
    const batch = { ids: new Int32Array([1, 2, 3, 4]), targets: new Int32Array([2, 3, 4, 5]), batchSize: 1, seqLen: 4 };
    const r = await m.lossAndGradients(batch, ps.modelGradientNames);
    expect(m.gradientRequests.at(-1)).toEqual([W]);
    const g = ps.slotGradients(r.gradients);
    for (const slot of [W + LORA_A, W + LORA_B]) {
      const v = ps.values.get(slot)!;
      for (const idx of [0, v.length - 1]) {
        const orig = v[idx]!;
        const h = 1e-2;
        v[idx] = orig + h;
        await ps.push(m);
        const lp = (await m.loss(batch)).loss;
        const up = v[idx]!;
        v[idx] = orig - h;
        await ps.push(m);
        const lm = (await m.loss(batch)).loss;
        const down = v[idx]!;
        v[idx] = orig;
        expect(g.get(slot)![idx]).toBeCloseTo((lp - lm) / (up - down), 3);
      }
    }
  });
  it('starts as the identity (B = 0) and merges exactly', async () => {
    const m = model();
    const W = layerTensorName(2, 'self_attn.o_proj.weight');
    const w0 = await m.getParameter(W);
    const ps = await ParameterSet.create(m, { trainable: [], lora: [{ name: W, rank: 1, alpha: 2 }], summary: '' }, new Rng(1));
    expect([...ps.modelTensors().get(W)!]).toEqual([...w0]);
    const a = ps.values.get(W + LORA_A)!; // [1, 4]
    const b = ps.values.get(W + LORA_B)!; // [4, 1]
    a.set([1, 0, 0, 0]);
    b.set([0, 0.5, 0, 0]);
    const merged = ps.modelTensors().get(W)!;
    // s = 2: only W[1, 0] changes, by 2·0.5·1 = 1.
    const expected = Float32Array.from(w0);
    expected[1 * 4 + 0] = w0[4]! + 1;
    expect([...merged]).toEqual([...expected]);
  });
});

describe('plugin', () => {
  it('registers the built-in policies and schedules into a container', async () => {
    const c = await createAppContainer([trainPlugin]);
    expect(freezePolicies(c).names()).toEqual(['full', 'layers', 'lora', 'new-blocks']);
    expect(lrSchedules(c).names()).toEqual(['constant', 'cosine', 'linear']);
    expect(() => freezePolicies(c).get('nope')).toThrow(/unknown freeze policy "nope"; known: full, layers, lora, new-blocks/);
  });
});
