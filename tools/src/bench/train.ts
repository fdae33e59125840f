/**
 * Training throughput per freeze policy on the tfjs backend, through the real trainer step
 * (lossAndGradients of the trainable tensors → accumulation → clipping → AdamW → setParameter):
 * dim 288, 8 layers, 6 heads, hidden 768, vocab 32000 (untied head), sequence 256.
 *
 *   npm run bench:train     (env: BENCH_BATCH (default 1), BENCH_STEPS (timed steps, default 3),
 *                            BENCH_VARIANT (tfjs engine, default: the backend's choice))
 *
 * Policies: full (the baseline every ratio is against, measured in the same run), new-blocks (the
 * interleaved layout of a 4 → 8 expansion: layers 1, 3, 5, 7 trainable), layers (top 2), lora (rank 8
 * on q_proj and v_proj of every layer). GFLOP/s counts the matmul work the step needs: the forward pass,
 * activation gradients from the head down to the lowest trainable layer, and weight gradients of the
 * trained (or adapted) matrices only.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Rng, normalizeConfig, parseLayerTensorName, type LlamaConfig, type TrainableLM, type WeightSource } from '@llama-pro/core';
import { randomWeightSource, tinyRawConfig } from '@llama-pro/core/testing';
import { tfjsBackend } from '@llama-pro/backend-tfjs';
import { AdamW, BatchStream, ParameterSet, SequenceFile, Trainer, constantSchedule, fullPolicy, layersPolicy, loraPolicy, newBlocksPolicy, type FreezePlan, type FreezePolicy, type PolicyOptions } from '@llama-pro/train';

const B = Number(process.env['BENCH_BATCH'] ?? 1);
const STEPS = Number(process.env['BENCH_STEPS'] ?? 3);
const T = 256;
const NEW_LAYERS = [1, 3, 5, 7];

function source(): WeightSource {
  return randomWeightSource(normalizeConfig(tinyRawConfig({ hiddenSize: 288, intermediateSize: 768, layers: 8, heads: 6, kvHeads: 6, vocab: 32000, maxPositions: 1024, tie: false })), 0, 0.02);
}

/** Matmul FLOPs of one training step over `tokens` tokens (see the header). */
function stepFlops(c: LlamaConfig, model: TrainableLM, plan: FreezePlan, tokens: number): number {
  const d = c.hiddenSize;
  const kv = c.numKeyValueHeads * c.headDim;
  const q = c.numAttentionHeads * c.headDim;
  const layerParams = d * q * 2 + d * kv * 2 + 3 * d * c.intermediateSize;
  const ctx = (T + 1) / 2; // mean causal context
  const attnFwd = 4 * q * ctx;
  const head = 2 * d * c.vocabSize;
  const trained = [...plan.trainable, ...plan.lora.map((l) => l.name)];
  const layersTrained = trained.map((n) => parseLayerTensorName(n)?.layer).filter((x): x is number => x !== undefined);
  const lowest = trained.some((n) => parseLayerTensorName(n) === null && !n.endsWith('lm_head.weight')) ? 0 : Math.min(c.numHiddenLayers, ...layersTrained);
  const fwd = c.numHiddenLayers * (2 * layerParams + attnFwd) + head;
  const bwdAct = head + (c.numHiddenLayers - lowest) * (2 * layerParams + 2 * attnFwd);
  let bwdW = 0;
  for (const n of trained) {
    const s = model.parameterShape(n);
    if (s.length === 2 && !n.endsWith('embed_tokens.weight')) bwdW += 2 * s[0]! * s[1]!;
  }
  return tokens * (fwd + bwdAct + bwdW);
}

interface Row {
  policy: string;
  trainable: number;
  secondsPerStep: number;
  tokensPerS: number;
  gflops: number;
}

async function measure(src: WeightSource, policy: FreezePolicy, options: PolicyOptions, dataFile: string, tmp: string): Promise<Row> {
  const model = await tfjsBackend.loadTrainable!(src, { variant: process.env['BENCH_VARIANT'], log: (m) => console.error(m) });
  const names = model.parameterNames();
  const trainableNew = names.filter((n) => NEW_LAYERS.includes(parseLayerTensorName(n)?.layer ?? -1));
  const plan = policy.plan({ parameterNames: names, shapeOf: (n) => model.parameterShape(n), manifest: { trainable: trainableNew, newLayers: NEW_LAYERS }, options });
  const params = await ParameterSet.create(model, plan, new Rng(0));
  const seqs = await SequenceFile.open(dataFile, T);
  try {
    const trainer = new Trainer({
      model, params, optimizer: new AdamW(params.slots), schedule: constantSchedule, scheduleParams: { lr: 1e-4, minLr: 0, warmupRatio: 0 },
      train: new BatchStream(seqs, 0, true), totalSteps: STEPS + 1, batchSize: B, gradAccum: 1, clip: 1, evalInterval: 0, evalBatches: 1,
      checkpointInterval: 0, keep: 1, runDir: path.join(tmp, policy.name), rng: new Rng(0), policyFingerprint: '', dataFingerprint: '',
    });
    await trainer.step(1e-4); // warm-up: engine start, kernel setup
    const t0 = performance.now();
    let tokens = 0;
    for (let i = 0; i < STEPS; i++) tokens += (await trainer.step(1e-4)).tokens;
    const s = (performance.now() - t0) / 1000;
    return {
      policy: `${policy.name} (${model.device})`,
      trainable: params.slots.reduce((a, x) => a + x.size, 0),
      secondsPerStep: s / STEPS,
      tokensPerS: tokens / s,
      gflops: (STEPS * stepFlops(model.config, model, plan, B * T)) / s / 1e9,
    };
  } finally {
    await seqs.close();
    await model.dispose();
  }
}

async function main(): Promise<void> {
  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'bench-train-'));
  try {
    const src = source();
    const rng = new Rng(7);
    const ids = Int32Array.from({ length: (STEPS + 2) * B * T * 2 + 1 }, () => 3 + rng.int(src.config.vocabSize - 3));
    const dataFile = path.join(tmp, 'bench.tokens');
    await fsp.writeFile(dataFile, Buffer.from(ids.buffer));
    const runs: [FreezePolicy, PolicyOptions][] = [
      [fullPolicy, {}],
      [newBlocksPolicy, {}],
      [layersPolicy, { layers: { top: 2 } }],
      [loraPolicy, { lora: { rank: 8, alpha: 16, targets: ['self_attn.q_proj', 'self_attn.v_proj'] } }],
    ];
    const rows: Row[] = [];
    for (const [p, o] of runs) {
      rows.push(await measure(src, p, o, dataFile, tmp));
      console.error(`measured ${p.name}`);
    }
    const base = rows[0]!;
    console.log(`train step, dim 288 / 8 layers / vocab 32000 / seq ${T} / batch ${B}, ${STEPS} timed steps; ratios vs full fine-tuning in this run`);
    console.log(['policy', 'trainable params', 's/step', 'tokens/s', 'GFLOP/s', 'tokens/s vs full'].join(' | '));
    for (const r of rows) {
      console.log([r.policy, r.trainable.toLocaleString('en'), r.secondsPerStep.toFixed(2), r.tokensPerS.toFixed(1), r.gflops.toFixed(2), `${(r.tokensPerS / base.tokensPerS).toFixed(2)}x`].join(' | '));
    }
  } finally {
    await fsp.rm(tmp, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
