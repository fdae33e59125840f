/**
 * The reference clients against our server: every request lm-evaluation-harness 0.4.13 (`local-completions` with its
 * remote tokenizer, `local-chat-completions`) and openai-python 3.22.1 sent to `llama-pro serve` (recorded by a
 * logging proxy, test/fixtures/clients/README.md) is replayed, and each response is checked for the fields those
 * clients read, as their source reads them:
 * - lm_eval/utils.py `check_remote_tokenizer_support`: GET /tokenizer_info is a dict with an "eos_token" key, and
 *   POST /tokenize {"prompt": "test", "add_special_tokens": false} answers a list under "tokens";
 *   `RemoteTokenizer.eos_token_id` / `bos_token_id` = `encode(eos_token)[0]` (so the token text must round-trip),
 *   `RemoteTokenizer.decode` posts {"tokens": [...]} to /detokenize and reads the string "prompt";
 * - lm_eval/models/openai_completions.py `LocalCompletionsAPI.parse_logprobs`: choices sorted by "index",
 *   `sum(logprobs.token_logprobs[ctxlen:-1])` and `top_logprobs[ctxlen:-1]` dicts (echo + max_tokens 1: one entry
 *   per prompt token plus the generated one); `parse_generations`: choices[].index / .text;
 *   `LocalChatCompletion.parse_generations`: choices[].message.content;
 * - openai-python's response types (src/openai/types/completion*.py, chat/chat_completion*.py), which strict
 *   validation enforces: ids, object names, finish_reason literals, usage integers, logprob entries.
 * The models are stand-ins with the recorded tokenizers (llama-tied-fp32's tokenizer.json, byte tokens for
 * stories260K) and random logits; the checks are about shapes and invariants, not text.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import Ajv from 'ajv';
import { ByteTokenizer, loadTokenizer, type TextTokenizer } from '@llama-pro/core';
import { ChatPromptBuilder, resolveChatTemplate, startServer, type ChatMessage, type RunningServer } from '../src';
import { TableCausalLM } from '../src/testing';

jest.setTimeout(180_000);

const FIXTURES = path.join(__dirname, 'fixtures', 'clients');
const TIED = path.resolve(__dirname, '../../../../shared/hf-conformance/llama-tied-fp32');

interface Recorded {
  method: 'GET' | 'POST';
  path: string;
  user_agent: string;
  body: Record<string, unknown> | null;
}
async function recorded(name: string): Promise<Recorded[]> {
  const text = await fsp.readFile(path.join(FIXTURES, `${name}.jsonl`), 'utf8');
  return text.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as Recorded);
}

const servers: RunningServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.close(1000);
});
async function serve(id: string, tok: TextTokenizer, vocab: number, maxPositions: number): Promise<RunningServer> {
  // Random logits: under a forced tool call a schema-free string (get_weather.city) ends only when the model samples a
  // quote, so with about half the table seeds one of the recorded calls runs past its max_tokens (400) and comes back
  // with finish_reason "length" (OpenAI's documented cut). Seed 5 is one whose samples close within the budget.
  const model = new TableCausalLM(vocab, [], { maxPositions, eosTokenId: tok.eosTokenId ?? 2, seed: 5 });
  const s = await startServer({ id, model, tokenizer: tok, template: resolveChatTemplate(tok, 'auto') }, { port: 0 });
  servers.push(s);
  return s;
}

async function send(base: string, r: Recorded): Promise<{ status: number; json: unknown; sse: unknown[] | null }> {
  const res = await fetch(base + r.path.replace(/^\/v1\/\.\.\//, '/'), { method: r.method, headers: r.body ? { 'content-type': 'application/json' } : {}, body: r.body ? JSON.stringify(r.body) : undefined });
  const text = await res.text();
  if ((res.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
    const events = text.split('\n\n').filter((e) => e.trim()).map((e) => e.replace(/^data: /, ''));
    // SSE as OpenAI sends it: `data: {json}` events ending in `data: [DONE]`.
    expect(events[events.length - 1]).toBe('[DONE]');
    return { status: res.status, json: null, sse: events.slice(0, -1).map((e) => JSON.parse(e) as unknown) };
  }
  return { status: res.status, json: JSON.parse(text) as unknown, sse: null };
}

const isInt = (v: unknown): boolean => Number.isInteger(v);
const isNum = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v);
function checkUsage(u: unknown): void {
  const usage = u as Record<string, unknown>;
  expect([isInt(usage['prompt_tokens']), isInt(usage['completion_tokens']), isInt(usage['total_tokens'])]).toEqual([true, true, true]);
  expect(usage['total_tokens']).toBe((usage['prompt_tokens'] as number) + (usage['completion_tokens'] as number));
}

/** How many prompts a completions request carries (a string, strings, token ids, or lists of token ids). */
function promptCount(p: unknown): number {
  if (typeof p === 'string') return 1;
  const list = p as unknown[];
  return typeof list[0] === 'number' ? 1 : list.length;
}
/** A prompt's tokens as the server scores them: text gets BOS (vLLM tokenizes prompts with add_special_tokens). */
function promptIds(p: unknown, index: number, tok: TextTokenizer): number[] {
  const text = (t: string): number[] => (tok.bosTokenId === null ? tok.encode(t) : [tok.bosTokenId, ...tok.encode(t)]);
  if (typeof p === 'string') return text(p);
  const list = p as unknown[];
  if (typeof list[0] === 'number') return list as number[];
  const one = list[index];
  return typeof one === 'string' ? text(one) : (one as number[]);
}

