/** The evaluator extension point (TOKENS.Evaluator): one named task that scores a LanguageModel. */
import * as path from 'node:path';
import type { GenerateUntilRequest, LanguageModel, LoglikelihoodRequest, LoglikelihoodResult, Named, ProgressReporter } from '@llama-pro/core';
import { EvalError } from './errors';
import { combinedHash, type DatasetFileInfo } from './datasets/files';
import type { CodeSandbox } from './sandbox/python-sandbox';

export interface EvalContext {
  /** The model under test (every task but sample scoring needs one). */
  readonly lm?: LanguageModel;
  readonly sandbox?: CodeSandbox;
  /** Directory that holds one sub-directory per dataset (`humaneval/`, `gsm8k/`, `mmlu/`). */
  readonly dataDir: string;
  /** Evaluate only the first N documents. */
  readonly limit?: number;
  /** Shots; each task has its own default (lm-eval's). */
  readonly numFewshot?: number;
  readonly progress?: ProgressReporter;
  /** Task-specific options (e.g. `promptStyle`, `ks`, `samplesFile`, `corpus`, `maxGenTokens`, `batchSize`). */
  readonly options?: Readonly<Record<string, unknown>>;
}

export interface DatasetRecord {
  readonly name: string;
  readonly dir: string;
  readonly files: readonly DatasetFileInfo[];
  /** sha256 over the per-file hashes. */
  readonly sha256: string;
}

export interface TaskResult {
  readonly task: string;
  /** Headline numbers, flat: e.g. `pass@1`, `exact_match,strict-match`, `acc`, `bits_per_byte`. */
  readonly metrics: Record<string, number>;
  /** Breakdown (subjects, categories, counts). */
  readonly details?: Record<string, unknown>;
  /** Everything that defines the task run: shots, prompt style, stops, generation length, seeds, limit. */
  readonly config: Record<string, unknown>;
  readonly dataset: DatasetRecord;
  /** Per-sample logs, written as JSONL. */
  readonly samples: Record<string, unknown>[];
}

export type Capability = 'loglikelihood' | 'loglikelihood_rolling' | 'generate_until' | 'sandbox';

export interface Evaluator extends Named {
  readonly name: string;
  readonly description: string;
  /** Sub-directory of the data dir. */
  readonly dataset: string;
  readonly needs: readonly Capability[];
  /** The number of shots used when none is given (lm-eval's default for the task). */
  readonly defaultFewshot: number;
  evaluate(ctx: EvalContext): Promise<TaskResult>;
}

export function datasetRecord(name: string, dir: string, files: readonly DatasetFileInfo[]): DatasetRecord {
  return { name, dir: path.resolve(dir), files, sha256: combinedHash(files) };
}

export function requireLm(ctx: EvalContext, task: string): LanguageModel {
  if (!ctx.lm) throw new EvalError(`task ${task} needs a model: pass --model <dir|http(s) endpoint>`, 'EVAL_NO_MODEL');
  return ctx.lm;
}

export function applyLimit<T>(docs: readonly T[], limit: number | undefined): T[] {
  if (limit === undefined) return [...docs];
  if (!Number.isInteger(limit) || limit < 1) throw new EvalError(`--limit must be a positive integer (got ${limit})`, 'USAGE');
  return docs.slice(0, limit);
}

export function option<T>(ctx: EvalContext, key: string, fallback: T): T {
  const v = ctx.options?.[key];
  return v === undefined ? fallback : (v as T);
}

const CHUNK = 16;

/** generate_until in chunks so that progress moves. */
export async function generateWithProgress(lm: LanguageModel, requests: readonly GenerateUntilRequest[], progress: ProgressReporter | undefined, label: string): Promise<string[]> {
  const out: string[] = [];
  progress?.start(requests.length, label);
  try {
    for (let i = 0; i < requests.length; i += CHUNK) {
      out.push(...(await lm.generateUntil(requests.slice(i, i + CHUNK))));
      progress?.update(out.length);
    }
  } finally {
    progress?.stop();
  }
  return out;
}

/** loglikelihood in chunks so that progress moves. */
export async function loglikelihoodWithProgress(
  lm: LanguageModel,
  requests: readonly LoglikelihoodRequest[],
  progress: ProgressReporter | undefined,
  label: string,
  chunk = 64,
): Promise<LoglikelihoodResult[]> {
  const out: LoglikelihoodResult[] = [];
  progress?.start(requests.length, label);
  try {
    for (let i = 0; i < requests.length; i += chunk) {
      const part = await lm.loglikelihood(requests.slice(i, i + chunk));
      if (part.length !== Math.min(chunk, requests.length - i)) throw new EvalError(`${lm.name} returned ${part.length} results for ${Math.min(chunk, requests.length - i)} requests`, 'LM_CONTRACT');
      out.push(...part);
      progress?.update(out.length);
    }
  } finally {
    progress?.stop();
  }
  return out;
}
