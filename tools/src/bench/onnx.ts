/**
 * Prefill and KV-cache decode throughput of the onnx backend (and the tfjs backend side by side, when
 * `@llama-pro/backend-tfjs` exports `tfjsBackend`), on one seeded model: dim 288, 8 layers, 6 heads,
 * hidden 768, vocab 32000 (the S shape of issue 19), prompt 256.
 *
 *   npm run bench:onnx   (env: BENCH_THREADS, BENCH_DECODE_STEPS, BENCH_REPEATS, BENCH_ARENA=1, BENCH_TFJS=0,
 *                         BENCH_BASELINE=<dir of another build's @llama-pro/backend-onnx dist>)
 *
 * - prefill 1x256 / 8x256: one session step over the prompt, logits of the last position only (what
 *   generation does);
 * - score 8x256: `forward` with logits for every position (what scoring does);
 * - decode b1 / b8: one token per row per step on top of the 256-token cache, every timed step at a cache
 *   length not seen before (as in real generation);
 * - cold decode b8: the same, measured first thing after loading, in a fresh child process per
 *   configuration (what `llama-pro generate` sees); that process also reports its resident memory
 *   after loading, next to the bytes of float32 weights.
 *
 * Next to wall-clock tok/s, prefill 1x256 and decode b1/b8 are also given per CPU-second of the process (all
 * threads, `process.cpuUsage`): on a shared, oversubscribed machine wall time mostly measures the other
 * tenants, while CPU time still tracks the work done (spinning thread pools inflate it alike for every
 * configuration, so compare the ratios).
 *
 * BENCH_BASELINE adds the same measurements for another build (say, main's) in this run; the
 * configurations alternate round by round, so machine load hits both alike. BENCH_ARENA=1 adds onnx
 * without ONNX Runtime's CPU memory arena.
 */
import { spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HfCheckpoint, type CausalLM, type ModelBackend, type BackendLoadOptions } from '@llama-pro/core';
import { tinyRawConfig, writeRandomCheckpoint } from '@llama-pro/core/testing';
import { onnxBackend, exportWeightBytes } from '@llama-pro/backend-onnx';

const T = 256;
const THREADS = Number(process.env['BENCH_THREADS'] ?? os.availableParallelism());
const DECODE_STEPS = Number(process.env['BENCH_DECODE_STEPS'] ?? 32);
const REPEATS = Number(process.env['BENCH_REPEATS'] ?? 3);

interface Row {
  backend: string;
  device: string;
  prefill1: number;
  prefill8: number;
  score8: number;
  decode1: number;
  decode8: number;
  /** The same per CPU-second of the process (all threads). */
  prefill1Cpu: number;
  decode1Cpu: number;
  decode8Cpu: number;
  /** Decode b8 right after loading (first session), tok/s. */
  decodeCold: number;
  /** Resident memory of the fresh process after loading, and the float32 weight bytes. */
  rssMB: number;
  weightsMB: number;
}

function prompt(vocab: number, B: number): Int32Array {
  let s = 12345;
  return Int32Array.from({ length: B * T }, () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return 3 + (s % (vocab - 3));
  });
}

/** Decode right after loading, in this process: the first generation of `llama-pro generate` or a fresh server. */
async function coldDecode(model: CausalLM): Promise<number> {
  const B = 8;
  const ids = prompt(model.config.vocabSize, B);
  const s = model.startSession(B);
  await s.step({ ids, batchSize: B, seqLen: T });
  const t0 = performance.now();
  for (let i = 0; i < DECODE_STEPS; i++) await s.step({ ids: ids.subarray(i * B, (i + 1) * B), batchSize: B, seqLen: 1 });
  const tokS = (B * DECODE_STEPS) / ((performance.now() - t0) / 1000);
  s.dispose();
  return tokS;
}

type Options = BackendLoadOptions & { memArena?: boolean };

/** The configurations compared (name, backend, load options). */
function configurations(): [string, ModelBackend, Options][] {
  const list: [string, ModelBackend, Options][] = [['onnx', onnxBackend, { threads: THREADS }]];
  const baseline = process.env['BENCH_BASELINE'];
  if (baseline) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const other = require(path.resolve(baseline)) as { onnxBackend: ModelBackend };
    list.push(['onnx-baseline', other.onnxBackend, { threads: THREADS }]);
  }
  // Without ONNX Runtime's CPU memory arena (on by default), for comparison.
  if (process.env['BENCH_ARENA'] === '1') list.push(['onnx-arena', onnxBackend, { threads: THREADS, memArena: false }]);
  if (process.env['BENCH_TFJS'] === '0') return list;
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

