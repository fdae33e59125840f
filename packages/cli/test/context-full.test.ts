/**
 * chat and agent when the context fills (issue 18 item 5): a real model with a small window (seeded random
 * checkpoint, tfjs, character tokenizer) — the chat says the context is full instead of an empty
 * "[cut: token limit]", the agent ends with a reason that names the numbers (exit 1 when the prompt never
 * fit) instead of `max_turns` with exit 0, --token-budget defaults to the model's window, and Ctrl-C
 * during a reply stops the reply, not the chat.
 */
import { EventEmitter } from 'node:events';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { HfCheckpoint, generate, loadTokenizer, type CausalLM, type TextTokenizer } from '@llama-pro/core';
import { tinyRawConfig, writeRandomCheckpoint } from '@llama-pro/core/testing';
import { tfjsBackend } from '@llama-pro/backend-tfjs';
import { LocalChatModel, resolveChatTemplate, type ChatMessage, type ChatModel, type ChatModelResult, type ChatCompleteOptions } from '@llama-pro/agent';
import { CHAR_TOKENIZER_VOCAB, writeCharTokenizer } from '@llama-pro/agent/testing';
import { chatLoop } from '../src/commands/chat';
import { runCli } from './run-cli';

jest.setTimeout(120_000);

const TEMPLATE = "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + (m.content or '') + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
const CTX = 40;

let dir: string;
let model: CausalLM;
let ckpt: HfCheckpoint;
let tokenizer: TextTokenizer;

