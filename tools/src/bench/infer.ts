/**
 * Inference throughput against llama.cpp in the same run, on the same weights: shape S (dim 288, 8 layers,
 * 6 heads, hidden 768, vocab 32000, untied, f32, seeded random weights), written once as a Hugging Face directory and
 * exported once with export-gguf (f32). llama.cpp runs through node-llama-cpp's prebuilt CPU binary
 * (tools/llamacpp/runner.mjs; batch B = B sequences of one context, which node-llama-cpp evaluates together);
 * ours runs the path users run: the onnx backend loaded as `generate` loads it and core's `generate()`.
 *
 *   npm run bench:infer        (env: BENCH_THREADS=2, BENCH_DECODE=64, BENCH_REPEATS=3, BENCH_WARMUP=1,
 *                               LLAMA_CPP_BIN=<dir with a native llama-batched-bench>, see below)
 *
 * Every measurement is one fresh child process (so each engine's RSS is its own; ours restarts itself with malloc on
 * huge pages first, as the llama-pro command does): load, BENCH_WARMUP untimed runs of
 * the same shape, then one timed run of B prompts of 256 tokens continued greedily by BENCH_DECODE tokens.
 * - prefill tok/s: B*256 / (start -> the last row's first generated token);
 * - decode tok/s:  B*(BENCH_DECODE-1) / (the last row's first token -> the last row's last token).
 * Runs alternate llama.cpp / onnx; each repeat's ratio (onnx / llama.cpp) is taken from its adjacent pair and the
 * table shows medians. Absolute numbers depend on the machine's load; the same-run ratio is the figure of merit.
 * Targets (issue 19): decode >= 1.3x llama.cpp at batch 1 and 8, prefill >= 1.0x at 1x256.
 *
 * node-llama-cpp's prebuilt binaries are slower than llama.cpp built for this CPU (measured 2026-12-02: 1.4-1.6x at b1
 * decode), so with LLAMA_CPP_BIN set (tools/llamacpp/build-native.sh builds the same release natively) every repeat
 * also runs llama.cpp's own `llama-batched-bench` on the same GGUF (-npp 256 -ntg BENCH_DECODE -npl 1,8, the same
 * threads) and a second table gives the ratios against it: its S_PP (B*256 / prefill time) and S_TG (B*ntg / decode
 * time) columns.
 */
import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { HfCheckpoint, exportGguf, generate, relaunchWithHugePages } from '@llama-pro/core';
import { tinyRawConfig, writeRandomCheckpoint } from '@llama-pro/core/testing';
import { onnxBackend } from '@llama-pro/backend-onnx';

const PROMPT = 256;
const THREADS = Number(process.env['BENCH_THREADS'] ?? 2);
const DECODE = Number(process.env['BENCH_DECODE'] ?? 64);
const REPEATS = Number(process.env['BENCH_REPEATS'] ?? 3);
const WARMUP = Number(process.env['BENCH_WARMUP'] ?? 1);
const BATCHES = [1, 8];
const RUNNER = path.join(__dirname, '..', '..', 'llamacpp', 'runner.mjs');
const NATIVE_BIN = process.env['LLAMA_CPP_BIN'];

/** Prefill and decode tok/s per batch from one `llama-batched-bench` run (its markdown table). */
async function nativeBench(gguf: string): Promise<Map<number, { prefill: number; decode: number }>> {
  const bin = path.join(NATIVE_BIN!, 'llama-batched-bench');
  const args = ['-m', gguf, '-c', '4096', '-b', '2048', '-ub', '512', '-npp', String(PROMPT), '-ntg', String(DECODE), '-npl', BATCHES.join(','), '-t', String(THREADS), '-tb', String(THREADS)];
  const { stdout } = await promisify(execFile)(bin, args, { maxBuffer: 16 << 20 });
  const out = new Map<number, { prefill: number; decode: number }>();
  // | PP | TG | B | N_KV | T_PP s | S_PP t/s | T_TG s | S_TG t/s | T s | S t/s |
  for (const line of stdout.split('\n')) {
    const cols = line.split('|').map((x) => x.trim()).filter((x) => x !== '');
    if (cols.length < 8 || !/^\d+$/.test(cols[0]!) || Number(cols[0]) !== PROMPT) continue;
    out.set(Number(cols[2]), { prefill: Number(cols[5]), decode: Number(cols[7]) });
  }
  for (const B of BATCHES) if (!out.has(B)) throw new Error(`${bin} printed no row for batch ${B}:\n${stdout}`);
  return out;
}

