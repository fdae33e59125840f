/** Seeded tiny models: gradients (finite differences), expanded blocks, log-probabilities, leaks, errors. */
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { HfCheckpoint, IGNORE_INDEX, LlamaProError, Rng, generate, layerTensorName, type TrainableLM, type TrainingBatch } from '@llama-pro/core';
import { tinyRawConfig, writeRandomCheckpoint, type TinyConfigOptions } from '@llama-pro/core/testing';
import { availableVariants, tfjsBackend } from '../src';
import { tmpDir } from './helpers';

async function tinyModel(opts: TinyConfigOptions, variant: string, seed = 1): Promise<{ model: TrainableLM; ck: HfCheckpoint }> {
  const dir = path.join(await tmpDir('lp-tfjs-tiny-'), 'model');
  await writeRandomCheckpoint(dir, tinyRawConfig(opts), { seed, std: 0.3 });
  const ck = await HfCheckpoint.open(dir);
  const model = await tfjsBackend.loadTrainable!(ck, { variant });
  return { model, ck };
}

/** Two rows, the second left-padded, with some ignored targets. */
function batchFor(vocab: number, seed: number): TrainingBatch {
  const rng = new Rng(seed);
  const B = 2;
  const T = 7;
  const ids = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  const mask = new Uint8Array(B * T).fill(1);
  for (let i = 0; i < B * T; i++) ids[i] = Math.floor(rng.next() * vocab);
  for (let i = 0; i < B * T; i++) targets[i] = i % T === T - 1 ? IGNORE_INDEX : ids[i + 1]!;
  mask[T] = mask[T + 1] = 0; // row 1 starts with two padding tokens
  targets[T] = targets[T + 1] = IGNORE_INDEX;
  targets[2] = IGNORE_INDEX;
  return { ids, targets, batchSize: B, seqLen: T, attentionMask: mask };
}

const CONFIGS: [string, TinyConfigOptions][] = [
  ['untied, GQA 4:2, all biases', { hiddenSize: 16, intermediateSize: 24, heads: 4, kvHeads: 2, vocab: 40, attentionBias: true, mlpBias: true, tie: false }],
  ['tied, GQA 4:1, qwen2 qkv biases', { hiddenSize: 16, intermediateSize: 24, heads: 4, kvHeads: 1, vocab: 40, architecture: 'Qwen2ForCausalLM', tie: true }],
];

