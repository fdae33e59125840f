/**
 * eval's endpoint client against `llama-pro serve`'s server (issue 18 item 6, issue 20 D2) with a SentencePiece-style
 * tokenizer: the model is found from /v1/models (serve names it after the directory, not "default"), log-likelihoods
 * through text prompts equal the local model's (lm-eval's _encode_pair rules, which LocalLanguageModel implements),
 * and an over-long prompt is cut from the left as local eval does instead of failing.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadTokenizer, type TextTokenizer } from '@llama-pro/core';
import { writeSentencePieceTokenizer } from '@llama-pro/core/testing';
import { resolveChatTemplate, startServer, type RunningServer } from '@llama-pro/agent';
import { TableCausalLM, scriptRules } from '@llama-pro/agent/testing';
import { LocalLanguageModel, openaiProvider } from '@llama-pro/eval';

jest.setTimeout(60_000);

let dir: string;
let tok: TextTokenizer;
let model: TableCausalLM;
let server: RunningServer;

beforeAll(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-serve-eval-'));
  await writeSentencePieceTokenizer(dir);
  tok = await loadTokenizer(dir);
  const ten = tok.encode(' 10').slice(-1)[0]!;
  model = new TableCausalLM(tok.vocabSize, scriptRules([1, ...tok.encode('He has')], [ten, ten, ten], 2, 2), { maxPositions: 64, eosTokenId: 2 });
  server = await startServer({ id: 'my-model', model, tokenizer: tok, template: resolveChatTemplate(tok, 'plain') }, { port: 0 });
});
afterAll(async () => {
  await server?.close(1000);
  await fsp.rm(dir, { recursive: true, force: true });
});

test('finds the served model, scores and generates like the local model, truncates over-long prompts', async () => {
  const logs: string[] = [];
  const opened = await openaiProvider.open(`${server.url}/v1`, { log: (m) => logs.push(m) });
  expect(opened.record.served_model).toBe('my-model');
  expect(logs.join('\n')).toMatch(/endpoint serves "my-model" \(64 positions\)/);
  const local = new LocalLanguageModel(model, tok);
  const reqs = [
    { context: 'He has', continuation: ' 10' },
    { context: 'He has ', continuation: '10 apples.' },
    { context: 'The answer is', continuation: ' 10.' },
  ];
  const want = await local.loglikelihood(reqs);
  const got = await opened.lm.loglikelihood(reqs);
  got.forEach((g, i) => {
    expect(g.logprob).toBeCloseTo(want[i]!.logprob, 4);
    expect(g.isGreedy).toBe(want[i]!.isGreedy);
  });
  // The table continues any "has" with "▁10", and "▁10 ▁10" with EOS (rules over the last 2 tokens). The server
  // returns the text the tokens add after the prompt (vLLM): " 10 10". lm-eval's HFLM decodes the generated tokens
  // alone (tok_decode(cont_toks)), where the Strip decoder drops the first space: "10 10".
  expect(await opened.lm.generateUntil([{ context: 'He has', until: ['\n'], maxGenTokens: 5 }])).toEqual([' 10 10']);
  // More pieces than the 64 positions: cut from the left, keeping the end ("... He has") that the model continues.
  const long = 'The answer is. '.repeat(25) + 'He has';
  expect(tok.encode(long).length).toBeGreaterThan(64);
  expect(await opened.lm.generateUntil([{ context: long, until: ['\n'], maxGenTokens: 5 }])).toEqual([' 10 10']);
  expect(await local.generateUntil([{ context: long, until: ['\n'], maxGenTokens: 5 }])).toEqual(['10 10']);
  await opened.dispose();
});
