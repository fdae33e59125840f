/**
 * The training loop: micro-batches → gradients of the trainable tensors only → token-weighted
 * accumulation → global-norm clipping → scheduled AdamW → model update; metrics JSONL, validation at
 * intervals, atomic checkpoints, and a clean stop (checkpoint first) when the signal aborts.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { type ProgressReporter, type Rng, type TrainableLM, silentProgress, writeFileAtomic } from '@llama-pro/core';
import { type CheckpointState, saveCheckpoint } from './checkpoint';
import { RunError } from './errors';
import type { BatchStream, DocumentFile, SequenceFile } from './data/loader';
import { toBatch } from './data/loader';
import { AdamW } from './optim/adamw';
import { clipScale, globalNorm } from './optim/clip';
import type { LrSchedule, ScheduleParams } from './optim/schedule';
import type { ParameterSet } from './params';

export const METRICS_FILE = 'metrics.jsonl';

export interface MetricsRecord {
  step: number;
  loss?: number;
  lr?: number;
  grad_norm?: number;
  tokens?: number;
  tokens_per_s?: number;
  val_loss?: number;
  /** Loss on the general-domain sample (forgetting check). */
  general_loss?: number;
  elapsed_s?: number;
  /** Resident memory of the process (MB) when the step finished. */
  rss_mb?: number;
}

export interface TrainerOptions {
  model: TrainableLM;
  params: ParameterSet;
  optimizer: AdamW;
  schedule: LrSchedule;
  scheduleParams: ScheduleParams;
  train: BatchStream;
  val?: SequenceFile;
  /** General-domain sample (whole documents from BOS), evaluated with the validation set. */
  general?: DocumentFile;
  /** Documents of the general sample evaluated (default 64). */
  generalDocs?: number;
  totalSteps: number;
  batchSize: number;
  gradAccum: number;
  clip: number;
  evalInterval: number;
  evalBatches: number;
  checkpointInterval: number;
  keep: number;
  runDir: string;
  rng: Rng;
  /** Fingerprints stored in checkpoints. */
  policyFingerprint: string;
  dataFingerprint: string;
  /** Step to start from (from a checkpoint); 0 for a fresh run. */
  startStep?: number;
  tokensSeen?: number;
  progress?: ProgressReporter;
  signal?: AbortSignal;
  /** Called after every update (tests use it, e.g. to interrupt). */
  onStep?: (record: MetricsRecord) => void | Promise<void>;
}

export type FinishReason = 'completed' | 'interrupted';

export interface TrainResult {
  finishReason: FinishReason;
  step: number;
  tokensSeen: number;
  initialValLoss: number | null;
  finalValLoss: number | null;
  initialGeneralLoss: number | null;
  finalGeneralLoss: number | null;
  lastCheckpoint: string | null;
}

/** Mean validation loss over the first `batches` validation batches (fixed order), or null without data. */
export async function validationLoss(model: TrainableLM, val: SequenceFile | undefined, batches: number, batchSize: number): Promise<number | null> {
  if (!val || val.numSequences === 0) return null;
  let sum = 0;
  let tokens = 0;
  let next = 0;
  for (let b = 0; b < batches && next < val.numSequences; b++) {
    const seqs: Int32Array[] = [];
    while (seqs.length < batchSize && next < val.numSequences) seqs.push(await val.read(next++));
    const r = await model.loss(toBatch(seqs, val.seqLen));
    sum += r.loss * r.tokens;
    tokens += r.tokens;
  }
  return tokens ? sum / tokens : null;
}

/** Token-weighted mean loss over the first `maxDocs` documents, each evaluated from its start. */
export async function documentLoss(model: TrainableLM, docs: DocumentFile | undefined, maxDocs: number, batchSize: number): Promise<number | null> {
  if (!docs || docs.numDocuments === 0) return null;
  let sum = 0;
  let tokens = 0;
  const n = Math.min(maxDocs, docs.numDocuments);
  for (let i = 0; i < n; i += batchSize) {
    const rows = [];
    for (let j = i; j < Math.min(n, i + batchSize); j++) rows.push(await docs.read(j));
    const ids = new Int32Array(rows.length * docs.seqLen);
    const targets = new Int32Array(rows.length * docs.seqLen);
    rows.forEach((r, b) => {
      ids.set(r.ids, b * docs.seqLen);
      targets.set(r.targets, b * docs.seqLen);
    });
    const r = await model.loss({ ids, targets, batchSize: rows.length, seqLen: docs.seqLen });
    sum += r.loss * r.tokens;
    tokens += r.tokens;
  }
  return tokens ? sum / tokens : null;
}