function checkCompletion(body: Record<string, unknown>, json: unknown, tok: TextTokenizer): void {
  const r = json as Record<string, unknown>;
  expect(typeof r['id']).toBe('string');
  expect(r['object']).toBe('text_completion');
  expect(isInt(r['created'])).toBe(true);
  expect(r['model']).toBe(body['model']);
  checkUsage(r['usage']);
  const n = (body['n'] as number | undefined) ?? 1;
  const choices = r['choices'] as Record<string, unknown>[];
  expect(choices.map((c) => c['index'])).toEqual([...choices.keys()]);
  expect(choices).toHaveLength(promptCount(body['prompt']) * n);
  for (const c of choices) {
    expect(['stop', 'length', 'content_filter']).toContain(c['finish_reason']);
    expect(typeof c['text']).toBe('string');
    // OpenAI: "The returned text will not contain the stop sequence."
    for (const s of ([] as string[]).concat((body['stop'] as string | string[] | undefined) ?? [])) expect(c['text'] as string).not.toContain(s);
    if (body['logprobs'] === undefined || body['logprobs'] === null) continue;
    const lp = c['logprobs'] as { tokens: string[]; token_logprobs: (number | null)[]; top_logprobs: (Record<string, number> | null)[]; text_offset: number[] };
    const generated = lp.tokens.length - (body['echo'] ? promptIds(body['prompt'], Math.floor((c['index'] as number) / n), tok).length : 0);
    expect(lp.token_logprobs).toHaveLength(lp.tokens.length);
    expect(lp.top_logprobs).toHaveLength(lp.tokens.length);
    expect(lp.text_offset).toHaveLength(lp.tokens.length);
    if (body['echo']) {
      // lm-eval's parse_logprobs: one logprob per prompt token (the first may be null: nothing precedes it), then the
      // max_tokens generated ones; it sums token_logprobs[ctxlen:-1] and compares each with max(top_logprobs[i]).
      expect(generated).toBe(body['max_tokens']);
      for (let i = 1; i < lp.tokens.length; i++) {
        expect(isNum(lp.token_logprobs[i])).toBe(true);
        const top = lp.top_logprobs[i]!;
        expect(Object.values(top).every(isNum)).toBe(true);
        expect(Object.keys(top).length).toBeGreaterThanOrEqual(1);
        expect(Object.keys(top).length).toBeLessThanOrEqual(body['logprobs'] as number);
      }
    } else {
      for (const v of lp.token_logprobs) expect(isNum(v)).toBe(true);
    }
  }
}