describe.each(['cpu', 'wasm'])('tiny models on tfjs:%s', (variant) => {
  describe.each(CONFIGS)('%s', (_label, opts) => {
    let model: TrainableLM;
    let ck: HfCheckpoint;
    beforeAll(async () => {
      ({ model, ck } = await tinyModel(opts, variant));
    });
    afterAll(async () => {
      await model?.dispose();
      await ck?.close();
    });

    it('analytic gradients match central finite differences for every parameter', async () => {
      const batch = batchFor(model.config.vocabSize, 3);
      const names = model.parameterNames();
      const kinds = new Set(names.map((n) => n.replace(/^model\.layers\.\d+\./, '')));
      expect(kinds.size).toBeGreaterThanOrEqual(opts.mlpBias ? 14 : 11);
      const { loss, gradients } = await model.lossAndGradients(batch, names);
      expect([...gradients.keys()]).toEqual(names);
      expect(Math.abs(loss - (await model.loss(batch)).loss)).toBeLessThan(1e-5);
      // float64 is unavailable in tfjs, so the loss is float32 (unit roundoff 6e-8; with ~10^3 summed
      // terms its error is ~1e-6). A directional difference along a unit vector u with step h = 1e-2
      // then has roundoff error ~1e-6 / h = 1e-4 and truncation error h^2/6 * |L'''| ~ 1e-5, so we
      // require |g.u - fd| <= 5e-3 * |g| + 2e-4. Observed errors are <= 5e-4 * |g| (|g| ~ 0.02-1.3 here),
      // while a wrong gradient (a missing term, a wrong sign or transpose) is off by O(|g|).
      const h = 1e-2;
      const rng = new Rng(11);
      for (const name of names) {
        const g = gradients.get(name)!;
        const w0 = await model.getParameter(name);
        let gnorm = 0;
        for (const x of g) gnorm += x * x;
        gnorm = Math.sqrt(gnorm);
        expect(gnorm).toBeGreaterThan(1e-4);
        // Two directions: along the gradient (checks magnitude) and a random one (checks direction).
        const rnd = Float32Array.from(g, () => rng.normal());
        for (const dir of [g, rnd]) {
          let n = 0;
          for (const x of dir) n += x * x;
          const u = Float64Array.from(dir, (x) => x / Math.sqrt(n));
          let gu = 0;
          for (let i = 0; i < u.length; i++) gu += g[i]! * u[i]!;
          await model.setParameter(name, Float32Array.from(w0, (x, i) => x + h * u[i]!));
          const lp = (await model.loss(batch)).loss;
          await model.setParameter(name, Float32Array.from(w0, (x, i) => x - h * u[i]!));
          const lm = (await model.loss(batch)).loss;
          await model.setParameter(name, w0);
          const fd = (lp - lm) / (2 * h);
          if (Math.abs(gu - fd) > 5e-3 * gnorm + 2e-4) throw new Error(`${name}: analytic ${gu} vs finite difference ${fd} (|g| = ${gnorm})`);
        }
      }
    });

    it('an expanded block (o_proj and down_proj zero) gets gradients only in those two', async () => {
      const layer = 1;
      const o = layerTensorName(layer, 'self_attn.o_proj.weight');
      const d = layerTensorName(layer, 'mlp.down_proj.weight');
      const saved = new Map<string, Float32Array>();
      for (const n of [o, d]) {
        saved.set(n, await model.getParameter(n));
        await model.setParameter(n, new Float32Array(saved.get(n)!.length));
      }
      try {
        const blockNames = model.parameterNames().filter((n) => n.startsWith(`model.layers.${layer}.`) && !n.endsWith('o_proj.bias') && !n.endsWith('down_proj.bias'));
        const { gradients } = await model.lossAndGradients(batchFor(model.config.vocabSize, 5), blockNames);
        for (const n of blockNames) {
          const nonZero = gradients.get(n)!.some((x) => x !== 0);
          expect([n, nonZero]).toEqual([n, n === o || n === d]);
        }
      } finally {
        for (const [n, v] of saved) await model.setParameter(n, v);
      }
    });

    it('tokenLogprobs equal a float64 log-softmax of the forward logits', async () => {
      const batch = batchFor(model.config.vocabSize, 7);
      const V = model.config.vocabSize;
      const logits = await model.forward(batch);
      const lp = await model.tokenLogprobs(batch);
      let sum = 0;
      let count = 0;
      for (let i = 0; i < batch.ids.length; i++) {
        const t = batch.targets[i]!;
        if (t === IGNORE_INDEX || batch.attentionMask![i] === 0) {
          expect(lp[i]).toBe(0);
          continue;
        }
        const row = logits.data.subarray(i * V, (i + 1) * V);
        const max = Math.max(...row);
        const lse = max + Math.log(row.reduce((a, x) => a + Math.exp(x - max), 0));
        expect(Math.abs(lp[i]! - (row[t]! - lse))).toBeLessThan(1e-5);
        sum -= row[t]! - lse;
        count++;
      }
      const l = await model.loss(batch);
      expect(l.tokens).toBe(count);
      expect(Math.abs(l.loss - sum / count)).toBeLessThan(1e-5);
    });
  });
});

