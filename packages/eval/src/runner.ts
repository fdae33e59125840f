/** Runs a list of tasks against one model and writes the run directory. */
import * as path from 'node:path';
import type { LanguageModel, ProgressReporter } from '@llama-pro/core';
import { NamedRegistry } from '@llama-pro/core';
import type { Evaluator, TaskResult } from './evaluator';
import { writeRun, type ModelRecord, type RunRecord } from './results';
import type { CodeSandbox } from './sandbox/python-sandbox';

export interface RunEvaluationOptions {
  readonly evaluators: NamedRegistry<Evaluator>;
  readonly tasks: readonly string[];
  readonly lm?: LanguageModel;
  readonly sandbox?: CodeSandbox;
  readonly dataDir: string;
  /** Per-task data directories (override `dataDir`). */
  readonly dataDirs?: Readonly<Record<string, string>>;
  readonly limit?: number;
  readonly numFewshot?: number;
  readonly options?: Record<string, unknown>;
  readonly model: ModelRecord;
  readonly addBos: boolean | null;
  readonly tokenizer: string | null;
  /** Output directory (the run's own directory). */
  readonly outDir: string;
  readonly name?: string;
  readonly progress?: ProgressReporter;
  readonly extraConfig?: Record<string, unknown>;
  /** Called when each task finishes. */
  readonly onTask?: (result: TaskResult) => void;
}

export async function runEvaluation(o: RunEvaluationOptions): Promise<RunRecord> {
  const evaluators = o.tasks.map((t) => o.evaluators.get(t));
  const results: { result: TaskResult; durationS: number }[] = [];
  for (const e of evaluators) {
    const t0 = Date.now();
    const result = await e.evaluate({ lm: o.lm, sandbox: o.sandbox, dataDir: o.dataDirs?.[e.name] ?? o.dataDir, limit: o.limit, numFewshot: o.numFewshot, progress: o.progress, options: o.options });
    results.push({ result, durationS: (Date.now() - t0) / 1000 });
    o.onTask?.(result);
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const version = (require('../package.json') as { version: string }).version;
  return writeRun(
    o.outDir,
    {
      format: 'llama-pro-eval',
      version: 1,
      name: o.name ?? path.basename(path.resolve(o.outDir)),
      created: new Date().toISOString(),
      model: o.model,
      config: { tasks: [...o.tasks], num_fewshot: o.numFewshot ?? null, limit: o.limit ?? null, add_bos: o.addBos, tokenizer: o.tokenizer, data_dirs: Object.fromEntries(o.tasks.map((t) => [t, path.resolve(o.dataDirs?.[t] ?? o.dataDir)])), ...o.extraConfig },
      versions: { '@llama-pro/eval': version, node: process.version },
    },
    results,
  );
}
