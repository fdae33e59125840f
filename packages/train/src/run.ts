/**
 * One training run end to end, independent of the CLI: prepare data, plan the policy, build the
 * parameter set and optimizer, resume from the newest checkpoint when asked, train, export, and write
 * the run manifest. The caller loads the model and tokenizer and reads the expansion manifest.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import {
  type NamedRegistry,
  type ProgressReporter,
  Rng,
  type TextTokenizer,
  type TrainableLM,
  pathExists,
  silentProgress,
  writeJsonAtomic,
} from '@llama-pro/core';
import { latestCheckpoint, CHECKPOINTS_DIR } from './checkpoint';
import type { Experiment } from './config';
import { BatchStream, DocumentFile, SequenceFile } from './data/loader';
import { docsFileOf, prepareData, TRAIN_TOKENS, VAL_TOKENS } from './data/prepare';
import { RunError } from './errors';
import { type ExportSource, exportModel } from './export';
import { AdamW } from './optim/adamw';
import type { LrSchedule } from './optim/schedule';
import { ParameterSet } from './params';
import type { FreezePolicy } from './policy/types';
import { METRICS_FILE, type FinishReason, Trainer, type MetricsRecord, truncateMetrics } from './trainer';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const TRAIN_VERSION = (require('../package.json') as { version: string }).version;

export const EXPERIMENT_FILE = 'experiment.json';
export const RUN_MANIFEST_FILE = 'run.json';

export interface RunTrainingOptions {
  /** Resolved experiment: `out` and `data.path` must be set. */
  experiment: Experiment;
  model: TrainableLM;
  /** The model directory the model was loaded from (for export). */
  source: ExportSource;
  tokenizer: TextTokenizer;
  policies: NamedRegistry<FreezePolicy>;
  schedules: NamedRegistry<LrSchedule>;
  /** Trainable tensors and new layers from the expansion manifest, when the model is expanded. */
  manifest?: { trainable: readonly string[]; newLayers: readonly number[] };
  resume?: boolean;
  progress?: ProgressReporter;
  signal?: AbortSignal;
  /** Files added to the exported directory (e.g. the expansion manifest). */
  extraExportFiles?: Record<string, string | Uint8Array>;
  /** Recorded in the run manifest (tool versions, backend, device, ...). */
  info?: Record<string, unknown>;
  /**
   * With `resume`: continue a run on a different backend than it was trained on (the float rounding of
   * the engines differs, so the result is no longer the straight run's). Refused without it.
   */
  allowBackendChange?: boolean;
  onStep?: (record: MetricsRecord) => void | Promise<void>;
  log?: (message: string) => void;
}

export interface RunSummary {
  finishReason: FinishReason;
  runDir: string;
  step: number;
  totalSteps: number;
  resumedFrom: number | null;
  policy: string;
  trainableTensors: number;
  trainableParameters: number;
  tokensSeen: number;
  initialValLoss: number | null;
  finalValLoss: number | null;
  /** Loss on the general-domain sample (eval.general), before and after. */
  initialGeneralLoss: number | null;
  finalGeneralLoss: number | null;
  exportDir: string | null;
  lastCheckpoint: string | null;
  /** Peak resident memory of the process so far (MiB; memory use of the training backend included). */
  peakRssMb: number;
}

export const SEGMENTS_FILE = 'segments.json';

/** One invocation of runTraining on a run directory: where it started and ended, and on which engine. */
export interface RunSegment {
  /** Step the segment started from (0 for the first). */
  fromStep: number;
  /** Step it reached, or null while it runs (and for a segment that was killed). */
  toStep: number | null;
  backend: string;
  backendVariant?: string;
  device: string;
  startedAt: string;
  finishReason?: FinishReason;
}

async function readSegments(runDir: string): Promise<RunSegment[]> {
  try {
    const v = JSON.parse(await fsp.readFile(path.join(runDir, SEGMENTS_FILE), 'utf8')) as { segments?: RunSegment[] };
    return Array.isArray(v.segments) ? v.segments : [];
  } catch {
    return [];
  }
}

const backendLabel = (name: string, variant: string | undefined) => (variant ? `${name}:${variant}` : name);

/** Fields that must not change between a run and its resume. */
function resumeKey(e: Experiment): string {
  const { seed, steps, batchSize, gradAccum, seqLen, policy, optimizer, schedule, data } = e;
  return JSON.stringify({ seed, steps, batchSize, gradAccum, seqLen, policy, optimizer, schedule, data: { ...data, path: data.path ? path.resolve(data.path) : null } });
}

