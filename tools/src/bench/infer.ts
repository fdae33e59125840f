/**
 * Inference throughput against llama.cpp in the same run, on the same weights: shape S (dim 288, 8 layers,
 * 6 heads, hidden 768, vocab 32000, untied, f32, seeded random weights), written once as a Hugging Face directory and
 * exported once with export-gguf (f32). llama.cpp runs through node-llama-cpp's prebuilt CPU binary
 * (tools/llamacpp/runner.mjs; batch B = B sequences of one context, which node-llama-cpp evaluates together);
 * ours runs the path users run: the onnx backend loaded as `generate` loads it and core's `generate()`.
 *
 *   npm run bench:infer        (env: BENCH_THREADS=2, BENCH_DECODE=64, BENCH_REPEATS=3, BENCH_WARMUP=1)
 *
 * Every measurement is one fresh child process (so each engine's RSS is its own): load, BENCH_WARMUP untimed runs of
 * the same shape, then one timed run of B prompts of 256 tokens continued greedily by BENCH_DECODE tokens.
 * - prefill tok/s: B*256 / (start -> the last row's first generated token);
 * - decode tok/s:  B*(BENCH_DECODE-1) / (the last row's first token -> the last row's last token).
 * Runs alternate llama.cpp / onnx; each repeat's ratio (onnx / llama.cpp) is taken from its adjacent pair and the
 * table shows medians. Absolute numbers depend on the machine's load; the same-run ratio is the figure of merit.
 * Targets (issue 19): decode >= 1.3x llama.cpp at batch 1 and 8, prefill >= 1.0x at 1x256.
 */
import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { HfCheckpoint, exportGguf, generate } from '@llama-pro/core';
import { tinyRawConfig, writeRandomCheckpoint } from '@llama-pro/core/testing';
import { onnxBackend } from '@llama-pro/backend-onnx';

const PROMPT = 256;
const THREADS = Number(process.env['BENCH_THREADS'] ?? 2);
const DECODE = Number(process.env['BENCH_DECODE'] ?? 64);
const REPEATS = Number(process.env['BENCH_REPEATS'] ?? 3);
const WARMUP = Number(process.env['BENCH_WARMUP'] ?? 1);
const BATCHES = [1, 8];
const RUNNER = path.join(__dirname, '..', '..', 'llamacpp', 'runner.mjs');

interface Measure {
  prefillS: number;
  decodeS: number;
  rssLoadMB: number;
  maxRssMB: number;
}

/** B deterministic pseudo-random prompts of PROMPT ids in [3, vocab). */
function prompts(B: number, vocab: number): number[][] {
  let s = 12345;
  return Array.from({ length: B }, () =>
    Array.from({ length: PROMPT }, () => {
      s = (s * 1103515245 + 12345) % 2 ** 31;
      return 3 + (s % (vocab - 3));
    }),
  );
}

/** Child process: our onnx backend through core's generate (what `llama-pro generate` runs). */
async function onnxChild(dir: string, B: number): Promise<Measure> {
  const ckpt = await HfCheckpoint.open(dir);
  const model = await onnxBackend.load(ckpt, { threads: THREADS });
  const rssLoadMB = process.memoryUsage().rss / (1 << 20);
  const ps = prompts(B, model.config.vocabSize);
  let m: Measure | undefined;
  for (let r = 0; r <= WARMUP; r++) {
    const counts = new Array<number>(B).fill(0);
    let firstDone = 0;
    let lastDone = 0;
    const t0 = performance.now();
    await generate(model, ps, {
      maxNewTokens: DECODE,
      temperature: 0,
      onToken: (row) => {
        const now = performance.now();
        if (counts[row]++ === 0) firstDone = Math.max(firstDone, now);
        if (counts[row] === DECODE) lastDone = Math.max(lastDone, now);
      },
    });
    if (counts.some((c) => c !== DECODE)) throw new Error(`generate stopped early: ${counts.join(',')} of ${DECODE} tokens`);
    m = { prefillS: (firstDone - t0) / 1000, decodeS: (lastDone - firstDone) / 1000, rssLoadMB, maxRssMB: 0 };
  }
  await model.dispose();
  await ckpt.close();
  return { ...m!, maxRssMB: process.resourceUsage().maxRSS / 1024 };
}

