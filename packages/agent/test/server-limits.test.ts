/**
 * Issue 16 item 5: the server cancels generation when a non-streaming client goes away, bounds the work of one
 * request (prompts × tokens), and on shutdown answers every queued request (finished or 503), never resetting it.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadTokenizer, type TextTokenizer } from '@llama-pro/core';
import { resolveChatTemplate, startServer, type ChatTemplate } from '../src';
import { CHAR_TOKENIZER_VOCAB, TableCausalLM, writeCharTokenizer } from '../src/testing';

jest.setTimeout(60_000);

let dir: string;
let tokenizer: TextTokenizer;
let template: ChatTemplate;

beforeAll(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'agent-limits-'));
  await writeCharTokenizer(dir);
  tokenizer = await loadTokenizer(dir);
  template = resolveChatTemplate(tokenizer, 'plain');
});
afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

const post = (url: string, body: unknown, signal?: AbortSignal): Promise<Response> =>
  fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal });

const idle = async (m: TableCausalLM): Promise<void> => {
  while (m.activeSessions > 0) await new Promise((r) => setTimeout(r, 10));
};

test('a non-streaming request whose client goes away stops generating; the next request is served at once', async () => {
  // EOS id 999 is outside the vocabulary, so only max_tokens or the disconnect ends generation.
  const model = new TableCausalLM(CHAR_TOKENIZER_VOCAB, [], { stepDelayMs: 10, eosTokenId: 999, seed: 3, maxPositions: 1024 });
  const s = await startServer({ id: 'slow', model, tokenizer, template }, { port: 0 });
  try {
    const ctl = new AbortController();
    const gone = post(s.url, { model: 'slow', prompt: 'x', max_tokens: 900, temperature: 0 }, ctl.signal).catch(() => null);
    while (model.calls < 5) await new Promise((r) => setTimeout(r, 5));
    ctl.abort();
    expect(await gone).toBeNull();
    await gone;
    await idle(model);
    // Far fewer than the 900 steps ran after the client left.
    expect(model.calls).toBeLessThan(200);
    const ok = await post(s.url, { model: 'slow', prompt: 'x', max_tokens: 2, temperature: 0 });
    expect(ok.status).toBe(200);
  } finally {
    await s.close(1000);
  }
});

test('work per request is bounded: too many prompts → 413, prompts × tokens past the budget → 400 (configurable)', async () => {
  const model = new TableCausalLM(CHAR_TOKENIZER_VOCAB, [], { eosTokenId: 999, maxPositions: 1024 });
  const s = await startServer({ id: 'm', model, tokenizer, template }, { port: 0, maxPromptsPerRequest: 16, maxRequestTokens: 4000 });
  try {
    const many = await post(s.url, { model: 'm', prompt: Array.from({ length: 2000 }, () => 'hi'), max_tokens: 1 });
    expect(many.status).toBe(413);
    expect(((await many.json()) as { error: { message: string; code: string } }).error).toMatchObject({ code: 'too_many_prompts', message: expect.stringMatching(/2000 prompts.*at most 16.*--max-prompts/) });
    // 10 prompts × (2 prompt tokens + 500 new) = 5020 tokens > 4000.
    const heavy = await post(s.url, { model: 'm', prompt: Array.from({ length: 10 }, () => 'h'), max_tokens: 500 });
    expect(heavy.status).toBe(400);
    expect(((await heavy.json()) as { error: { message: string; code: string } }).error).toMatchObject({ code: 'request_too_large', message: expect.stringMatching(/5020 tokens.*4000.*--max-request-tokens/) });
    const chatN = await fetch(`${s.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'h' }], max_tokens: 500, n: 10 }) });
    expect(chatN.status).toBe(400);
    const fine = await post(s.url, { model: 'm', prompt: Array.from({ length: 10 }, () => 'h'), max_tokens: 3, temperature: 0 });
    expect(fine.status).toBe(200);
  } finally {
    await s.close(1000);
  }
});

test('shutdown past the grace period: the running request and every queued one get 503, none is reset', async () => {
  const model = new TableCausalLM(CHAR_TOKENIZER_VOCAB, [], { stepDelayMs: 10, eosTokenId: 999, maxPositions: 1024 });
  const s = await startServer({ id: 'slow', model, tokenizer, template }, { port: 0 });
  const reqs = Array.from({ length: 4 }, () => post(s.url, { model: 'slow', prompt: 'x', max_tokens: 900, temperature: 0 }));
  while (s.queue.size < 4) await new Promise((r) => setTimeout(r, 5));
  await s.close(200);
  const res = await Promise.all(reqs);
  expect(res.map((r) => r.status)).toEqual([503, 503, 503, 503]);
  for (const r of res) expect(((await r.json()) as { error: { code: string } }).error.code).toBe('shutting_down');
  await idle(model);
});
