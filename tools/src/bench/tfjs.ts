/**
 * Forward, train-step and decode throughput of the tfjs backend on each available tfjs engine, side
 * by side, on one seeded model: dim 288, 8 layers, 6 heads, hidden 768, vocab 32000, sequence 256.
 * Ratios are against the cpu engine measured in the same run.
 *
 *   npm run bench:tfjs            (env: BENCH_BATCH (default 1), BENCH_SECONDS (per measurement, default 4),
 *                                  BENCH_VARIANTS (e.g. "wasm,cpu"))
 *
 * - forward: `forward` over [B, 256] with logits at every position (what scoring does);
 * - train step: LLaMA Pro new-block training of 2 of the 8 blocks (layers 3 and 7; everything else
 *   frozen): `lossAndGradients` over those blocks' tensors plus an SGD update through `setParameter`;
 * - decode: KV-cache steps of one token per row on top of a 32-token prompt (steps only).
 */
import { normalizeConfig, parseLayerTensorName, IGNORE_INDEX, type TrainableLM, type WeightSource } from '@llama-pro/core';
import { randomWeightSource, tinyRawConfig } from '@llama-pro/core/testing';
import { availableVariants, tfjsBackend } from '@llama-pro/backend-tfjs';

const B = Number(process.env['BENCH_BATCH'] ?? 1);
const T = 256;
const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 4);
const TRAIN_LAYERS = [3, 7];
const DECODE_PROMPT = 32;
const DECODE_STEPS = 16;

function source(): WeightSource {
  return randomWeightSource(normalizeConfig(tinyRawConfig({ hiddenSize: 288, intermediateSize: 768, layers: 8, heads: 6, kvHeads: 6, vocab: 32000, maxPositions: 1024, tie: true })), 0, 0.02);
}

function tokens(n: number, vocab: number, seed: number): Int32Array {
  let s = seed;
  return Int32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return 3 + (s % (vocab - 3));
  });
}

interface Seconds {
  wall: number;
  /** CPU time of this process (user + system): robust when other processes share the cores. */
  cpu: number;
}

/** Mean seconds per call: at least one timed call, more until SECONDS have passed (max 5). */
async function timeIt(fn: () => Promise<void>): Promise<Seconds> {
  let wall = 0;
  let cpu = 0;
  let n = 0;
  const start = performance.now();
  while (n === 0 || (performance.now() - start < SECONDS * 1000 && n < 5)) {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    await fn();
    const c = process.cpuUsage(c0);
    wall += (performance.now() - t0) / 1000;
    cpu += (c.user + c.system) / 1e6;
    n++;
  }
  return { wall: wall / n, cpu: cpu / n };
}

/** Tokens per wall-clock second and per CPU second. */
interface Rate {
  wall: number;
  cpu: number;
}

interface Row {
  variant: string;
  forward: Rate;
  train: Rate;
  decode: Rate;
}

const rate = (tokens: number, s: Seconds): Rate => ({ wall: tokens / s.wall, cpu: tokens / s.cpu });

async function measure(src: WeightSource, variant: string): Promise<Row> {
  const model: TrainableLM = await tfjsBackend.loadTrainable!(src, { variant, log: (m) => console.error(m) });
  try {
    const V = model.config.vocabSize;
    const ids = tokens(B * T, V, 7);
    const targets = Int32Array.from(ids, (_, i) => ((i + 1) % T === 0 ? IGNORE_INDEX : ids[i + 1]!));
    const trainable = model.parameterNames().filter((n) => TRAIN_LAYERS.includes(parseLayerTensorName(n)?.layer ?? -1));
    // warm-up on a short sequence (engine start, kernel setup)
    const w = 16;
    await model.forward({ ids: ids.subarray(0, w), batchSize: 1, seqLen: w });
    await model.lossAndGradients({ ids: ids.subarray(0, w), targets: targets.subarray(0, w), batchSize: 1, seqLen: w }, trainable);

    const forward = await timeIt(async () => {
      await model.forward({ ids, batchSize: B, seqLen: T });
    });
    const train = await timeIt(async () => {
      const { gradients } = await model.lossAndGradients({ ids, targets, batchSize: B, seqLen: T }, trainable);
      for (const [name, g] of gradients) {
        const p = await model.getParameter(name);
        for (let i = 0; i < p.length; i++) p[i] = p[i]! - 1e-3 * g[i]!;
        await model.setParameter(name, p);
      }
    });
    // decode: time of the one-token steps only (the 32-token prefill is not counted)
    const decodeTime: Seconds = { wall: 0, cpu: 0 };
    let decodeRuns = 0;
    await timeIt(async () => {
      const s = model.startSession(B);
      try {
        await s.step({ ids: tokens(B * DECODE_PROMPT, V, 3), batchSize: B, seqLen: DECODE_PROMPT });
        const t0 = performance.now();
        const c0 = process.cpuUsage();
        for (let i = 0; i < DECODE_STEPS; i++) await s.step({ ids: tokens(B, V, 100 + i), batchSize: B, seqLen: 1 });
        const c = process.cpuUsage(c0);
        decodeTime.wall += (performance.now() - t0) / 1000;
        decodeTime.cpu += (c.user + c.system) / 1e6;
        decodeRuns++;
      } finally {
        s.dispose();
      }
    });
    const decode = { wall: decodeTime.wall / decodeRuns, cpu: decodeTime.cpu / decodeRuns };
    return { variant: model.device, forward: rate(B * T, forward), train: rate(B * T, train), decode: rate(B * DECODE_STEPS, decode) };
  } finally {
    await model.dispose();
  }
}

async function main(): Promise<void> {
  const wanted = process.env['BENCH_VARIANTS']?.split(',').map((s) => s.trim());
  const variants = availableVariants().filter((v) => !wanted || wanted.includes(v));
  console.error(`tfjs bench: dim 288, 8 layers, 6 heads, hidden 768, vocab 32000, batch ${B} x seq ${T}; engines: ${variants.join(', ')}`);
  const src = source();
  const rows: Row[] = [];
  for (const v of variants) {
    const t0 = performance.now();
    rows.push(await measure(src, v));
    console.error(`  ${v}: done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const cpu = rows.find((r) => r.variant === 'tfjs:cpu');
  const fmt = (x: Rate, base: Rate | undefined, k: keyof Rate): string => `${x[k].toFixed(1)} tok/s${base ? ` (${(x[k] / base[k]).toFixed(2)}x cpu)` : ''}`;
  for (const k of ['wall', 'cpu'] as const) {
    console.log(k === 'wall' ? 'tokens per wall-clock second:' : 'tokens per CPU second of this process (less sensitive to other load on the machine):');
    const header = ['engine', 'forward', 'train step (2 new blocks)', 'decode (after 32-token prompt)'];
    const table = [header, ...rows.map((r) => [r.variant, fmt(r.forward, cpu?.forward, k), fmt(r.train, cpu?.train, k), fmt(r.decode, cpu?.decode, k)])];
    const widths = header.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
    for (const r of table) console.log('  ' + r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd());
  }
  console.log(JSON.stringify({ bench: 'tfjs', batch: B, seqLen: T, rows }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
