/**
 * Child process of `bench:expand`: expands <in> into <out> with `interleaved --groups <n>`. Mode (4th
 * argument): `hash` (the default run), `no-hash` (without hashing the base shards), `user` (tensor
 * bytes through user space instead of the kernel), `verify` (hashing plus the streaming verifier in plain
 * JavaScript) or `verify-onnx` (the same on onnxruntime's matmul kernel, as the CLI's --verify). Prints one JSON line with its own peak RSS
 * (process.resourceUsage().maxRSS, KiB; covers the hashing worker too) and how bytes were copied.
 */
import { normalizeConfig, readConfigJson } from '@llama-pro/core';
import { expandModel, interleavedStrategy, zeroOutputInitializer } from '@llama-pro/expand';
import { createOnnxMatmulKernel } from '@llama-pro/backend-onnx';

async function run(): Promise<void> {
  const [input, output, groups, mode = 'hash'] = process.argv.slice(2);
  const config = normalizeConfig(await readConfigJson(input!));
  const kernel = mode === 'verify-onnx' ? await createOnnxMatmulKernel() : undefined;
  const r = await expandModel({
    input: input!,
    output: output!,
    plan: interleavedStrategy.plan(config, { groups }),
    initializer: zeroOutputInitializer,
    hashBase: mode !== 'no-hash',
    ...(mode === 'verify' ? { verify: {} } : kernel ? { verify: { kernel } } : {}),
    writer: {
      nativeCopy: mode !== 'user',
      ...(process.env.LLAMA_PRO_BENCH_WRITEBACK ? { writebackBytes: Number(process.env.LLAMA_PRO_BENCH_WRITEBACK) } : {}),
    },
  });
  await kernel?.dispose();
  process.stdout.write(JSON.stringify({ maxRssKiB: process.resourceUsage().maxRSS, bytes: r.manifest.output.totalBytes, layers: r.manifest.plan.newLayerCount, copy: r.copy, ...(r.verification ? { maxAbsDiff: r.verification.maxAbsDiff } : {}) }) + '\n');
}
run().catch((e: Error) => {
  process.stderr.write(`expand-run: ${e.message}\n`);
  process.exit(1);
});
