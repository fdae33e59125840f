import { ByteTokenizer, Rng, generate, firstStop, sampleToken, type CausalLM, type DecodeSession, type TokenBatch } from '@llama-pro/core';
import { normalizeConfig } from '@llama-pro/core';
import { tinyRawConfig } from '@llama-pro/core/testing';

/**
 * A deterministic model over a fixed next-token table: after token t the logits favour table[t].
 * It records every step so tests can check padding and incremental feeding.
 */
function tableModel(table: Record<number, number>, vocab = 300): CausalLM & { steps: TokenBatch[] } {
  const config = normalizeConfig(tinyRawConfig({ vocab, maxPositions: 64 }));
  const steps: TokenBatch[] = [];
  return {
    config,
    device: 'table',
    steps,
    forward: () => Promise.reject(new Error('unused')),
    tokenLogprobs: () => Promise.reject(new Error('unused')),
    dispose: async () => undefined,
    startSession(batchSize: number): DecodeSession {
      let length = 0;
      return {
        get length() {
          return length;
        },
        async step(b: TokenBatch) {
          steps.push(b);
          length += b.seqLen;
          const out = new Float32Array(batchSize * vocab);
          for (let r = 0; r < batchSize; r++) {
            const last = b.ids[r * b.seqLen + b.seqLen - 1]!;
            for (let v = 0; v < vocab; v++) out[r * vocab + v] = -Math.abs(v - (table[last] ?? 0)) / 4;
          }
          return out;
        },
        dispose() {},
      };
    },
  };
}

describe('sampling', () => {
  const logits = new Float32Array([1, 3, 2, 3, 0]);
  it('greedy takes the first maximum', () => {
    expect(sampleToken(logits, {}, new Rng(1))).toBe(1);
  });
  it('top-k 1 equals greedy at any temperature', () => {
    for (let s = 0; s < 20; s++) expect([1, 3]).toContain(sampleToken(logits, { temperature: 5, topK: 1 }, new Rng(s)));
    expect(sampleToken(logits, { temperature: 5, topK: 1 }, new Rng(0))).toBe(1);
  });
  it('top-p keeps the smallest set reaching p', () => {
    const l = new Float32Array([Math.log(0.5), Math.log(0.3), Math.log(0.15), Math.log(0.05)]);
    const seen = new Set<number>();
    const rng = new Rng(3);
    for (let i = 0; i < 400; i++) seen.add(sampleToken(l, { temperature: 1, topP: 0.8 }, rng));
    expect([...seen].sort()).toEqual([0, 1]);
  });
  it('temperature sampling follows the softmax distribution (seeded)', () => {
    const l = new Float32Array([0, Math.log(3)]); // p = 0.25 / 0.75
    const rng = new Rng(42);
    let ones = 0;
    const n = 20000;
    for (let i = 0; i < n; i++) ones += sampleToken(l, { temperature: 1 }, rng);
    // Binomial sd = sqrt(n p q) ~ 61; allow 5 sd.
    expect(Math.abs(ones - 0.75 * n)).toBeLessThan(310);
  });
  it('draws exactly what the textbook definition draws (sort by logit then id, top-k, softmax at T, top-p prefix, inverse CDF)', () => {
    // The reference is the definition written plainly (a comparison sort over JS arrays, as HF's TopK/TopP warpers
    // order by value); sampleToken's radix sort and scratch buffers must pick the same id for the same RNG draw.
    const reference = (logits: Float32Array, o: { temperature: number; topK?: number; topP?: number }, rng: Rng): number => {
      const V = logits.length;
      let idx = Array.from({ length: V }, (_, i) => i).sort((a, b) => logits[b]! - logits[a]! || a - b);
      idx = idx.slice(0, o.topK && o.topK > 0 ? Math.min(o.topK, V) : V);
      const max = logits[idx[0]!]!;
      let probs = idx.map((i) => Math.exp((logits[i]! - max) / o.temperature));
      let sum = probs.reduce((a, b) => a + b, 0);
      probs = probs.map((p) => p / sum);
      if ((o.topP ?? 1) < 1) {
        let cum = 0;
        let cut = probs.length;
        for (let i = 0; i < probs.length; i++) if ((cum += probs[i]!) >= o.topP!) { cut = i + 1; break; }
        probs = probs.slice(0, cut);
        idx = idx.slice(0, cut);
        sum = probs.reduce((a, b) => a + b, 0);
        probs = probs.map((p) => p / sum);
      }
      const r = rng.next();
      let cum = 0;
      for (let i = 0; i < probs.length; i++) if (r < (cum += probs[i]!)) return idx[i]!;
      return idx[idx.length - 1]!;
    };
    let draws = 0;
    for (const V of [1, 2, 7, 300, 4000]) {
      for (let trial = 0; trial < 8; trial++) {
        const g = new Rng(1000 * V + trial);
        // ties, +0/-0, masked (-Infinity) entries and negative values: every case the ordering has to agree on
        const l = Float32Array.from({ length: V }, () => {
          const u = g.next();
          return u < 0.1 ? -Infinity : u < 0.2 ? 0 : u < 0.25 ? -0 : Math.round(g.next() * 40) / 4 - 5;
        });
        if (trial === 0) l.fill(-Infinity, 0, V - 1);
        for (const o of [{ temperature: 1 }, { temperature: 0.7, topP: 0.9 }, { temperature: 1.3, topK: 40 }, { temperature: 0.5, topK: 3, topP: 0.5 }, { temperature: 2, topP: 0.999 }]) {
          const a = new Rng(trial);
          const b = new Rng(trial);
          for (let k = 0; k < 10; k++, draws++) expect([V, o, sampleToken(l, o, a)]).toEqual([V, o, reference(l, o, b)]);
        }
      }
    }
    expect(draws).toBe(5 * 8 * 5 * 10);
  });
  it('is reproducible for a seed', () => {
    const draw = (seed: number) => Array.from({ length: 10 }, (_, i) => sampleToken(new Float32Array([0, 0.1 * i, 0.2, 0.3]), { temperature: 1, seed }, new Rng(seed + i)));
    expect(draw(5)).toEqual(draw(5));
  });
});

