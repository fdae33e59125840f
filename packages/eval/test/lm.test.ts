jest.setTimeout(180_000);
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describeWithFixtures, fixturePath } from '@llama-pro/core/testing';
import { startOpenAIServer, type TestServer } from '../src/testing';
import { LocalLanguageModel, rollingWindows } from '../src/lm/local';
import { OpenAICompatibleLanguageModel } from '../src/lm/openai';
import { EndpointError } from '../src/errors';
import { gsm8kEvaluator, humanevalEvaluator, mmluEvaluator, perplexityEvaluator } from '../src/tasks/evaluators';
import { byteTokenizer, fakeLogits, fakeModel, VOCAB } from './fake-model';

/** Independent reference: log-softmax of the fake model's logits over a whole sequence. */
function refLogprobs(seq: number[]): { lp: number[]; argmax: number[] } {
  const lp: number[] = [];
  const am: number[] = [];
  const buf = new Float32Array(VOCAB);
  for (let i = 1; i < seq.length; i++) {
    fakeLogits(i >= 2 ? seq[i - 2]! : 0, seq[i - 1]!, buf, 0);
    let max = -Infinity;
    let arg = 0;
    buf.forEach((x, v) => {
      if (x > max) [max, arg] = [x, v];
    });
    let sum = 0;
    buf.forEach((x) => (sum += Math.exp(x - max)));
    lp.push(buf[seq[i]!]! - max - Math.log(sum));
    am.push(arg);
  }
  return { lp, argmax: am };
}

const tok = byteTokenizer();
const startServer = (): Promise<TestServer> => startOpenAIServer(fakeModel(), tok);

