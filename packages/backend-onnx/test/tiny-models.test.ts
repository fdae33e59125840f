import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HfCheckpoint, generate, normalizeConfig } from '@llama-pro/core';
import { randomWeights, tinyRawConfig, writeRandomCheckpoint, type TinyConfigOptions } from '@llama-pro/core/testing';
import { OnnxBackend } from '../src';
import { argmax, referenceForward, relL2 } from './reference';

const CASES: [string, TinyConfigOptions][] = [
  ['MHA (4 heads, 4 kv), untied head', { heads: 4, kvHeads: 4, tie: false }],
  ['GQA 2:1, tied head', { heads: 4, kvHeads: 2, tie: true }],
  ['MQA 4:1 with attention and MLP biases', { heads: 4, kvHeads: 1, attentionBias: true, mlpBias: true }],
  ['GQA 3:1, head_dim 12, rope theta 500000', { hiddenSize: 36, heads: 6, kvHeads: 2, ropeTheta: 500000 }],
  ['Qwen2 (q/k/v biases), tied', { architecture: 'Qwen2ForCausalLM', heads: 4, kvHeads: 2, tie: true }],
];

describe('onnx backend vs a float64 reference forward on seeded tiny models', () => {
  let tmp: string;
  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'onnx-tiny-'));
  });
  afterAll(async () => {
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  it.each(CASES)('%s: padded forward, KV-cache decode and generation match the reference', async (label, opts) => {
    const raw = tinyRawConfig({ layers: 2, vocab: 61, ...opts });
    const seed = label.length;
    const dir = path.join(tmp, `m${seed}-${CASES.findIndex((c) => c[0] === label)}`);
    await writeRandomCheckpoint(dir, raw, { seed, std: 0.15 });
    const config = normalizeConfig(raw);
    const weights = randomWeights(config, seed, 0.15);
    const ckpt = await HfCheckpoint.open(dir);
    // odd cases run the unoptimized graph (no ORT fusions), without thread spinning
    const odd = CASES.findIndex((c) => c[0] === label) % 2 === 1;
    const model = await new OnnxBackend().load(ckpt, { threads: 1, graphOptimizationLevel: odd ? 'disabled' : 'all', spinning: !odd });
    try {
      const V = config.vocabSize;
      const B = 3;
      const T = 9;
      const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 7 + 3) % V);
      // row 0 full, row 1 left-padded by 3, row 2 right-padded by 4
      const mask = new Uint8Array(B * T).fill(1);
      mask.fill(0, T, T + 3);
      mask.fill(0, 3 * T - 4, 3 * T);
      const ref = referenceForward(config, weights, ids, B, T, mask);
      const got = await model.forward({ ids, batchSize: B, seqLen: T, attentionMask: mask });
      const realRows = [...Array(B * T).keys()].filter((i) => mask[i] === 1);
      expect(relL2(got.data, ref, V, realRows)).toBeLessThanOrEqual(1e-5);
      for (const r of realRows) expect(argmax(got.data, r * V, V)).toBe(argmax(ref, r * V, V));

      // KV-cache decode: prefill 5 (row 1 has 3 pads), then steps of 2 and 1 with row 2 masked out in one step
      const s = model.startSession(B);
      const pre = ids.subarray(0, B * T).filter((_, i) => i % T < 5);
      const preMask = mask.filter((_, i) => i % T < 5);
      const l5 = await s.step({ ids: pre, batchSize: B, seqLen: 5, attentionMask: preMask });
      for (let b = 0; b < B; b++) expect(relL2(l5.subarray(b * V, (b + 1) * V), ref.subarray((b * T + 4) * V, (b * T + 5) * V))).toBeLessThanOrEqual(1e-5);
      const two = Int32Array.from([0, 1, 2].flatMap((b) => [ids[b * T + 5]!, ids[b * T + 6]!]));
      const l7 = await s.step({ ids: two, batchSize: B, seqLen: 2 });
      for (let b = 0; b < 2; b++) expect(relL2(l7.subarray(b * V, (b + 1) * V), ref.subarray((b * T + 6) * V, (b * T + 7) * V))).toBeLessThanOrEqual(1e-5);
      expect(s.length).toBe(7);
      s.dispose();

      // greedy generation equals greedy argmax over the reference's full forward
      const prompt = [1, 5, 9];
      const [gen] = await generate(model, [prompt], { maxNewTokens: 6 });
      const seq = [...prompt];
      for (let k = 0; k < 6; k++) {
        const r = referenceForward(config, weights, Int32Array.from(seq), 1, seq.length);
        seq.push(argmax(r, (seq.length - 1) * V, V));
      }
      expect(gen!.tokens).toEqual(seq.slice(prompt.length));
    } finally {
      await model.dispose();
      await ckpt.close();
    }
  });
});

describe('rope scaling', () => {
  it('linear scaling by 2 at positions 2p equals no scaling at positions p', async () => {
    const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'onnx-rope-'));
    try {
      const base = tinyRawConfig({ layers: 1, vocab: 40 });
      await writeRandomCheckpoint(path.join(tmp, 'plain'), base, { seed: 5, std: 0.2 });
      await writeRandomCheckpoint(path.join(tmp, 'linear'), { ...base, rope_scaling: { rope_type: 'linear', factor: 2 } }, { seed: 5, std: 0.2 });
      const [a, b] = [await HfCheckpoint.open(path.join(tmp, 'plain')), await HfCheckpoint.open(path.join(tmp, 'linear'))];
      const [ma, mb] = [await new OnnxBackend().load(a, { threads: 1 }), await new OnnxBackend().load(b, { threads: 1 })];
      const ids = Int32Array.of(3, 9, 27, 1, 11);
      const plain = await ma.runStep({ ids, batchSize: 1, seqLen: 5, positionIds: Int32Array.of(0, 1, 2, 3, 4) });
      const scaled = await mb.runStep({ ids, batchSize: 1, seqLen: 5, positionIds: Int32Array.of(0, 2, 4, 6, 8) });
      const unscaledAt2p = await ma.runStep({ ids, batchSize: 1, seqLen: 5, positionIds: Int32Array.of(0, 2, 4, 6, 8) });
      expect(relL2(scaled.logits.data as Float32Array, plain.logits.data as Float32Array)).toBeLessThanOrEqual(1e-6);
      expect(relL2(unscaledAt2p.logits.data as Float32Array, plain.logits.data as Float32Array)).toBeGreaterThan(1e-3);
      await Promise.all([ma.dispose(), mb.dispose(), a.close(), b.close()]);
    } finally {
      await fsp.rm(tmp, { recursive: true, force: true });
    }
  });
});
