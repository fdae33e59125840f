import { promises as fsp } from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import OpenAI from 'openai';
import { loadTokenizer, type TextTokenizer } from '@llama-pro/core';
import { ChatPromptBuilder, resolveChatTemplate, startServer, type ChatMessage, type ChatTemplate, type RunningServer, type ToolSpec } from '../src';
import { CHAR_TOKENIZER_VOCAB, TableCausalLM, scriptRules, writeCharTokenizer, type TableRule } from '../src/testing';

jest.setTimeout(60_000);

// ChatML-like Jinja template written for this test (tool calls rendered inline).
const TEMPLATE =
  "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' }}{% if m.content %}{{ m.content }}{% endif %}" +
  "{% if m.tool_calls %}{% for c in m.tool_calls %}{{ '<tool_call>' + c.function.name + ' ' + (c.function.arguments | tojson) + '</tool_call>' }}{% endfor %}{% endif %}" +
  "{{ '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const EOS = 2;
const ADD_TOOL: ToolSpec = {
  type: 'function',
  function: { name: 'add', description: 'Adds two integers', parameters: { type: 'object', properties: { a: { type: 'integer' }, b: { type: 'integer' } }, required: ['a', 'b'] } },
};

let dir: string;
let tokenizer: TextTokenizer;
let template: ChatTemplate;
let builder: ChatPromptBuilder;
let model: TableCausalLM;
let server: RunningServer;
let client: OpenAI;

const CHAT1: ChatMessage[] = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'Hi there' },
];
const REPLY1 = 'Hello! How can I help?';
const STORY = 'Once upon a time';
const STORY_REPLY = ' there was a cat. The end.';
const TOOL_Q: ChatMessage[] = [{ role: 'user', content: 'What is 2 plus 3?' }];
const TOOL_REPLY = '<tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}</tool_call>';
const TOOL_FINAL = 'The answer is 5.';

function completionIds(text: string): number[] {
  return [tokenizer.bosTokenId!, ...tokenizer.encode(text)];
}

beforeAll(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'agent-server-'));
  await writeCharTokenizer(dir, TEMPLATE);
  tokenizer = await loadTokenizer(dir);
  template = resolveChatTemplate(tokenizer, undefined);
  builder = new ChatPromptBuilder(tokenizer, template);
  const rules: TableRule[] = [
    ...scriptRules(builder.ids(CHAT1), tokenizer.encode(REPLY1), EOS),
    ...scriptRules(completionIds(STORY), tokenizer.encode(STORY_REPLY), EOS),
    ...scriptRules(builder.ids(TOOL_Q, [ADD_TOOL]), tokenizer.encode(TOOL_REPLY), EOS),
    ...scriptRules(
      builder.ids(
        [
          ...TOOL_Q,
          { role: 'assistant', content: null, tool_calls: [{ id: 'any', type: 'function', function: { name: 'add', arguments: '{"a":2,"b":3}' } }] },
          { role: 'tool', tool_call_id: 'any', content: '5' },
        ],
        [ADD_TOOL],
      ),
      tokenizer.encode(TOOL_FINAL),
      EOS,
    ),
  ];
  model = new TableCausalLM(CHAR_TOKENIZER_VOCAB, rules, { maxPositions: 1024, eosTokenId: EOS });
  server = await startServer({ id: 'tiny', model, tokenizer, template }, { port: 0, maxBodyBytes: 64 * 1024 });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});

afterAll(async () => {
  await server?.close(1000);
  await fsp.rm(dir, { recursive: true, force: true });
});

