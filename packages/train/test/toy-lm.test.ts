import { EMBED, FINAL_NORM, LM_HEAD, layerTensorName } from '@llama-pro/core';
import { ToyLM, toyValues } from '../src/testing';

/** Central finite differences in float64 on a few coordinates, to validate the analytic gradients of the test double. */
describe('ToyLM (test double)', () => {
  const shape = { vocab: 7, dim: 4, layers: 2 };
  const batch = { ids: new Int32Array([1, 4, 2, 6, 3, 0]), targets: new Int32Array([4, 2, 6, 3, 0, 5]), batchSize: 2, seqLen: 3 };
  it('analytic gradients match finite differences', async () => {
    const m = new ToyLM(shape, toyValues({ ...shape, seed: 3 }));
    const names = [EMBED, layerTensorName(0, 'input_layernorm.weight'), layerTensorName(1, 'self_attn.o_proj.weight'), FINAL_NORM, LM_HEAD];
    const r = await m.lossAndGradients(batch, names);
    for (const name of names) {
      const base = await m.getParameter(name);
      for (const idx of [0, base.length - 1, Math.floor(base.length / 2)]) {
        const h = 1e-2;
        const plus = Float32Array.from(base);
        plus[idx] = base[idx]! + h;
        await m.setParameter(name, plus);
        const lp = (await m.loss(batch)).loss;
        const minus = Float32Array.from(base);
        minus[idx] = base[idx]! - h;
        await m.setParameter(name, minus);
        const lm = (await m.loss(batch)).loss;
        await m.setParameter(name, base);
        const fd = (lp - lm) / (plus[idx]! - minus[idx]!);
        expect(r.gradients.get(name)![idx]).toBeCloseTo(fd, 3);
      }
    }
    expect(r.tokens).toBe(6);
  });
});
