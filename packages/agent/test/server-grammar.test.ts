/**
 * Grammar-constrained decoding beyond response_format (issue 20): `tool_choice` "required" / a named function decodes
 * the reply under the tool-call grammar (`<tool_call>{"name": ..., "arguments": ...}</tool_call>`, the format the chat
 * templates describe), so every reply is one well-formed call whose arguments validate against the function's
 * parameters schema — whatever the model would have said (a table model with random logits, sampled under many
 * seeds). Validity is judged by Ajv (JSON Schema draft-07 validator), the reference; OpenAI documents that a forced
 * tool_choice makes the model call that function (finish_reason "tool_calls"). Also: the JSON grammar honours schema
 * bounds beyond the old 64-character / 8-item caps, caps nothing by default, and bounds for schema-less values are an
 * explicit server option.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Ajv from 'ajv';
import OpenAI from 'openai';
import { loadTokenizer, UsageError } from '@llama-pro/core';
import { writeSentencePieceTokenizer } from '@llama-pro/core/testing';
import { resolveChatTemplate, startServer, type RunningServer, type ServerOptions } from '../src';
import { complete, feedText, initialState, toolCallNode } from '../src/server/json-grammar';
import { CHAR_TOKENIZER_VOCAB, TableCausalLM, writeCharTokenizer } from '../src/testing';

jest.setTimeout(180_000);

const WEATHER = {
  type: 'function' as const,
  function: {
    name: 'get_weather',
    description: 'Weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 10 }, unit: { type: 'string', enum: ['c', 'f'] } }, required: ['city', 'unit'], additionalProperties: false },
  },
};
const BOOK = {
  type: 'function' as const,
  function: {
    name: 'book',
    parameters: {
      type: 'object',
      properties: {
        guests: { type: 'array', items: { type: 'object', properties: { name: { type: 'string', maxLength: 6 }, vip: { type: 'boolean' } }, required: ['name', 'vip'] }, minItems: 1, maxItems: 2 },
        when: { enum: ['today', 'tomorrow'] },
        nights: { type: 'integer' },
      },
      required: ['guests', 'when'],
    },
  },
};
const NOARGS = { type: 'function' as const, function: { name: 'ping' } };
const TOOLS = [WEATHER, BOOK, NOARGS];

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
});

async function serve(kind: 'char' | 'sp', options: ServerOptions = {}): Promise<{ s: RunningServer; c: OpenAI }> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'agent-grammar-'));
  dirs.push(dir);
  if (kind === 'char') await writeCharTokenizer(dir);
  else await writeSentencePieceTokenizer(dir);
  const tok = await loadTokenizer(dir);
  const vocab = kind === 'char' ? CHAR_TOKENIZER_VOCAB : tok.vocabSize;
  const model = new TableCausalLM(vocab, [], { maxPositions: 4096, eosTokenId: 2, seed: 5 });
  const s = await startServer({ id: 'g', model, tokenizer: tok, template: resolveChatTemplate(tok, 'chatml') }, { port: 0, ...options });
  return { s, c: new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'unused', maxRetries: 0 }) };
}

describe.each(['char', 'sp'] as const)('tool_choice by grammar (%s tokenizer)', (kind) => {
  let s: RunningServer;
  let c: OpenAI;
  beforeAll(async () => ({ s, c } = await serve(kind)));
  afterAll(async () => s?.close(1000));
  const ajv = new Ajv();
  const validators = new Map(TOOLS.map((t) => [t.function.name, ajv.compile('parameters' in t.function ? t.function.parameters : { type: 'object' })]));
  const msgs = [{ role: 'user' as const, content: 'go' }];

  test.each([
    ['one or more calls (OpenAI: "required" = call one or more tools)', undefined],
    ['exactly one call with parallel_tool_calls false', false],
  ] as const)('"required": every sampled reply is %s to listed functions, with schema-valid arguments', async (_what, parallel) => {
    const names = new Set<string>();
    const counts = new Set<number>();
    for (let seed = 0; seed < 8; seed++) {
      const r = await c.chat.completions.create({ model: 'g', messages: msgs, tools: TOOLS, tool_choice: 'required', temperature: 1, seed, max_tokens: 1500, ...(parallel === undefined ? {} : { parallel_tool_calls: parallel }) });
      const choice = r.choices[0]!;
      expect([seed, choice.finish_reason]).toEqual([seed, 'tool_calls']);
      const calls = choice.message.tool_calls! as { type: string; function: { name: string; arguments: string } }[];
      expect(calls.length).toBeGreaterThanOrEqual(1);
      if (parallel === false) expect(calls).toHaveLength(1);
      counts.add(calls.length);
      for (const call of calls) {
        expect(call.type).toBe('function');
        const validate = validators.get(call.function.name);
        expect(validate).toBeDefined();
        const args: unknown = JSON.parse(call.function.arguments);
        expect([seed, validate!(args) ? 'valid' : ajv.errorsText(validate!.errors)]).toEqual([seed, 'valid']);
        names.add(call.function.name);
      }
    }
    // The grammar lets the model pick among the functions (not always the first).
    expect(names.size).toBeGreaterThan(1);
    if (parallel === false) expect([...counts]).toEqual([1]);
  });

  test('a named function: every sampled reply calls it with schema-valid arguments (also streamed)', async () => {
    const validate = validators.get('book')!;
    for (let seed = 0; seed < 6; seed++) {
      const r = await c.chat.completions.create({ model: 'g', messages: msgs, tools: TOOLS, tool_choice: { type: 'function', function: { name: 'book' } }, temperature: 1, seed, max_tokens: 700 });
      const call = (r.choices[0]!.message.tool_calls! as { function: { name: string; arguments: string } }[])[0]!;
      expect(call.function.name).toBe('book');
      expect([seed, validate(JSON.parse(call.function.arguments)) ? 'valid' : ajv.errorsText(validate.errors)]).toEqual([seed, 'valid']);
    }
    const stream = await c.chat.completions.create({ model: 'g', messages: msgs, tools: TOOLS, tool_choice: { type: 'function', function: { name: 'get_weather' } }, temperature: 1, seed: 3, max_tokens: 300, stream: true });
    const deltas: { tool_calls?: { function?: { name?: string; arguments?: string } }[] }[] = [];
    let finish: string | null = null;
    for await (const chunk of stream) {
      if (chunk.choices[0]) {
        deltas.push(chunk.choices[0].delta as never);
        finish = chunk.choices[0].finish_reason ?? finish;
      }
    }
    expect(finish).toBe('tool_calls');
    const fn = deltas.flatMap((d) => d.tool_calls ?? [])[0]!.function!;
    expect(fn.name).toBe('get_weather');
    expect(validators.get('get_weather')!(JSON.parse(fn.arguments!))).toBe(true);
  });

  test('a call cut by max_tokens or a stop string comes back as text with finish_reason "length" / "stop" (OpenAI: a cut structured output), not a 500', async () => {
    const cut = await c.chat.completions.create({ model: 'g', messages: msgs, tools: TOOLS, tool_choice: 'required', temperature: 1, seed: 0, max_tokens: 5 });
    expect(cut.choices[0]!.finish_reason).toBe('length');
    expect(cut.choices[0]!.message.content).toBe('<tool_call>'.slice(0, cut.choices[0]!.message.content!.length));
    const stopped = await c.chat.completions.create({ model: 'g', messages: msgs, tools: TOOLS, tool_choice: { type: 'function', function: { name: 'book' } }, temperature: 1, seed: 0, max_tokens: 700, stop: ['"when"'] });
    expect(stopped.choices[0]!.finish_reason).toBe('stop');
    expect(stopped.choices[0]!.message.content).toMatch(/^<tool_call>\{"name": "book", "arguments": /);
  });

  test('a function without parameters gets a JSON object as arguments', async () => {
    const r = await c.chat.completions.create({ model: 'g', messages: msgs, tools: TOOLS, tool_choice: { type: 'function', function: { name: 'ping' } }, temperature: 1, seed: 1, max_tokens: 900 });
    const call = (r.choices[0]!.message.tool_calls! as { function: { name: string; arguments: string } }[])[0]!;
    const args: unknown = JSON.parse(call.function.arguments);
    expect(call.function.name).toBe('ping');
    expect(typeof args === 'object' && args !== null && !Array.isArray(args)).toBe(true);
  });
});

describe('the tool-call grammar itself', () => {
  // The text form is the one toolCallsAsText writes (calls joined by a newline) and the json-tool-calls parser reads.
  const call = (name: string, args: string): string => `<tool_call>{"name": ${JSON.stringify(name)}, "arguments": ${args}}</tool_call>`;
  const fns = TOOLS.map((t) => t.function);
  test('several calls, newline-separated, only when "many" (required with parallel tool calls); each must be complete', () => {
    const many = toolCallNode(fns, '<tool_call>', '</tool_call>', undefined, true);
    const one = toolCallNode(fns, '<tool_call>', '</tool_call>');
    const two = `${call('get_weather', '{"city": "Paris", "unit": "c"}')}\n${call('ping', '{}')}`;
    const s2 = feedText(initialState(many), two);
    expect(s2 && complete(s2)).toBe(true);
    expect(feedText(initialState(one), two)).toBeNull();
    const s1 = feedText(initialState(one), call('ping', '{}'));
    expect(s1 && complete(s1)).toBe(true);
    // Not complete mid-call or after a separator; a wrong function name, bad arguments or whitespace first are refused.
    expect(complete(feedText(initialState(many), `${call('ping', '{}')}\n`)!)).toBe(false);
    expect(complete(feedText(initialState(many), call('ping', '{}').slice(0, -1))!)).toBe(false);
    expect(feedText(initialState(many), call('pong', '{}'))).toBeNull();
    expect(feedText(initialState(many), call('get_weather', '{"city": "Paris", "unit": "k"}'))).toBeNull();
    expect(feedText(initialState(many), ` ${call('ping', '{}')}`)).toBeNull();
  });
});

describe('JSON grammar lengths', () => {
  let s: RunningServer;
  let c: OpenAI;
  beforeAll(async () => ({ s, c } = await serve('char')));
  afterAll(async () => s?.close(1000));
  const ajv = new Ajv();
  const ask = (schema: Record<string, unknown>, seed: number, max_tokens = 1500) =>
    c.chat.completions.create({ model: 'g', messages: [{ role: 'user', content: 'go' }], temperature: 1, seed, max_tokens, response_format: { type: 'json_schema', json_schema: { name: 'x', schema } } });

  test('schema bounds past the old caps (64 characters, 8 items) are honoured exactly and validate', async () => {
    const schemas = [
      { type: 'object', properties: { long: { type: 'string', minLength: 100, maxLength: 130 } }, required: ['long'], additionalProperties: false },
      { type: 'array', items: { enum: [1, 2, 3] }, minItems: 20, maxItems: 25 },
      { type: 'object', properties: { rows: { type: 'array', items: { type: 'string', minLength: 70, maxLength: 80 }, minItems: 9, maxItems: 9 } }, required: ['rows'] },
    ];
    for (const schema of schemas) {
      const validate = ajv.compile(schema);
      for (let seed = 0; seed < 3; seed++) {
        const r = await ask(schema, seed);
        expect(r.choices[0]!.finish_reason).toBe('stop');
        const value: unknown = JSON.parse(r.choices[0]!.message.content!);
        expect([seed, validate(value) ? 'valid' : ajv.errorsText(validate.errors)]).toEqual([seed, 'valid']);
      }
    }
  });

  test('a string the schema leaves open is not cut: a minLength past 64 with no maxLength is produced (was a 400)', async () => {
    const schema = { type: 'string', minLength: 90 };
    const r = await ask(schema, 4, 3000);
    expect(r.choices[0]!.finish_reason).toBe('stop');
    const value = JSON.parse(r.choices[0]!.message.content!) as string;
    expect(value.length).toBeGreaterThanOrEqual(90);
  });

  test('json_object has no default caps: schema-less strings run past the old 64 characters', async () => {
    let longest = 0;
    const walk = (v: unknown): void => {
      if (typeof v === 'string') longest = Math.max(longest, [...v].length);
      else if (Array.isArray(v)) v.forEach(walk);
      else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) {
          walk(k);
          walk(x);
        }
    };
    for (let seed = 0; seed < 6; seed++) {
      const r = await c.chat.completions.create({ model: 'g', messages: [{ role: 'user', content: 'go' }], temperature: 1, seed, max_tokens: 3000, response_format: { type: 'json_object' } });
      expect(r.choices[0]!.finish_reason).toBe('stop');
      walk(JSON.parse(r.choices[0]!.message.content!));
    }
    expect(longest).toBeGreaterThan(64);
  });

  test('a document cut by max_tokens comes back with finish_reason "length" (OpenAI: the JSON may be incomplete), never closed early', async () => {
    const r = await ask({ type: 'string', minLength: 50 }, 0, 10);
    expect(r.choices[0]!.finish_reason).toBe('length');
    expect(r.choices[0]!.message.content!.length).toBeLessThan(50);
  });
});

describe('schema-less bounds are an explicit server option (jsonLimits)', () => {
  test('json_object strings and items follow jsonLimits; a bad limit is a typed error naming it', async () => {
    const { s, c } = await serve('char', { jsonLimits: { string: 3, items: 2, properties: 2, depth: 1 } });
    try {
      const within = (v: unknown, depth: number): boolean => {
        if (typeof v === 'string') return [...v].length <= 3;
        // depth 1: only the top-level value (depth 0) may be an object or array.
        if (Array.isArray(v)) return v.length <= 2 && depth < 1 && v.every((x) => within(x, depth + 1));
        if (v && typeof v === 'object') return Object.keys(v).length <= 2 && depth < 1 && Object.entries(v).every(([k, x]) => [...k].length <= 3 && within(x, depth + 1));
        return true;
      };
      for (let seed = 0; seed < 5; seed++) {
        const r = await c.chat.completions.create({ model: 'g', messages: [{ role: 'user', content: 'go' }], temperature: 1, seed, max_tokens: 800, response_format: { type: 'json_object' } });
        const value: unknown = JSON.parse(r.choices[0]!.message.content!);
        expect(typeof value === 'object' && value !== null && !Array.isArray(value)).toBe(true);
        expect([seed, within(value, 0)]).toEqual([seed, true]);
      }
      // A schema's own bound is not subject to the schema-less limits.
      const r = await c.chat.completions.create({ model: 'g', messages: [{ role: 'user', content: 'go' }], temperature: 1, seed: 0, max_tokens: 800, response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', minLength: 10, maxLength: 12 } } } });
      expect((JSON.parse(r.choices[0]!.message.content!) as string).length).toBeGreaterThanOrEqual(10);
    } finally {
      await s.close(1000);
    }
    await expect(serve('char', { jsonLimits: { string: 0 } })).rejects.toThrow(UsageError);
    await expect(serve('char', { jsonLimits: { items: 1.5 } })).rejects.toThrow(/JSON grammar limit "items" must be an integer ≥ 1 or Infinity, got 1.5/);
  });
});