describe('LocalLanguageModel', () => {
  const lm = new LocalLanguageModel(fakeModel(), tok);
  it('scores continuations as the sum of next-token log-probs after BOS + context (reference computation)', async () => {
    const [r] = await lm.loglikelihood([{ context: 'Answer:', continuation: ' B' }]);
    const seq = [1, ...tok.encode('Answer: B')];
    const ref = refLogprobs(seq);
    const n = ref.lp.length;
    expect(r!.logprob).toBeCloseTo(ref.lp[n - 2]! + ref.lp[n - 1]!, 10);
    expect(r!.isGreedy).toBe(ref.argmax[n - 2] === seq[n - 1] && ref.argmax[n - 1] === seq[n]);
  });
  it('moves trailing context whitespace into the continuation (lm-eval _encode_pair)', async () => {
    const [a, b] = await lm.loglikelihood([
      { context: 'Answer: ', continuation: 'B' },
      { context: 'Answer:', continuation: ' B' },
    ]);
    expect(a!.logprob).toBe(b!.logprob);
  });
  it('rolling windows are disjoint and cover every token once', () => {
    const toks = Array.from({ length: 10 }, (_, i) => 10 + i);
    const w = rollingWindows(toks, 1, 4);
    expect(w.map((x) => x.targets).flat()).toEqual(toks);
    expect(w[0]).toEqual({ input: [1, 10, 11, 12], targets: [10, 11, 12, 13] });
    expect(w[1]).toEqual({ input: [13, 14, 15, 16], targets: [14, 15, 16, 17] });
    expect(w[2]).toEqual({ input: [15, 16, 17, 18], targets: [18, 19] });
  });
  it('rolling log-likelihood with windows equals the reference within one window (text-only scoring)', async () => {
    const [r] = await lm.loglikelihoodRolling(['Once upon a time'], { scoring: 'text-only' });
    const ref = refLogprobs([1, ...tok.encode('Once upon a time')]);
    expect(r!.tokens).toBe(16);
    expect(r!.logprob).toBeCloseTo(ref.lp.reduce((a, b) => a + b, 0), 9);
  });
  it('rolling log-likelihood scores [BOS, t1..] after a BOS prefix by default, as lm-eval 0.4.x (D3)', async () => {
    // lm-eval HFLM.loglikelihood_rolling: token_list = tok_encode(text), which is [BOS, t1..tn] for a tokenizer that
    // adds BOS (add_special_tokens defaults to the tokenizer's own, True for Llama); prefix_token_id = BOS; the first
    // window of get_rolling_token_windows(context_len=1) is ([BOS] + token_list[:-1], token_list): BOS|BOS is scored.
    const ids = tok.encode('Once upon a time');
    const [r] = await lm.loglikelihoodRolling(['Once upon a time']);
    const ref = refLogprobs([1, 1, ...ids]);
    expect(r!.tokens).toBe(ids.length + 1);
    expect(r!.logprob).toBeCloseTo(ref.lp.reduce((a, b) => a + b, 0), 9);
    // Windows: lm-eval scores each token once across windows of max_length (here 8: three windows).
    const short = new LocalLanguageModel(fakeModel(), tok, { maxLength: 8 });
    const [w] = await short.loglikelihoodRolling(['Once upon a time']);
    expect(w!.tokens).toBe(ids.length + 1);
    // --no-bos (add_bos_token=False): tok_encode gives [t1..tn], the prefix is still BOS: the text-only numbers.
    const noBos = new LocalLanguageModel(fakeModel(), tok, { addBos: false });
    const [nb] = await noBos.loglikelihoodRolling(['Once upon a time']);
    expect(nb!.tokens).toBe(ids.length);
    expect(nb!.logprob).toBeCloseTo(refLogprobs([1, ...ids]).lp.reduce((a, b) => a + b, 0), 9);
    // The perplexity task says which scoring it used (results.json config).
    const corpusDir = fs.mkdtempSync(path.join(os.tmpdir(), 'llama-pro-corpus-'));
    try {
      fs.writeFileSync(path.join(corpusDir, 'c.txt'), 'Once upon a time');
      const res = await perplexityEvaluator.evaluate({ lm, dataDir: '.', options: { corpus: path.join(corpusDir, 'c.txt') } });
      expect(res.config).toMatchObject({ rolling_scoring: 'lm-eval' });
      expect(res.details?.['tokens']).toBe(ids.length + 1);
      const other = await perplexityEvaluator.evaluate({ lm, dataDir: '.', options: { corpus: path.join(corpusDir, 'c.txt'), rollingScoring: 'text-only' } });
      expect(other.config).toMatchObject({ rolling_scoring: 'text-only' });
      expect(other.details?.['tokens']).toBe(ids.length);
    } finally {
      fs.rmSync(corpusDir, { recursive: true, force: true });
    }
  });
  it('generation stops at the first stop string, searched only in the generated text', async () => {
    const [free] = await lm.generateUntil([{ context: 'Q: hi\nA:', until: [], maxGenTokens: 30 }]);
    expect(free!.length).toBeGreaterThan(0);
    const stop = free!.slice(3, 5);
    const [cut] = await lm.generateUntil([{ context: 'Q: hi\nA:', until: [stop], maxGenTokens: 30 }]);
    expect(cut).toBe(free!.slice(0, free!.indexOf(stop)));
  });
});

