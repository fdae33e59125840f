/** Conformance on the real stories260K model against the llama2.c golden logits. */
import { HfCheckpoint, generate, type CausalLM } from '@llama-pro/core';
import { describeWithFixtures } from '@llama-pro/core/testing';
import { tfjsBackend } from '../src';
import { STORIES_FIXTURES, argmaxRows, convertedStories, goldenLogits, goldenTokens, relL2 } from './helpers';

describeWithFixtures('stories260K on tfjs', STORIES_FIXTURES, () => {
  let ck: HfCheckpoint;
  let tokens: number[];
  let golden: Float32Array;
  const V = 512;
  const T = 64;

  beforeAll(async () => {
    ({ ck } = await convertedStories());
    tokens = await goldenTokens();
    golden = await goldenLogits();
    expect(tokens).toHaveLength(T);
    expect(golden).toHaveLength(T * V);
  });
  afterAll(async () => {
    await ck?.close();
  });

  describe.each(['cpu', 'wasm'])('variant %s', (variant) => {
    let model: CausalLM;
    const logs: string[] = [];
    beforeAll(async () => {
      model = await tfjsBackend.load(ck, { variant, log: (m) => logs.push(m) });
    });
    afterAll(async () => {
      await model?.dispose();
    });

    it('reports and logs the engine', () => {
      expect(model.device).toBe(`tfjs:${variant}`);
      expect(logs).toHaveLength(1);
      expect(logs[0]).toContain(variant);
    });

    it('matches the golden logits at all 64 positions (rel L2 <= 1e-4, same argmax)', async () => {
      const out = await model.forward({ ids: Int32Array.from(tokens), batchSize: 1, seqLen: T });
      expect([out.batchSize, out.seqLen, out.vocabSize]).toEqual([1, T, V]);
      expect(relL2(out.data, golden)).toBeLessThanOrEqual(1e-4);
      expect(argmaxRows(out.data, T, V)).toEqual(argmaxRows(golden, T, V));
    });

    it('greedy generation from BOS reproduces tokens.txt', async () => {
      const [res] = await generate(model, [[1]], { maxNewTokens: T - 1, temperature: 0 });
      expect(res!.tokens).toEqual(tokens.slice(1));
      expect(res!.finishReason).toBe('length');
    });
  });
});

describeWithFixtures('stories260K: KV cache and padding (wasm)', STORIES_FIXTURES, () => {
  let ck: HfCheckpoint;
  let tokens: number[];
  let model: CausalLM;
  const V = 512;

  beforeAll(async () => {
    ({ ck } = await convertedStories());
    tokens = await goldenTokens();
    model = await tfjsBackend.load(ck, { variant: 'wasm' });
  });
  afterAll(async () => {
    await model?.dispose();
    await ck?.close();
  });

  it('KV-cache logits equal full-forward logits (rel err <= 1e-5)', async () => {
    const T = 64;
    const full = await model.forward({ ids: Int32Array.from(tokens), batchSize: 1, seqLen: T });
    const session = model.startSession(1);
    try {
      const prompt = 10;
      const first = await session.step({ ids: Int32Array.from(tokens.slice(0, prompt)), batchSize: 1, seqLen: prompt });
      expect(relL2(first, full.data.subarray((prompt - 1) * V, prompt * V))).toBeLessThanOrEqual(1e-5);
      for (let t = prompt; t < T; t++) {
        const step = await session.step({ ids: Int32Array.of(tokens[t]!), batchSize: 1, seqLen: 1 });
        expect(relL2(step, full.data.subarray(t * V, (t + 1) * V))).toBeLessThanOrEqual(1e-5);
      }
      expect(session.length).toBe(T);
    } finally {
      session.dispose();
    }
  });

  it('left- and right-padded rows give the logits of the unpadded rows', async () => {
    const L = 48;
    const rows = [
      { len: 30, left: true },
      { len: 40, left: false },
      { len: 48, left: false },
      { len: 17, left: true },
    ];
    const ids = new Int32Array(rows.length * L).fill(7); // pad ids are arbitrary real tokens: only the mask hides them
    const mask = new Uint8Array(rows.length * L);
    rows.forEach((r, b) => {
      const off = r.left ? L - r.len : 0;
      for (let t = 0; t < r.len; t++) {
        ids[b * L + off + t] = tokens[t]!;
        mask[b * L + off + t] = 1;
      }
    });
    const padded = await model.forward({ ids, batchSize: rows.length, seqLen: L, attentionMask: mask });
    for (const [b, r] of rows.entries()) {
      const alone = await model.forward({ ids: Int32Array.from(tokens.slice(0, r.len)), batchSize: 1, seqLen: r.len });
      const off = r.left ? L - r.len : 0;
      const got = padded.data.subarray((b * L + off) * V, (b * L + off + r.len) * V);
      expect(relL2(got, alone.data)).toBeLessThanOrEqual(1e-5);
      expect(padded.data.subarray(b * L * V, (b + 1) * L * V).every((x) => Number.isFinite(x))).toBe(true);
    }
  });

  it('batched generation with left-padded prompts matches single-row generation', async () => {
    const prompts = [tokens.slice(0, 3), tokens.slice(0, 9), [1]];
    const batched = await generate(model, prompts, { maxNewTokens: 12, temperature: 0 });
    for (const [i, p] of prompts.entries()) {
      const [single] = await generate(model, [p], { maxNewTokens: 12, temperature: 0 });
      expect(batched[i]!.tokens).toEqual(single!.tokens);
    }
    expect(batched[0]!.tokens).toEqual(tokens.slice(3, 15));
  });
});
