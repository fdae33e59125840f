/**
 * Issue 19 item 2 on a real model (stories260K, llama2.c's pretrained 260K-parameter TinyStories model, on onnx):
 * eval's generate_until batched by length, and the server's continuous batching. The reference for a batched run is
 * the golden greedy path of llama2.c's run.c (golden/stories260K/tokens.txt: a prompt that is a prefix of it continues
 * along it) and the same requests run one at a time (no padding, no batch neighbours). stories260K's own tokenizer is
 * not available, so the text side uses a word-level tokenizer.json that spells token id i as the word "t<i>": texts
 * map back to token ids exactly.
 */
import { useMainRealmTypedArrays } from '@llama-pro/backend-onnx/testing';
useMainRealmTypedArrays(); // onnxruntime-node under jest: see the helper's doc

import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HfCheckpoint, convertLlama2c, loadTokenizer, type CausalLM, type DecodeSession, type TextTokenizer } from '@llama-pro/core';
import { STORIES260K_BIN, STORIES260K_GOLDEN, describeWithFixtures, fixturePath } from '@llama-pro/core/testing';
import { onnxBackend } from '@llama-pro/backend-onnx';
import { LocalLanguageModel } from '@llama-pro/eval';
import { resolveChatTemplate, startServer, type RunningServer } from '@llama-pro/agent';

jest.setTimeout(180_000);