interface Measure {
  prefillS: number;
  decodeS: number;
  /** Process CPU time (user + sys) during decodeS. */
  cpuDecodeS: number;
  rssLoadMB: number;
  maxRssMB: number;
  /** llama.cpp only: its own llama_decode timer over prefill + decode, the threads it ran with, the ggml-cpu variant. */
  llamaS?: number;
  threads?: number;
  cpuBackend?: string | null;
  version?: string;
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
    let firstSeen = 0;
    let cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await generate(model, ps, {
      maxNewTokens: DECODE,
      temperature: 0,
      onToken: (row) => {
        const now = performance.now();
        if (counts[row]++ === 0) {
          firstDone = Math.max(firstDone, now);
          if (++firstSeen === B) cpu0 = process.cpuUsage();
        }
        if (counts[row] === DECODE) lastDone = Math.max(lastDone, now);
      },
    });
    const cpu = process.cpuUsage(cpu0);
    if (counts.some((c) => c !== DECODE)) throw new Error(`generate stopped early: ${counts.join(',')} of ${DECODE} tokens`);
    m = { prefillS: (firstDone - t0) / 1000, decodeS: (lastDone - firstDone) / 1000, cpuDecodeS: (cpu.user + cpu.system) / 1e6, rssLoadMB, maxRssMB: 0 };
  }
  await model.dispose();
  await ckpt.close();
  return { ...m!, maxRssMB: process.resourceUsage().maxRSS / 1024 };
}

/**
 * libuv's pool size for the llama.cpp child. node-llama-cpp runs each llama_decode and each sampling step as a
 * libuv pool job; with the default 4 pool threads its 2-thread llama_decode ran 3-4x slower by llama.cpp's own timer
 * (57-80 vs 238-267 tok/s at b1, 22 vs 7 ms CPU per step, alternating runs on a quiet machine; 1 pool thread also
 * matched a C program on the same binaries), so the peer runs with 1 — the fastest node-llama-cpp goes here.
 */
const PEER_ENV = { ...process.env, UV_THREADPOOL_SIZE: '1' };