function checkChat(body: Record<string, unknown>, json: unknown, ajv: Ajv): void {
  const r = json as Record<string, unknown>;
  expect(typeof r['id']).toBe('string');
  expect(r['object']).toBe('chat.completion');
  expect(isInt(r['created'])).toBe(true);
  checkUsage(r['usage']);
  const choices = r['choices'] as Record<string, unknown>[];
  expect(choices.map((c) => c['index'])).toEqual([...Array(((body['n'] as number | undefined) ?? 1)).keys()]);
  for (const c of choices) {
    const m = c['message'] as Record<string, unknown>;
    expect(m['role']).toBe('assistant');
    expect(['stop', 'length', 'tool_calls', 'content_filter', 'function_call']).toContain(c['finish_reason']);
    checkToolsAndFormat(body, c['finish_reason'] as string, m['content'] as string | null, m['tool_calls'] as ToolCallOut[] | undefined, ajv);
    if (body['logprobs']) {
      const content = (c['logprobs'] as { content: { token: string; logprob: number; bytes: number[]; top_logprobs: { token: string; logprob: number; bytes: number[] }[] }[] }).content;
      for (const e of content) {
        expect([typeof e.token, isNum(e.logprob), Array.isArray(e.bytes)]).toEqual(['string', true, true]);
        expect(e.top_logprobs).toHaveLength(body['top_logprobs'] as number);
      }
    }
  }
}

interface ToolCallOut {
  id: string;
  type: string;
  function: { name: string; arguments: string };
}
function checkToolsAndFormat(body: Record<string, unknown>, finish: string, content: string | null, calls: ToolCallOut[] | undefined, ajv: Ajv): void {
  const tools = (body['tools'] as { function: { name: string; parameters?: Record<string, unknown> } }[] | undefined) ?? [];
  const choice = body['tool_choice'];
  const forced = choice === 'required' || (typeof choice === 'object' && choice !== null);
  if (forced) {
    // OpenAI: "required" / a named function makes the model call a function; the arguments are JSON for its schema.
    expect(finish).toBe('tool_calls');
  }
  if (calls?.length) {
    for (const call of calls) {
      expect([typeof call.id, call.type]).toEqual(['string', 'function']);
      const tool = tools.find((t) => t.function.name === call.function.name);
      expect(tool).toBeDefined();
      if (typeof choice === 'object' && choice !== null) expect(call.function.name).toBe((choice as { function: { name: string } }).function.name);
      const validate = ajv.compile(tool!.function.parameters ?? { type: 'object' });
      expect(validate(JSON.parse(call.function.arguments)) ? 'valid' : ajv.errorsText(validate.errors)).toBe('valid');
    }
    return;
  }
  expect(typeof content).toBe('string');
  const rf = body['response_format'] as { type: string; json_schema?: { schema: Record<string, unknown> } } | undefined;
  if (rf && rf.type !== 'text' && finish === 'stop') {
    const validate = ajv.compile(rf.type === 'json_object' ? { type: 'object' } : rf.json_schema!.schema);
    expect(validate(JSON.parse(content!)) ? 'valid' : ajv.errorsText(validate.errors)).toBe('valid');
  }
}

function checkChatStream(body: Record<string, unknown>, chunks: unknown[], ajv: Ajv): void {
  let text = '';
  let finish: string | null = null;
  const calls: ToolCallOut[] = [];
  let usage: unknown = null;
  for (const raw of chunks) {
    const ch = raw as Record<string, unknown>;
    expect(ch['object']).toBe('chat.completion.chunk');
    expect(typeof ch['id']).toBe('string');
    if (ch['usage']) usage = ch['usage'];
    for (const c of ch['choices'] as { delta: { content?: string | null; tool_calls?: ToolCallOut[] }; finish_reason: string | null }[]) {
      text += c.delta.content ?? '';
      calls.push(...(c.delta.tool_calls ?? []));
      finish = c.finish_reason ?? finish;
    }
  }
  if ((body['stream_options'] as { include_usage?: boolean } | undefined)?.include_usage) checkUsage(usage);
  expect(finish).not.toBeNull();
  checkToolsAndFormat(body, finish!, text, calls, ajv);
}