/** Keeps only metric lines up to `step` (used on resume so the log matches an uninterrupted run). */
export async function truncateMetrics(runDir: string, step: number): Promise<void> {
  const file = path.join(runDir, METRICS_FILE);
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch {
    return;
  }
  const kept = text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .filter((l) => {
      try {
        return (JSON.parse(l) as MetricsRecord).step <= step;
      } catch {
        return false; // a line cut by a kill
      }
    });
  await writeFileAtomic(file, kept.map((l) => l + '\n').join(''));
}

export async function readMetrics(runDir: string): Promise<MetricsRecord[]> {
  const text = await fsp.readFile(path.join(runDir, METRICS_FILE), 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as MetricsRecord);
}

export class Trainer {
  constructor(private readonly o: TrainerOptions) {}

  private async log(rec: MetricsRecord): Promise<void> {
    await fsp.appendFile(path.join(this.o.runDir, METRICS_FILE), JSON.stringify(rec) + '\n');
  }

  private async checkpoint(step: number, tokensSeen: number): Promise<string> {
    const o = this.o;
    const state: CheckpointState = {
      format: 'llama-pro.train-checkpoint',
      version: 1,
      step,
      optimizerStep: o.optimizer.step,
      rng: o.rng.getState(),
      data: o.train.position,
      tokensSeen,
      policy: o.policyFingerprint,
      dataFingerprint: o.dataFingerprint,
      slots: o.params.slots.map((s) => s.name),
    };
    const shapes = new Map(o.params.slots.map((s) => [s.name, s.shape] as const));
    return saveCheckpoint(o.runDir, state, o.params.values, shapes, o.optimizer.getState(), o.keep);
  }

  /**
   * One optimizer update: returns loss, tokens and the pre-clip gradient norm. One micro-batch uses the
   * backend's gradients as they are (the token-weighted mean of one batch is that batch's gradient, bit
   * for bit: (g·n)/n is exact in float64); more are accumulated token-weighted in float64. Clipping is
   * fused into AdamW as a scale factor, and on backends with resident parameters (onnx) AdamW writes the
   * model's own arrays: no gradient or parameter copies per step.
   */
  async step(lr: number): Promise<{ loss: number; tokens: number; gradNorm: number }> {
    const o = this.o;
    const names = o.params.modelGradientNames;
    let grads: Map<string, Float32Array>;
    let lossSum = 0;
    let tokens = 0;
    if (o.gradAccum === 1) {
      const r = await o.model.lossAndGradients(await o.train.next(o.batchSize), names);
      grads = o.params.slotGradients(r.gradients);
      lossSum = r.loss * r.tokens;
      tokens = r.tokens;
    } else {
      let sum: Map<string, Float64Array> | null = null;
      for (let k = 0; k < o.gradAccum; k++) {
        const batch = await o.train.next(o.batchSize);
        const r = await o.model.lossAndGradients(batch, names);
        const g = o.params.slotGradients(r.gradients);
        if (!sum) {
          sum = new Map();
          for (const [n, v] of g) sum.set(n, new Float64Array(v.length));
        }
        for (const [n, v] of g) {
          const acc = sum.get(n)!;
          for (let i = 0; i < v.length; i++) acc[i]! += v[i]! * r.tokens;
        }
        lossSum += r.loss * r.tokens;
        tokens += r.tokens;
      }
      grads = new Map();
      for (const [n, acc] of sum!) {
        const out = new Float32Array(acc.length);
        for (let i = 0; i < acc.length; i++) out[i] = acc[i]! / tokens;
        grads.set(n, out);
      }
    }
    const gradNorm = globalNorm(grads.values());
    if (!Number.isFinite(gradNorm) || !Number.isFinite(lossSum)) {
      throw new RunError(
        `non-finite ${Number.isFinite(lossSum) ? 'gradient norm' : 'loss'} at update ${o.optimizer.step + 1}; parameters were not updated. Lower the learning rate or check the data, then continue from the last checkpoint with --resume`,
        'RUN_DIVERGED',
      );
    }
    o.optimizer.update(o.params.values, grads, lr, clipScale(gradNorm, o.clip));
    await o.params.push(o.model);
    return { loss: lossSum / tokens, tokens, gradNorm };
  }