export async function runTraining(o: RunTrainingOptions): Promise<RunSummary> {
  const e = o.experiment;
  const log = o.log ?? (() => {});
  const progress = o.progress ?? silentProgress;
  if (!e.out) throw new RunError('no run directory: pass --out <run-dir>', 'USAGE');
  if (!e.data.path) throw new RunError('no training data: pass --data <path>', 'USAGE');
  const runDir = path.resolve(e.out);
  const expFile = path.join(runDir, EXPERIMENT_FILE);
  const started = (await pathExists(path.join(runDir, METRICS_FILE))) || (await pathExists(path.join(runDir, CHECKPOINTS_DIR)));
  if (started && !o.resume) throw new RunError(`${runDir} already holds a training run; pass --resume to continue it or choose another --out`, 'RUN_EXISTS');
  if (o.resume && !started && !(await pathExists(expFile))) {
    throw new RunError(`--resume: ${runDir} holds no training run to continue (no ${EXPERIMENT_FILE}, ${METRICS_FILE} or ${CHECKPOINTS_DIR}/); check --out, or drop --resume to start a new run there`, 'RUN_MISSING');
  }
  let prev: Experiment | null = null;
  if (o.resume && (await pathExists(expFile))) {
    prev = JSON.parse(await fsp.readFile(expFile, 'utf8')) as Experiment;
    if (resumeKey(prev) !== resumeKey(e)) throw new RunError(`--resume: the experiment differs from the one ${runDir} was started with (${EXPERIMENT_FILE}); resume with the same settings`, 'RUN_MISMATCH');
    if (prev.backend !== e.backend && !o.allowBackendChange) {
      throw new RunError(
        `--resume: ${runDir} was trained on backend "${backendLabel(prev.backend, prev.backendVariant)}" but this resume would run on "${backendLabel(e.backend, e.backendVariant)}"; resume with --backend ${backendLabel(prev.backend, prev.backendVariant)}, or pass --allow-backend-change to continue on ${e.backend} (the result then differs from a straight run in float rounding)`,
        'RUN_BACKEND_MISMATCH',
      );
    }
  }

  // The freeze plan first: a policy that cannot apply (e.g. new-blocks without an expansion manifest)
  // fails before the corpus is tokenized.
  const policy = o.policies.get(e.policy.name);
  const plan = policy.plan({ parameterNames: o.model.parameterNames(), shapeOf: (n) => o.model.parameterShape(n), manifest: o.manifest, options: { layers: e.policy.layers, lora: e.policy.lora } });

  await fsp.mkdir(runDir, { recursive: true });
  await writeJsonAtomic(expFile, e);

  // Data.
  const data = await prepareData(path.join(runDir, 'data'), { ...e.data, path: e.data.path }, o.tokenizer, e.seed, (docs, tokens) => log(`tokenized ${docs} documents, ${tokens} tokens`));
  const trainFile = await SequenceFile.open(path.join(data.dir, TRAIN_TOKENS), e.seqLen);
  const valFile = await SequenceFile.open(path.join(data.dir, VAL_TOKENS), e.seqLen);
  let general: DocumentFile | undefined;
  try {
    if (e.eval.general) {
      const g = await prepareData(path.join(runDir, 'data-general'), { ...e.data, path: e.eval.general, format: 'auto', valFraction: 0, glob: '**/*' }, o.tokenizer, e.seed);
      const tokens = path.join(g.dir, TRAIN_TOKENS);
      general = await DocumentFile.open(tokens, docsFileOf(tokens), e.seqLen);
      log(`general sample: ${general.numDocuments} documents (first ${e.seqLen + 1} tokens of each)`);
    }
    log(`data: ${data.train.documents} train documents (${data.train.tokens} tokens, ${trainFile.numSequences} sequences of ${e.seqLen}), ${data.val.documents} validation documents (${valFile.numSequences} sequences)`);

    // Parameters.
    log(plan.summary);
    const rng = new Rng(e.seed);
    const params = await ParameterSet.create(o.model, plan, rng);
    const optimizer = new AdamW(params.slots, { beta1: e.optimizer.beta1, beta2: e.optimizer.beta2, eps: e.optimizer.eps, weightDecay: e.optimizer.weightDecay });
    log(`optimizer: AdamW, ${optimizer.implementation === 'native' ? "native-io's vectorized step" : 'JavaScript loop (no @llama-pro/native-io addon; same results, slower)'}`);
    const policyFingerprint = createHash('sha256').update(JSON.stringify({ trainable: plan.trainable, lora: plan.lora })).digest('hex');

    let startStep = 0;
    let tokensSeen = 0;
    let position = { epoch: 0, cursor: 0 };
    let resumedFrom: number | null = null;
    if (o.resume) {
      const ck = await latestCheckpoint(runDir);
      if (ck) {
        if (ck.state.policy !== policyFingerprint) throw new RunError(`${ck.dir} was written by a different freeze policy or model; it cannot resume this run`, 'RUN_MISMATCH');
        if (ck.state.dataFingerprint !== data.fingerprint) throw new RunError(`the training data changed since ${ck.dir} was written; restore it to resume`, 'RUN_MISMATCH');
        params.load(ck.values);
        await params.push(o.model);
        optimizer.setState(ck.optimizer);
        rng.setState(ck.state.rng);
        startStep = ck.state.step;
        tokensSeen = ck.state.tokensSeen;
        position = ck.state.data;
        resumedFrom = startStep;
        await truncateMetrics(runDir, startStep);
        log(`resuming from ${ck.dir} (step ${startStep})`);
      } else {
        await fsp.rm(path.join(runDir, METRICS_FILE), { force: true });
        log('no checkpoint to resume from; starting at step 0');
      }
    }

    const trainer = new Trainer({
      model: o.model,
      params,
      optimizer,
      schedule: o.schedules.get(e.schedule.name),
      scheduleParams: { lr: e.optimizer.lr, minLr: e.schedule.minLr, warmupRatio: e.schedule.warmupRatio, warmupSteps: e.schedule.warmupSteps },
      train: new BatchStream(trainFile, e.seed, e.data.shuffle, position),
      val: valFile.numSequences > 0 ? valFile : undefined,
      general,
      generalDocs: e.eval.generalDocs,
      totalSteps: e.steps,
      batchSize: e.batchSize,
      gradAccum: e.gradAccum,
      clip: e.optimizer.clip,
      evalInterval: e.eval.interval,
      evalBatches: e.eval.batches,
      checkpointInterval: e.checkpoint.interval,
      keep: e.checkpoint.keep,
      runDir,
      rng,
      policyFingerprint,
      dataFingerprint: data.fingerprint,
      startStep,
      tokensSeen,
      progress,
      signal: o.signal,
      onStep: o.onStep,
    });
    // Every invocation on this run directory is a segment, recorded with its engine (run.json lists them).
    const segments = o.resume ? await readSegments(runDir) : [];
    if (segments.length === 0 && startStep > 0 && prev) {
      // A run started before segments were recorded: its backend is the one its experiment.json names.
      segments.push({ fromStep: 0, toStep: startStep, backend: prev.backend, ...(prev.backendVariant ? { backendVariant: prev.backendVariant } : {}), device: 'unknown', startedAt: 'unknown' });
    }
    const segment: RunSegment = { fromStep: startStep, toStep: null, backend: e.backend, ...(e.backendVariant ? { backendVariant: e.backendVariant } : {}), device: o.model.device, startedAt: new Date().toISOString() };
    segments.push(segment);
    await writeJsonAtomic(path.join(runDir, SEGMENTS_FILE), { segments });
    const r = await trainer.run();
    segment.toStep = r.step;
    segment.finishReason = r.finishReason;
    await writeJsonAtomic(path.join(runDir, SEGMENTS_FILE), { segments });

    const trainableParameters = params.slots.reduce((a, s) => a + s.size, 0);
    let exportDir: string | null = null;
    const manifest = {
      format: 'llama-pro.training-run',
      version: 1,
      createdAt: new Date().toISOString(),
      tool: { name: '@llama-pro/train', version: TRAIN_VERSION, node: process.version },
      base: { path: path.resolve(o.source.dir) },
      runDir,
      experiment: e,
      policy: { name: policy.name, summary: plan.summary, trainable: plan.trainable, lora: plan.lora },
      trainableParameters,
      data: { fingerprint: data.fingerprint, files: data.files, tokenizer: data.tokenizer, train: data.train, val: data.val },
      result: { finishReason: r.finishReason, step: r.step, tokensSeen: r.tokensSeen, initialValLoss: r.initialValLoss, finalValLoss: r.finalValLoss, initialGeneralLoss: r.initialGeneralLoss, finalGeneralLoss: r.finalGeneralLoss, resumedFrom },
      ...o.info,
      /** Every backend the run was trained on, in order, and the steps each segment covered. */
      backends: [...new Set(segments.map((x) => backendLabel(x.backend, x.backendVariant)))],
      segments,
    };
    if (r.finishReason === 'completed' && e.export.enabled) {
      exportDir = path.resolve(e.export.dir ?? path.join(runDir, 'final'));
      await exportModel({ source: o.source, outDir: exportDir, updated: params.modelTensors(), manifest, extraFiles: o.extraExportFiles, force: true });
      log(`exported ${exportDir}`);
    }
    await writeJsonAtomic(path.join(runDir, RUN_MANIFEST_FILE), { ...manifest, exportDir });
    return {
      finishReason: r.finishReason,
      runDir,
      step: r.step,
      totalSteps: e.steps,
      resumedFrom,
      policy: policy.name,
      trainableTensors: params.modelGradientNames.length,
      trainableParameters,
      tokensSeen: r.tokensSeen,
      initialValLoss: r.initialValLoss,
      finalValLoss: r.finalValLoss,
      initialGeneralLoss: r.initialGeneralLoss,
      finalGeneralLoss: r.finalGeneralLoss,
      peakRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
      exportDir,
      lastCheckpoint: r.lastCheckpoint,
    };
  } finally {
    await trainFile.close();
    await valFile.close();
    await general?.close();
  }
}
