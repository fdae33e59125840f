/** `llama-pro chat`: a terminal chat with a local model, replies streamed as they are generated. */
import * as readline from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import type { Command } from 'commander';
import { AGENT_DEFAULTS, LocalChatModel, SERVER_DEFAULTS, type ChatMessage, type ChatModel } from '@llama-pro/agent';
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
}

/**
 * Reads user lines from `input`, streams each reply to `output`. `/reset` clears the history, `/exit`
 * (or end of input) ends. Returns the conversation.
 */
export async function chatLoop(model: ChatModel, input: Readable, output: Writable, o: ChatLoopOptions = {}): Promise<ChatMessage[]> {
  const history: ChatMessage[] = o.system ? [{ role: 'system', content: o.system }] : [];
  const rl = readline.createInterface({ input, terminal: false });
  const ask = (): void => {
    if (o.prompt) output.write('you> ');
  };
  ask();
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
    const r = await model.complete(history, { maxTokens: o.maxTokens, temperature: o.temperature, seed: o.seed, onText: (d) => output.write(d) });
    output.write(r.finishReason === 'length' ? ' [cut: token limit]\n' : '\n');
    history.push({ role: 'assistant', content: r.text });
    ask();
  }
  rl.close();
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
    .description('Chat with a model in the terminal (streaming; /reset clears the history, /exit quits)')
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
        await chatLoop(model, process.stdin, process.stdout, { system: opts.system, maxTokens, temperature, seed, prompt: process.stdin.isTTY === true });
      } finally {
        await loaded.dispose();
      }
    });
}
