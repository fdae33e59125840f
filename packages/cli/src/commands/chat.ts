/** `llama-pro chat`: a terminal chat with a local model, replies streamed as they are generated. */
import * as readline from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import type { Command } from 'commander';
import { AGENT_DEFAULTS, LocalChatModel, SERVER_DEFAULTS, type ChatMessage, type ChatModel, type ChatModelResult } from '@llama-pro/agent';
import { noteInterrupted } from '../exit-codes';
import { buildContainer } from '../container';
import { BACKEND_OPTION_HELP, DEFAULT_BACKEND } from '../backend-option';
import { TEMPLATE_OPTION_HELP, intOption, loadChatModel, numberOption } from './serve';

export interface ChatLoopOptions {
  system?: string;
  maxTokens?: number;
  temperature?: number;
  seed?: number;
  /** Show a prompt ("you> ") before each line (terminals). */
  prompt?: boolean;
  /**
   * Where Ctrl-C arrives (`process` in the command; an EventEmitter in tests): a 'SIGINT' during a reply
   * stops that reply and the chat goes on; at the prompt it ends the chat (`interrupted` in the result).
   */
  signals?: NodeJS.EventEmitter;
}

/** What the chat says after a reply that did not end by itself. */
export function replyNote(r: ChatModelResult, maxTokens: number | undefined): string {
  if (r.finishReason === 'aborted') return ' [stopped]';
  if (r.finishReason !== 'length') return '';
  if (r.contextFull) {
    const where = `the conversation is ${r.promptTokens + r.completionTokens} tokens, the model's context ${r.contextTokens ?? '?'}`;
    return r.completionTokens === 0 ? `[context full: no room for a reply (${where}); /reset to start over]` : ` [cut: context full (${where}); /reset to start over]`;
  }
  return ` [cut: --max-tokens ${maxTokens ?? r.completionTokens} reached]`;
}

/**
 * Reads user lines from `input`, streams each reply to `output`. `/reset` clears the history, `/exit`
 * (or end of input) ends. Returns the conversation.
 */
export async function chatLoop(model: ChatModel, input: Readable, output: Writable, o: ChatLoopOptions = {}): Promise<ChatMessage[] & { interrupted?: boolean }> {
  const history: ChatMessage[] & { interrupted?: boolean } = o.system ? [{ role: 'system', content: o.system }] : [];
  const rl = readline.createInterface({ input, terminal: false });
  const ask = (): void => {
    if (o.prompt) output.write('you> ');
  };
  let reply: AbortController | null = null;
  const onSigint = (): void => {
    if (reply) reply.abort();
    else {
      history.interrupted = true;
      output.write('\n');
      rl.close();
    }
  };
  o.signals?.on('SIGINT', onSigint);
  ask();
  try {
    for await (const raw of rl) {
      const line = raw.trim();
      if (line === '/exit' || line === '/quit') break;
      if (line === '/reset') {
        history.splice(o.system ? 1 : 0);
        output.write('[history cleared]\n');
        ask();
        continue;
      }
      if (!line) {
        ask();
        continue;
      }
      history.push({ role: 'user', content: line });
      if (o.prompt) output.write('assistant> ');
      reply = new AbortController();
      let r: ChatModelResult;
      try {
        r = await model.complete(history, { maxTokens: o.maxTokens, temperature: o.temperature, seed: o.seed, signal: reply.signal, onText: (d) => output.write(d) });
      } finally {
        reply = null;
      }
      output.write(replyNote(r, o.maxTokens) + '\n');
      // A reply that never started (context full) is not kept, nor the line that asked for it: the history holds real turns only.
      if (r.contextFull && r.completionTokens === 0) history.pop();
      else history.push({ role: 'assistant', content: r.text });
      ask();
    }
  } finally {
    o.signals?.off('SIGINT', onSigint);
    rl.close();
  }
  return history;
}

interface ChatOpts {
  model: string;
  backend?: string;
  template?: string;
  system?: string;
  maxTokens: string;
  temperature: string;
  seed?: string;
  plugin?: string[];
}

export function registerChat(program: Command): void {
  program
    .command('chat')
    .description('Chat with a model in the terminal (streaming; /reset clears the history, /exit quits; Ctrl-C stops a reply, at the prompt it quits)')
    .requiredOption('--model <dir>', 'Hugging Face model directory')
    .option('--backend <name[:variant]>', BACKEND_OPTION_HELP, DEFAULT_BACKEND)
    .option('--template <name>', TEMPLATE_OPTION_HELP, 'auto')
    .option('--system <text>', 'system message')
    .option('--max-tokens <n>', 'new tokens per reply', String(SERVER_DEFAULTS.chatMaxTokens))
    .option('--temperature <t>', 'sampling temperature; 0 = greedy', String(AGENT_DEFAULTS.temperature))
    .option('--seed <n>', 'random seed for sampling')
    .option('--plugin <module...>', 'extra plugin modules (paths or package names) to load')
    .action(async (opts: ChatOpts) => {
      const maxTokens = intOption('--max-tokens', opts.maxTokens, 1);
      const temperature = numberOption('--temperature', opts.temperature, (x) => x >= 0, 'a number >= 0');
      const seed = intOption('--seed', opts.seed, 0);
      const container = await buildContainer(opts.plugin ?? []);
      const loaded = await loadChatModel(container, opts.model, { backend: opts.backend, template: opts.template });
      try {
        const model = new LocalChatModel(loaded.model, loaded.tokenizer, loaded.template, { id: loaded.id });
        const h = await chatLoop(model, process.stdin, process.stdout, { system: opts.system, maxTokens, temperature, seed, prompt: process.stdin.isTTY === true, signals: process });
        if (h.interrupted) noteInterrupted();
      } finally {
        await loaded.dispose();
      }
    });
}