describe('OpenAI client against the server', () => {
  test('lists the model', async () => {
    const list = await client.models.list();
    expect(list.data.map((m) => m.id)).toEqual(['tiny']);
    expect((await client.models.retrieve('tiny')).owned_by).toBe('llama-pro');
  });

  test('chat completion', async () => {
    const r = await client.chat.completions.create({ model: 'tiny', messages: CHAT1 as OpenAI.ChatCompletionMessageParam[], temperature: 0 });
    expect(r.object).toBe('chat.completion');
    expect(r.choices[0]!.message).toMatchObject({ role: 'assistant', content: REPLY1 });
    expect(r.choices[0]!.finish_reason).toBe('stop');
    expect(r.usage).toEqual({ prompt_tokens: builder.ids(CHAT1).length, completion_tokens: REPLY1.length, total_tokens: builder.ids(CHAT1).length + REPLY1.length });
  });

  test('streamed chat with usage', async () => {
    const stream = await client.chat.completions.create({ model: 'tiny', messages: CHAT1 as OpenAI.ChatCompletionMessageParam[], temperature: 0, stream: true, stream_options: { include_usage: true } });
    let text = '';
    const finishes: (string | null)[] = [];
    let usage: OpenAI.CompletionUsage | null | undefined;
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      if (chunk.usage) usage = chunk.usage;
      for (const ch of chunk.choices) {
        text += ch.delta.content ?? '';
        finishes.push(ch.finish_reason);
      }
    }
    expect(text).toBe(REPLY1);
    expect(chunks).toBeGreaterThan(REPLY1.length / 2);
    expect(finishes.filter((f) => f !== null)).toEqual(['stop']);
    expect(usage).toEqual({ prompt_tokens: builder.ids(CHAT1).length, completion_tokens: REPLY1.length, total_tokens: builder.ids(CHAT1).length + REPLY1.length });
  });

  test('the SSE stream ends with data: [DONE]', async () => {
    const res = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny', messages: CHAT1, temperature: 0, stream: true }),
    });
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const body = await res.text();
    expect(body.trimEnd().endsWith('data: [DONE]')).toBe(true);
    const events = body.split('\n\n').filter((e) => e.startsWith('data: ') && !e.includes('[DONE]'));
    const first = JSON.parse(events[0]!.slice(6));
    expect(first.choices[0].delta).toEqual({ role: 'assistant', content: '' });
    expect(first.object).toBe('chat.completion.chunk');
  });

  test('completion with stop', async () => {
    const r = await client.completions.create({ model: 'tiny', prompt: STORY, max_tokens: 40, temperature: 0, stop: ['.'] });
    expect(r.choices[0]!.text).toBe(' there was a cat');
    expect(r.choices[0]!.finish_reason).toBe('stop');
    expect(r.usage!.prompt_tokens).toBe(completionIds(STORY).length);
  });

  test('completion with a token-array prompt, and length as finish_reason', async () => {
    const ids = completionIds(STORY);
    const r = await client.completions.create({ model: 'tiny', prompt: ids, max_tokens: 40, temperature: 0 });
    expect(r.choices[0]).toMatchObject({ text: STORY_REPLY, finish_reason: 'stop' });
    expect(r.usage).toEqual({ prompt_tokens: ids.length, completion_tokens: STORY_REPLY.length, total_tokens: ids.length + STORY_REPLY.length });
    const short = await client.completions.create({ model: 'tiny', prompt: ids, max_tokens: 6, temperature: 0 });
    expect(short.choices[0]).toMatchObject({ text: ' there', finish_reason: 'length' });
  });

  test('streamed completion', async () => {
    const stream = await client.completions.create({ model: 'tiny', prompt: STORY, max_tokens: 40, temperature: 0, stream: true, stop: [' The'] });
    let text = '';
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(text).toBe(' there was a cat.');
    expect(finish).toBe('stop');
  });

  test('tool-call round trip', async () => {
    const first = await client.chat.completions.create({ model: 'tiny', messages: TOOL_Q as OpenAI.ChatCompletionMessageParam[], tools: [ADD_TOOL as OpenAI.ChatCompletionTool], temperature: 0 });
    expect(first.choices[0]!.finish_reason).toBe('tool_calls');
    const msg = first.choices[0]!.message;
    expect(msg.content).toBeNull();
    expect(msg.tool_calls).toHaveLength(1);
    const tc = msg.tool_calls![0]! as OpenAI.ChatCompletionMessageFunctionToolCall;
    expect(tc.type).toBe('function');
    expect(tc.function.name).toBe('add');
    const args = JSON.parse(tc.function.arguments) as { a: number; b: number };
    expect(args).toEqual({ a: 2, b: 3 });
    const second = await client.chat.completions.create({
      model: 'tiny',
      messages: [...(TOOL_Q as OpenAI.ChatCompletionMessageParam[]), msg as OpenAI.ChatCompletionMessageParam, { role: 'tool', tool_call_id: tc.id, content: String(args.a + args.b) }],
      tools: [ADD_TOOL as OpenAI.ChatCompletionTool],
      temperature: 0,
    });
    expect(second.choices[0]!.message.content).toBe(TOOL_FINAL);
    expect(second.choices[0]!.finish_reason).toBe('stop');
  });

  test('streamed tool call arrives as a tool_calls delta', async () => {
    const stream = await client.chat.completions.create({ model: 'tiny', messages: TOOL_Q as OpenAI.ChatCompletionMessageParam[], tools: [ADD_TOOL as OpenAI.ChatCompletionTool], temperature: 0, stream: true });
    const calls: OpenAI.ChatCompletionChunk.Choice.Delta.ToolCall[] = [];
    let finish: string | null = null;
    for await (const chunk of stream) {
      calls.push(...(chunk.choices[0]?.delta.tool_calls ?? []));
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(finish).toBe('tool_calls');
    expect(calls).toHaveLength(1);
    expect(calls[0]!.function).toEqual({ name: 'add', arguments: '{"a":2,"b":3}' });
  });

  test('logprobs and echo match the model', async () => {
    const r = await client.completions.create({ model: 'tiny', prompt: STORY, max_tokens: 3, temperature: 0, logprobs: 2, echo: true });
    const c = r.choices[0]!;
    expect(c.text).toBe(`${STORY} th`);
    const ids = completionIds(STORY);
    const lp = c.logprobs!;
    expect(lp.tokens).toHaveLength(ids.length + 3);
    expect(lp.token_logprobs![0]).toBeNull();
    // Independent check against the table model's logits after each context.
    const all = [...ids, ...tokenizer.encode(' th')];
    for (const t of [1, ids.length, ids.length + 2]) {
      const row = model.logitsAfter(all.slice(0, t));
      const max = Math.max(...row);
      const lse = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
      expect(lp.token_logprobs![t]).toBeCloseTo(row[all[t]!]! - lse, 4);
    }
    const topGen = lp.top_logprobs![ids.length]!;
    expect(Object.keys(topGen)).toHaveLength(2);
    expect(Object.keys(topGen)[0]).toBe(' ');
    expect(lp.text_offset!.slice(0, 3)).toEqual([0, 0, 1]);
  });
});