/** CPU seconds of this process so far (user + system, all threads). */
function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** Wall and CPU seconds of the fastest of REPEATS runs (each minimum on its own). */
async function best(fn: () => Promise<void>): Promise<{ wall: number; cpu: number }> {
  let wall = Infinity;
  let cpu = Infinity;
  for (let r = 0; r < REPEATS; r++) {
    const t0 = performance.now();
    const c0 = cpuSeconds();
    await fn();
    wall = Math.min(wall, (performance.now() - t0) / 1000);
    cpu = Math.min(cpu, cpuSeconds() - c0);
  }
  return { wall, cpu };
}

/** Tokens per wall second and per CPU second. */
async function prefill(model: CausalLM, B: number): Promise<[number, number]> {
  const ids = prompt(model.config.vocabSize, B);
  const { wall, cpu } = await best(async () => {
    const s = model.startSession(B);
    await s.step({ ids, batchSize: B, seqLen: T });
    s.dispose();
  });
  return [(B * T) / wall, (B * T) / cpu];
}

/**
 * Every timed decode step meets a cache length that no earlier step had, as in real generation: a
 * runtime that keeps per-shape state (ONNX Runtime's memory arena) would otherwise look faster on the
 * repeats than it ever is in use. Repeat r first runs r * DECODE_STEPS untimed steps to get there.
 */
async function decode(model: CausalLM, B: number): Promise<[number, number]> {
  const ids = prompt(model.config.vocabSize, B);
  const one = (i: number) => ({ ids: ids.subarray((i % T) * B, ((i % T) + 1) * B), batchSize: B, seqLen: 1 });
  let bestSec = Infinity;
  let bestCpu = Infinity;
  for (let r = 0; r < REPEATS; r++) {
    const s = model.startSession(B);
    await s.step({ ids, batchSize: B, seqLen: T });
    for (let i = 0; i < r * DECODE_STEPS; i++) await s.step(one(i));
    const t0 = performance.now();
    const c0 = cpuSeconds();
    for (let i = 0; i < DECODE_STEPS; i++) await s.step(one(r * DECODE_STEPS + i));
    bestSec = Math.min(bestSec, (performance.now() - t0) / 1000);
    bestCpu = Math.min(bestCpu, cpuSeconds() - c0);
    s.dispose();
  }
  return [(B * DECODE_STEPS) / bestSec, (B * DECODE_STEPS) / bestCpu];
}

type Measured = Pick<Row, 'prefill1' | 'prefill8' | 'score8' | 'decode1' | 'decode8' | 'prefill1Cpu' | 'decode1Cpu' | 'decode8Cpu'>;

async function measure(model: CausalLM): Promise<Measured> {
  // warm-up (allocations, kernel selection)
  for (const B of [1, 8]) {
    const ids = prompt(model.config.vocabSize, B);
    const w = model.startSession(B);
    await w.step({ ids, batchSize: B, seqLen: T });
    await w.step({ ids: ids.subarray(0, B), batchSize: B, seqLen: 1 });
    w.dispose();
  }
  const ids8 = prompt(model.config.vocabSize, 8);
  const score8 = (8 * T) / (await best(() => model.forward({ ids: ids8, batchSize: 8, seqLen: T }).then(() => undefined))).wall;
  const [prefill1, prefill1Cpu] = await prefill(model, 1);
  const [prefill8] = await prefill(model, 8);
  const [decode1, decode1Cpu] = await decode(model, 1);
  const [decode8, decode8Cpu] = await decode(model, 8);
  return { prefill1, prefill8, score8, decode1, decode8, prefill1Cpu, decode1Cpu, decode8Cpu };
}

