import type { Command } from 'commander';
import { convertLlama2c, exitCleanlyOnInterrupt, parseByteSize, parseFloatDType, isInside } from '@llama-pro/core';
import { OutputError } from '@llama-pro/core';
import { humanBytes, progressReporter } from '../output';

export function registerConvert(program: Command): void {
  program
    .command('convert')
    .description('Convert a llama2.c checkpoint (legacy, v1 or v2/Q8_0) into a Hugging Face model directory')
    .argument('<checkpoint>', 'llama2.c .bin file')
    .argument('<out-dir>', 'output directory (written atomically)')
    .option('--dtype <dtype>', 'output dtype: float32, float16 or bfloat16', 'float32')
    .option('--shard-size <size>', 'maximum shard size, e.g. 5GB', '5GB')
    .option('--tokenizer <file>', "the model's llama2.c tokenizer (e.g. tok512.bin, written by llama2.c tokenizer.py export()): also write tokenizer.json + tokenizer_config.json")
    .option('--force', 'replace an existing output directory')
    .option('--json', 'print a JSON summary')
    .action(async (checkpoint: string, outDir: string, opts: { dtype: string; shardSize: string; force?: boolean; json?: boolean; tokenizer?: string }) => {
      exitCleanlyOnInterrupt();
      if (isInside(outDir, checkpoint)) throw new OutputError('output directory must not be the input file');
      const progress = progressReporter();
      let started = false;
      const { header, shards } = await convertLlama2c(checkpoint, outDir, {
        dtype: parseFloatDType(opts.dtype),
        maxShardBytes: parseByteSize(opts.shardSize),
        force: opts.force,
        ...(opts.tokenizer ? { tokenizer: opts.tokenizer } : {}),
        onProgress: (done, total) => {
          if (!started) {
            progress.start(total, 'convert');
            started = true;
          }
          progress.update(done);
        },
      });
      if (started) progress.stop();
      const summary = { out: outDir, layers: header.nLayers, heads: header.nHeads, kvHeads: header.nKvHeads, vocabSize: header.vocabSize, tied: header.sharedClassifier, shards: shards.map((s) => s.file), bytes: shards.reduce((a, s) => a + s.bytes, 0), tokenizer: opts.tokenizer ? 'tokenizer.json' : null };
      process.stdout.write(opts.json ? JSON.stringify(summary) + '\n' : `wrote ${outDir}: ${summary.layers} layers, ${summary.shards.length} shard(s), ${humanBytes(summary.bytes)} of weights${opts.tokenizer ? ', tokenizer.json' : ' (no tokenizer: pass --tokenizer tok.bin to add one)'}\n`);
    });
}