describe('robustness', () => {
  const post = (route: string, body: string, headers: Record<string, string> = {}): Promise<Response> =>
    fetch(`${server.url}${route}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });

  test('64 concurrent requests all complete, one at a time on the model', async () => {
    model.maxActiveSessions = 0;
    const results = await Promise.all(
      Array.from({ length: 64 }, (_, i) =>
        post('/v1/completions', JSON.stringify({ model: 'tiny', prompt: `request ${i % 8}`, max_tokens: 5, temperature: 0 })).then(async (res) => ({ status: res.status, body: (await res.json()) as { choices: { text: string }[]; usage: { completion_tokens: number } } })),
      ),
    );
    expect(results.map((r) => r.status)).toEqual(new Array(64).fill(200));
    for (const [i, r] of results.entries()) {
      expect(r.body.usage.completion_tokens).toBeLessThanOrEqual(5);
      // Greedy decoding of the same prompt gives the same text, whatever the interleaving.
      expect(r.body.choices[0]!.text).toBe(results[i % 8]!.body.choices[0]!.text);
    }
    expect(model.maxActiveSessions).toBe(1);
  });

  test('malformed JSON, wrong types, unknown model, oversized body → 4xx with a message; the server keeps serving', async () => {
    const bad = await post('/v1/chat/completions', '{"model": "tiny", "messages": [');
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toMatch(/not valid JSON/);

    const types = await post('/v1/completions', JSON.stringify({ model: 'tiny', prompt: 'x', max_tokens: 'ten' }));
    expect(types.status).toBe(400);
    const te = ((await types.json()) as { error: { message: string; param: string } }).error;
    expect(te.param).toBe('max_tokens');
    expect(te.message).toMatch(/^max_tokens: /);

    const role = await post('/v1/chat/completions', JSON.stringify({ model: 'tiny', messages: [{ role: 'wizard', content: 'x' }] }));
    expect(role.status).toBe(400);
    expect(((await role.json()) as { error: { message: string } }).error.message).toMatch(/messages\.0\.role/);

    await expect(client.chat.completions.create({ model: 'gpt-4', messages: [{ role: 'user', content: 'x' }] })).rejects.toMatchObject({ status: 404, code: 'model_not_found' });

    const big = await post('/v1/completions', JSON.stringify({ model: 'tiny', prompt: 'x'.repeat(70 * 1024) }));
    expect(big.status).toBe(413);
    expect(((await big.json()) as { error: { message: string } }).error.message).toMatch(/exceeds 65536 bytes/);

    const vocab = await post('/v1/completions', JSON.stringify({ model: 'tiny', prompt: [1, 5000] }));
    expect(vocab.status).toBe(400);
    expect(((await vocab.json()) as { error: { message: string } }).error.message).toMatch(/token id 5000, outside the vocabulary/);

    const ctx = await post('/v1/completions', JSON.stringify({ model: 'tiny', prompt: 'x', max_tokens: 5000 }));
    expect(ctx.status).toBe(400);
    expect(((await ctx.json()) as { error: { message: string } }).error.message).toMatch(/maximum context length is 1024 tokens/);

    const route = await fetch(`${server.url}/v2/nothing`);
    expect(route.status).toBe(404);

    const ok = await client.completions.create({ model: 'tiny', prompt: STORY, max_tokens: 6, temperature: 0 });
    expect(ok.choices[0]!.text).toBe(' there');
  });

  test('a chunked body (no content-length) is counted as it arrives: over the limit → 413, within it → served', async () => {
    // Node's http client sends a body written in pieces without content-length as transfer-encoding: chunked.
    const chunked = (pieces: string[]): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> =>
      new Promise((resolve, reject) => {
        const url = new URL(`${server.url}/v1/completions`);
        const req = http.request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (body += d));
          res.on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers }));
        });
        req.on('error', reject);
        for (const p of pieces) req.write(p);
        req.end();
      });
    const json = JSON.stringify({ model: 'tiny', prompt: STORY, max_tokens: 6, temperature: 0 });
    const small = await chunked([json.slice(0, 10), json.slice(10)]);
    expect(small.status).toBe(200);
    expect((JSON.parse(small.body) as { choices: { text: string }[] }).choices[0]!.text).toBe(' there');
    const pad = 'x'.repeat(40 * 1024);
    const big = await chunked([`{"model":"tiny","prompt":"${pad}`, `${pad}"}`]);
    expect(big.status).toBe(413);
    expect((JSON.parse(big.body) as { error: { message: string } }).error.message).toMatch(/exceeds 65536 bytes/);
  });
});

describe('client disconnects', () => {
  test('a streamed request whose client goes away stops generating; the server keeps serving', async () => {
    const slowModel = new TableCausalLM(CHAR_TOKENIZER_VOCAB, [], { stepDelayMs: 20, eosTokenId: EOS, seed: 3 });
    const s = await startServer({ id: 'slow', model: slowModel, tokenizer, template }, { port: 0 });
    try {
      const ctl = new AbortController();
      const res = await fetch(`${s.url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'slow', prompt: 'x', max_tokens: 400, temperature: 0, stream: true }),
        signal: ctl.signal,
      });
      const reader = res.body!.getReader();
      await reader.read();
      ctl.abort();
      const t0 = slowModel.calls;
      while (slowModel.activeSessions > 0) await new Promise((r) => setTimeout(r, 20));
      // Far fewer than 400 decode steps ran.
      expect(slowModel.calls - t0).toBeLessThan(100);
      const ok = await fetch(`${s.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'slow', prompt: 'x', max_tokens: 2, temperature: 0 }) });
      expect(ok.status).toBe(200);
    } finally {
      await s.close(1000);
    }
  });
});

describe('graceful shutdown', () => {
  test('in-flight and queued requests finish; new connections are refused', async () => {
    const slowModel = new TableCausalLM(CHAR_TOKENIZER_VOCAB, scriptRules(completionIds(STORY), tokenizer.encode(STORY_REPLY), EOS), { stepDelayMs: 5, eosTokenId: EOS });
    const s = await startServer({ id: 'slow', model: slowModel, tokenizer, template }, { port: 0 });
    const req = (): Promise<Response> =>
      fetch(`${s.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'slow', prompt: STORY, max_tokens: 40, temperature: 0 }) });
    const inflight = [req(), req(), req()];
    while (s.queue.size < 3) await new Promise((r) => setTimeout(r, 5));
    const closed = s.close(30_000);
    const responses = await Promise.all(inflight);
    expect(responses.map((r) => r.status)).toEqual([200, 200, 200]);
    for (const r of responses) expect(((await r.json()) as { choices: { text: string }[] }).choices[0]!.text).toBe(STORY_REPLY);
    await closed;
    await expect(req()).rejects.toThrow();
  });
});
