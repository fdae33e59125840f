/**
 * API features OpenAI / vLLM clients use (issue 20): n > 1, logit_bias, presence/frequency penalties, tool_choice
 * "required" / a named function, /tokenize, /detokenize, /version, /metrics. Expected values come from the
 * documented behaviour of the references, cited at each check.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import OpenAI from 'openai';
import { loadTokenizer, type TextTokenizer } from '@llama-pro/core';
import { writeSentencePieceTokenizer } from '@llama-pro/core/testing';
import { ChatPromptBuilder, resolveChatTemplate, startServer, type ChatMessage, type RunningServer, type ToolSpec } from '../src';
import { logitAdjuster } from '../src/server/request';
import { CHAR_TOKENIZER_VOCAB, TableCausalLM, scriptRules, writeCharTokenizer } from '../src/testing';

jest.setTimeout(60_000);

const EOS = 2;
let spDir: string;
let sp: TextTokenizer;
let server: RunningServer;
let client: OpenAI;
let ten: number;

beforeAll(async () => {
  spDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'agent-api-'));
  await writeSentencePieceTokenizer(spDir);
  sp = await loadTokenizer(spDir);
  ten = sp.encode(' 10').slice(-1)[0]!;
  const model = new TableCausalLM(sp.vocabSize, scriptRules([1, ...sp.encode('He has')], [ten, ten, ten], EOS), { maxPositions: 256, eosTokenId: EOS });
  server = await startServer({ id: 'sp', model, tokenizer: sp, template: resolveChatTemplate(sp, 'plain') }, { port: 0 });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
afterAll(async () => {
  await server?.close(1000);
  await fsp.rm(spDir, { recursive: true, force: true });
});

describe('n > 1', () => {
  test('greedy n copies; choices ordered prompt × n + j (OpenAI: index of the choice in the list)', async () => {
    const r = await client.completions.create({ model: 'sp', prompt: ['He has', 'He has'], max_tokens: 4, temperature: 0, n: 2 });
    expect(r.choices.map((c) => c.index)).toEqual([0, 1, 2, 3]);
    expect(r.choices.map((c) => c.text)).toEqual(new Array(4).fill(' 10 10 10'));
    expect(r.usage!.prompt_tokens).toBe(6);
    expect(r.usage!.completion_tokens).toBe(12);
    const chat = await client.chat.completions.create({ model: 'sp', messages: [{ role: 'user', content: 'x' }], max_tokens: 3, temperature: 1, seed: 7, n: 3 });
    expect(chat.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    // A seed makes the n samples reproducible.
    const again = await client.chat.completions.create({ model: 'sp', messages: [{ role: 'user', content: 'x' }], max_tokens: 3, temperature: 1, seed: 7, n: 3 });
    expect(again.choices.map((c) => c.message.content)).toEqual(chat.choices.map((c) => c.message.content));
  });
});

describe('ignore_eos (vLLM extra sampling parameter)', () => {
  test('generation runs past EOS to max_tokens (finish_reason length); without it the same prompt stops at EOS', async () => {
    // vLLM SamplingParams.ignore_eos: "Whether to ignore the EOS token and continue generating tokens after the EOS
    // token is generated." The scripted model answers "He has" with ' 10' three times and then EOS.
    const stopped = await client.completions.create({ model: 'sp', prompt: 'He has', max_tokens: 6, temperature: 0 });
    expect(stopped.choices[0]!.finish_reason).toBe('stop');
    expect(stopped.usage!.completion_tokens).toBe(3);
    const body = { model: 'sp', prompt: 'He has', max_tokens: 6, temperature: 0, ignore_eos: true };
    const res = await fetch(`${server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const r = (await res.json()) as { choices: { text: string; finish_reason: string }[]; usage: { completion_tokens: number } };
    expect(r.choices[0]!.finish_reason).toBe('length');
    expect(r.usage.completion_tokens).toBe(6);
    expect(r.choices[0]!.text.startsWith(' 10 10 10')).toBe(true);
    const chat = await fetch(`${server.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'sp', messages: [{ role: 'user', content: 'x' }], max_tokens: 5, temperature: 0, ignore_eos: true }) });
    const c = (await chat.json()) as { choices: { finish_reason: string }[]; usage: { completion_tokens: number } };
    expect(c.choices[0]!.finish_reason).toBe('length');
    expect(c.usage.completion_tokens).toBe(5);
    const bad = await fetch(`${server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, ignore_eos: 'yes' }) });
    expect(bad.status).toBe(400);
  });
});

describe('logit adjustments', () => {
  test('logit_bias -100 bans a token, +100 selects it (OpenAI API reference: "-100 should result in a ban or exclusive selection" with 100)', async () => {
    const banned = await client.completions.create({ model: 'sp', prompt: 'He has', max_tokens: 3, temperature: 0, logprobs: 0, logit_bias: { [String(ten)]: -100 } });
    expect(banned.choices[0]!.text).not.toContain('10');
    const apples = sp.encode(' apples').slice(-1)[0]!;
    const forced = await client.completions.create({ model: 'sp', prompt: 'He has', max_tokens: 3, temperature: 0, logit_bias: { [String(apples)]: 100 } });
    expect(forced.choices[0]!.text).toBe(' apples apples apples');
    const bad = await fetch(`${server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'sp', prompt: 'x', logit_bias: { '99999': 1 } }) });
    expect(bad.status).toBe(400);
  });

  test('presence/frequency penalties: mu[j] -= c[j] * frequency + (c[j] > 0) * presence (OpenAI docs "Parameter details")', () => {
    const adjust = logitAdjuster({ presence_penalty: 0.5, frequency_penalty: 0.25 }, 3)!;
    const logits = Float32Array.from([1, 2, 3]);
    adjust(logits, [2, 2, 0]);
    // token 0: seen once → 1 - 0.25 - 0.5; token 1: unseen → 2; token 2: seen twice → 3 - 0.5 - 0.5.
    expect([...logits]).toEqual([0.25, 2, 2]);
    expect(logitAdjuster({}, 3)).toBeUndefined();
  });
});

describe('vLLM extras', () => {
  test('/tokenize and /detokenize (vLLM: add_special_tokens defaults to true; ids from Rust tokenizers 0.23.2)', async () => {
    const t = await (await fetch(`${server.url}/tokenize`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'sp', prompt: 'He has' }) })).json();
    expect(t).toEqual({ count: 3, max_model_len: 256, tokens: [1, 263, 269] });
    const t2 = await (await fetch(`${server.url}/tokenize`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'He has', add_special_tokens: false }) })).json();
    expect(t2.tokens).toEqual([263, 269]);
    const d = await (await fetch(`${server.url}/detokenize`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'sp', tokens: [263, 269, 273] }) })).json();
    expect(d).toEqual({ prompt: 'He has 10' });
  });

  test('/version, max_model_len in /v1/models, /metrics in the Prometheus text format', async () => {
    const v = await (await fetch(`${server.url}/version`)).json();
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    expect(v).toEqual({ version: (require('../package.json') as { version: string }).version });
    const models = await client.models.list();
    expect((models.data[0] as unknown as { max_model_len: number }).max_model_len).toBe(256);
    await client.completions.create({ model: 'sp', prompt: 'He has', max_tokens: 2, temperature: 0 });
    const m = await fetch(`${server.url}/metrics`);
    expect(m.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    const text = await m.text();
    // Exposition format: "# TYPE name counter" then "name{labels} value" lines.
    expect(text).toMatch(/^# TYPE llama_pro_requests_total counter$/m);
    expect(text).toMatch(/^llama_pro_requests_total\{model_name="sp",route="\/v1\/completions",status="200"\} [1-9]\d*$/m);
    expect(text).toMatch(/^llama_pro_generation_tokens_total\{model_name="sp"\} [1-9]\d*$/m);
    expect(text).toMatch(/^llama_pro_requests_waiting\{model_name="sp"\} 0$/m);
  });
});

describe('chat template extras (vLLM ChatCompletionRequest: add_generation_prompt, continue_final_message)', () => {
  const post = async (route: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
    const r = await fetch(`${server.url}${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: r.status, json: (await r.json()) as Record<string, unknown> };
  };
  const messages = [
    { role: 'user', content: 'x' },
    { role: 'assistant', content: 'He has' },
  ];
  test('continue_final_message: the prompt ends inside the final message (no new turn), on chat and /tokenize alike', async () => {
    const builder = new ChatPromptBuilder(sp, resolveChatTemplate(sp, 'plain'));
    const open = builder.ids(messages as ChatMessage[], undefined, { continueFinalMessage: true });
    const closed = builder.ids(messages as ChatMessage[]);
    expect(open).not.toEqual(closed);
    const chat = await post('/v1/chat/completions', { model: 'sp', messages, max_tokens: 1, temperature: 0, continue_final_message: true, add_generation_prompt: false });
    expect(chat.status).toBe(200);
    expect((chat.json['usage'] as { prompt_tokens: number }).prompt_tokens).toBe(open.length);
    const plain = await post('/v1/chat/completions', { model: 'sp', messages, max_tokens: 1, temperature: 0 });
    expect((plain.json['usage'] as { prompt_tokens: number }).prompt_tokens).toBe(closed.length);
    const tok = await post('/tokenize', { model: 'sp', messages, continue_final_message: true, add_generation_prompt: false });
    expect(tok.json['tokens']).toEqual(open);
    // add_generation_prompt false alone: the chat as is, no assistant header.
    const bare = await post('/tokenize', { model: 'sp', messages: messages.slice(0, 1), add_generation_prompt: false });
    expect(bare.json['tokens']).toEqual(builder.ids(messages.slice(0, 1) as ChatMessage[], undefined, { addGenerationPrompt: false }));
  });
  test('both true is a 400 (vLLM: "Cannot set both `continue_final_message` and `add_generation_prompt` to True")', async () => {
    const r = await post('/v1/chat/completions', { model: 'sp', messages, max_tokens: 1, continue_final_message: true, add_generation_prompt: true });
    expect(r.status).toBe(400);
    expect((r.json['error'] as { message: string }).message).toMatch(/continue_final_message and add_generation_prompt cannot both be true/);
  });
});

describe('tool_choice', () => {
  const ADD: ToolSpec = { type: 'function', function: { name: 'add', description: 'Adds', parameters: { type: 'object', properties: { a: { type: 'integer' } } } } };
  let dir: string;
  let s: RunningServer;
  let c: OpenAI;
  const Q: ChatMessage[] = [{ role: 'user', content: 'add 2' }];
  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'agent-tools-'));
    await writeCharTokenizer(dir);
    const tok = await loadTokenizer(dir);
    const template = resolveChatTemplate(tok, 'chatml');
    const builder = new ChatPromptBuilder(tok, template);
    // The model answers the prompt with a call; tool_choice decodes it under the tool-call grammar (no prefill, so the
    // whole 61-character call counts towards max_tokens).
    const prompt = builder.ids(Q, [ADD]);
    const rules = scriptRules(prompt, tok.encode('<tool_call>{"name": "add", "arguments": {"a": 2}}</tool_call>'), EOS);
    const model = new TableCausalLM(CHAR_TOKENIZER_VOCAB, rules, { maxPositions: 2048, eosTokenId: EOS });
    s = await startServer({ id: 't', model, tokenizer: tok, template }, { port: 0 });
    c = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  afterAll(async () => {
    await s?.close(1000);
    await fsp.rm(dir, { recursive: true, force: true });
  });

  test('a named function is called (OpenAI: tool_choice {"type": "function", ...} forces that call)', async () => {
    const r = await c.chat.completions.create({ model: 't', messages: Q, tools: [ADD], tool_choice: { type: 'function', function: { name: 'add' } }, max_tokens: 80, temperature: 0 });
    expect(r.choices[0]!.finish_reason).toBe('tool_calls');
    const call = r.choices[0]!.message.tool_calls![0]! as { function: { name: string; arguments: string } };
    expect(call.function).toEqual({ name: 'add', arguments: '{"a":2}' });
  });

  test('"required" makes the reply a tool call (OpenAI: the model must call one or more tools)', async () => {
    const r = await c.chat.completions.create({ model: 't', messages: Q, tools: [ADD], tool_choice: 'required', max_tokens: 80, temperature: 0 });
    expect(r.choices[0]!.finish_reason).toBe('tool_calls');
    expect((r.choices[0]!.message.tool_calls![0]! as { function: { name: string; arguments: string } }).function).toEqual({ name: 'add', arguments: '{"a":2}' });
  });

  test('bad tool_choice values are 400s naming the problem', async () => {
    await expect(c.chat.completions.create({ model: 't', messages: Q, tool_choice: 'required', max_tokens: 4 })).rejects.toMatchObject({ status: 400 });
    await expect(c.chat.completions.create({ model: 't', messages: Q, tools: [ADD], tool_choice: { type: 'function', function: { name: 'mul' } }, max_tokens: 4 })).rejects.toThrow(/names function "mul", which is not in "tools"/);
  });
});
