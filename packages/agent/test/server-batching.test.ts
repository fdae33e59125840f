/**
 * Continuous batching in the server (issue 19 item 2): requests join and leave one running decode batch, and each
 * row keeps its own sampling, penalties and json_schema grammar mask, so a request's reply is the one it gets
 * alone. The reference for every reply is the same request sent alone; validity of structured replies is judged by
 * Ajv (JSON Schema draft-07). Admission is FIFO and bounded (503 queue_full past maxQueueLength).
 * The real-model version (stories260K on onnx, golden greedy path) is packages/cli/test/batching.test.ts.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Ajv from 'ajv';
import { loadTokenizer, type TextTokenizer } from '@llama-pro/core';
import { resolveChatTemplate, startServer, type ChatTemplate } from '../src';
import { CHAR_TOKENIZER_VOCAB, TableCausalLM, writeCharTokenizer } from '../src/testing';

jest.setTimeout(120_000);

let dir: string;
let tokenizer: TextTokenizer;
let template: ChatTemplate;
beforeAll(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'agent-batching-'));
  await writeCharTokenizer(dir);
  tokenizer = await loadTokenizer(dir);
  template = resolveChatTemplate(tokenizer, 'plain');
});
afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

const send = (url: string, route: string, body: unknown): Promise<Response> => fetch(`${url}${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

const SCHEMAS: Record<string, Record<string, unknown>> = {
  person: { type: 'object', properties: { name: { type: 'string', maxLength: 6 }, age: { type: 'integer' } }, required: ['name', 'age'], additionalProperties: false },
  enums: { type: 'object', properties: { color: { type: 'string', enum: ['red', 'green'] }, n: { enum: [1, 2, 10] } }, required: ['color', 'n'] },
  list: { type: 'array', items: { type: 'boolean' }, minItems: 1, maxItems: 3 },
};

test('json_schema, penalties and plain sampled requests decoded in one batch: each reply is the one it gets alone', async () => {
  const model = new TableCausalLM(CHAR_TOKENIZER_VOCAB, [], { maxPositions: 1024, eosTokenId: 2, seed: 11 });
  const s = await startServer({ id: 'b', model, tokenizer, template }, { port: 0, maxBatchSize: 5 });
  try {
    const bodies: Record<string, unknown>[] = [];
    for (const [name, schema] of Object.entries(SCHEMAS))
      for (const seed of [0, 1]) bodies.push({ model: 'b', messages: [{ role: 'user', content: `go ${name}` }], temperature: 1, seed, max_tokens: 300, response_format: { type: 'json_schema', json_schema: { name, schema } } });
    bodies.push({ model: 'b', messages: [{ role: 'user', content: 'plain' }], temperature: 1, seed: 4, max_tokens: 40, n: 2 });
    bodies.push({ model: 'b', messages: [{ role: 'user', content: 'penalized' }], temperature: 1, seed: 5, max_tokens: 40, frequency_penalty: 2, logit_bias: { '40': 50 } });
    const reply = async (body: unknown): Promise<string[]> => {
      const r = await send(s.url, '/v1/chat/completions', body);
      expect(r.status).toBe(200);
      return ((await r.json()) as { choices: { message: { content: string } }[] }).choices.map((c) => c.message.content);
    };
    const alone: string[][] = [];
    for (const b of bodies) alone.push(await reply(b));
    const together = await Promise.all(bodies.map(reply));
    expect(together).toEqual(alone);
    expect(model.maxActiveSessions).toBeGreaterThan(1); // they did run side by side (per-slot sessions here)
    const ajv = new Ajv();
    Object.values(SCHEMAS).forEach((schema, i) => {
      const validate = ajv.compile(schema);
      for (const text of [...together[2 * i]!, ...together[2 * i + 1]!]) expect([text, validate(JSON.parse(text)) ? 'valid' : ajv.errorsText(validate.errors)]).toEqual([text, 'valid']);
    });
    expect(new Set(together[6]).size).toBe(2); // n = 2: two different samples
  } finally {
    await s.close(1000);
  }
});

test('admission is FIFO: with one slot, requests finish in arrival order; past maxQueueLength waiting, 503 queue_full', async () => {
  const model = new TableCausalLM(CHAR_TOKENIZER_VOCAB, [], { stepDelayMs: 5, eosTokenId: 999, maxPositions: 1024 });
  const s = await startServer({ id: 'f', model, tokenizer, template }, { port: 0, maxBatchSize: 1, maxQueueLength: 3 });
  try {
    const order: number[] = [];
    const reqs: Promise<number>[] = [];
    for (let i = 0; i < 4; i++) {
      reqs.push(send(s.url, '/v1/completions', { model: 'f', prompt: `r${i}`, max_tokens: 6 - i, temperature: 0 }).then((r) => (order.push(i), r.status)));
      while (s.queue.size < i + 1) await new Promise((r) => setTimeout(r, 2));
    }
    // One running, three waiting: the fifth is refused.
    const refused = await send(s.url, '/v1/completions', { model: 'f', prompt: 'x', max_tokens: 2 });
    expect(refused.status).toBe(503);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('queue_full');
    expect(await Promise.all(reqs)).toEqual([200, 200, 200, 200]);
    expect(order).toEqual([0, 1, 2, 3]); // later requests are shorter, yet none overtakes
    expect(model.maxActiveSessions).toBe(1);
  } finally {
    await s.close(1000);
  }
});

test('a decode step that fails answers the requests it held (500) and the batch goes on serving', async () => {
  const model = new TableCausalLM(CHAR_TOKENIZER_VOCAB, [], { eosTokenId: 999, maxPositions: 1024 });
  const start = model.startSession.bind(model);
  let failures = 1;
  model.startSession = (b: number) => {
    const s = start(b);
    if (failures-- <= 0) return s;
    return {
      get length() {
        return s.length;
      },
      step: () => Promise.reject(new Error('the backend ran out of memory')),
      dispose: () => s.dispose(),
    };
  };
  const s = await startServer({ id: 'e', model, tokenizer, template }, { port: 0, log: () => undefined });
  try {
    const bad = await send(s.url, '/v1/completions', { model: 'e', prompt: 'x', max_tokens: 3, temperature: 0 });
    expect(bad.status).toBe(500);
    const ok = await send(s.url, '/v1/completions', { model: 'e', prompt: 'x', max_tokens: 3, temperature: 0 });
    expect(ok.status).toBe(200);
    await s.queue.idle();
    expect(s.queue.size).toBe(0);
    expect(model.activeSessions).toBe(0);
  } finally {
    await s.close(1000);
  }
});
