/**
 * The server with a SentencePiece-style tokenizer (LLaMA-2 tokenizer.json layout: Metaspace `▁`, `Strip` decoder)
 * and empty generations. Expected texts come from the references:
 * - decoding: Rust tokenizers 0.23.2 on the same tokenizer.json gives decode([▁He, ▁has]) = "He has",
 *   decode([▁He, ▁has, ▁10, ▁10, ▁10]) = "He has 10 10 10" (see core/test/tokenizer.test.ts); a completion is the
 *   text its tokens add after the prompt, as vLLM's incremental detokenizer returns it: " 10 10 10".
 * - vLLM `_create_completion_logprobs`: `text_offset` starts at 0 and grows by len(token) (Python code points);
 *   the tokens are the incremental pieces, so they join to the text.
 * - lm-eval / OpenAI: a generation whose first token is EOS is "" (finish_reason "stop"), not an error.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import OpenAI from 'openai';
import { loadTokenizer, type TextTokenizer } from '@llama-pro/core';
import { writeSentencePieceTokenizer } from '@llama-pro/core/testing';
import { ChatPromptBuilder, resolveChatTemplate, startServer, type RunningServer } from '../src';
import { TableCausalLM, scriptRules } from '../src/testing';

jest.setTimeout(60_000);

const EOS = 2;
let dir: string;
let tokenizer: TextTokenizer;
let server: RunningServer;
let client: OpenAI;

const ids = (text: string): number[] => [1, ...tokenizer.encode(text)];

beforeAll(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'agent-sp-'));
  await writeSentencePieceTokenizer(dir);
  tokenizer = await loadTokenizer(dir);
  const ten = tokenizer.encode(' 10').slice(-1)[0]!; // "▁10"
  const template = resolveChatTemplate(tokenizer, 'plain');
  const chatEmpty = new ChatPromptBuilder(tokenizer, template).ids([{ role: 'user', content: 'The answer' }]);
  const model = new TableCausalLM(tokenizer.vocabSize, [...scriptRules(ids('He has'), [ten, ten, ten], EOS), ...scriptRules(ids('The answer'), [], EOS), ...scriptRules(chatEmpty, [], EOS)], {
    maxPositions: 256,
    eosTokenId: EOS,
  });
  server = await startServer({ id: 'sp', model, tokenizer, template }, { port: 0 });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});

afterAll(async () => {
  await server?.close(1000);
  await fsp.rm(dir, { recursive: true, force: true });
});

describe('empty generations (D1)', () => {
  test('first token EOS → "" with 200 on completions (plain and streamed) and chat', async () => {
    const r = await client.completions.create({ model: 'sp', prompt: 'The answer', max_tokens: 8, temperature: 0 });
    expect(r.choices[0]!.text).toBe('');
    expect(r.choices[0]!.finish_reason).toBe('stop');
    expect(r.usage!.completion_tokens).toBe(0);

    const withLp = await client.completions.create({ model: 'sp', prompt: 'The answer', max_tokens: 8, temperature: 0, logprobs: 1 });
    expect(withLp.choices[0]!.text).toBe('');
    expect(withLp.choices[0]!.logprobs!.tokens).toEqual([]);

    let streamed = '';
    for await (const ch of await client.completions.create({ model: 'sp', prompt: 'The answer', max_tokens: 8, temperature: 0, stream: true })) streamed += ch.choices[0]?.text ?? '';
    expect(streamed).toBe('');

    const chat = await client.chat.completions.create({ model: 'sp', messages: [{ role: 'user', content: 'The answer' }], max_tokens: 8, temperature: 0, logprobs: true });
    expect(chat.choices[0]!.message.content).toBe('');
    expect(chat.choices[0]!.finish_reason).toBe('stop');
    let chatStreamed = '';
    for await (const ch of await client.chat.completions.create({ model: 'sp', messages: [{ role: 'user', content: 'The answer' }], max_tokens: 8, temperature: 0, stream: true })) chatStreamed += ch.choices[0]?.delta.content ?? '';
    expect(chatStreamed).toBe('');
  });

  test('max_tokens 0 → "" (echo returns just the prompt)', async () => {
    const r = await client.completions.create({ model: 'sp', prompt: 'He has', max_tokens: 0, temperature: 0 });
    expect(r.choices[0]!.text).toBe('');
    const e = await client.completions.create({ model: 'sp', prompt: 'He has', max_tokens: 0, temperature: 0, echo: true, logprobs: 0 });
    expect(e.choices[0]!.text).toBe('He has');
    expect(e.choices[0]!.logprobs!.tokens).toEqual(['', 'He', ' has']);
    // Scoring a prompt (lm-eval / vLLM echo + max_tokens 0): a logprob for every prompt token but the first.
    expect(e.choices[0]!.logprobs!.token_logprobs![0]).toBeNull();
    expect(e.choices[0]!.logprobs!.token_logprobs!.slice(1).every((x) => typeof x === 'number' && x < 0)).toBe(true);
  });
});

describe('incremental decoding (D2)', () => {
  test('the completion keeps its first token\'s leading space, streamed or not', async () => {
    const r = await client.completions.create({ model: 'sp', prompt: 'He has', max_tokens: 8, temperature: 0 });
    expect(r.choices[0]!.text).toBe(' 10 10 10');
    let streamed = '';
    for await (const ch of await client.completions.create({ model: 'sp', prompt: 'He has', max_tokens: 8, temperature: 0, stream: true })) streamed += ch.choices[0]?.text ?? '';
    expect(streamed).toBe(' 10 10 10');
  });

  test('logprobs tokens join to the text; text_offset counts code points from 0', async () => {
    const r = await client.completions.create({ model: 'sp', prompt: 'He has', max_tokens: 8, temperature: 0, logprobs: 1 });
    const lp = r.choices[0]!.logprobs!;
    expect(lp.tokens).toEqual([' 10', ' 10', ' 10']);
    expect(lp.tokens!.join('')).toBe(r.choices[0]!.text);
    expect(lp.text_offset).toEqual([0, 3, 6]);
    // Greedy: the top alternative at each position is the token itself, spelled the same way.
    for (const [j, top] of lp.top_logprobs!.entries()) expect(Object.keys(top!)).toEqual([lp.tokens![j]]);

    const e = await client.completions.create({ model: 'sp', prompt: 'He has', max_tokens: 1, temperature: 0, logprobs: 1, echo: true });
    const el = e.choices[0]!.logprobs!;
    expect(e.choices[0]!.text).toBe('He has 10');
    expect(el.tokens).toEqual(['', 'He', ' has', ' 10']);
    expect(el.text_offset).toEqual([0, 0, 2, 6]);
    expect(el.tokens!.join('')).toBe(e.choices[0]!.text);
  });
});

describe('request limits as vLLM (D5)', () => {
  test('more than 4 stop strings (lm-eval local-completions sends 6 for humaneval) and logprobs up to 20', async () => {
    const stop = ['\nclass', '\ndef', '\n#', '\nif', '\nprint', '0 1'];
    const r = await client.completions.create({ model: 'sp', prompt: 'He has', max_tokens: 8, temperature: 0, stop });
    expect(r.choices[0]!.text).toBe(' 1'); // ' 10 10 10' cut before the first '0 1'
    const lp = await client.completions.create({ model: 'sp', prompt: 'He has', max_tokens: 1, temperature: 0, logprobs: 10 });
    // Alternatives are keyed by text, so tokens that read the same (byte pieces → U+FFFD) share a key, as in vLLM.
    expect(Object.keys(lp.choices[0]!.logprobs!.top_logprobs![0]!)).toContain(' 10');
    const chat = await client.chat.completions.create({ model: 'sp', messages: [{ role: 'user', content: 'x' }], max_tokens: 1, temperature: 0, logprobs: true, top_logprobs: 20 });
    expect(chat.choices[0]!.logprobs!.content![0]!.top_logprobs).toHaveLength(20);
    const res = await fetch(`${server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'sp', prompt: 'x', logprobs: 21 }) });
    expect(res.status).toBe(400);
  });
});
