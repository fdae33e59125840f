/**
 * Writes a synthetic LLaMA-2-7B-shaped checkpoint (hidden 4096, intermediate 11008, 32 heads, vocab
 * 32000, bf16, sharded, untied head) with as many layers as fit a byte budget. The values are a
 * repeated pseudo-random bf16 pattern: the point is the shape and size, not the function.
 *
 *   node tools/dist/bench/make-synthetic.js <out-dir> [--size 5.4GB] [--shard-size 2GB]
 *
 * Without --size it aims for ~5.4 GB (12 layers) when `df` shows room for the benchmark (about 5x
 * the checkpoint: input, expanded output, a dense copy of it and a `cp` of that), else the largest that fits, with a warning.
 */
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { Rng, expectedShape, expectedTensorNames, normalizeConfig, numel, parseByteSize, saveModelDir, type OutputTensor } from '@llama-pro/core';

export const LLAMA2_7B = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  hidden_size: 4096,
  intermediate_size: 11008,
  num_attention_heads: 32,
  num_key_value_heads: 32,
  vocab_size: 32000,
  max_position_embeddings: 4096,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  hidden_act: 'silu',
  tie_word_embeddings: false,
  bos_token_id: 1,
  eos_token_id: 2,
  torch_dtype: 'bfloat16',
};

/** bf16 bytes of one 7B layer and of the layer-independent tensors. */
export function sevenBSizes(): { perLayer: number; fixed: number } {
  const h = 4096;
  const i = 11008;
  const perLayer = 2 * (4 * h * h + 3 * h * i + 2 * h);
  const fixed = 2 * (2 * 32000 * h + h);
  return { perLayer, fixed };
}

export function layersForBytes(bytes: number): number {
  const { perLayer, fixed } = sevenBSizes();
  return Math.max(1, Math.round((bytes - fixed) / perLayer));
}

/** Free bytes on the filesystem holding `dir` (via `df`), or undefined when df is unavailable. */
export function freeBytes(dir: string): number | undefined {
  try {
    const out = execFileSync('df', ['-Pk', dir], { encoding: 'utf8' }).trim().split('\n');
    const kb = Number(out[out.length - 1]!.split(/\s+/)[3]);
    return Number.isFinite(kb) ? kb * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** A 271M-parameter LLaMA shape (hidden 1024, intermediate 2816, 16 heads, 16 layers, vocab 32000, untied): 542 MB in bf16. */
export const LLAMA_271M = { ...LLAMA2_7B, hidden_size: 1024, intermediate_size: 2816, num_attention_heads: 16, num_key_value_heads: 16, max_position_embeddings: 2048 };

export async function makeSynthetic(
  outDir: string,
  options: { bytes?: number; layers?: number; shardBytes?: number; warn?: (m: string) => void; config?: Record<string, unknown> } = {},
): Promise<{ layers: number; bytes: number }> {
  const layers = options.layers ?? layersForBytes(options.bytes ?? 5.4e9);
  const raw = { ...(options.config ?? LLAMA2_7B), num_hidden_layers: layers };
  const config = normalizeConfig(raw);
  // One 16 MiB pattern of small bf16 values, reused (at a moving offset) for every tensor.
  const pattern = Buffer.alloc(16 << 20);
  const rng = new Rng(1);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let k = 0; k < pattern.length; k += 2) {
    f[0] = 0.02 * rng.normal();
    pattern.writeUInt16LE(u[0]! >>> 16, k);
  }
  let shift = 0;
  const tensors: OutputTensor[] = expectedTensorNames(config).map((name) => {
    const shape = expectedShape(config, name)!;
    const bytes = numel(shape) * 2;
    const start = (shift = (shift + 4096) % (8 << 20));
    return {
      name,
      dtype: 'BF16' as const,
      shape,
      source: async function* () {
        let left = bytes;
        let off = start;
        while (left > 0) {
          const n = Math.min(left, pattern.length - off);
          yield pattern.subarray(off, off + n);
          left -= n;
          off = 0;
        }
      },
    };
  });
  const { totalBytes } = await saveModelDir(outDir, {
    config: raw,
    tensors,
    maxShardBytes: options.shardBytes ?? 2e9,
    extraFiles: { 'generation_config.json': JSON.stringify({ bos_token_id: 1, eos_token_id: 2 }, null, 2) + '\n' },
  });
  return { layers, bytes: totalBytes };
}

/** Default size: ~5.4 GB when the disk has room for ~5x that, else what fits (warning below 4 GB). */
export function chooseSize(dir: string, requested?: number, warn: (m: string) => void = (m) => process.stderr.write(`warning: ${m}\n`)): number {
  if (requested !== undefined) return requested;
  const want = 5.4e9;
  const free = freeBytes(dir);
  if (free === undefined || free >= 5 * want) return want;
  const fit = Math.floor(free / 5);
  warn(`only ${(free / 1e9).toFixed(1)} GB free next to ${dir}; writing a ${(fit / 1e9).toFixed(2)} GB checkpoint instead of ${(want / 1e9).toFixed(1)} GB${fit < 4e9 ? ' (below the 4 GB the benchmark target assumes)' : ''}`);
  return fit;
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const out = args[0];
  if (!out || out.startsWith('--')) {
    process.stderr.write('usage: make-synthetic <out-dir> [--size 5.4GB] [--shard-size 2GB]\n');
    process.exit(2);
  }
  const opt = (k: string) => {
    const i = args.indexOf(k);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const size = opt('--size');
  const shard = opt('--shard-size');
  const bytes = chooseSize(path.dirname(path.resolve(out)), size ? parseByteSize(size) : undefined);
  makeSynthetic(out, { bytes, shardBytes: shard ? parseByteSize(shard) : undefined }).then(
    (r) => process.stdout.write(`wrote ${out}: ${r.layers} layers, ${(r.bytes / 1e9).toFixed(2)} GB bf16\n`),
    (e: Error) => {
      process.stderr.write(`make-synthetic: ${e.message}\n`);
      process.exit(1);
    },
  );
}