async function child(args: string[]): Promise<Measure> {
  const { stdout } = await promisify(execFile)(process.execPath, args, { maxBuffer: 16 << 20 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Measure;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  if (process.argv[2] === '--onnx-child') {
    const m = await onnxChild(process.argv[3]!, Number(process.argv[4]));
    process.stdout.write(JSON.stringify(m) + '\n');
    return;
  }
  const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'bench-infer-'));
  try {
    const dir = path.join(work, 'model');
    const raw = tinyRawConfig({ hiddenSize: 288, layers: 8, heads: 6, kvHeads: 6, intermediateSize: 768, vocab: 32000, maxPositions: 1024, tie: false });
    const config = await writeRandomCheckpoint(dir, raw, { seed: 1, std: 0.05 });
    const gguf = path.join(work, 'model-f32.gguf');
    const ckpt = await HfCheckpoint.open(dir);
    await exportGguf(ckpt, gguf, { type: 'f32' });
    await ckpt.close();

    const loadBefore = os.loadavg();
    console.log(`bench:infer — shape S (dim 288, 8 layers, 6 heads, hidden 768, vocab 32000, f32), prompt ${PROMPT}, ${DECODE} new tokens, ${THREADS} threads each, ${REPEATS} alternating repeats (median), ${WARMUP} warm-up run(s) per process`);
    console.log(`${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), load average ${loadBefore.map((x) => x.toFixed(2)).join(' ')}`);
    type Pair = { cpp: Measure; ours: Measure };
    const runs = new Map<number, Pair[]>(BATCHES.map((b) => [b, []]));
    for (let r = 0; r < REPEATS; r++) {
      for (const B of BATCHES) {
        const job = { op: 'bench', model: gguf, threads: THREADS, prompts: prompts(B, config.vocabSize), maxNewTokens: DECODE, warmup: WARMUP };
        // Alternate which engine goes first, so neither always runs right after the other.
        const first = r % 2 === 0 ? 'cpp' : 'ours';
        const pair: Partial<Pair> = {};
        for (const who of first === 'cpp' ? (['cpp', 'ours'] as const) : (['ours', 'cpp'] as const)) {
          pair[who] = who === 'cpp' ? await child([RUNNER, JSON.stringify(job)]) : await child([__filename, '--onnx-child', dir, String(B)]);
        }
        runs.get(B)!.push(pair as Pair);
        const p = pair as Pair;
        console.log(`  repeat ${r + 1} batch ${B}: prefill ${((B * PROMPT) / p.cpp.prefillS).toFixed(0)} vs ${((B * PROMPT) / p.ours.prefillS).toFixed(0)} tok/s, decode ${((B * (DECODE - 1)) / p.cpp.decodeS).toFixed(0)} vs ${((B * (DECODE - 1)) / p.ours.decodeS).toFixed(0)} tok/s (llama.cpp vs onnx)`);
      }
    }

    const rows: string[][] = [['figure', 'llama.cpp tok/s', 'peak RSS', 'onnx tok/s', 'peak RSS', 'ratio', 'target', '']];
    const fig = (name: string, B: number, tokens: number, key: 'prefillS' | 'decodeS', target: number | null): void => {
      const ps = runs.get(B)!;
      const cpp = median(ps.map((p) => tokens / p.cpp[key]));
      const ours = median(ps.map((p) => tokens / p.ours[key]));
      const ratio = median(ps.map((p) => tokens / p.ours[key] / (tokens / p.cpp[key])));
      const rss = (m: Measure[]): string => `${median(m.map((x) => x.maxRssMB)).toFixed(0)} MB`;
      rows.push([
        name,
        cpp.toFixed(0),
        rss(ps.map((p) => p.cpp)),
        ours.toFixed(0),
        rss(ps.map((p) => p.ours)),
        `${ratio.toFixed(2)}x`,
        target === null ? '-' : `>= ${target.toFixed(1)}x`,
        target === null ? '' : ratio >= target ? 'met' : 'missed',
      ]);
    };
    fig(`decode  b1 (after ${PROMPT})`, 1, DECODE - 1, 'decodeS', 1.3);
    fig(`decode  b8 (after ${PROMPT})`, 8, 8 * (DECODE - 1), 'decodeS', 1.3);
    fig(`prefill 1x${PROMPT}`, 1, PROMPT, 'prefillS', 1.0);
    fig(`prefill 8x${PROMPT}`, 8, 8 * PROMPT, 'prefillS', null);
    const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
    for (const r of rows) console.log(r.map((x, c) => (c === 0 ? x.padEnd(widths[c]!) : x.padStart(widths[c]!))).join('  '));
    console.log(`ratio = onnx / llama.cpp (median of same-repeat ratios); peak RSS = the child process's maxRSS; load average after ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  } finally {
    await fsp.rm(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
