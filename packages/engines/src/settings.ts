/**
 * What an external engine needs to know about a training run: the subset of llama-pro's experiment
 * settings that maps onto LLaMA-Factory / Transformers arguments.
 */
import { PAPER_RECIPE } from '@llama-pro/train';

export interface EngineTrainingSettings {
  learningRate: number;
  schedule: 'cosine' | 'linear' | 'constant';
  warmupRatio: number;
  minLrRatio?: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  maxGradNorm: number;
  /** Per-device micro-batch size. */
  batchSize: number;
  gradientAccumulation: number;
  maxSteps: number;
  seqLen: number;
  seed: number;
  precision: 'bf16' | 'fp16' | 'fp32';
  saveSteps: number;
  loggingSteps: number;
}

/** The paper's pretraining recipe (AdamW, lr 2e-4, cosine, 6% warmup, wd 0.1, clip 1.0): train's PAPER_RECIPE, plus engine sizes. */
export const PAPER_SETTINGS: EngineTrainingSettings = {
  learningRate: PAPER_RECIPE.optimizer.lr,
  schedule: PAPER_RECIPE.schedule.name,
  warmupRatio: PAPER_RECIPE.schedule.warmupRatio,
  weightDecay: PAPER_RECIPE.optimizer.weightDecay,
  beta1: PAPER_RECIPE.optimizer.beta1,
  beta2: PAPER_RECIPE.optimizer.beta2,
  maxGradNorm: PAPER_RECIPE.optimizer.clip,
  batchSize: 4,
  gradientAccumulation: 8,
  maxSteps: 1000,
  seqLen: 4096,
  seed: 42,
  precision: 'bf16',
  saveSteps: 500,
  loggingSteps: 10,
};

/** The user's corpus: text files, a directory of them, or JSONL with a text field. */
export interface EngineCorpus {
  /** Absolute path to a file or directory. */
  path: string;
  format: 'text' | 'jsonl';
  /** JSONL field holding the text. */
  field?: string;
}

/** Learning-rate scheduler name as Transformers spells it. */
export function hfSchedulerName(s: EngineTrainingSettings): string {
  if (s.schedule === 'constant') return s.warmupRatio > 0 ? 'constant_with_warmup' : 'constant';
  if (s.schedule === 'cosine' && s.minLrRatio) return 'cosine_with_min_lr';
  return s.schedule;
}
