/**
 * `response_format` json_object / json_schema: every reply is JSON valid for the schema, whatever the model would
 * have said (a table model with random logits, sampled at temperature 1 under many seeds, for several schemas incl.
 * nested objects and enums). Validity is judged by Ajv (JSON Schema draft-07 validator), the reference here;
 * an unsatisfiable schema is a 400 (OpenAI / vLLM reject invalid schemas with 400).
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Ajv from 'ajv';
import OpenAI from 'openai';
import { loadTokenizer } from '@llama-pro/core';
import { writeSentencePieceTokenizer } from '@llama-pro/core/testing';
import { resolveChatTemplate, startServer, type RunningServer } from '../src';
import { CHAR_TOKENIZER_VOCAB, TableCausalLM, writeCharTokenizer } from '../src/testing';

jest.setTimeout(120_000);

const SCHEMAS: Record<string, Record<string, unknown>> = {
  person: {
    type: 'object',
    properties: { name: { type: 'string', maxLength: 12 }, age: { type: 'integer' }, member: { type: 'boolean' } },
    required: ['name', 'age'],
    additionalProperties: false,
  },
  nested: {
    type: 'object',
    properties: {
      id: { type: 'number' },
      owner: { type: 'object', properties: { first: { type: 'string', maxLength: 8 }, tags: { type: 'array', items: { type: 'string', maxLength: 4 }, maxItems: 3 } }, required: ['first', 'tags'] },
      status: { enum: ['open', 'closed', 'pending'] },
    },
    required: ['id', 'owner', 'status'],
  },
  enums: { type: 'object', properties: { color: { type: 'string', enum: ['red', 'green'] }, n: { enum: [1, 2, 10] }, x: { type: ['string', 'null'], maxLength: 5 } }, required: ['color', 'n', 'x'] },
  list: { type: 'array', items: { type: 'object', properties: { k: { const: 'v' } }, required: ['k'] }, minItems: 1, maxItems: 3 },
};

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
});

async function serve(kind: 'char' | 'sp'): Promise<{ s: RunningServer; c: OpenAI }> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'agent-json-'));
  dirs.push(dir);
  if (kind === 'char') await writeCharTokenizer(dir);
  else await writeSentencePieceTokenizer(dir);
  const tok = await loadTokenizer(dir);
  const vocab = kind === 'char' ? CHAR_TOKENIZER_VOCAB : tok.vocabSize;
  const model = new TableCausalLM(vocab, [], { maxPositions: 1024, eosTokenId: 2, seed: 11 });
  const s = await startServer({ id: 'j', model, tokenizer: tok, template: resolveChatTemplate(tok, 'plain') }, { port: 0 });
  return { s, c: new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'unused', maxRetries: 0 }) };
}

describe.each(['char', 'sp'] as const)('structured output (%s tokenizer)', (kind) => {
  let s: RunningServer;
  let c: OpenAI;
  beforeAll(async () => ({ s, c } = await serve(kind)));
  afterAll(async () => s?.close(1000));
  const ajv = new Ajv();

  test.each(Object.keys(SCHEMAS))('json_schema %s: every sampled reply validates', async (name) => {
    const validate = ajv.compile(SCHEMAS[name]!);
    for (let seed = 0; seed < 6; seed++) {
      const r = await c.chat.completions.create({ model: 'j', messages: [{ role: 'user', content: 'go' }], temperature: 1, seed, max_tokens: 600, response_format: { type: 'json_schema', json_schema: { name, schema: SCHEMAS[name]! } } });
      const text = r.choices[0]!.message.content!;
      const value: unknown = JSON.parse(text);
      expect([seed, validate(value) ? 'valid' : ajv.errorsText(validate.errors)]).toEqual([seed, 'valid']);
    }
  });

  test('json_object: a JSON object', async () => {
    for (let seed = 0; seed < 4; seed++) {
      const r = await c.chat.completions.create({ model: 'j', messages: [{ role: 'user', content: 'go' }], temperature: 1, seed, max_tokens: 800, response_format: { type: 'json_object' } });
      const value: unknown = JSON.parse(r.choices[0]!.message.content!);
      expect(typeof value === 'object' && value !== null && !Array.isArray(value)).toBe(true);
    }
  });
});

test('unsatisfiable or unsupported schemas are 400s naming the problem', async () => {
  const { s, c } = await serve('char');
  try {
    const bad = (schema: Record<string, unknown>) => c.chat.completions.create({ model: 'j', messages: [{ role: 'user', content: 'go' }], max_tokens: 8, response_format: { type: 'json_schema', json_schema: { name: 'x', schema } } });
    await expect(bad({ type: 'object', properties: {}, required: ['a'], additionalProperties: false })).rejects.toMatchObject({ status: 400, code: 'invalid_schema' });
    await expect(bad({ type: 'string', enum: [1, 2] })).rejects.toThrow(/no value of the enum\/const satisfies/);
    await expect(bad({ type: 'string', minLength: 5, maxLength: 2 })).rejects.toThrow(/minLength 5 exceeds maxLength 2/);
    await expect(bad({ type: 'array', minItems: 3, maxItems: 1 })).rejects.toThrow(/minItems 3 exceeds maxItems 1/);
    await expect(bad({ type: 'string', pattern: '^a$' })).rejects.toThrow(/keyword "pattern" is not supported/);
    await expect(bad({ anyOf: [] })).rejects.toThrow(/no value can satisfy/);
  } finally {
    await s.close(1000);
  }
});
