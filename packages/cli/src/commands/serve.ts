/**
 * `llama-pro serve`: an OpenAI-compatible HTTP server over one local model (see @llama-pro/agent).
 * Also holds the model loading shared by `chat` and `agent`.
 */
import * as path from 'node:path';
import type { Command } from 'commander';
import { HfCheckpoint, UsageError, loadTokenizerOrBytes, type CausalLM, type TextTokenizer } from '@llama-pro/core';
import { SERVER_DEFAULTS, agentRegistries, resolveChatTemplate, startServer, type ChatTemplate } from '@llama-pro/agent';
import type { DependencyContainer } from 'tsyringe';
import { buildContainer } from '../container';
import { BACKEND_OPTION_HELP, DEFAULT_BACKEND, backendLoadOptions, resolveBackend } from '../backend-option';

export interface LoadedChatModel {
  id: string;
  model: CausalLM;
  tokenizer: TextTokenizer;
  template: ChatTemplate;
  dispose(): Promise<void>;
}

export const TEMPLATE_OPTION_HELP = 'chat template: auto (the model\'s tokenizer_config.json chat_template, else plain), llama-2, chatml, plain';

/** Loads a model directory with a backend, its tokenizer and chat template. */
export async function loadChatModel(
  container: DependencyContainer,
  dir: string,
  o: { backend?: string; template?: string; name?: string; log?: (m: string) => void },
): Promise<LoadedChatModel> {
  const { backend, spec } = resolveBackend(container, o.backend);
  const template0 = o.template;
  const ckpt = await HfCheckpoint.open(dir);
  try {
    const tokenizer = await loadTokenizerOrBytes(dir, ckpt.config.vocabSize);
    const template = resolveChatTemplate(tokenizer, template0, agentRegistries(container).templates);
    const model = await backend.load(ckpt, backendLoadOptions(spec, o.log));
    return {
      id: o.name ?? path.basename(path.resolve(dir)),
      model,
      tokenizer,
      template,
      async dispose() {
        await model.dispose();
        await ckpt.close();
      },
    };
  } catch (e) {
    await ckpt.close();
    throw e;
  }
}

export function intOption(name: string, v: string | undefined, min: number): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (v.trim() === '' || !Number.isInteger(x) || x < min) throw new UsageError(`${name} must be an integer >= ${min}, got "${v}"`);
  return x;
}

export function numberOption(name: string, v: string | undefined, check: (x: number) => boolean, want: string): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (v.trim() === '' || !Number.isFinite(x) || !check(x)) throw new UsageError(`${name} must be ${want}, got "${v}"`);
  return x;
}

interface ServeOpts {
  model: string;
  port: string;
  host: string;
  backend?: string;
  template?: string;
  name?: string;
  maxBodyBytes?: string;
  maxPrompts?: string;
  maxRequestTokens?: string;
  maxBatch?: string;
  plugin?: string[];
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('Serve a model over an OpenAI-compatible HTTP API (/v1/models, /v1/completions, /v1/chat/completions)')
    .requiredOption('--model <dir>', 'Hugging Face model directory')
    .option('--port <n>', 'TCP port (0 = any free port)', String(SERVER_DEFAULTS.port))
    .option('--host <addr>', 'address to listen on', SERVER_DEFAULTS.host)
    .option('--backend <name[:variant]>', BACKEND_OPTION_HELP, DEFAULT_BACKEND)
    .option('--template <name>', TEMPLATE_OPTION_HELP, 'auto')
    .option('--name <id>', 'model id clients send in "model" (default: the directory name)')
    .option('--max-body-bytes <n>', 'largest accepted request body', String(SERVER_DEFAULTS.maxBodyBytes))
    .option('--max-prompts <n>', 'most completions (prompts × n) per request; more get 413', String(SERVER_DEFAULTS.maxPromptsPerRequest))
    .option('--max-request-tokens <n>', 'most tokens of work (prompt + max_tokens, summed over completions) per request; more get 400', String(SERVER_DEFAULTS.maxRequestTokens))
    .option('--max-batch <n>', 'most sequences decoded together (continuous batching: requests join and leave the running batch; more wait in FIFO order)', String(SERVER_DEFAULTS.maxBatchSize))
    .option('--plugin <module...>', 'extra plugin modules (paths or package names) to load')
    .action(async (opts: ServeOpts) => {
      const port = intOption('--port', opts.port, 0)!;
      if (port > 65535) throw new UsageError(`--port must be at most 65535, got ${port}`);
      const maxBodyBytes = intOption('--max-body-bytes', opts.maxBodyBytes, 1)!;
      const maxPromptsPerRequest = intOption('--max-prompts', opts.maxPrompts, 1)!;
      const maxRequestTokens = intOption('--max-request-tokens', opts.maxRequestTokens, 1)!;
      const maxBatchSize = intOption('--max-batch', opts.maxBatch, 1)!;
      const log = (m: string): void => void process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), message: m })}\n`);
      const container = await buildContainer(opts.plugin ?? []);
      const loaded = await loadChatModel(container, opts.model, { backend: opts.backend, template: opts.template, name: opts.name, log });
      try {
        const server = await startServer(loaded, { host: opts.host, port, maxBodyBytes, maxPromptsPerRequest, maxRequestTokens, maxBatchSize, log });
        log(`serving "${loaded.id}" (${loaded.model.device}, template ${loaded.template.name}) on ${server.url}/v1`);
        const signal = await new Promise<string>((resolve) => {
          const on = (s: string) => () => {
            process.off('SIGINT', onInt);
            process.off('SIGTERM', onTerm);
            resolve(s);
          };
          const onInt = on('SIGINT');
          const onTerm = on('SIGTERM');
          process.once('SIGINT', onInt);
          process.once('SIGTERM', onTerm);
        });
        log(`${signal}: finishing ${server.queue.size} request(s) for up to ${SERVER_DEFAULTS.shutdownGraceMs / 1000} s (the rest get 503), then shutting down`);
        await server.close();
        log('stopped');
      } finally {
        await loaded.dispose();
      }
    });
}