  async run(): Promise<TrainResult> {
    const o = this.o;
    const progress = o.progress ?? silentProgress;
    let step = o.startStep ?? 0;
    let tokensSeen = o.tokensSeen ?? 0;
    let lastCheckpoint: string | null = null;
    await fsp.mkdir(o.runDir, { recursive: true });
    let initialValLoss: number | null = null;
    let finalValLoss: number | null = null;
    let initialGeneralLoss: number | null = null;
    let finalGeneralLoss: number | null = null;
    if (step === 0) {
      initialValLoss = await validationLoss(o.model, o.val, o.evalBatches, o.batchSize);
      initialGeneralLoss = await documentLoss(o.model, o.general, o.generalDocs ?? 64, o.batchSize);
      const rec: MetricsRecord = { step: 0 };
      if (initialValLoss !== null) rec.val_loss = initialValLoss;
      if (initialGeneralLoss !== null) rec.general_loss = initialGeneralLoss;
      if (Object.keys(rec).length > 1) await this.log(rec);
      finalValLoss = initialValLoss;
      finalGeneralLoss = initialGeneralLoss;
    } else {
      // Resumed: the step-0 and latest evaluations are in the (truncated) log.
      const log = await readMetrics(o.runDir);
      const first = log.find((r) => r.step === 0);
      initialValLoss = first?.val_loss ?? null;
      initialGeneralLoss = first?.general_loss ?? null;
      finalValLoss = log.filter((r) => r.val_loss !== undefined).at(-1)?.val_loss ?? null;
      finalGeneralLoss = log.filter((r) => r.general_loss !== undefined).at(-1)?.general_loss ?? null;
    }
    const result = (finishReason: FinishReason): TrainResult => ({ finishReason, step, tokensSeen, initialValLoss, finalValLoss, initialGeneralLoss, finalGeneralLoss, lastCheckpoint });
    const started = Date.now();
    progress.start(o.totalSteps, 'train');
    progress.update(step);
    try {
      while (step < o.totalSteps) {
        if (o.signal?.aborted) {
          lastCheckpoint = await this.checkpoint(step, tokensSeen);
          return result('interrupted');
        }
        const t0 = Date.now();
        const lr = o.schedule.lr(step, o.totalSteps, o.scheduleParams);
        const r = await this.step(lr);
        step++;
        tokensSeen += r.tokens;
        const dt = Math.max(1e-3, (Date.now() - t0) / 1000);
        const rec: MetricsRecord = { step, loss: r.loss, lr, grad_norm: r.gradNorm, tokens: r.tokens, tokens_per_s: r.tokens / dt, elapsed_s: (Date.now() - started) / 1000, rss_mb: Math.round(process.memoryUsage().rss / 1e6) };
        const last = step === o.totalSteps;
        if (last || (o.evalInterval > 0 && step % o.evalInterval === 0)) {
          const v = await validationLoss(o.model, o.val, o.evalBatches, o.batchSize);
          if (v !== null) {
            rec.val_loss = v;
            finalValLoss = v;
          }
          const g = await documentLoss(o.model, o.general, o.generalDocs ?? 64, o.batchSize);
          if (g !== null) {
            rec.general_loss = g;
            finalGeneralLoss = g;
          }
        }
        await this.log(rec);
        progress.update(step, { loss: r.loss, lr, tok_s: rec.tokens_per_s, ...(rec.val_loss !== undefined ? { val: rec.val_loss } : {}) });
        if (last || (o.checkpointInterval > 0 && step % o.checkpointInterval === 0)) lastCheckpoint = await this.checkpoint(step, tokensSeen);
        await o.onStep?.(rec);
      }
    } finally {
      progress.stop();
    }
    return result('completed');
  }
}
