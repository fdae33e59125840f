/**
 * The agent package's server, chat and agent commands on a real model: a seeded random checkpoint run by
 * the tfjs backend, with a character-level tokenizer.json built here.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import OpenAI from 'openai';
import { HfCheckpoint, generate, loadTokenizer, type CausalLM, type TextTokenizer } from '@llama-pro/core';
import { describeWithFixtures, fixturesDir, tinyRawConfig, writeRandomCheckpoint } from '@llama-pro/core/testing';
import { tfjsBackend } from '@llama-pro/backend-tfjs';
import { LocalChatModel, resolveChatTemplate, startServer, type RunningServer } from '@llama-pro/agent';
import { CHAR_TOKENIZER_VOCAB, writeCharTokenizer } from '@llama-pro/agent/testing';
import { chatLoop } from '../src/commands/chat';
import { main } from '../src/main';
import { runCli } from './run-cli';

jest.setTimeout(120_000);

// A ChatML template written for this test.
const TEMPLATE = "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + (m.content or '') + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

let dir: string;
let model: CausalLM;
let ckpt: HfCheckpoint;
let tokenizer: TextTokenizer;
let server: RunningServer;
let client: OpenAI;
let imEnd: number;

const decode = (ids: readonly number[]): string => tokenizer.decode(ids, { skipSpecialTokens: true });

/** Greedy continuation computed straight with core's generate(). */
async function greedy(prompt: number[], maxNewTokens: number, eos: number[]): Promise<{ tokens: number[]; text: string }> {
  const [r] = await generate(model, [prompt], { maxNewTokens, temperature: 0, eosTokenIds: eos });
  return { tokens: r!.tokens, text: decode(r!.tokens) };
}

beforeAll(async () => {
  // 1024 positions: the MINT prompt (about 570 char tokens after a nudge) and the json-tool-calls prompt
  // with the python tool spec (579) must fit, or the agent rightly stops with "length" on turn 1-2.
  dir = path.join(await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-agent-')), 'tiny-chat');
  await writeRandomCheckpoint(dir, tinyRawConfig({ vocab: CHAR_TOKENIZER_VOCAB, maxPositions: 1024 }), { seed: 11, std: 0.5 });
  await writeCharTokenizer(dir, TEMPLATE);
  tokenizer = await loadTokenizer(dir);
  imEnd = tokenizer.encode('<|im_end|>')[0]!;
  ckpt = await HfCheckpoint.open(dir);
  model = await tfjsBackend.load(ckpt);
  server = await startServer({ id: 'tiny-chat', model, tokenizer, template: resolveChatTemplate(tokenizer, undefined) }, { port: 0 });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});

afterAll(async () => {
  await server?.close(1000);
  await model?.dispose();
  await ckpt?.close();
  if (dir) await fsp.rm(path.dirname(dir), { recursive: true, force: true });
});

describe('OpenAI client against llama-pro serve on a tfjs model', () => {
  const chatPrompt = (): number[] => tokenizer.encode('<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n');

  test('chat and streamed chat equal greedy generation on the rendered template', async () => {
    const want = await greedy(chatPrompt(), 12, [2, imEnd]);
    const r = await client.chat.completions.create({ model: 'tiny-chat', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 12, temperature: 0 });
    expect(r.choices[0]!.message.content).toBe(want.text);
    expect(r.usage).toMatchObject({ prompt_tokens: chatPrompt().length, completion_tokens: want.tokens.length });
    const stream = await client.chat.completions.create({ model: 'tiny-chat', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 12, temperature: 0, stream: true });
    let text = '';
    for await (const c of stream) text += c.choices[0]?.delta.content ?? '';
    expect(text).toBe(want.text);
  });

  test('completion with stop, and with a token-array prompt', async () => {
    const ids = [1, ...tokenizer.encode('Hello')];
    const want = await greedy(ids, 20, [2]);
    expect(want.text.length).toBeGreaterThan(4);
    const byIds = await client.completions.create({ model: 'tiny-chat', prompt: ids, max_tokens: 20, temperature: 0 });
    expect(byIds.choices[0]!.text).toBe(want.text);
    const stop = want.text[3]!;
    const cut = await client.completions.create({ model: 'tiny-chat', prompt: 'Hello', max_tokens: 20, temperature: 0, stop: [stop] });
    expect(cut.choices[0]!.text).toBe(want.text.slice(0, want.text.indexOf(stop)));
    expect(cut.choices[0]!.finish_reason).toBe('stop');
  });

  test('a tool-call conversation renders and answers (tool messages go back through the template)', async () => {
    const tools: OpenAI.ChatCompletionTool[] = [{ type: 'function', function: { name: 'add', parameters: { type: 'object', properties: { a: { type: 'integer' } } } } }];
    const r = await client.chat.completions.create({
      model: 'tiny-chat',
      tools,
      max_tokens: 4,
      temperature: 0,
      messages: [
        { role: 'user', content: 'add' },
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'add', arguments: '{"a":1}' } }] },
        { role: 'tool', tool_call_id: 'call_1', content: '1' },
      ],
    });
    expect(r.choices[0]!.message.role).toBe('assistant');
    expect(['stop', 'length', 'tool_calls']).toContain(r.choices[0]!.finish_reason);
  });

  test('64 concurrent requests complete', async () => {
    const rs = await Promise.all(Array.from({ length: 64 }, (_, i) => client.completions.create({ model: 'tiny-chat', prompt: `q${i % 4}`, max_tokens: 1, temperature: 0 })));
    expect(rs).toHaveLength(64);
    for (const [i, r] of rs.entries()) expect(r.choices[0]!.text).toBe(rs[i % 4]!.choices[0]!.text);
  });
});