describe('generate', () => {
  const chain = { 1: 10, 10: 11, 11: 12, 12: 13, 13: 14, 14: 2, 20: 21, 21: 22, 22: 23, 23: 24, 24: 25, 25: 26 };

  it('left-pads the batch, feeds one token per step, stops rows independently at EOS or length', async () => {
    const m = tableModel(chain);
    const res = await generate(m, [[1], [5, 20]], { maxNewTokens: 6, eosTokenIds: [2] });
    expect(res[0]).toEqual({ tokens: [10, 11, 12, 13, 14], finishReason: 'eos' });
    expect(res[1]).toEqual({ tokens: [21, 22, 23, 24, 25, 26], finishReason: 'length' });
    expect([...m.steps[0]!.ids]).toEqual([0, 1, 5, 20]);
    expect([...m.steps[0]!.attentionMask!]).toEqual([0, 1, 1, 1]);
    expect(m.steps.slice(1).every((s) => s.seqLen === 1)).toBe(true);
    expect(m.steps.length).toBe(6); // prefill + 5 decode steps; the last sampled token is never fed
  });

  it('cuts stop token sequences and stop strings found only in generated text', async () => {
    const byte = new ByteTokenizer(300);
    const ids = (s: string) => byte.encode(s);
    // Generates "ab\nc..." as byte ids; the prompt itself contains the stop string.
    const [a, b, nl, c] = ids('ab\nc');
    const m = tableModel({ [ids('x')[0]!]: a!, [a!]: b!, [b!]: nl!, [nl!]: c!, [c!]: c! });
    const prompt = ids('\n\nx');
    const r = await generate(m, [prompt], { maxNewTokens: 10, stopStrings: ['\n'], decode: (t) => byte.decode(t) });
    expect(r[0]).toMatchObject({ text: 'ab', finishReason: 'stop', stop: '\n' });
    const r2 = await generate(tableModel({ [ids('x')[0]!]: a!, [a!]: b!, [b!]: nl!, [nl!]: c!, [c!]: c! }), [prompt], { maxNewTokens: 10, stopTokenSequences: [[b!, nl!]] });
    expect(r2[0]).toEqual({ tokens: [a], finishReason: 'stop' });
  });

  it('validates prompts and lengths', async () => {
    const m = tableModel(chain);
    await expect(generate(m, [[]], { maxNewTokens: 1 })).rejects.toThrow(/empty prompt/);
    await expect(generate(m, [[1, 999]], { maxNewTokens: 1 })).rejects.toThrow(/token id 999 is outside the vocabulary \[0, 300\)/);
    await expect(generate(m, [[1]], { maxNewTokens: 64 })).rejects.toThrow(/exceeds the model's 64 positions/);
    await expect(generate(m, [[1]], { maxNewTokens: 1, stopStrings: ['x'] })).rejects.toThrow(/stop strings need a tokenizer/);
  });

  it('stops with "aborted" when the signal fires', async () => {
    const ac = new AbortController();
    ac.abort();
    const r = await generate(tableModel(chain), [[1]], { maxNewTokens: 5, signal: ac.signal });
    expect(r[0]).toEqual({ tokens: [], finishReason: 'aborted' });
  });

  it('seeds: with one RNG per prompt, a sampled row does not depend on the prompts batched with it', async () => {
    const prompts = [[1], [5, 20], [11, 12, 13]];
    const opts = { maxNewTokens: 6, temperature: 1.5, topK: 20 };
    const batched = await generate(tableModel(chain), prompts, { ...opts, seeds: [7, 8, 9] });
    for (let i = 0; i < prompts.length; i++) expect(batched[i]).toEqual((await generate(tableModel(chain), [prompts[i]!], { ...opts, seed: 7 + i }))[0]);
    await expect(generate(tableModel(chain), prompts, { ...opts, seeds: [1] })).rejects.toThrow(/seeds has 1 entries for 3 prompts/);
  });

  it('firstStop finds the earliest of several stops', () => {
    expect(firstStop('abc</s>def\n', ['\n', '</s>'])).toEqual({ index: 3, stop: '</s>' });
    expect(firstStop('abc', ['x', ''])).toBeNull();
  });
});

describe('rng', () => {
  it('is deterministic, restorable and roughly uniform', () => {
    const a = new Rng(7);
    const seq = Array.from({ length: 5 }, () => a.nextU32());
    const b = new Rng(7);
    expect(Array.from({ length: 5 }, () => b.nextU32())).toEqual(seq);
    const s = a.getState();
    const x = a.next();
    a.setState(s);
    expect(a.next()).toBe(x);
    let sum = 0;
    const r = new Rng(1);
    for (let i = 0; i < 10000; i++) sum += r.next();
    expect(Math.abs(sum / 10000 - 0.5)).toBeLessThan(0.02);
    expect(new Rng(1).nextU32()).not.toBe(new Rng(2).nextU32());
  });
});