async function main(): Promise<void> {
  if (process.argv[2] === '--cold') {
    const [name, dir] = process.argv.slice(3);
    const [, backend, opts] = configurations().find(([n]) => n === name)!;
    const ckpt = await HfCheckpoint.open(dir!);
    const model = await backend.load(ckpt, opts);
    (globalThis as { gc?: () => void }).gc?.();
    const rss = process.memoryUsage().rss;
    const decodeCold = await coldDecode(model);
    await model.dispose();
    await ckpt.close();
    console.log(JSON.stringify({ decodeCold, rss }));
    return;
  }
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bench-onnx-'));
  try {
    const raw = tinyRawConfig({ hiddenSize: 288, layers: 8, heads: 6, kvHeads: 6, intermediateSize: 768, vocab: 32000, maxPositions: 1024, tie: false });
    await writeRandomCheckpoint(path.join(dir, 'model'), raw, { seed: 1, std: 0.05 });
    const ckpt = await HfCheckpoint.open(path.join(dir, 'model'));
    const weightsMB = exportWeightBytes(ckpt.config) / 2 ** 20;
    const configs = configurations();
    const load = () =>
      os
        .loadavg()
        .map((x) => x.toFixed(1))
        .join(' ');
    console.log(`machine: ${os.cpus().length} cpus, load average ${load()} (timings on a busy machine are noisy; compare the ratios)`);
    console.log(`model: dim 288, 8 layers, 6 heads, hidden 768, vocab 32000 (${weightsMB.toFixed(1)} MiB f32) | prompt ${T}, ${DECODE_STEPS} decode steps, best of ${REPEATS}, ${THREADS} threads`);
    const rows = new Map<string, Row>();
    // Round-robin: every configuration measured once per round, best of the rounds kept.
    for (let round = 0; round < 2; round++) {
      for (const [name, backend, opts] of configs) {
        const child = spawnSync(process.execPath, ['--expose-gc', __filename, '--cold', name, path.join(dir, 'model')], { encoding: 'utf8' });
        if (child.status !== 0) throw new Error(`cold decode for ${name} failed: ${child.stderr}`);
        const cold = JSON.parse(child.stdout.trim().split('\n').pop()!) as { decodeCold: number; rss: number };
        const model = await backend.load(ckpt, opts);
        try {
          const m = await measure(model);
          const prev = rows.get(name);
          const row: Row = { backend: name, device: model.device, ...m, decodeCold: cold.decodeCold, rssMB: cold.rss / 2 ** 20, weightsMB };
          if (prev) for (const k of ['prefill1', 'prefill8', 'score8', 'decode1', 'decode8', 'decodeCold', 'prefill1Cpu', 'decode1Cpu', 'decode8Cpu'] as const) row[k] = Math.max(row[k], prev[k]);
          if (prev) row.rssMB = Math.min(row.rssMB, prev.rssMB);
          rows.set(name, row);
        } finally {
          await model.dispose();
        }
        console.log(`round ${round + 1}: ${name} done (load average ${load()})`);
      }
    }
    await ckpt.close();
    const fmt = (n: number) => n.toFixed(0).padStart(10);
    const cols = ['prefill 1x256', 'prefill 8x256', 'score 8x256', 'decode b1', 'decode b8', 'cold dec b8', 'RSS MiB'];
    console.log(`\n${'backend (tok/s)'.padEnd(16)}${cols.map((c) => c.padStart(15)).join('')}`);
    for (const r of rows.values()) {
      console.log(`${r.backend.padEnd(16)}${[r.prefill1, r.prefill8, r.score8, r.decode1, r.decode8, r.decodeCold, r.rssMB].map((n) => fmt(n).padStart(15)).join('')}`);
    }
    console.log(`\n${'per CPU-second'.padEnd(16)}${['prefill 1x256', 'decode b1', 'decode b8'].map((c) => c.padStart(15)).join('')}`);
    for (const r of rows.values()) console.log(`${r.backend.padEnd(16)}${[r.prefill1Cpu, r.decode1Cpu, r.decode8Cpu].map((n) => fmt(n).padStart(15)).join('')}`);
    const onnx = rows.get('onnx')!;
    for (const other of ['onnx-baseline', 'onnx-arena', 'tfjs']) {
      const b = rows.get(other);
      if (!b) continue;
      const ratio = (k: keyof Row) => ((onnx[k] as number) / (b[k] as number)).toFixed(2);
      console.log(`onnx / ${other}: prefill 1x256 ${ratio('prefill1')}x, prefill 8x256 ${ratio('prefill8')}x, score ${ratio('score8')}x, decode b1 ${ratio('decode1')}x, decode b8 ${ratio('decode8')}x, cold decode ${ratio('decodeCold')}x; per CPU-second: prefill 1x256 ${ratio('prefill1Cpu')}x, decode b1 ${ratio('decode1Cpu')}x, decode b8 ${ratio('decode8Cpu')}x`);
    }
    console.log(`load average at the end: ${load()}`);
    console.log(JSON.stringify({ bench: 'onnx', prompt: T, threads: THREADS, rows: [...rows.values()] }));
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