function checkCompletionStream(body: Record<string, unknown>, chunks: unknown[]): void {
  let finish: string | null = null;
  let usage: unknown = null;
  for (const raw of chunks) {
    const ch = raw as Record<string, unknown>;
    expect(ch['object']).toBe('text_completion');
    if (ch['usage']) usage = ch['usage'];
    for (const c of ch['choices'] as { text: string; finish_reason: string | null }[]) {
      expect(typeof c.text).toBe('string');
      finish = c.finish_reason ?? finish;
    }
  }
  expect(['stop', 'length']).toContain(finish);
  if ((body['stream_options'] as { include_usage?: boolean } | undefined)?.include_usage) checkUsage(usage);
}

async function replay(name: string, s: RunningServer, tok: TextTokenizer): Promise<number> {
  const ajv = new Ajv();
  let n = 0;
  for (const r of await recorded(name)) {
    const { status, json, sse } = await send(s.url, r);
    const body = r.body ?? {};
    const where = `${name}: ${r.method} ${r.path} ${JSON.stringify(body).slice(0, 120)}`;
    const unsatisfiable = JSON.stringify(body['response_format'] ?? null).includes('"minLength":5,"maxLength":2');
    // OpenAI / vLLM reject an invalid schema with 400; everything else the clients sent must succeed.
    expect([where, status]).toEqual([where, unsatisfiable ? 400 : 200]);
    n++;
    if (unsatisfiable) {
      expect(typeof (json as { error: { message: string } }).error.message).toBe('string');
      continue;
    }
    if (r.path === '/tokenizer_info') {
      const info = json as Record<string, unknown>;
      expect('eos_token' in info).toBe(true);
      for (const [key, id] of [['eos_token', tok.eosTokenId], ['bos_token', tok.bosTokenId]] as const) {
        const text = info[key];
        if (typeof text !== 'string') continue;
        const back = await send(s.url, { method: 'POST', path: '/tokenize', user_agent: '', body: { prompt: text, add_special_tokens: false } });
        expect((back.json as { tokens: number[] }).tokens[0]).toBe(id);
      }
    } else if (r.path === '/tokenize' && Array.isArray(body['prompt'])) {
      // lm-eval with --apply_chat_template and the remote tokenizer posts the chat itself as "prompt"; its tokens
      // are the served template's rendering (what /v1/chat/completions would feed the model).
      const tokens = (json as { tokens: unknown }).tokens as number[];
      expect(tokens).toEqual(new ChatPromptBuilder(tok, resolveChatTemplate(tok, 'auto')).ids(body['prompt'] as ChatMessage[]));
    } else if (r.path === '/tokenize') {
      const tokens = (json as { tokens: unknown }).tokens as number[];
      const plain = tok.encode(body['prompt'] as string);
      // vLLM: add_special_tokens defaults to true (BOS); lm-eval sends false.
      expect(tokens).toEqual(body['add_special_tokens'] === false || tok.bosTokenId === null ? plain : [tok.bosTokenId, ...plain]);
    } else if (r.path === '/v1/models') {
      const list = json as { object: string; data: { id: string; object: string; created: number; owned_by: string }[] };
      expect(list.object).toBe('list');
      expect(list.data.map((m) => [typeof m.id, m.object, isInt(m.created), typeof m.owned_by])).toEqual([['string', 'model', true, 'string']]);
    } else if (r.path === '/v1/completions') {
      if (sse) checkCompletionStream(body, sse);
      else checkCompletion(body, json, tok);
    } else if (r.path === '/v1/chat/completions') {
      if (sse) checkChatStream(body, sse, ajv);
      else checkChat(body, json, ajv);
    } else {
      throw new Error(`no check for ${where}`);
    }
  }
  return n;
}