async function child(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Measure> {
  const { stdout } = await promisify(execFile)(process.execPath, args, { maxBuffer: 16 << 20, env });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Measure;
}

/** Time node-llama-cpp spends outside llama_decode over the whole timed run (its scheduling, sampling, hops). */
const wrapperS = (m: Measure): number => m.prefillS + m.decodeS - (m.llamaS ?? m.prefillS + m.decodeS);
/**
 * Decode time inside llama_decode: llama.cpp's timer minus the prefill wall time. The prefill's own wrapper time is
 * counted as compute here, so this slightly flatters llama.cpp (a conservative reference for our ratio).
 */
const llamaDecodeS = (m: Measure): number => (m.llamaS ?? m.prefillS + m.decodeS) - m.prefillS;

/** The ratio, target and verdict cells of a table row. */
const ratioCells = (ratio: number, target: number | null): string[] => [
  `${ratio.toFixed(2)}x`,
  target === null ? '-' : `>= ${target.toFixed(1)}x`,
  target === null ? '' : ratio >= target ? 'met' : 'missed',
];

/** Prints rows as aligned columns (the first left-aligned, the rest right-aligned). */
function printTable(rows: readonly string[][]): void {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  for (const r of rows) console.log(r.map((x, c) => (c === 0 ? x.padEnd(widths[c]!) : x.padStart(widths[c]!))).join('  '));
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  if (process.argv[2] === '--onnx-child') {
    relaunchWithHugePages(); // as the llama-pro command does, first thing (LLAMA_PRO_HUGEPAGES=0 measures without)
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
    let maxLoad = loadBefore[0]!;
    if (NATIVE_BIN) await fsp.access(path.join(NATIVE_BIN, 'llama-batched-bench')).catch(() => {
      throw new Error(`LLAMA_CPP_BIN=${NATIVE_BIN} has no llama-batched-bench; build it with: bash tools/llamacpp/build-native.sh`);
    });
    const natives: { r: number; m: Map<number, { prefill: number; decode: number }> }[] = [];
    for (let r = 0; r < REPEATS; r++) {
      if (NATIVE_BIN) {
        const m = await nativeBench(gguf);
        natives.push({ r, m });
        console.log(`  repeat ${r + 1} native llama.cpp (llama-batched-bench, load ${os.loadavg()[0]!.toFixed(2)}): ${BATCHES.map((B) => `b${B} prefill ${m.get(B)!.prefill.toFixed(0)}, decode ${m.get(B)!.decode.toFixed(0)} tok/s`).join('; ')}`);
      }
      for (const B of BATCHES) {
        const load = os.loadavg()[0]!;
        maxLoad = Math.max(maxLoad, load);
        const job = { op: 'bench', model: gguf, threads: THREADS, prompts: prompts(B, config.vocabSize), maxNewTokens: DECODE, warmup: WARMUP };
        // Alternate which engine goes first, so neither always runs right after the other.
        const first = r % 2 === 0 ? 'cpp' : 'ours';
        const pair: Partial<Pair> = {};
        for (const who of first === 'cpp' ? (['cpp', 'ours'] as const) : (['ours', 'cpp'] as const)) {
          pair[who] = who === 'cpp' ? await child([RUNNER, JSON.stringify(job)], PEER_ENV) : await child([__filename, '--onnx-child', dir, String(B)]);
        }
        runs.get(B)!.push(pair as Pair);
        const p = pair as Pair;
        const steps = DECODE - 1;
        const cpuMs = (m: Measure): string => ((m.cpuDecodeS * 1000) / steps).toFixed(2);
        console.log(
          `  repeat ${r + 1} batch ${B} (load ${load.toFixed(2)}): prefill ${((B * PROMPT) / p.cpp.prefillS).toFixed(0)} vs ${((B * PROMPT) / p.ours.prefillS).toFixed(0)} tok/s, ` +
            `decode ${((B * steps) / p.cpp.decodeS).toFixed(0)} vs ${((B * steps) / p.ours.decodeS).toFixed(0)} tok/s (llama.cpp vs onnx); ` +
            `CPU ms per decode step ${cpuMs(p.cpp)} vs ${cpuMs(p.ours)}; llama.cpp inside llama_decode ${((B * steps) / llamaDecodeS(p.cpp)).toFixed(0)} tok/s, ` +
            `node-llama-cpp adds ${((wrapperS(p.cpp) * 1000) / steps).toFixed(2)} ms per step`,
        );
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
        ...ratioCells(ratio, target),
      ]);
    };
    const figDecodeOnly = (name: string, B: number): void => {
      const ps = runs.get(B)!;
      const tokens = B * (DECODE - 1);
      const cpp = median(ps.map((p) => tokens / llamaDecodeS(p.cpp)));
      const ours = median(ps.map((p) => tokens / p.ours.decodeS));
      const ratio = median(ps.map((p) => tokens / p.ours.decodeS / (tokens / llamaDecodeS(p.cpp))));
      rows.push([name, cpp.toFixed(0), '', ours.toFixed(0), '', ...ratioCells(ratio, null)]);
    };
    fig(`decode  b1 (after ${PROMPT})`, 1, DECODE - 1, 'decodeS', 1.3);
    fig(`decode  b8 (after ${PROMPT})`, 8, 8 * (DECODE - 1), 'decodeS', 1.3);
    fig(`prefill 1x${PROMPT}`, 1, PROMPT, 'prefillS', 1.0);
    fig(`prefill 8x${PROMPT}`, 8, 8 * PROMPT, 'prefillS', null);
    figDecodeOnly('decode  b1, llama_decode only', 1);
    figDecodeOnly('decode  b8, llama_decode only', 8);
    printTable(rows);
    console.log(`ratio = onnx / llama.cpp (median of same-repeat ratios); peak RSS = the child process's maxRSS; load average after ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
    const cpp0 = runs.get(1)![0]!.cpp;
    const overhead = (B: number): string => `${median(runs.get(B)!.map((p) => (wrapperS(p.cpp) * 1000) / (DECODE - 1))).toFixed(2)} ms`;
    console.log(
      `llama.cpp peer: node-llama-cpp ${cpp0.version ?? '?'}, ggml-cpu-${cpp0.cpuBackend ?? '?'}, ${cpp0.threads ?? '?'} threads; ` +
        `node-llama-cpp's JS scheduling and sampling add ${overhead(1)} (b1) / ${overhead(8)} (b8) per decode step over llama.cpp's own llama_decode timer ` +
        `("llama_decode only" rows: the peer without that overhead, i.e. llama.cpp proper's compute)`,
    );
    if (natives.length > 0) {
      // Same repeats: each native run sits next to that repeat's onnx runs.
      const nrows: string[][] = [['figure', 'native llama.cpp tok/s', 'onnx tok/s', 'ratio', 'target', '']];
      const nfig = (name: string, B: number, kind: 'prefill' | 'decode', target: number | null): void => {
        const tokens = kind === 'prefill' ? B * PROMPT : B * (DECODE - 1);
        const key = kind === 'prefill' ? 'prefillS' : 'decodeS';
        const ours = natives.map(({ r }) => tokens / runs.get(B)![r]!.ours[key]);
        const cpp = natives.map(({ m }) => m.get(B)![kind]);
        const ratio = median(ours.map((o, i) => o / cpp[i]!));
        nrows.push([name, median(cpp).toFixed(0), median(ours).toFixed(0), ...ratioCells(ratio, target)]);
      };
      nfig(`decode  b1 (after ${PROMPT})`, 1, 'decode', 1.3);
      nfig(`decode  b8 (after ${PROMPT})`, 8, 'decode', 1.3);
      nfig(`prefill 1x${PROMPT}`, 1, 'prefill', 1.0);
      nfig(`prefill 8x${PROMPT}`, 8, 'prefill', null);
      console.log(`against llama.cpp built natively for this CPU (${path.join(NATIVE_BIN!, 'llama-batched-bench')}, same GGUF and threads):`);
      printTable(nrows);
    } else {
      console.log(
        `NOTE: node-llama-cpp's prebuilt binaries decode 1.4-1.6x slower at b1 than the same llama.cpp release built natively here (measured by hand ` +
          '2026-12-02 with its llama-batched-bench: 247-292 tok/s b1 and 575-636 b8 after 256 tokens, prefill 6735-7522 tok/s at 1x256); for that peer ' +
          'in the same run: bash tools/llamacpp/build-native.sh, then LLAMA_CPP_BIN=<its output> npm run bench:infer.',
      );
    }
    if (maxLoad > os.cpus().length + 0.5) {
      console.log(
        `WARNING: load average reached ${maxLoad.toFixed(2)} on ${os.cpus().length} CPUs: the machine was not quiet. llama.cpp's threads meet at a spin barrier after ` +
          `every graph node (~300 per decode step), so its ${THREADS}-thread decode collapses when its threads cannot run at once; onnx degrades less. ` +
          `These ratios overstate onnx; rerun on a quiet machine.`,
      );
    }
  } finally {
    await fsp.rm(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
