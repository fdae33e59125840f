/**
 * Prefill and KV-cache decode throughput of the onnx backend (and the tfjs backend side by side, when
 * `@llama-pro/backend-tfjs` exports `tfjsBackend`), on one seeded model: dim 288, 8 layers, 6 heads,
 * hidden 768, vocab 32000, batch 8, prompt 256.
 *
 *   npm run bench:onnx            (env: BENCH_THREADS, BENCH_DECODE_STEPS, BENCH_REPEATS)
 *
 * - prefill (last logits): one session step over the [8, 256] prompt, logits of the last position only
 *   (what generation does);
 * - prefill (all logits): `forward` with logits for every position (what scoring does);
 * - decode: one token per row per step on top of the 256-token cache.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HfCheckpoint, type CausalLM, type ModelBackend, type BackendLoadOptions } from '@llama-pro/core';
import { tinyRawConfig, writeRandomCheckpoint } from '@llama-pro/core/testing';
import { onnxBackend } from '@llama-pro/backend-onnx';

const B = 8;
const T = 256;
const THREADS = Number(process.env['BENCH_THREADS'] ?? os.availableParallelism());
const DECODE_STEPS = Number(process.env['BENCH_DECODE_STEPS'] ?? 32);
const REPEATS = Number(process.env['BENCH_REPEATS'] ?? 3);

interface Row {
  backend: string;
  device: string;
  prefillLast: number;
  prefillAll: number;
  decode: number;
}

function prompt(vocab: number): Int32Array {
  let s = 12345;
  return Int32Array.from({ length: B * T }, () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return 3 + (s % (vocab - 3));
  });
}

async function best(fn: () => Promise<void>): Promise<number> {
  let min = Infinity;
  for (let r = 0; r < REPEATS; r++) {
    const t0 = performance.now();
    await fn();
    min = Math.min(min, performance.now() - t0);
  }
  return min / 1000;
}

async function measure(name: string, model: CausalLM): Promise<Row> {
  const ids = prompt(model.config.vocabSize);
  const batch = { ids, batchSize: B, seqLen: T };
  // warm-up (allocations, kernel selection)
  const w = model.startSession(B);
  await w.step(batch);
  await w.step({ ids: ids.subarray(0, B), batchSize: B, seqLen: 1 });
  w.dispose();

  const prefillLast = await best(async () => {
    const s = model.startSession(B);
    await s.step(batch);
    s.dispose();
  });
  const prefillAll = await best(async () => {
    await model.forward(batch);
  });
  let decodeBest = Infinity;
  for (let r = 0; r < REPEATS; r++) {
    const s = model.startSession(B);
    await s.step(batch);
    const t0 = performance.now();
    for (let i = 0; i < DECODE_STEPS; i++) await s.step({ ids: ids.subarray(i * B, (i + 1) * B), batchSize: B, seqLen: 1 });
    decodeBest = Math.min(decodeBest, (performance.now() - t0) / 1000);
    s.dispose();
  }
  return { backend: name, device: model.device, prefillLast: (B * T) / prefillLast, prefillAll: (B * T) / prefillAll, decode: (B * DECODE_STEPS) / decodeBest };
}

async function main(): Promise<void> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bench-onnx-'));
  try {
    const raw = tinyRawConfig({ hiddenSize: 288, layers: 8, heads: 6, kvHeads: 6, intermediateSize: 768, vocab: 32000, maxPositions: 1024, tie: false });
    await writeRandomCheckpoint(path.join(dir, 'model'), raw, { seed: 1, std: 0.05 });
    const ckpt = await HfCheckpoint.open(path.join(dir, 'model'));
    const backends: [string, ModelBackend, BackendLoadOptions][] = [['onnx', onnxBackend, { threads: THREADS }]];
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const tfjs = require('@llama-pro/backend-tfjs') as { tfjsBackend?: ModelBackend };
      if (tfjs.tfjsBackend) backends.push(['tfjs', tfjs.tfjsBackend, { threads: THREADS }]);
      else console.log('tfjs: @llama-pro/backend-tfjs does not export tfjsBackend yet; onnx only');
    } catch (e) {
      console.log(`tfjs: not available (${(e as Error).message.split('\n')[0]}); onnx only`);
    }
    const load = os.loadavg().map((x) => x.toFixed(1)).join(' ');
    console.log(`machine: ${os.cpus().length} cpus, load average ${load} (timings on a busy machine are noisy; compare the ratios)`);
    console.log(`model: dim 288, 8 layers, 6 heads, hidden 768, vocab 32000 | batch ${B}, prompt ${T}, ${DECODE_STEPS} decode steps, best of ${REPEATS}, ${THREADS} threads`);
    const rows: Row[] = [];
    for (const [name, backend, opts] of backends) {
      const t0 = performance.now();
      const model = await backend.load(ckpt, opts);
      console.log(`${name}: loaded in ${((performance.now() - t0) / 1000).toFixed(2)} s (${model.device})`);
      try {
        rows.push(await measure(name, model));
      } finally {
        await model.dispose();
      }
    }
    await ckpt.close();
    const fmt = (n: number) => n.toFixed(0).padStart(10);
    console.log(`\n${'backend'.padEnd(12)}${'prefill(last) tok/s'.padStart(21)}${'prefill(all) tok/s'.padStart(20)}${'decode tok/s'.padStart(14)}`);
    for (const r of rows) console.log(`${r.device.padEnd(12)}${fmt(r.prefillLast).padStart(21)}${fmt(r.prefillAll).padStart(20)}${fmt(r.decode).padStart(14)}`);
    const base = rows.find((r) => r.backend === 'tfjs');
    const onnx = rows.find((r) => r.backend === 'onnx')!;
    if (base) {
      console.log(`\nonnx / tfjs: prefill(last) ${(onnx.prefillLast / base.prefillLast).toFixed(2)}x, prefill(all) ${(onnx.prefillAll / base.prefillAll).toFixed(2)}x, decode ${(onnx.decode / base.decode).toFixed(2)}x`);
    }
    console.log(JSON.stringify({ bench: 'onnx', batch: B, prompt: T, threads: THREADS, rows }));
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