describe('recorded reference clients, replayed', () => {
  let tied: TextTokenizer;
  let s: RunningServer;
  beforeAll(async () => {
    tied = await loadTokenizer(TIED);
    s = await serve('tied', tied, 320, 2048);
  });

  test('lm-eval 0.4.13 local-completions (remote tokenizer: gsm8k generate_until, MMLU loglikelihood, loglikelihood_rolling)', async () => {
    expect(await replay('lm-eval-local-completions', s, tied)).toBe(37);
  });
  test('lm-eval 0.4.13 local-completions --apply_chat_template (the remote tokenizer renders the chat)', async () => {
    expect(await replay('lm-eval-local-completions-chat-template', s, tied)).toBe(8);
  });
  test('lm-eval 0.4.13 local-chat-completions (multi-turn few-shot)', async () => {
    expect(await replay('lm-eval-local-chat-completions', s, tied)).toBe(2);
  });
  test('openai-python 3.22.1: completions, chat, streaming, n > 1, logprobs, tools / tool_choice, response_format', async () => {
    expect(await replay('openai-python', s, tied)).toBe(17);
  });
  test('lm-eval 0.4.13 humaneval over local-completions (6 stop strings: the task\'s 5 "until" plus EOS; max_tokens 1024)', async () => {
    expect(await replay('lm-eval-local-completions-humaneval', s, tied)).toBe(10);
  });
  test('lm-eval 0.4.13 humaneval_instruct over local-chat-completions (gen_prefix as a trailing assistant message)', async () => {
    expect(await replay('lm-eval-local-chat-completions-humaneval', s, tied)).toBe(3);
  });
  test('lm-eval 0.4.13 local-completions on a byte-token model (custom_prefix_token_id=1)', async () => {
    const bytes = new ByteTokenizer(512);
    const sb = await serve('s260k', bytes, 512, 512);
    expect(await replay('lm-eval-local-completions-bytes', sb, bytes)).toBe(36);
    // A byte tokenizer's BOS / EOS have no text: /tokenizer_info says null (lm-eval then needs custom_prefix_token_id).
    const info = (await (await fetch(`${sb.url}/tokenizer_info`)).json()) as Record<string, unknown>;
    expect([info['bos_token'], info['eos_token']]).toEqual([null, null]);
  });
});

describe('lm-eval RemoteTokenizer round trips (lm_eval/utils.py RemoteTokenizer.encode / decode / eos_token_id)', () => {
  test('/tokenize then /detokenize gives the text back; eos_token / bos_token map to their ids; the base URL is the server root', async () => {
    const tok = await loadTokenizer(TIED);
    const s = await serve('tied', tok, 320, 2048);
    // RemoteTokenizer strips "/v1/completions" from base_url and calls {root}/tokenizer_info.
    const info = (await (await fetch(`${s.url}/tokenizer_info`)).json()) as Record<string, unknown>;
    expect([info['eos_token'], info['bos_token']]).toEqual(['</s>', '<s>']);
    expect(info['model_max_length']).toBe(2048);
    const post = async (route: string, body: unknown): Promise<Record<string, unknown>> =>
      (await (await fetch(`${s.url}${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).json()) as Record<string, unknown>;
    const text = 'Question: Tom has 3 pens.\nAnswer:';
    const { tokens } = (await post('/tokenize', { prompt: text, add_special_tokens: false })) as { tokens: number[] };
    expect(tokens).toEqual(tok.encode(text));
    expect((await post('/detokenize', { tokens })).prompt).toBe(text);
    expect((await post('/detokenize', { tokens: [] })).prompt).toBe('');
    expect(((await post('/tokenize', { prompt: '</s>', add_special_tokens: false })) as { tokens: number[] }).tokens).toEqual([tok.eosTokenId]);
  });
});