describe('CLI: serve, chat, agent', () => {
  test('llama-pro serve answers /v1/models and stops on SIGTERM', async () => {
    let err = '';
    const spy = jest.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => {
      err += c.toString();
      return true;
    });
    try {
      const running = main(['node', 'llama-pro', 'serve', '--model', dir, '--port', '0', '--backend', 'tfjs', '--name', 'cli-model']);
      while (!/on (http:\/\/\S+)\/v1/.test(err)) {
        if (/llama-pro:/.test(err)) throw new Error(err);
        await new Promise((r) => setTimeout(r, 20));
      }
      const url = /on (http:\/\/\S+)\/v1/.exec(err)![1]!;
      const models = (await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] };
      expect(models.data.map((m) => m.id)).toEqual(['cli-model']);
      process.emit('SIGTERM');
      expect(await running).toBe(0);
      expect(err).toMatch(/SIGTERM: finishing 0 request\(s\)/);
      await expect(fetch(`${url}/v1/models`)).rejects.toThrow();
    } finally {
      spy.mockRestore();
    }
  });

  test('llama-pro serve rejects a bad port', async () => {
    const r = await runCli(['serve', '--model', dir, '--port', '70000']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--port must be at most 65535/);
  });

  test('chat loop streams replies; /reset clears the history', async () => {
    const chat = new LocalChatModel(model, tokenizer, resolveChatTemplate(tokenizer, undefined));
    const input = new PassThrough();
    const output = new PassThrough();
    let out = '';
    output.on('data', (d: Buffer) => (out += d.toString()));
    input.end('Hello\n/reset\nHello\n/exit\n');
    const history = await chatLoop(chat, input, output, { maxTokens: 6, temperature: 0 });
    const want = await greedy(tokenizer.encode('<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n'), 6, [2, imEnd]);
    expect(history).toEqual([
      { role: 'user', content: 'Hello' },
      { role: 'assistant', content: want.text },
    ]);
    expect(out).toBe(`${want.text}${want.tokens.length === 6 ? ' [cut: --max-tokens 6 reached]' : ''}\n[history cleared]\n${want.text}${want.tokens.length === 6 ? ' [cut: --max-tokens 6 reached]' : ''}\n`);
  });

  test('llama-pro agent runs the loop to a finishReason', async () => {
    const mint = await runCli(['agent', '--model', dir, '--backend', 'tfjs', '--task', 'What is 2 + 2?', '--max-turns', '2', '--max-tokens', '6', '--json']);
    expect(mint.code).toBe(0);
    const r = JSON.parse(mint.stdout) as { finishReason: string; turns: number; trace: { type: string; text?: string }[] };
    // A random model writes neither <execute> nor <solution>: it is nudged each turn until max_turns.
    expect(r.finishReason).toBe('max_turns');
    expect(r.turns).toBe(2);
    expect(r.trace.filter((e) => e.type === 'observation')).toHaveLength(2);

    const json = await runCli(['agent', '--model', dir, '--backend', 'tfjs', '--task', 'Say hi', '--protocol', 'json-tool-calls', '--max-tokens', '6', '--json']);
    expect(json.code).toBe(0);
    const j = JSON.parse(json.stdout) as { finishReason: string; answer: string; turns: number; trace: { type: string; text?: string }[] };
    expect(j.finishReason).toBe('final');
    expect(j.turns).toBe(1);
    expect(j.answer).toBe(j.trace.find((e) => e.type === 'model')!.text!.trim());

    const bad = await runCli(['agent', '--model', dir, '--task', 'x', '--protocol', 'react']);
    expect(bad.code).toBe(2); // usage class: an unknown name on the command line
    expect(bad.stderr).toMatch(/unknown action parser "react"; known: json-tool-calls, mint/);
  });
});

describeWithFixtures('llama-pro eval with the MINT agent tasks', [['datasets', 'gsm8k', 'test.jsonl']], () => {
  test('mint-gsm8k runs k turns per problem and reports success rate per turn', async () => {
    const out = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-mint-'));
    try {
      const r = await runCli(['eval', '--tasks', 'mint-gsm8k', '--model', dir, '--data-dir', path.join(fixturesDir(), 'datasets'), '--limit', '1', '--max-gen-tokens', '4', '--out', out, '--name', 'run', '--json']);
      expect(r.stderr).not.toMatch(/llama-pro:/);
      expect(r.code).toBe(0);
      const run = JSON.parse(r.stdout) as { results: Record<string, { metrics?: Record<string, number> } & Record<string, unknown>> };
      const text = JSON.stringify(run);
      // A random model never answers correctly: 0 at every turn 1..5.
      for (let t = 1; t <= 5; t++) expect(text).toContain(`"success_rate@${t}":0`);
    } finally {
      await fsp.rm(out, { recursive: true, force: true });
    }
  });
});