describe('tfjs backend: resources and errors', () => {
  let model: TrainableLM;
  let ck: HfCheckpoint;
  beforeAll(async () => {
    ({ model, ck } = await tinyModel(CONFIGS[0]![1], 'wasm'));
  });
  afterAll(async () => {
    await model?.dispose();
    await ck?.close();
  });

  it('keeps the tensor count stable over 100 forward, decode and gradient calls', async () => {
    const batch = batchFor(model.config.vocabSize, 9);
    const trainable = model.parameterNames().filter((n) => n.startsWith('model.layers.1.') || n === 'model.embed_tokens.weight');
    const round = async (): Promise<void> => {
      await model.forward(batch);
      await model.tokenLogprobs(batch);
      await model.lossAndGradients(batch, trainable);
      await model.setParameter('model.norm.weight', await model.getParameter('model.norm.weight'));
      await generate(model, [[1, 2, 3], [4]], { maxNewTokens: 3, temperature: 0.8, topK: 5, seed: 1 });
    };
    await round();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 100; i++) await round();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('loads bf16 and sharded checkpoints (upcast to float32)', async () => {
    const raw = tinyRawConfig(CONFIGS[0]![1]);
    const root = await tmpDir('lp-tfjs-dtype-');
    await writeRandomCheckpoint(path.join(root, 'f32'), raw, { seed: 1, std: 0.3 });
    await writeRandomCheckpoint(path.join(root, 'bf16'), raw, { seed: 1, std: 0.3, dtype: 'BF16', maxShardBytes: 4096 });
    const batch = batchFor(model.config.vocabSize, 2);
    const out: Float32Array[] = [];
    for (const d of ['f32', 'bf16']) {
      const c = await HfCheckpoint.open(path.join(root, d));
      if (d === 'bf16') expect(c.shards.length).toBeGreaterThan(1);
      const m = await tfjsBackend.load(c, { variant: 'wasm' });
      out.push((await m.forward(batch)).data);
      await m.dispose();
      await c.close();
    }
    // bf16 keeps 8 significant bits: weights differ by <= 2^-8 relative, so logits agree to ~1e-2.
    let num = 0;
    let den = 0;
    out[0]!.forEach((x, i) => ((num += (x - out[1]![i]!) ** 2), (den += x * x)));
    expect(Math.sqrt(num / den)).toBeLessThan(3e-2);
    expect(Math.sqrt(num / den)).toBeGreaterThan(0);
  });

  it.each(['cpu', 'wasm'])('setParameter copies the values (tfjs:%s): later edits of the array do not leak in', async (variant) => {
    const { model: m, ck: c } = await tinyModel(CONFIGS[1]![1], variant);
    try {
      const name = 'model.norm.weight';
      const v = await m.getParameter(name);
      await m.setParameter(name, v);
      v.fill(123);
      expect((await m.getParameter(name)).some((x) => x === 123)).toBe(false);
    } finally {
      await m.dispose();
      await c.close();
    }
  });

  it('rejects bad input with typed errors', async () => {
    await expect(model.forward({ ids: Int32Array.of(1, 999), batchSize: 1, seqLen: 2 })).rejects.toThrow(/outside the vocabulary/);
    await expect(model.forward({ ids: Int32Array.of(1, 2, 3), batchSize: 1, seqLen: 2 })).rejects.toBeInstanceOf(LlamaProError);
    await expect(model.lossAndGradients({ ids: Int32Array.of(1, 2), targets: Int32Array.of(IGNORE_INDEX, IGNORE_INDEX), batchSize: 1, seqLen: 2 }, [])).rejects.toThrow(/no targets/);
    await expect(model.lossAndGradients(batchFor(model.config.vocabSize, 1), ['model.layers.9.mlp.up_proj.weight'])).rejects.toThrow(/unknown parameter/);
    await expect(model.setParameter('model.norm.weight', new Float32Array(3))).rejects.toThrow(/shape/);
    const s = model.startSession(2);
    await expect(s.step({ ids: Int32Array.of(1), batchSize: 1, seqLen: 1 })).rejects.toThrow(/batch size/);
    s.dispose();
  });

  it('refuses unknown variants, MoE models and unimplemented rope scaling', async () => {
    await expect(tfjsBackend.load(ck, { variant: 'webgpu' })).rejects.toThrow(/unknown tfjs variant "webgpu"/);
    // tfjs-node(-gpu) are optional peers that CI never installs: asking for them must say how to get them.
    expect(availableVariants()).toEqual(expect.arrayContaining(['wasm', 'cpu']));
    if (!availableVariants().includes('tensorflow')) {
      await expect(tfjsBackend.load(ck, { variant: 'tensorflow' })).rejects.toThrow(/tfjs-node-gpu nor @tensorflow\/tfjs-node is installed/);
    }
    const withConfig = (patch: Record<string, unknown>) => ({ ...ck, config: { ...ck.config, ...patch }, tensorNames: () => ck.tensorNames(), info: (n: string) => ck.info(n), readFloat32: (n: string) => ck.readFloat32(n) });
    await expect(tfjsBackend.load(withConfig({ numExperts: 8 }), { variant: 'cpu' })).rejects.toThrow(/mixture-of-experts/);
    await expect(tfjsBackend.load(withConfig({ attentionChunkSize: 8 }), { variant: 'cpu' })).rejects.toThrow(/"attention_chunk_size" is 8 .*which the tfjs backend does not implement/);
    await expect(tfjsBackend.load(withConfig({ partialRotaryFactor: 0.5 }), { variant: 'cpu' })).rejects.toThrow(/"partial_rotary_factor" is 0.5/);
    // A 1B-parameter config cannot fit the wasm engine's 4 GiB: refused before any weight is read.
    await expect(tfjsBackend.load(withConfig({ hiddenSize: 2048, intermediateSize: 5632, numHiddenLayers: 22, numAttentionHeads: 32, numKeyValueHeads: 4, headDim: 64, vocabSize: 32000 }), { variant: 'wasm' })).rejects.toThrow(/more than the wasm engine's 4 GiB/);
  });
});
