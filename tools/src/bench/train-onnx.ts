/**
 * New-block training throughput of `llama-pro train` itself: the CLI's train command, run in process
 * through `@llama-pro/cli`'s `main` (the function `bin.js` calls), so what is timed is exactly what a user
 * runs: experiment parsing, data preparation, the train package's Trainer (one micro-batch → the onnx
 * training graph → fused clip + AdamW over the model's resident parameter arrays), metrics, progress and
 * checkpoints. Same run, same entry point, `--backend tfjs:<variant>` gives the ratio. Like bin.js, the bench
 * first restarts itself with malloc on transparent huge pages where that applies (relaunchWithHugePages;
 * LLAMA_PRO_HUGEPAGES=0 measures without), so the process runs as `llama-pro train` does.
 *
 * Shape: dim 288, 8 layers, 6 heads, hidden 768, vocab 32000 (untied head), sequence 256, batch 8; the
 * tensors of layers 3 and 7 train (the new blocks of an interleaved 6 → 8 expansion; selected with
 * `--policy layers --layers 3,7`, which picks the same tensors as new-blocks on such a model), the rest
 * is frozen. Random weights (std 0.02) and random token ids.
 *
 *   npm run bench:train-onnx   (env: BENCH_STEPS (timed onnx steps, default 6), BENCH_WARMUP (untimed
 *                               onnx steps before them, default 3), BENCH_TFJS (tfjs variant, default
 *                               "wasm"; "none" skips it),
 *                               BENCH_TFJS_BATCH (default 1: tfjs wasm needs ~15 s per 2048 tokens),
 *                               BENCH_TFJS_STEPS (timed tfjs steps after 1 warm-up, default 2))
 *
 * Tokens/s come from the run's own metrics.jsonl: tokens of the timed steps over the `elapsed_s` between
 * the last warm-up step's record and the last step's record (whole loop iterations: data, graph, AdamW,
 * logging). What is timed is the steady state, which is what a training run of thousands of steps sees:
 * the first steps of a process are slower (graph build and session creation in step 1, then ORT's arena
 * growing and first-touch page faults of its buffers), and step 3 can still be several percent below the
 * later ones (main 2a1fbcc: 2734 tok/s at step 3 vs ~2960 from step 6 on; not every run shows it), so 3
 * warm-up steps are left untimed and 6 are timed (every step's own rate is printed too). For scale, the same run also times the onnx training graph alone (loss + gradients of the same
 * tensors, no optimizer, no loop: the bound any trainer on this graph stays under). GFLOP/s counts the matmul work the step needs: the forward pass (attention scores over full
 * T×T blocks, as computed), activation gradients from the head down to the lowest trainable layer, and
 * weight gradients of the trainable matrices only.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HfCheckpoint, Rng, hugePagesStatus, relaunchWithHugePages, type LlamaConfig, type TrainingBatch } from '@llama-pro/core';
import { tinyRawConfig, writeRandomCheckpoint } from '@llama-pro/core/testing';
import { loadOnnxTrainable, measureMatmulGflops } from '@llama-pro/backend-onnx';
import { main } from '@llama-pro/cli';
import { readMetrics } from '@llama-pro/train';

const B = 8;
const T = 256;
const WARMUP = Number(process.env['BENCH_WARMUP'] ?? 3);
const STEPS = Number(process.env['BENCH_STEPS'] ?? 6);
const TFJS = process.env['BENCH_TFJS'] ?? 'wasm';
const TFJS_B = Number(process.env['BENCH_TFJS_BATCH'] ?? 1);
const TFJS_STEPS = Number(process.env['BENCH_TFJS_STEPS'] ?? 2);
const NEW_LAYERS = [3, 7];
/** The tokens/s the separate OnnxTrainer measured on this machine class before the trainers were merged (issue 15). */
const TARGET = 3155;

/** Matmul FLOPs of one training step per token (see the header). */
function flopsPerToken(c: LlamaConfig, trainableLayers: readonly number[]): number {
  const D = c.hiddenSize;
  const qd = c.numAttentionHeads * c.headDim;
  const kvd = c.numKeyValueHeads * c.headDim;
  const I = c.intermediateSize;
  const qkv = 2 * D * (qd + 2 * kvd);
  const o = 2 * qd * D;
  const mlp = 2 * 3 * D * I;
  const attn = 2 * 2 * T * qd; // QK^T and PV per query token, full T×T blocks
  const head = 2 * D * c.vocabSize;
  const lowest = Math.min(...trainableLayers);
  let f = head + c.numHiddenLayers * (qkv + o + mlp + attn); // forward
  f += head; // dX of the head
  for (let l = lowest; l < c.numHiddenLayers; l++) {
    f += o + mlp + 2 * attn + (l > lowest ? qkv : 0); // activation gradients
    if (trainableLayers.includes(l)) f += qkv + o + mlp; // weight gradients
  }
  return f;
}

