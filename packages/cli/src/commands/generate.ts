import { promises as fsp } from 'node:fs';
import type { Command } from 'commander';
import { HfCheckpoint, UsageError, generate, loadTokenizer, type GenerationResult, type TextTokenizer } from '@llama-pro/core';
import { buildContainer } from '../container';
import { BACKEND_OPTION_HELP, DEFAULT_BACKEND, backendLoadOptions, resolveBackend } from '../backend-option';
import { progressReporter } from '../output';

interface GenerateOpts {
  model: string;
  promptIds: string[];
  prompt: string[];
  promptsFile?: string;
  batchSize: string;
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

const collect = (v: string, prev: string[]): string[] => [...prev, v];

/** A prompt as given: text (needs the tokenizer) or token ids. */
type PromptInput = { text: string } | { ids: number[] };

/**
 * `--prompts-file`: JSON Lines, one prompt per line: a JSON string (text, encoded with the tokenizer) or a JSON array
 * of token ids; blank lines are skipped.
 */
export async function readPromptsFile(file: string): Promise<PromptInput[]> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    throw new UsageError(`--prompts-file ${file} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); give a JSON Lines file`);
  }
  const out: PromptInput[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === '') return;
    const where = `--prompts-file ${file} line ${i + 1}`;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      throw new UsageError(`${where} is not JSON; write one prompt per line as a JSON string ("Once upon a time") or an array of token ids ([1, 2, 3])`);
    }
    if (typeof v === 'string') out.push({ text: v });
    else if (Array.isArray(v) && v.length > 0 && v.every((x) => Number.isInteger(x) && (x as number) >= 0)) out.push({ ids: v as number[] });
    else throw new UsageError(`${where} must be a JSON string (prompt text) or a non-empty array of non-negative integer token ids`);
  });
  if (out.length === 0) throw new UsageError(`--prompts-file ${file} has no prompts; write one JSON string or token-id array per line`);
  return out;
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
    .description('Generate continuations of one or more prompts (token ids, or text with the model tokenizer) with a KV cache, several prompts as left-padded batches')
    .requiredOption('--model <dir>', 'Hugging Face model directory')
    .option('--prompt-ids <ids>', 'prompt as comma-separated token ids, e.g. 1,2,3 (repeat for several prompts)', collect, [])
    .option('--prompt <text>', "prompt text (encoded with the model's tokenizer.json; BOS prepended when the model has one; repeat for several prompts)", collect, [])
    .option('--prompts-file <file>', 'prompts as JSON Lines: one JSON string (text) or token-id array per line')
    .option('--batch-size <n>', 'prompts decoded together as one left-padded batch (outputs keep the input order)', '8')
    .option('--max-new-tokens <n>', 'maximum number of generated tokens', '64')
    .option('--temperature <t>', 'sampling temperature; 0 = greedy', '0')
    .option('--top-k <k>', 'sample among the k most likely tokens')
    .option('--top-p <p>', 'nucleus sampling: smallest set of tokens with cumulative probability >= p')
    .option('--seed <n>', 'random seed for sampling', '0')
    .option('--stop <string...>', 'stop strings (searched in the generated text only and cut from it; needs a tokenizer)')
    .option('--backend <name[:variant]>', BACKEND_OPTION_HELP, DEFAULT_BACKEND)
    .option('--plugin <module...>', 'extra plugin modules (paths or package names) to load')
    .option('--json', 'print one JSON object per prompt, one per line, in input order: {"index", "tokens": [...], "text", "finishReason"}')
    .action(async (opts: GenerateOpts) => {
      const sources = [opts.promptIds.length > 0, opts.prompt.length > 0, opts.promptsFile !== undefined].filter(Boolean).length;
      if (sources !== 1) throw new UsageError('give prompts with exactly one of --prompt-ids, --prompt (each repeatable) and --prompts-file');
      const maxNewTokens = num('--max-new-tokens', opts.maxNewTokens, (x) => Number.isInteger(x) && x >= 0, 'a non-negative integer')!;
      const temperature = num('--temperature', opts.temperature, (x) => x >= 0, 'a number >= 0');
      const topK = num('--top-k', opts.topK, (x) => Number.isInteger(x) && x >= 1, 'a positive integer');
      const topP = num('--top-p', opts.topP, (x) => x > 0 && x <= 1, 'a number in (0, 1]');
      const seed = num('--seed', opts.seed, (x) => Number.isInteger(x) && x >= 0, 'a non-negative integer')!;
      const batchSize = num('--batch-size', opts.batchSize, (x) => Number.isInteger(x) && x >= 1, 'a positive integer')!;
      const inputs: PromptInput[] = opts.promptsFile !== undefined ? await readPromptsFile(opts.promptsFile) : opts.prompt.length > 0 ? opts.prompt.map((text) => ({ text })) : opts.promptIds.map((p) => ({ ids: parseIds(p) }));
      const anyText = inputs.some((p) => 'text' in p);

      const container = await buildContainer(opts.plugin ?? []);
      const { backend, spec } = resolveBackend(container, opts.backend);
      const ckpt = await HfCheckpoint.open(opts.model);
      let tokenizer: TextTokenizer | undefined;
      try {
        if (anyText || opts.stop?.length) tokenizer = await loadTokenizer(opts.model);
        const prompts = inputs.map((p, i): number[] => {
          if ('ids' in p) return p.ids;
          const bos = ckpt.config.bosTokenId ?? tokenizer!.bosTokenId;
          const ids = [...(bos !== null ? [bos] : []), ...tokenizer!.encode(p.text)];
          if (ids.length === 0) throw new UsageError(`prompt ${i + 1} encodes to no tokens and the model has no BOS token`);
          return ids;
        });

        const model = await backend.load(ckpt, backendLoadOptions(spec));
        const progress = progressReporter();
        const outs = new Array<GenerationResult>(prompts.length);
        try {
          progress.start(maxNewTokens * prompts.length, 'generate');
          let n = 0;
          // Batches of similar lengths waste less on left padding; prompt i samples with seed + i whatever its batch,
          // so the outputs do not depend on --batch-size.
          const order = prompts.map((_, i) => i).sort((a, b) => prompts[a]!.length - prompts[b]!.length || a - b);
          for (let s = 0; s < order.length; s += batchSize) {
            const part = order.slice(s, s + batchSize);
            const res = await generate(
              model,
              part.map((i) => prompts[i]!),
              {
                maxNewTokens,
                temperature,
                topK,
                topP,
                seeds: part.map((i) => seed + i),
                eosTokenIds: ckpt.config.eosTokenIds,
                stopStrings: opts.stop,
                decode: tokenizer ? (ids) => tokenizer!.decode(ids, { skipSpecialTokens: true }) : undefined,
                onToken: () => progress.update(++n),
              },
            );
            part.forEach((i, j) => (outs[i] = res[j]!));
          }
        } finally {
          progress.stop();
          await model.dispose();
        }
        for (const [index, out] of outs.entries()) {
          if (opts.json) {
            const obj: Record<string, unknown> = { index, tokens: out.tokens };
            if (out.text !== undefined) obj['text'] = out.text;
            obj['finishReason'] = out.finishReason;
            if (out.stop !== undefined) obj['stop'] = out.stop;
            process.stdout.write(JSON.stringify(obj) + '\n');
          } else if ('text' in inputs[index]!) process.stdout.write(out.text! + '\n');
          else process.stdout.write(out.tokens.join(',') + '\n');
        }
      } finally {
        await ckpt.close();
      }
    });
}
