/** Maps a validated llama-pro experiment (packages/train) onto engine settings. */
import { UsageError } from '@llama-pro/core';
import type { Experiment } from '@llama-pro/train';
import type { EngineCorpus, EngineTrainingSettings } from './settings';

export function engineSettingsFromExperiment(exp: Experiment, precision: EngineTrainingSettings['precision'] = 'bf16'): EngineTrainingSettings {
  const schedule = exp.schedule.name;
  if (schedule !== 'cosine' && schedule !== 'linear' && schedule !== 'constant') {
    throw new UsageError(`schedule "${schedule}" has no equivalent in the external engines; use cosine, linear or constant`, 'ENGINE_UNSUPPORTED');
  }
  if (exp.policy.name !== 'new-blocks') {
    throw new UsageError(`external engines run the new-blocks policy from the expansion manifest; policy "${exp.policy.name}" stays on llama-pro's own trainer`, 'ENGINE_UNSUPPORTED');
  }
  const warmupRatio = exp.schedule.warmupSteps !== undefined ? exp.schedule.warmupSteps / exp.steps : exp.schedule.warmupRatio;
  return {
    learningRate: exp.optimizer.lr,
    schedule,
    warmupRatio,
    minLrRatio: exp.schedule.minLr > 0 ? exp.schedule.minLr / exp.optimizer.lr : undefined,
    weightDecay: exp.optimizer.weightDecay,
    beta1: exp.optimizer.beta1,
    beta2: exp.optimizer.beta2,
    maxGradNorm: exp.optimizer.clip,
    batchSize: exp.batchSize,
    gradientAccumulation: exp.gradAccum,
    maxSteps: exp.steps,
    seqLen: exp.seqLen,
    seed: exp.seed,
    precision,
    saveSteps: exp.checkpoint.interval > 0 ? exp.checkpoint.interval : exp.steps,
    loggingSteps: 10,
  };
}

export function engineCorpusFromExperiment(exp: Experiment, dataPath: string): EngineCorpus {
  const format = exp.data.format;
  if (format === 'ids') throw new UsageError('external engines tokenize text themselves; give a text or JSONL corpus, not pre-tokenized ids', 'ENGINE_UNSUPPORTED');
  const jsonl = format === 'jsonl' || (format === 'auto' && /\.jsonl?$/i.test(dataPath));
  return { path: dataPath, format: jsonl ? 'jsonl' : 'text', field: jsonl ? exp.data.field : undefined };
}