function randomBatch(c: LlamaConfig, b: number, seed: number): TrainingBatch {
  const rng = new Rng(seed);
  const ids = Int32Array.from({ length: b * (T + 1) }, () => 3 + rng.int(c.vocabSize - 3));
  const x = new Int32Array(b * T);
  const y = new Int32Array(b * T);
  for (let r = 0; r < b; r++) {
    x.set(ids.subarray(r * (T + 1), r * (T + 1) + T), r * T);
    y.set(ids.subarray(r * (T + 1) + 1, (r + 1) * (T + 1)), r * T);
  }
  return { ids: x, targets: y, batchSize: b, seqLen: T };
}

/**
 * The training graph alone (loss + gradients of the same tensors, no optimizer, no loop): the upper
 * bound of any trainer on this graph, so the ratio shows what the llama-pro train path costs on top.
 */
async function graphAlone(modelDir: string, c: LlamaConfig, trainable: readonly string[]): Promise<number> {
  const ckpt = await HfCheckpoint.open(modelDir);
  const m = await loadOnnxTrainable(ckpt, { spinning: false });
  try {
    for (let w = 0; w < WARMUP; w++) await m.lossAndGradients(randomBatch(c, B, 100 + w), trainable);
    let tokens = 0;
    const t0 = performance.now();
    for (let s = 0; s < STEPS; s++) tokens += (await m.lossAndGradients(randomBatch(c, B, s), trainable)).tokens;
    return tokens / ((performance.now() - t0) / 1000);
  } finally {
    await m.dispose();
    await ckpt.close();
  }
}

interface Timed {
  readonly tokensPerS: number;
  readonly steps: number;
  readonly tokens: number;
  readonly seconds: number;
  readonly firstStepS: number;
  readonly device: string;
}

/** `llama-pro train ...` in this process; throughput of the steps after `warmup` from the run's metrics. */
async function trainThroughCli(work: string, name: string, modelDir: string, data: string, config: string, backend: string, batch: number, warmup: number, steps: number): Promise<Timed> {
  const out = path.join(work, `run-${name}`);
  const args = ['train', '--model', modelDir, '--data', data, '--out', out, '--config', config, '--policy', 'layers', '--layers', NEW_LAYERS.join(','),
    '--steps', String(warmup + steps), '--batch-size', String(batch), '--seq-len', String(T), '--backend', backend, '--json'];
  console.log(`${name}: llama-pro ${args.join(' ')}`);
  const code = await main(['node', 'llama-pro', ...args]); // prints its JSON summary on stdout
  if (code !== 0) throw new Error(`llama-pro train --backend ${backend} exited ${code}`);
  const run = JSON.parse(await fsp.readFile(path.join(out, 'run.json'), 'utf8')) as { device?: string };
  const recs = (await readMetrics(out)).filter((r) => r.loss !== undefined);
  for (const r of recs) console.log(`${name}: step ${r.step} loss ${r.loss!.toFixed(4)} grad-norm ${r.grad_norm!.toFixed(3)} ${r.tokens_per_s!.toFixed(0)} tok/s (this step), RSS ${r.rss_mb} MB`);
  const base = recs.find((r) => r.step === warmup)!;
  const last = recs.at(-1)!;
  const timed = recs.filter((r) => r.step > warmup);
  const tokens = timed.reduce((a, r) => a + r.tokens!, 0);
  const seconds = last.elapsed_s! - base.elapsed_s!;
  return { tokensPerS: tokens / seconds, steps: timed.length, tokens, seconds, firstStepS: recs[0]!.elapsed_s!, device: run.device ?? backend };
}

/** Transparent huge pages this process holds now (MiB), from /proc/self/smaps_rollup (Linux). */
async function hugePagesMiB(): Promise<number | undefined> {
  const m = /AnonHugePages:\s+(\d+) kB/.exec(await fsp.readFile('/proc/self/smaps_rollup', 'utf8').catch(() => ''));
  return m ? Math.round(Number(m[1]) / 1024) : undefined;
}

