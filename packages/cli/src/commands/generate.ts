import type { Command } from 'commander';
import { HfCheckpoint, UsageError, generate, loadTokenizer, type GenerationResult, type TextTokenizer } from '@llama-pro/core';
import { buildContainer } from '../container';
import { BACKEND_OPTION_HELP, DEFAULT_BACKEND, backendLoadOptions, resolveBackend } from '../backend-option';
import { progressReporter } from '../output';

interface GenerateOpts {
  model: string;
  promptIds?: string;
  prompt?: string;
  maxNewTokens: string;
  temperature: string;
  topK?: string;
  topP?: string;
  seed?: string;
  stop?: string[];
  backend?: string;
  plugin?: string[];
  json?: boolean;
}

function num(name: string, v: string | undefined, check: (x: number) => boolean, want: string): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (v.trim() === '' || !Number.isFinite(x) || !check(x)) throw new UsageError(`${name} must be ${want}, got "${v}"`);
  return x;
}

function parseIds(s: string): number[] {
  const parts = s.split(/[\s,]+/).filter(Boolean);
  if (parts.length === 0) throw new UsageError('--prompt-ids is empty; give comma-separated token ids, e.g. 1,2,3');
  return parts.map((p) => {
    if (!/^\d+$/.test(p)) throw new UsageError(`--prompt-ids: "${p}" is not a token id (non-negative integer)`);
    return Number(p);
  });
}

export function registerGenerate(program: Command): void {
  program
    .command('generate')
    .description('Generate a continuation of a prompt (token ids, or text with the model tokenizer) with a KV cache')
    .requiredOption('--model <dir>', 'Hugging Face model directory')
    .option('--prompt-ids <ids>', 'prompt as comma-separated token ids, e.g. 1,2,3')
    .option('--prompt <text>', "prompt text (encoded with the model's tokenizer.json; BOS prepended when the model has one)")
    .option('--max-new-tokens <n>', 'maximum number of generated tokens', '64')
    .option('--temperature <t>', 'sampling temperature; 0 = greedy', '0')
    .option('--top-k <k>', 'sample among the k most likely tokens')
    .option('--top-p <p>', 'nucleus sampling: smallest set of tokens with cumulative probability >= p')
    .option('--seed <n>', 'random seed for sampling', '0')
    .option('--stop <string...>', 'stop strings (searched in the generated text only and cut from it; needs a tokenizer)')
    .option('--backend <name[:variant]>', BACKEND_OPTION_HELP, DEFAULT_BACKEND)
    .option('--plugin <module...>', 'extra plugin modules (paths or package names) to load')
    .option('--json', 'print one JSON object: {"tokens": [...]} (plus text, finishReason)')
    .action(async (opts: GenerateOpts) => {
      if ((opts.promptIds === undefined) === (opts.prompt === undefined)) throw new UsageError('give exactly one of --prompt-ids and --prompt');
      const maxNewTokens = num('--max-new-tokens', opts.maxNewTokens, (x) => Number.isInteger(x) && x >= 0, 'a non-negative integer')!;
      const temperature = num('--temperature', opts.temperature, (x) => x >= 0, 'a number >= 0');
      const topK = num('--top-k', opts.topK, (x) => Number.isInteger(x) && x >= 1, 'a positive integer');
      const topP = num('--top-p', opts.topP, (x) => x > 0 && x <= 1, 'a number in (0, 1]');
      const seed = num('--seed', opts.seed, (x) => Number.isInteger(x) && x >= 0, 'a non-negative integer');

      const container = await buildContainer(opts.plugin ?? []);
      const { backend, spec } = resolveBackend(container, opts.backend);
      const ckpt = await HfCheckpoint.open(opts.model);
      let tokenizer: TextTokenizer | undefined;
      try {
        if (opts.prompt !== undefined || opts.stop?.length) tokenizer = await loadTokenizer(opts.model);
        let prompt: number[];
        if (opts.prompt !== undefined) {
          const bos = ckpt.config.bosTokenId ?? tokenizer!.bosTokenId;
          prompt = [...(bos !== null ? [bos] : []), ...tokenizer!.encode(opts.prompt)];
          if (prompt.length === 0) throw new UsageError('--prompt encodes to no tokens and the model has no BOS token');
        } else prompt = parseIds(opts.promptIds!);

        const model = await backend.load(ckpt, backendLoadOptions(spec));
        const progress = progressReporter();
        let out: GenerationResult;
        try {
          progress.start(maxNewTokens, 'generate');
          let n = 0;
          [out] = (await generate(model, [prompt], {
            maxNewTokens,
            temperature,
            topK,
            topP,
            seed,
            eosTokenIds: ckpt.config.eosTokenIds,
            stopStrings: opts.stop,
            decode: tokenizer ? (ids) => tokenizer!.decode(ids, { skipSpecialTokens: true }) : undefined,
            onToken: () => progress.update(++n),
          })) as [GenerationResult];
        } finally {
          progress.stop();
          await model.dispose();
        }
        if (opts.json) {
          const obj: Record<string, unknown> = { tokens: out.tokens };
          if (out.text !== undefined) obj['text'] = out.text;
          obj['finishReason'] = out.finishReason;
          if (out.stop !== undefined) obj['stop'] = out.stop;
          process.stdout.write(JSON.stringify(obj) + '\n');
        } else if (opts.prompt !== undefined) process.stdout.write(out.text! + '\n');
        else process.stdout.write(out.tokens.join(',') + '\n');
      } finally {
        await ckpt.close();
      }
    });
}
