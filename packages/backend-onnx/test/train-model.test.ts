/**
 * OnnxTrainableLM: batch validation with typed errors, parameter changes reaching both the training
 * graph (frozen initializers rebuilt) and the inference model, and the resident-array path the train
 * package's Trainer uses (in-place changes + parametersChanged). The optimizer is train's AdamW, tested
 * there against a float64 transcription of PyTorch's formula.
 */
import * as os from 'node:os';
import * as ort from 'onnxruntime-node';
import { IGNORE_INDEX, UsageError, expectedTensorNames, layerTensorName, normalizeConfig, type LlamaConfig, type WeightSource } from '@llama-pro/core';
import { randomWeightSource, randomWeights, tinyRawConfig, weightSourceOf } from '@llama-pro/core/testing';
import { loadOnnxTrainable } from '../src';
import * as trainGraph from '../src/train/train-graph';

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

  it('resident arrays changed in place (then parametersChanged) reach the training graph and the inference model; frozen tensors stay put', async () => {
    const trainable = expectedTensorNames(config).filter((n) => n.startsWith('model.layers.1.'));
    const a = await loadOnnxTrainable(sourceOf(config, 3), { threads: 1 });
    const b = await loadOnnxTrainable(sourceOf(config, 3), { threads: 1 });
    try {
      const frozenName = 'model.layers.0.mlp.gate_proj.weight';
      const frozen = await a.getParameter(frozenName);
      const before = await a.lossAndGradients(batch, trainable);
      const changed: Float32Array[] = [];
      for (const n of trainable) {
        const r = await a.residentParameter(n);
        expect(r).toBe(await a.residentParameter(n)); // the same array every time, not a copy
        for (let i = 0; i < r.length; i++) r[i] = r[i]! * 1.5 + 0.01;
        changed.push(Float32Array.from(r));
      }
      a.parametersChanged(trainable);
      // The same values set the copying way on a second model: identical loss, bit for bit.
      for (let k = 0; k < trainable.length; k++) await b.setParameter(trainable[k]!, changed[k]!);
      const after = await a.lossAndGradients(batch, trainable);
      const ref = await b.lossAndGradients(batch, trainable);
      expect(Math.abs(after.loss - before.loss)).toBeGreaterThan(1e-3);
      expect(after.loss).toBe(ref.loss);
      const lp = await a.tokenLogprobs(batch);
      let s = 0;
      for (const x of lp) s -= x;
      expect(s / 11).toBeCloseTo(after.loss, 4);
      expect(await a.getParameter(frozenName)).toEqual(frozen);
    } finally {
      await a.dispose();
      await b.dispose();
    }
  }, 60_000);

  it('loss() builds its graph once: after updates (resident in place, and setParameter) it equals a fresh model loaded from the updated weights', async () => {
    const weights = randomWeights(config, 4, 0.15);
    const a = await loadOnnxTrainable(weightSourceOf(config, weights), { threads: 1 });
    const build = jest.spyOn(trainGraph, 'buildTrainingGraph');
    try {
      const first = await a.loss(batch);
      // The Trainer's way: a resident array changed in place, then parametersChanged.
      const trained = layerTensorName(1, 'mlp.down_proj.weight');
      const r = await a.residentParameter(trained);
      for (let i = 0; i < r.length; i++) r[i] = r[i]! * 0.5 - 0.02;
      a.parametersChanged([trained]);
      // And the copying way, on another tensor.
      const set = layerTensorName(0, 'self_attn.q_proj.weight');
      await a.setParameter(set, (await a.getParameter(set)).map((x) => x * 2));
      const after = await a.loss(batch);
      expect(build).toHaveBeenCalledTimes(1);
      expect(Math.abs(after.loss - first.loss)).toBeGreaterThan(1e-3);
      // A fresh model whose source holds the updated values: the same loss, bit for bit.
      const updated = new Map(weights);
      for (const n of [trained, set]) updated.set(n, { shape: weights.get(n)!.shape, values: await a.getParameter(n) });
      const b = await loadOnnxTrainable(weightSourceOf(config, updated), { threads: 1 });
      try {
        expect((await b.loss(batch)).loss).toBe(after.loss);
        expect(after.tokens).toBe(11);
      } finally {
        await b.dispose();
      }
    } finally {
      build.mockRestore();
      await a.dispose();
    }
  }, 60_000);

  it('training sessions get an explicit intra-op thread count (no ORT auto-pinning): the CPU count unless threads is given', async () => {
    const create = jest.spyOn(ort.InferenceSession, 'create');
    try {
      for (const [threads, want] of [[undefined, os.availableParallelism()], [1, 1]] as const) {
        const m = await loadOnnxTrainable(sourceOf(config, 5), threads === undefined ? {} : { threads });
        try {
          create.mockClear();
          await m.lossAndGradients(batch, [layerTensorName(1, 'mlp.up_proj.weight')]);
          expect(create).toHaveBeenCalledTimes(1);
          const so = create.mock.calls[0]![1] as ort.InferenceSession.SessionOptions;
          expect(so.intraOpNumThreads).toBe(want);
        } finally {
          await m.dispose();
        }
      }
    } finally {
      create.mockRestore();
    }
  }, 60_000);
});