async function main_(): Promise<void> {
  const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'bench-train-onnx-'));
  try {
    const modelDir = path.join(work, 'model');
    const c = await writeRandomCheckpoint(modelDir, tinyRawConfig({ hiddenSize: 288, intermediateSize: 768, layers: 8, heads: 6, kvHeads: 6, vocab: 32000, maxPositions: 1024, tie: false }), { seed: 0, std: 0.02 });
    // Token ids in [3, vocab): no EOS (2) inside, so the file is one document, packed into sequences.
    const rng = new Rng(1);
    const data = path.join(work, 'corpus.i32');
    await fsp.writeFile(data, Buffer.from(Int32Array.from({ length: 64 * (T + 1) }, () => 3 + rng.int(c.vocabSize - 3)).buffer));
    // Training only: no validation set, no export; one checkpoint at the end (after the timed steps).
    const config = path.join(work, 'bench.yaml');
    await fsp.writeFile(config, 'data:\n  valFraction: 0\neval:\n  interval: 0\ncheckpoint:\n  interval: 0\n  keep: 1\nexport:\n  enabled: false\n');
    const fpt = flopsPerToken(c, NEW_LAYERS);
    console.log(`model: dim ${c.hiddenSize}, ${c.numHiddenLayers} layers, ${c.numAttentionHeads} heads, hidden ${c.intermediateSize}, vocab ${c.vocabSize}; seq ${T}; trainable: layers ${NEW_LAYERS.join(', ')}; ${os.cpus().length} CPUs; load average ${os.loadavg()[0]!.toFixed(1)}`);
    console.log(`matmul work: ${(fpt / 1e6).toFixed(1)} MFLOP per token`);
    console.log(`malloc huge pages: ${hugePagesStatus()}`);

    const onnx = await trainThroughCli(work, 'onnx', modelDir, data, config, 'onnx', B, WARMUP, STEPS);
    const achieved = (fpt * onnx.tokensPerS) / 1e9;
    console.log(`onnx (${onnx.device}): ${onnx.tokensPerS.toFixed(0)} tokens/s, ${achieved.toFixed(1)} GFLOP/s achieved (batch ${B}, ${onnx.steps} timed steps, ${onnx.tokens} tokens in ${onnx.seconds.toFixed(2)} s; first step incl. graph build ${onnx.firstStepS.toFixed(1)} s); peak RSS ${Math.round(process.resourceUsage().maxRSS / 1024)} MiB (${(await hugePagesMiB()) ?? '?'} MiB held on huge pages after the run)`);
    const trainable = await HfCheckpoint.open(modelDir).then(async (k) => {
      const names = k.tensorNames().filter((n) => NEW_LAYERS.some((l) => n.startsWith(`model.layers.${l}.`)));
      await k.close();
      return names;
    });
    const alone = await graphAlone(modelDir, c, trainable);
    console.log(`onnx graph alone (loss + gradients, same tensors, batch ${B}, ${STEPS} steps after ${WARMUP} warm-up; no optimizer, no loop): ${alone.toFixed(0)} tokens/s; the llama-pro train path runs at ${(onnx.tokensPerS / alone).toFixed(2)}x of it`);
    const peak = await measureMatmulGflops(B * T, c.hiddenSize, c.intermediateSize, { spinning: false }, 20);
    console.log(`ORT fp32 matmul now ([B*T, D] x [D, hidden], default threads): ${peak.toFixed(1)} GFLOP/s; the training step achieves ${(achieved / peak).toFixed(2)}x that (the head's large matmuls run faster than this mid-size one)`);

    if (TFJS !== 'none') {
      const tfjs = await trainThroughCli(work, 'tfjs', modelDir, data, config, `tfjs:${TFJS}`, TFJS_B, 1, TFJS_STEPS);
      console.log(`tfjs (${tfjs.device}): ${tfjs.tokensPerS.toFixed(1)} tokens/s, ${((fpt * tfjs.tokensPerS) / 1e9).toFixed(1)} GFLOP/s (batch ${TFJS_B}, ${tfjs.steps} timed steps, same command)`);
      console.log(`ratio onnx / tfjs: ${(onnx.tokensPerS / tfjs.tokensPerS).toFixed(1)}x`);
    }
    console.log(`target: >= ${TARGET} tokens/s for the llama-pro train path (what the separate OnnxTrainer measured before the merge): ${onnx.tokensPerS >= TARGET ? 'meets' : 'misses'} it (${(onnx.tokensPerS / TARGET).toFixed(2)}x)`);
  } finally {
    await fsp.rm(work, { recursive: true, force: true });
  }
}

relaunchWithHugePages(); // as bin.js does, before any work
main_().catch((e: Error) => {
  console.error(`bench:train-onnx: ${e.stack ?? e.message}`);
  process.exit(1);
});