/** The model with the batch size of every decode session it starts recorded. */
function counting(model: CausalLM, sessions: number[]): CausalLM {
  return new Proxy(model, {
    get(target, prop, receiver) {
      if (prop === 'startSession')
        return (b: number): DecodeSession => {
          sessions.push(b);
          return target.startSession(b);
        };
      if (prop === 'startSlotSession') return undefined; // the per-slot fallback, through the counted startSession
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** A WordLevel tokenizer.json over the 512 ids: 0 <unk>, 1 <s> (BOS), 2 </s> (EOS), id i ≥ 3 is the word "t<i>". */
async function writeWordTokenizer(dir: string): Promise<void> {
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (let i = 3; i < 512; i++) vocab[`t${i}`] = i;
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const tj = { version: '1.0', truncation: null, padding: null, added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')], normalizer: null, pre_tokenizer: { type: 'Whitespace' }, post_processor: null, decoder: null, model: { type: 'WordLevel', vocab, unk_token: '<unk>' } };
  await fsp.writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(tj));
  await fsp.writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>', eos_token: '</s>' }));
}

const words = (ids: readonly number[]): string => ids.map((i) => `t${i}`).join(' ');
const idsOf = (text: string): number[] => text.split(/\s+/).filter(Boolean).map((w) => Number(w.slice(1)));

describeWithFixtures('batched generation on stories260K', [STORIES260K_BIN, [...STORIES260K_GOLDEN, 'tokens.txt']], () => {
  let tmp: string;
  let model: CausalLM;
  let tokenizer: TextTokenizer;
  let golden: number[];
  /** The prompt text of golden[1..k] (BOS is added by eval and the server), and its greedy continuation. */
  const ctx = (k: number): string => words(golden.slice(1, k + 1));
  const next = (k: number, n: number): number[] => golden.slice(k + 1, k + 1 + n);
  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-batching-'));
    await convertLlama2c(fixturePath(...STORIES260K_BIN), path.join(tmp, 'm'));
    await writeWordTokenizer(path.join(tmp, 'm'));
    tokenizer = await loadTokenizer(path.join(tmp, 'm'));
    golden = (await fsp.readFile(fixturePath(...STORIES260K_GOLDEN, 'tokens.txt'), 'utf8')).split(/\s+/).filter(Boolean).map(Number);
    const ckpt = await HfCheckpoint.open(path.join(tmp, 'm'));
    model = await onnxBackend.load(ckpt);
    await ckpt.close();
  });
  afterAll(async () => {
    await model?.dispose();
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  const lengths = [5, 1, 12, 3, 20, 8];

  it('eval generate_until: requests grouped by settings and length continue the golden path, as each does alone', async () => {
    // Settings groups: until "t431" (the golden path reaches 431 at position 21) for 2 requests, "\n\n" for 4.
    const reqs = lengths.map((k, i) => ({ context: ctx(k), until: i % 3 === 1 ? ['t431'] : ['\n\n'], maxGenTokens: 10 }));
    const sessions: number[] = [];
    const batched = await new LocalLanguageModel(counting(model, sessions), tokenizer).generateUntil(reqs);
    expect(sessions.sort()).toEqual([2, 4]); // one batch per group
    reqs.forEach((r, i) => {
      const want = next(lengths[i]!, 10);
      const cut = r.until[0] === 't431' && want.includes(431) ? want.slice(0, want.indexOf(431)) : want;
      expect(idsOf(batched[i]!)).toEqual(cut);
    });
    expect(idsOf(batched[4]!)).toEqual([]); // k = 20: the next golden token is 431, the stop
    const alone: string[] = [];
    for (const r of reqs) alone.push(...(await new LocalLanguageModel(model, tokenizer, { maxBatchSize: 1 }).generateUntil([r])));
    expect(batched).toEqual(alone);
    // A token budget smaller than two rows splits the batches, longest first; the texts stay the same.
    const small: number[] = [];
    expect(await new LocalLanguageModel(counting(model, small), tokenizer, { batchTokens: 40 }).generateUntil(reqs)).toEqual(alone);
    expect(small.length).toBeGreaterThan(2);
  });

  it('eval loglikelihood: short continuations (decode-session scoring) and long ones (forward) equal each row scored alone', async () => {
    // Reference: each context + continuation alone through forward (batch 1, no padding), log-softmax here.
    const alone = async (context: string, continuation: string): Promise<{ logprob: number; isGreedy: boolean }> => {
      const lm = new LocalLanguageModel(model, tokenizer);
      const { context: c, continuation: t } = lm.encode(context, continuation);
      const seq = [...c, ...t];
      const { data } = await model.forward({ ids: Int32Array.from(seq), batchSize: 1, seqLen: seq.length });
      let logprob = 0;
      let isGreedy = true;
      for (let j = 0; j < t.length; j++) {
        const row = data.subarray((c.length - 1 + j) * 512, (c.length + j) * 512);
        const max = Math.max(...row);
        logprob += row[t[j]!]! - max - Math.log(row.reduce((s, x) => s + Math.exp(x - max), 0));
        if (row.indexOf(max) !== t[j]) isGreedy = false;
      }
      return { logprob, isGreedy };
    };
    const reqs = [
      ...lengths.map((k) => ({ context: ctx(k), continuation: ` t${golden[k + 1]}` })), // one token, the greedy one
      { context: ctx(6), continuation: ` ${words(golden.slice(7, 10))}` }, // three greedy tokens
      { context: ctx(2), continuation: ' t300 t301' },
      { context: ctx(9), continuation: ` ${words(golden.slice(10, 22))}` }, // twelve: scored by a forward pass
    ];
    const sessions: number[] = [];
    const got = await new LocalLanguageModel(counting(model, sessions), tokenizer).loglikelihood(reqs);
    expect(sessions.length).toBeGreaterThan(0);
    for (const [i, r] of reqs.entries()) {
      const want = await alone(r.context, r.continuation);
      expect(got[i]!.isGreedy).toBe(want.isGreedy);
      expect(Math.abs(got[i]!.logprob - want.logprob)).toBeLessThan(1e-4 * Math.max(1, Math.abs(want.logprob)));
    }
    expect(got.map((g) => g.isGreedy)).toEqual([...lengths.map(() => true), true, false, true]); // the golden path is greedy
  });

  // The backend's native slot session where it has one, and core's per-slot fallback (forced by hiding it).
  describe.each([
    ['the model as loaded', (m: CausalLM) => m],
    ['the per-slot fallback', (m: CausalLM) => counting(m, [])],
  ])('serve: continuous batching with %s', (_name, view) => {
    let server: RunningServer;
    beforeAll(async () => {
      server = await startServer({ id: 's', model: view(model), tokenizer, template: resolveChatTemplate(tokenizer, 'plain') }, { port: 0, maxBatchSize: 4 });
    });
    afterAll(() => server?.close(1000));

    const post = (body: Record<string, unknown>, signal?: AbortSignal): Promise<Response> =>
      fetch(`${server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 's', temperature: 0, ...body }), signal });
    const text = async (r: Response): Promise<string> => {
      expect(r.status).toBe(200);
      return ((await r.json()) as { choices: { text: string }[] }).choices[0]!.text;
    };

    it('concurrent greedy requests (different prompt lengths and max_tokens, more than the slots) continue the golden path, as sent one after another', async () => {
      const bodies = lengths.map((k, i) => ({ prompt: ctx(k), max_tokens: 4 + 3 * i }));
      const sequential: string[] = [];
      for (const b of bodies) sequential.push(await text(await post(b)));
      lengths.forEach((k, i) => expect(idsOf(sequential[i]!)).toEqual(next(k, 4 + 3 * i)));
      const concurrent = await Promise.all(bodies.map(async (b) => text(await post(b))));
      expect(concurrent).toEqual(sequential);
      // Streaming requests in the same batch: their deltas join to the same texts.
      const streamed = await Promise.all(
        bodies.slice(0, 3).map(async (b) => {
          const res = await post({ ...b, stream: true });
          const events = (await res.text()).split('\n').filter((l) => l.startsWith('data: ') && l !== 'data: [DONE]');
          return events.map((l) => (JSON.parse(l.slice(6)) as { choices: { text: string }[] }).choices[0]!.text).join('');
        }),
      );
      expect(streamed).toEqual(sequential.slice(0, 3));
    });

    it('n > 1 with sampling: each choice equals the same seed sent alone; logit_bias and penalties apply per row', async () => {
      const body = { prompt: ctx(4), max_tokens: 12, temperature: 0.9, seed: 11 };
      const r = await post({ ...body, n: 3 });
      expect(r.status).toBe(200);
      const choices = ((await r.json()) as { choices: { text: string; index: number }[] }).choices;
      expect(new Set(choices.map((c) => c.text)).size).toBeGreaterThan(1);
      for (const c of choices) expect(c.text).toBe(await text(await post({ ...body, seed: 11 + c.index })));
      // At k = 20 the golden path repeats 431 thirteen times. Sent together: one request bans 431 and penalizes
      // repeats, the other is plain greedy and must stay on the golden path.
      const biased = { prompt: ctx(20), max_tokens: 10, logit_bias: { '431': -100 }, presence_penalty: 2, frequency_penalty: 2 };
      const plain = { prompt: ctx(20), max_tokens: 10 };
      const [b1, p1] = await Promise.all([post(biased).then(text), post(plain).then(text)]);
      expect(idsOf(p1)).toEqual(next(20, 10));
      const b = idsOf(b1);
      expect(b).toHaveLength(10);
      expect(b).not.toContain(431);
      expect(b1).toBe(await text(await post(biased)));
    });

    it('a request cancelled mid-batch leaves only its slot; the others finish as they would alone', async () => {
      const ks = [1, 12, 5];
      const bodies = ks.map((k) => ({ prompt: ctx(k), max_tokens: 40 }));
      const ctl = new AbortController();
      const long = post({ prompt: ctx(3), max_tokens: 400 }, ctl.signal).catch(() => 'gone');
      const others = bodies.map(async (b) => text(await post(b)));
      while (server.queue.running < 4) await new Promise((r) => setTimeout(r, 2));
      ctl.abort();
      expect(await long).toBe('gone');
      const got = await Promise.all(others);
      ks.forEach((k, i) => expect(idsOf(got[i]!)).toEqual(next(k, 40)));
      for (const [i, b] of bodies.entries()) expect(got[i]).toBe(await text(await post(b)));
      await server.queue.idle();
      expect(server.queue.size).toBe(0);
    });
  });
});
