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
 * - decode: one token per row per step on top of the 256-token cache, every timed step at a cache length
 *   not seen before (as in real generation);
 * - cold decode: the same, measured first thing after loading, in a fresh child process per
 *   configuration (what `llama-pro generate` sees).
 */
import { spawnSync } from 'node:child_process';
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
  /** Decode right after loading (first session), tok/s. */
  decodeCold: number;
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

/** Decode right after loading, in this process: the first generation of `llama-pro generate` or a fresh server. */
async function coldDecode(model: CausalLM): Promise<number> {
  const ids = prompt(model.config.vocabSize);
  const s = model.startSession(B);
  await s.step({ ids, batchSize: B, seqLen: T });
  const t0 = performance.now();
  for (let i = 0; i < DECODE_STEPS; i++) await s.step({ ids: ids.subarray(i * B, (i + 1) * B), batchSize: B, seqLen: 1 });
  const tokS = (B * DECODE_STEPS) / ((performance.now() - t0) / 1000);
  s.dispose();
  return tokS;
}

/** The configurations compared (name, backend, load options); tfjs when it is installed. */
function configurations(): [string, ModelBackend, BackendLoadOptions & { memArena?: boolean }][] {
  const list: [string, ModelBackend, BackendLoadOptions & { memArena?: boolean }][] = [
    ['onnx', onnxBackend, { threads: THREADS }],
    // Without ONNX Runtime's CPU memory arena (on by default), for comparison.
    ['onnx-arena', onnxBackend, { threads: THREADS, memArena: false }],
  ];
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const tfjs = require('@llama-pro/backend-tfjs') as { tfjsBackend?: ModelBackend };
    if (tfjs.tfjsBackend) list.push(['tfjs', tfjs.tfjsBackend, { threads: THREADS }]);
    else console.log('tfjs: @llama-pro/backend-tfjs does not export tfjsBackend yet; onnx only');
  } catch (e) {
    console.log(`tfjs: not available (${(e as Error).message.split('\n')[0]}); onnx only`);
  }
  return list;
}

async function measure(name: string, model: CausalLM, decodeCold: number): Promise<Row> {
  const ids = prompt(model.config.vocabSize);
  const batch = { ids, batchSize: B, seqLen: T };
  const one = (i: number) => ({ ids: ids.subarray((i % T) * B, ((i % T) + 1) * B), batchSize: B, seqLen: 1 });
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
  // Every timed decode step meets a cache length that no earlier step had, as in real generation: a
  // runtime that keeps per-shape state (ONNX Runtime's memory arena) would otherwise look faster on the
  // repeats than it ever is in use. Repeat r first runs r * DECODE_STEPS untimed steps to get there.
  let decodeBest = Infinity;
  for (let r = 0; r < REPEATS; r++) {
    const s = model.startSession(B);
    await s.step(batch);
    for (let i = 0; i < r * DECODE_STEPS; i++) await s.step(one(i));
    const t0 = performance.now();
    for (let i = 0; i < DECODE_STEPS; i++) await s.step(one(r * DECODE_STEPS + i));
    decodeBest = Math.min(decodeBest, (performance.now() - t0) / 1000);
    s.dispose();
  }
  return { backend: name, device: model.device, prefillLast: (B * T) / prefillLast, prefillAll: (B * T) / prefillAll, decode: (B * DECODE_STEPS) / decodeBest, decodeCold };
}

async function main(): Promise<void> {
  if (process.argv[2] === '--cold') {
    const [name, dir] = process.argv.slice(3);
    const [, backend, opts] = configurations().find(([n]) => n === name)!;
    const ckpt = await HfCheckpoint.open(dir!);
    const model = await backend.load(ckpt, opts);
    const decodeCold = await coldDecode(model);
    await model.dispose();
    await ckpt.close();
    console.log(JSON.stringify({ decodeCold }));
    return;
  }
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bench-onnx-'));
  try {
    const raw = tinyRawConfig({ hiddenSize: 288, layers: 8, heads: 6, kvHeads: 6, intermediateSize: 768, vocab: 32000, maxPositions: 1024, tie: false });
    await writeRandomCheckpoint(path.join(dir, 'model'), raw, { seed: 1, std: 0.05 });
    const ckpt = await HfCheckpoint.open(path.join(dir, 'model'));
    const backends = configurations();
    const load = os.loadavg().map((x) => x.toFixed(1)).join(' ');
    console.log(`machine: ${os.cpus().length} cpus, load average ${load} (timings on a busy machine are noisy; compare the ratios)`);
    console.log(`model: dim 288, 8 layers, 6 heads, hidden 768, vocab 32000 | batch ${B}, prompt ${T}, ${DECODE_STEPS} decode steps, best of ${REPEATS}, ${THREADS} threads`);
    const rows: Row[] = [];
    for (const [name, backend, opts] of backends) {
      // Cold decode in a fresh process per configuration (fresh process memory, nothing cached).
      const child = spawnSync(process.execPath, [__filename, '--cold', name, path.join(dir, 'model')], { encoding: 'utf8' });
      if (child.status !== 0) throw new Error(`cold decode for ${name} failed: ${child.stderr}`);
      const decodeCold = (JSON.parse(child.stdout.trim().split('\n').pop()!) as { decodeCold: number }).decodeCold;
      const t0 = performance.now();
      const model = await backend.load(ckpt, opts);
      console.log(`${name}: loaded in ${((performance.now() - t0) / 1000).toFixed(2)} s (${model.device})`);
      try {
        rows.push(await measure(name, model, decodeCold));
      } finally {
        await model.dispose();
      }
    }
    await ckpt.close();
    const fmt = (n: number) => n.toFixed(0).padStart(10);
    console.log(`\n${'backend'.padEnd(12)}${'prefill(last) tok/s'.padStart(21)}${'prefill(all) tok/s'.padStart(20)}${'decode tok/s'.padStart(14)}${'cold decode tok/s'.padStart(19)}`);
    for (const r of rows) console.log(`${r.backend.padEnd(12)}${fmt(r.prefillLast).padStart(21)}${fmt(r.prefillAll).padStart(20)}${fmt(r.decode).padStart(14)}${fmt(r.decodeCold).padStart(19)}`);
    const base = rows.find((r) => r.backend === 'tfjs');
    const onnx = rows.find((r) => r.backend === 'onnx')!;
    const arena = rows.find((r) => r.backend === 'onnx-arena');
    if (arena) console.log(`\nonnx / onnx-arena: prefill(last) ${(onnx.prefillLast / arena.prefillLast).toFixed(2)}x, prefill(all) ${(onnx.prefillAll / arena.prefillAll).toFixed(2)}x, decode ${(onnx.decode / arena.decode).toFixed(2)}x, cold decode ${(onnx.decodeCold / arena.decodeCold).toFixed(2)}x`);
    if (base) {
      console.log(`onnx / tfjs: prefill(last) ${(onnx.prefillLast / base.prefillLast).toFixed(2)}x, prefill(all) ${(onnx.prefillAll / base.prefillAll).toFixed(2)}x, decode ${(onnx.decode / base.decode).toFixed(2)}x, cold decode ${(onnx.decodeCold / base.decodeCold).toFixed(2)}x`);
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
