import type { Command } from 'commander';
import { HfCheckpoint, OutputError, UsageError, exportGguf, ggufTokenizerFromDir, ggufWarnings, isInside, type GgufOutType } from '@llama-pro/core';
import { humanBytes, progressReporter } from '../output';

const TYPES: readonly GgufOutType[] = ['f32', 'f16', 'bf16', 'q8_0'];

export function registerExportGguf(program: Command): void {
  program
    .command('export-gguf')
    .description("Export a Hugging Face LLaMA, Mistral or Qwen2 model directory to a GGUF v3 file (llama.cpp's tensor names and metadata; llama3 RoPE scaling as its rope_freqs tensor)")
    .argument('<model-dir>', 'Hugging Face model directory')
    .argument('<out>', 'output .gguf file (written atomically)')
    .option('--type <type>', 'weight type: f32, f16, bf16 or q8_0 (norms stay f32)', 'f32')
    .option('--no-tokenizer', "do not write the model's tokenizer.json as GGUF tokenizer metadata (an id-only placeholder vocabulary instead)")
    .option('--force', 'replace an existing output file')
    .option('--json', 'print a JSON summary')
    .action(async (modelDir: string, out: string, opts: { type: string; tokenizer: boolean; force?: boolean; json?: boolean }) => {
      if (!TYPES.includes(opts.type as GgufOutType)) throw new UsageError(`--type must be f32, f16, bf16 or q8_0, got "${opts.type}"`);
      if (isInside(out, modelDir)) throw new OutputError(`output ${out} must not be inside the model directory ${modelDir}`);
      const ckpt = await HfCheckpoint.open(modelDir);
      // The model's tokenizer.json as llama.cpp's tokenizer metadata; null without one (an id-only vocabulary).
      // Read before the progress bar starts, so a refused tokenizer is the only line printed.
      const tokenizer = opts.tokenizer ? await ggufTokenizerFromDir(modelDir, ckpt.config.vocabSize).catch(async (e: unknown) => {
        await ckpt.close();
        throw e;
      }) : null;
      const warnings = ggufWarnings(ckpt.config);
      for (const w of warnings) process.stderr.write(`llama-pro: warning: ${w}\n`);
      const progress = progressReporter();
      try {
        progress.start(ckpt.tensorNames().length, 'export-gguf');
        const res = await exportGguf(ckpt, out, { type: opts.type as GgufOutType, force: opts.force, tokenizer, onProgress: (done) => progress.update(done) });
        progress.stop();
        process.stdout.write(
          opts.json ? JSON.stringify({ out: res.file, bytes: res.bytes, tensors: res.tensors, type: res.type, tokenizer: tokenizer ? tokenizer.model : null, warnings }) + '\n'
            : `wrote ${res.file} (${humanBytes(res.bytes)}), ${res.tensors} tensors, ${res.type}, tokenizer ${tokenizer ? `${tokenizer.model}${tokenizer.pre ? ` (${tokenizer.pre})` : ''}` : 'none (id-only vocabulary)'}\n`,
        );
      } finally {
        progress.stop();
        await ckpt.close();
      }
    });
}