beforeAll(async () => {
  dir = path.join(await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-ctx-')), 'tiny-40');
  await writeRandomCheckpoint(dir, tinyRawConfig({ vocab: CHAR_TOKENIZER_VOCAB, maxPositions: CTX }), { seed: 11, std: 0.5 });
  await writeCharTokenizer(dir, TEMPLATE);
  tokenizer = await loadTokenizer(dir);
  ckpt = await HfCheckpoint.open(dir);
  model = await tfjsBackend.load(ckpt);
});
afterAll(async () => {
  await model?.dispose();
  await ckpt?.close();
  if (dir) await fsp.rm(path.dirname(dir), { recursive: true, force: true });
});

async function chat(lines: string, maxTokens: number): Promise<{ out: string; history: ChatMessage[] }> {
  const m = new LocalChatModel(model, tokenizer, resolveChatTemplate(tokenizer, undefined));
  const input = new PassThrough();
  const output = new PassThrough();
  let out = '';
  output.on('data', (d: Buffer) => (out += d.toString()));
  input.end(lines);
  const history = await chatLoop(m, input, output, { maxTokens, temperature: 0 });
  return { out, history };
}

describe('chat when the context fills', () => {
  it('a reply cut by the window says so with the numbers (not "[cut: token limit]")', async () => {
    const line = 'Tell me a story';
    const prompt = tokenizer.encode(`<|im_start|>user\n${line}<|im_end|>\n<|im_start|>assistant\n`);
    const room = CTX - prompt.length;
    expect(room).toBeGreaterThan(0);
    // Reference: core generate() with the room the window leaves; EOS and <|im_end|> end a turn.
    const [ref] = await generate(model, [prompt], { maxNewTokens: room, temperature: 0, eosTokenIds: [2, tokenizer.encode('<|im_end|>')[0]!] });
    const text = tokenizer.decode(ref!.tokens, { skipSpecialTokens: true });
    const { out } = await chat(`${line}\n/exit\n`, 100);
    if (ref!.tokens.length === room) expect(out).toBe(`${text} [cut: context full (the conversation is ${CTX} tokens, the model's context ${CTX}); /reset to start over]\n`);
    else expect(out).toBe(`${text}\n`);
    // The same reply under a smaller --max-tokens names that limit instead.
    const short = await chat(`${line}\n/exit\n`, 2);
    expect(short.out).toBe(ref!.tokens.length >= 2 ? `${tokenizer.decode(ref!.tokens.slice(0, 2), { skipSpecialTokens: true })} [cut: --max-tokens 2 reached]\n` : `${text}\n`);
  });

  it('a line that leaves no room: "context full", the turn is not kept', async () => {
    const long = 'x'.repeat(CTX);
    const { out, history } = await chat(`${long}\n/exit\n`, 10);
    const n = tokenizer.encode(`<|im_start|>user\n${long}<|im_end|>\n<|im_start|>assistant\n`).length;
    expect(out).toBe(`[context full: no room for a reply (the conversation is ${n} tokens, the model's context ${CTX}); /reset to start over]\n`);
    expect(history).toEqual([]);
  });
});

describe('chat and Ctrl-C', () => {
  /** Streams "par", then waits for the abort (a reply in progress); later calls answer "ok". */
  class SlowModel implements ChatModel {
    readonly id = 'slow';
    calls = 0;
    started = new EventEmitter();
    async complete(_m: readonly ChatMessage[], o: ChatCompleteOptions = {}): Promise<ChatModelResult> {
      this.calls++;
      if (this.calls > 1) {
        o.onText?.('ok');
        return { text: 'ok', finishReason: 'stop', promptTokens: 1, completionTokens: 1 };
      }
      o.onText?.('par');
      this.started.emit('streaming');
      await new Promise<void>((r) => o.signal!.addEventListener('abort', () => r(), { once: true }));
      return { text: 'par', finishReason: 'aborted', promptTokens: 1, completionTokens: 1 };
    }
  }

  it('stops the reply and keeps chatting; at the prompt it ends the chat as interrupted', async () => {
    const m = new SlowModel();
    const signals = new EventEmitter();
    m.started.on('streaming', () => setImmediate(() => signals.emit('SIGINT')));
    const input = new PassThrough();
    const output = new PassThrough();
    let out = '';
    output.on('data', (d: Buffer) => {
      out += d.toString();
      // After the second reply, Ctrl-C at the prompt.
      if (out.endsWith('ok\n')) setImmediate(() => signals.emit('SIGINT'));
    });
    input.write('first\n');
    input.write('second\n');
    const history = await chatLoop(m, input, output, { signals });
    expect(out).toBe('par [stopped]\nok\n\n');
    expect(history.map((h) => h.content)).toEqual(['first', 'par', 'second', 'ok']);
    expect(history.interrupted).toBe(true);
    expect(signals.listenerCount('SIGINT')).toBe(0);
  });
});

describe('agent when the prompt exceeds the context', () => {
  it('exits 1 naming the prompt size and the window (was: max_turns, exit 0); --token-budget defaults to the window', async () => {
    const r = await runCli(['agent', '--model', dir, '--backend', 'tfjs', '--task', 'What is 2 + 2?', '--max-turns', '3', '--json']);
    expect(r.code).toBe(1);
    const j = JSON.parse(r.stdout) as { finishReason: string; turns: number; detail: string };
    expect(j).toMatchObject({ finishReason: 'length', turns: 1 });
    const m = /^the prompt is (\d+) tokens and does not fit the model's (\d+)-token context; shorten the task or system prompt, or use a model with a longer context$/.exec(j.detail);
    expect(m).not.toBeNull();
    expect(Number(m![2])).toBe(CTX);
    expect(Number(m![1])).toBeGreaterThan(CTX);
    expect(r.stderr).toContain(`llama-pro: ${j.detail}\n`);

    const big = await runCli(['agent', '--model', dir, '--backend', 'tfjs', '--task', 'hi', '--system', 's', '--max-turns', '1', '--token-budget', '8192', '--max-tokens', '4', '--json']);
    expect(big.stderr).toContain(`llama-pro: --token-budget 8192 exceeds the model's ${CTX}-token context; turns stop at ${CTX}\n`);
    expect(big.code).toBe(0);
  });
});
