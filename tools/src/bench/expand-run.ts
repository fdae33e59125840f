/**
 * Child process of `bench:expand`: expands <in> into <out> with `interleaved --groups <n>` (4th argument
 * `no-hash`: without hashing the base shards) and prints one
 * JSON line with its own peak RSS (process.resourceUsage().maxRSS, KiB; covers the hashing worker too).
 */
import { normalizeConfig, readConfigJson } from '@llama-pro/core';
import { expandModel, interleavedStrategy, zeroOutputInitializer } from '@llama-pro/expand';

async function run(): Promise<void> {
  const [input, output, groups, mode] = process.argv.slice(2);
  const config = normalizeConfig(await readConfigJson(input!));
  const r = await expandModel({ input: input!, output: output!, plan: interleavedStrategy.plan(config, { groups }), initializer: zeroOutputInitializer, hashBase: mode !== 'no-hash' });
  process.stdout.write(JSON.stringify({ maxRssKiB: process.resourceUsage().maxRSS, bytes: r.manifest.output.totalBytes, layers: r.manifest.plan.newLayerCount }) + '\n');
}
run().catch((e: Error) => {
  process.stderr.write(`expand-run: ${e.message}\n`);
  process.exit(1);
});
