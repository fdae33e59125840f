/**
 * OnnxTrainableLM and the resident AdamW: batch validation with typed errors, parameter changes reaching
 * both the training graph (frozen initializers rebuilt) and the inference model, and the AdamW update
 * against a float64 transcription of PyTorch's formula (independent of the implementation).
 */
import { IGNORE_INDEX, UsageError, expectedTensorNames, layerTensorName, normalizeConfig, type LlamaConfig, type WeightSource } from '@llama-pro/core';
import { randomWeightSource, tinyRawConfig } from '@llama-pro/core/testing';
import { OnnxTrainer, ResidentAdamW, clipGradients, loadOnnxTrainable } from '../src';

function sourceOf(config: LlamaConfig, seed: number): WeightSource {
  return randomWeightSource(config, seed, 0.15);
}

const config = normalizeConfig(tinyRawConfig({ layers: 2, vocab: 31, heads: 4, kvHeads: 2 }));
const batch = {
  ids: Int32Array.from({ length: 12 }, (_, i) => (i * 5 + 1) % 31),
  targets: Int32Array.from({ length: 12 }, (_, i) => (i === 3 ? IGNORE_INDEX : (i * 7 + 2) % 31)),
  batchSize: 2,
  seqLen: 6,
};

describe('OnnxTrainableLM', () => {
  it('validates batches with typed errors', async () => {
    const m = await loadOnnxTrainable(sourceOf(config, 1), { threads: 1 });
    try {
      const name = layerTensorName(1, 'mlp.up_proj.weight');
      await expect(m.lossAndGradients({ ...batch, attentionMask: new Uint8Array(12).fill(1).fill(0, 0, 2) }, [name])).rejects.toThrow(UsageError);
      await expect(m.lossAndGradients({ ...batch, targets: new Int32Array(12).fill(IGNORE_INDEX) }, [name])).rejects.toThrow(/no targets/);
      await expect(m.lossAndGradients({ ...batch, ids: new Int32Array(12).fill(31) }, [name])).rejects.toThrow(/outside the vocabulary/);
      await expect(m.lossAndGradients(batch, ['nope'])).rejects.toThrow(/no such tensor/);
      const r = await m.lossAndGradients(batch, [name]);
      expect(r.tokens).toBe(11);
      expect((await m.loss(batch)).loss).toBeCloseTo(r.loss, 5);
    } finally {
      await m.dispose();
    }
  }, 60_000);

  it('setParameter on a frozen tensor changes the training loss and the inference logits alike', async () => {
    const m = await loadOnnxTrainable(sourceOf(config, 2), { threads: 1 });
    try {
      const trainable = [layerTensorName(1, 'mlp.down_proj.weight')];
      const before = await m.lossAndGradients(batch, trainable);
      const frozen = layerTensorName(0, 'self_attn.v_proj.weight');
      const v = await m.getParameter(frozen);
      await m.setParameter(frozen, v.map((x) => x * 3));
      const after = await m.lossAndGradients(batch, trainable);
      expect(Math.abs(after.loss - before.loss)).toBeGreaterThan(1e-3);
      // The inference path agrees with the training graph's loss on the changed model.
      const lp = await m.tokenLogprobs(batch);
      let s = 0;
      for (const x of lp) s -= x;
      expect(s / 11).toBeCloseTo(after.loss, 4);
      await expect(m.setParameter(frozen, new Float32Array(3))).rejects.toThrow(/elements/);
    } finally {
      await m.dispose();
    }
  }, 60_000);

  it('OnnxTrainer updates only the trainable tensors and lowers the loss on a repeated batch', async () => {
    const m = await loadOnnxTrainable(sourceOf(config, 3), { threads: 1 });
    try {
      const trainable = expectedTensorNames(config).filter((n) => n.startsWith('model.layers.1.'));
      const frozen = await m.getParameter('model.layers.0.mlp.gate_proj.weight');
      const tr = new OnnxTrainer(m, trainable, { clip: 1.0 });
      const first = await tr.trainStep(batch, 1e-2);
      let last = first;
      for (let i = 0; i < 9; i++) last = await tr.trainStep(batch, 1e-2);
      expect(tr.step).toBe(10);
      expect(last.loss).toBeLessThan(first.loss - 0.1);
      expect(await m.getParameter('model.layers.0.mlp.gate_proj.weight')).toEqual(frozen);
    } finally {
      await m.dispose();
    }
  }, 60_000);
});

describe('ResidentAdamW', () => {
  it('matches a float64 transcription of torch.optim.AdamW with clipping, decaying matrices only', () => {
    const w = Float32Array.from([0.5, -0.25, 1, 2]);
    const b = Float32Array.from([0.1, -0.2]);
    const opt = new ResidentAdamW(
      [
        { name: 'w', shape: [2, 2], values: w },
        { name: 'b', shape: [2], values: b },
      ],
      { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clip: 1.0 },
    );
    const ref = { w: [0.5, -0.25, 1, 2], b: [0.1, -0.2], mw: [0, 0, 0, 0], vw: [0, 0, 0, 0], mb: [0, 0], vb: [0, 0] };
    const lr = 0.01;
    for (let t = 1; t <= 3; t++) {
      const gw = [0.3 * t, -0.1, 0.5, 2.0 / t];
      const gb = [-0.4, 0.2 * t];
      const norm = Math.hypot(...gw, ...gb);
      const s = norm > 1 ? 1 / (norm + 1e-6) : 1;
      const step = (p: number[], m: number[], v: number[], g: number[], decay: boolean) => {
        for (let i = 0; i < p.length; i++) {
          const gi = g[i]! * s;
          if (decay) p[i] = p[i]! * (1 - lr * 0.1);
          m[i] = 0.9 * m[i]! + 0.1 * gi;
          v[i] = 0.95 * v[i]! + 0.05 * gi * gi;
          p[i] = p[i]! - (lr / (1 - 0.9 ** t)) * (m[i]! / (Math.sqrt(v[i]!) / Math.sqrt(1 - 0.95 ** t) + 1e-8));
        }
      };
      step(ref.w, ref.mw, ref.vw, gw, true);
      step(ref.b, ref.mb, ref.vb, gb, false);
      const got = opt.update(
        new Map([
          ['w', Float32Array.from(gw)],
          ['b', Float32Array.from(gb)],
        ]),
        lr,
      );
      expect(got).toBeCloseTo(norm, 5);
      ref.w.forEach((x, i) => expect(w[i]).toBeCloseTo(x, 6));
      ref.b.forEach((x, i) => expect(b[i]).toBeCloseTo(x, 6));
    }
    expect(() => opt.update(new Map([['w', new Float32Array(4)]]), lr)).toThrow(/missing/);
  });

  it('clipGradients leaves small gradients alone and scales large ones to the threshold', () => {
    const small = Float32Array.from([0.3, 0.4]);
    expect(clipGradients([small], 1)).toBeCloseTo(0.5, 6);
    expect([...small]).toEqual([Math.fround(0.3), Math.fround(0.4)]);
    const big = [Float32Array.from([3]), Float32Array.from([4])];
    expect(clipGradients(big, 1)).toBeCloseTo(5, 6);
    expect(Math.hypot(big[0]![0]!, big[1]![0]!)).toBeCloseTo(1, 5);
  });
});