describe('OpenAICompatibleLanguageModel against a local server', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(() => server.close());

  it('gives the same log-likelihoods, rolling log-likelihoods and generations as the local model', async () => {
    const local = new LocalLanguageModel(fakeModel(), tok);
    const viaText = new OpenAICompatibleLanguageModel({ baseUrl: server.url, model: 'fake' });
    const viaIds = new OpenAICompatibleLanguageModel({ baseUrl: server.url, model: 'fake', tokenizer: tok, maxLength: 4096 });
    const reqs = [
      { context: 'The capital of France is', continuation: ' Paris' },
      { context: 'Answer: ', continuation: 'C' },
      { context: '2 + 2 =', continuation: ' 4' },
    ];
    const l = await local.loglikelihood(reqs);
    expect(await viaText.loglikelihood(reqs)).toEqual(l);
    expect(await viaIds.loglikelihood(reqs)).toEqual(l);
    const texts = ['Once upon a time there was a cat.', 'Lily liked to play.'];
    const lr = await local.loglikelihoodRolling(texts, { scoring: 'text-only' });
    expect(await viaText.loglikelihoodRolling(texts, { scoring: 'text-only' })).toEqual(lr);
    expect(await viaIds.loglikelihoodRolling(texts, { scoring: 'text-only' })).toEqual(lr);
    expect(await viaIds.loglikelihoodRolling(texts)).toEqual(await local.loglikelihoodRolling(texts));
    await expect(viaText.loglikelihoodRolling(texts)).rejects.toThrow(/pass --tokenizer <dir>.*or --rolling-scoring text-only/);
    const g = [{ context: 'Question: 1+1?\nAnswer:', until: ['Question:'], maxGenTokens: 20 }];
    const lg = await local.generateUntil(g);
    expect(await viaText.generateUntil(g)).toEqual(lg);
    expect(await viaIds.generateUntil(g)).toEqual(lg);
    const chat = new OpenAICompatibleLanguageModel({ baseUrl: server.url, model: 'fake', generation: 'chat' });
    expect(await chat.generateUntil(g)).toEqual(lg);
    const sent = server.requests.find((r) => r['echo'] === true)!;
    expect(sent).toMatchObject({ model: 'fake', max_tokens: 1, logprobs: 1, temperature: 0 });
  });

  it('fails with a typed error when the endpoint is unreachable', async () => {
    const dead = new OpenAICompatibleLanguageModel({ baseUrl: 'http://127.0.0.1:9/v1', model: 'x' });
    await expect(dead.loglikelihood([{ context: 'a', continuation: 'b' }])).rejects.toThrow(EndpointError);
    await expect(dead.loglikelihood([{ context: 'a', continuation: 'b' }])).rejects.toThrow(/cannot reach/);
  });

  describeWithFixtures('tasks give identical numbers locally and through the endpoint', [['datasets', 'mmlu', 'test'], ['datasets', 'gsm8k', 'test.jsonl']], () => {
    it('mmlu 5-shot, gsm8k, perplexity, humaneval', async () => {
      const local = new LocalLanguageModel(fakeModel(), tok);
      const remote = new OpenAICompatibleLanguageModel({ baseUrl: server.url, model: 'fake' });
      const dataDir = fixturePath('datasets');
      const corpusDir = fs.mkdtempSync(path.join(os.tmpdir(), 'llama-pro-corpus-'));
      const corpus = path.join(corpusDir, 'c.txt');
      fs.writeFileSync(corpus, 'One day a girl named Lily went to the park.\n\nShe saw a big red ball and smiled.\n');
      try {
        const runs = async (lm: typeof local | typeof remote) => ({
          mmlu: await mmluEvaluator.evaluate({ lm, dataDir, numFewshot: 5, limit: 2, options: { subjects: ['abstract_algebra', 'anatomy', 'virology'] } }),
          gsm8k: await gsm8kEvaluator.evaluate({ lm, dataDir, limit: 2, options: { maxGenTokens: 24 } }),
          ppl: await perplexityEvaluator.evaluate({ lm, dataDir, options: { corpus, rollingScoring: 'text-only' } }),
          he: await humanevalEvaluator.evaluate({ lm, dataDir, limit: 2, options: { maxGenTokens: 16, ks: [1] } }),
        });
        const a = await runs(local);
        const b = await runs(remote);
        for (const k of ['mmlu', 'gsm8k', 'ppl', 'he'] as const) {
          expect([k, b[k].metrics]).toEqual([k, a[k].metrics]);
          expect(b[k].samples.length).toBe(a[k].samples.length);
        }
        expect(b.mmlu.samples.map((s) => s['loglikelihoods'])).toEqual(a.mmlu.samples.map((s) => s['loglikelihoods']));
        expect(b.gsm8k.samples.map((s) => s['response'])).toEqual(a.gsm8k.samples.map((s) => s['response']));
        expect(a.ppl.metrics['bits_per_byte']).toBeGreaterThan(0);
      } finally {
        fs.rmSync(corpusDir, { recursive: true, force: true });
      }
    });
  });
});
