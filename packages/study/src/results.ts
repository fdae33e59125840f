/** The study's result records (`results.json` and the per-run `result.json` files). */
import type { StudyConfig } from './config';

export const RESULTS_FORMAT = 'llama-pro.study-results';
export const RESULTS_VERSION = 1;

export interface EvalNumbers {
  /** Mean next-token loss (nats/token) on the held-out general stories. */
  generalLoss: number;
  /** Mean next-token loss on the held-out domain problems (question + worked answer). */
  domainLoss: number;
}

export interface AccuracyNumbers {
  /** Exact-match accuracy of the `#### n` answer extracted from greedy generations on the test questions. */
  accuracy: number;
  correct: number;
  total: number;
}

export interface IdentityCheck {
  /** The base model's general loss and the expanded model's general loss before any training. */
  baseGeneralLoss: number;
  expandedGeneralLoss: number;
  /** True when the two are exactly equal (bit for bit). */
  identical: boolean;
  /** max |Δlogit| of the expander's verification batch, when it ran. */
  verifyMaxAbsDiff: number | null;
}

export interface RunResult {
  variant: string;
  seed: number;
  /** `expand` for block-expansion variants, `baseline` for policies applied to the base model. */
  kind: 'expand' | 'baseline';
  strategy: string | null;
  params: Record<string, unknown>;
  policy: string;
  /** Layers of the trained model and indices of inserted blocks (empty for baselines). */
  numLayers: number;
  newLayers: number[];
  trainableParameters: number;
  tokensSeen: number;
  steps: number;
  before: EvalNumbers;
  after: EvalNumbers & AccuracyNumbers;
  identity: IdentityCheck | null;
  /** Training loss per optimizer step (the Fig. 5 analogue). */
  curve: { step: number; loss: number }[];
  /** A few generations for inspection. */
  samples: { prompt: string; generation: string; gold: string; extracted: string; correct: boolean }[];
  elapsedS: number;
  /** Learning rate of this run (the sweep varies it). */
  lr?: number;
}

export interface BaseResult {
  /** `pretrained` (built by the study, cached) or `given` (`--base`). */
  origin: 'pretrained' | 'given';
  dir: string;
  numLayers: number;
  parameters: number;
  eval: EvalNumbers & AccuracyNumbers;
  pretrainCurve: { step: number; loss: number }[];
}

export interface StudyResults {
  format: typeof RESULTS_FORMAT;
  version: typeof RESULTS_VERSION;
  createdAt: string;
  config: StudyConfig;
  versions: Record<string, string>;
  backend: { name: string; device: string };
  base: BaseResult;
  runs: RunResult[];
  /** Frontier sweep runs (learning rate × steps), the main runs excluded. */
  sweep?: RunResult[];
  /** Wall-clock seconds of the invocation that wrote the results (reused runs not included). */
  elapsedS: number;
  /** CPU seconds (user + system, all threads, worker processes included) of that invocation: what it costs on an idle machine. */
  cpuS: number;
  /**
   * The accuracy of always answering the most frequent `#### n` of the domain training text: the level
   * exact match has to beat before it says a model reads the question.
   */
  majorityBaseline?: { answer: string; accuracy: number; correct: number; total: number };
  /** Cores and 1-minute load average when the invocation started (a shared machine inflates wall time). */
  machine?: { cpus: number; loadAvg: number; /** Processes that shared the variant runs (`--workers`; 1 when absent). */ workers?: number };
}
