/**
 * HumanEval (openai/human-eval) and its execution-based scoring: the program that runs is exactly
 * `prompt + completion + "\n" + test + "\n" + "check(entry_point)"`; pass@k is the unbiased estimator.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { ProgressReporter } from '@llama-pro/core';
import { DatasetError, EvalError } from '../errors';
import { parseJsonl, readDatasetFile, requireFields, type DatasetFileInfo } from '../datasets/files';
import { passAtKTable } from '../metrics';
import type { CheckJob, CodeSandbox, ExecutionResult, SandboxLimits } from '../sandbox/python-sandbox';

export interface HumanEvalProblem {
  readonly task_id: string;
  readonly prompt: string;
  readonly canonical_solution: string;
  readonly test: string;
  readonly entry_point: string;
}

export interface CompletionSample {
  readonly task_id: string;
  readonly completion: string;
}

/** lm-eval `humaneval.yaml` stop strings. */
export const HUMANEVAL_STOPS = ['\nclass', '\ndef', '\n#', '\nif', '\nprint'] as const;

export const HUMANEVAL_FILES = ['HumanEval.jsonl.gz', 'HumanEval.jsonl'];

/** Loads `HumanEval.jsonl.gz` (or `.jsonl`) from a directory. */
export async function loadHumanEval(dir: string): Promise<{ problems: HumanEvalProblem[]; files: DatasetFileInfo[] }> {
  let name = HUMANEVAL_FILES[0]!;
  for (const f of HUMANEVAL_FILES) {
    try {
      await fsp.access(path.join(dir, f));
      name = f;
      break;
    } catch {
      // try the next name
    }
  }
  const { data, info } = await readDatasetFile(dir, name, 'put openai/human-eval data/HumanEval.jsonl.gz there (or pass --data-dir)');
  const problems = parseJsonl<HumanEvalProblem>(data, name);
  problems.forEach((p, i) => requireFields(p as unknown as Record<string, unknown>, ['task_id', 'prompt', 'canonical_solution', 'test', 'entry_point'], `${name} record ${i + 1}`));
  return { problems, files: [info] };
}

/** The exact program openai/human-eval executes. */
export function humanEvalProgram(problem: Pick<HumanEvalProblem, 'prompt' | 'test' | 'entry_point'>, completion: string): string {
  return problem.prompt + completion + '\n' + problem.test + '\n' + `check(${problem.entry_point})`;
}

/**
 * The same program split for the sandbox: prompt + completion run sandboxed, the test and `check(entry_point)`
 * run in the checker against the sandboxed entry point (the prompt's helpers such as `poly` come from the
 * dataset's prompt), so the completion cannot reach the check.
 */
export function humanEvalJob(problem: Pick<HumanEvalProblem, 'prompt' | 'test' | 'entry_point'>, completion: string): CheckJob {
  return { code: problem.prompt + completion, setup: problem.prompt, test: problem.test + '\n' + `check(${problem.entry_point})`, expose: [problem.entry_point] };
}

/** Reads a samples file in openai/human-eval format: one `{"task_id", "completion"}` object per line. */
export async function readSamplesJsonl(file: string): Promise<CompletionSample[]> {
  let data: Buffer;
  try {
    data = await fsp.readFile(file);
  } catch (e) {
    throw new DatasetError(`cannot read samples file ${file}: ${(e as Error).message}`, 'SAMPLES_UNREADABLE');
  }
  const recs = parseJsonl<Record<string, unknown>>(data, file);
  return recs.map((r, i) => {
    if (typeof r['task_id'] !== 'string' || typeof r['completion'] !== 'string') {
      throw new DatasetError(`${file} line ${i + 1}: each line must be {"task_id": string, "completion": string} (openai/human-eval format)`, 'SAMPLES_INVALID');
    }
    return { task_id: r['task_id'], completion: r['completion'] };
  });
}

export interface ExecutedSample {
  readonly task_id: string;
  readonly completion_id: number;
  readonly completion: string;
  readonly result: string;
  readonly passed: boolean;
}

export interface FunctionalCorrectness {
  /** pass@k for every k where each problem has at least k samples. */
  readonly metrics: Record<string, number>;
  readonly samples: ExecutedSample[];
  readonly problems: number;
  readonly passedSamples: number;
}

export interface ScoreOptions extends SandboxLimits {
  ks?: readonly number[];
  workers?: number;
  progress?: ProgressReporter;
  /** Require every problem to have samples (the reference asserts it). Default true. */
  requireAll?: boolean;
  /** Builds the sandbox job for a problem and completion (default: the HumanEval assembly, humanEvalJob). */
  program?: (problem: HumanEvalProblem, completion: string) => CheckJob;
}

/**
 * openai/human-eval `evaluate_functional_correctness`: executes every sample, groups by task, and reports
 * pass@k averaged over problems.
 */
export async function evaluateFunctionalCorrectness(
  problems: readonly HumanEvalProblem[],
  samples: readonly CompletionSample[],
  sandbox: CodeSandbox,
  options: ScoreOptions = {},
): Promise<FunctionalCorrectness> {
  const byId = new Map(problems.map((p) => [p.task_id, p]));
  const counts = new Map<string, number>();
  const jobs: { problem: HumanEvalProblem; sample: CompletionSample; completionId: number }[] = [];
  for (const s of samples) {
    const p = byId.get(s.task_id);
    if (!p) throw new EvalError(`sample for unknown task_id "${s.task_id}"; the samples must belong to the loaded problems`, 'SAMPLES_UNKNOWN_TASK');
    const id = counts.get(s.task_id) ?? 0;
    counts.set(s.task_id, id + 1);
    jobs.push({ problem: p, sample: s, completionId: id });
  }
  if ((options.requireAll ?? true) && counts.size !== problems.length) {
    const missing = problems.filter((p) => !counts.has(p.task_id)).map((p) => p.task_id);
    throw new EvalError(`some problems are not attempted (${missing.length}, e.g. ${missing.slice(0, 3).join(', ')}); give samples for all of them or limit the problems`, 'SAMPLES_INCOMPLETE');
  }
  const build = options.program ?? humanEvalJob;
  const results: ExecutionResult[] = await sandbox.runAll(
    jobs.map((j) => build(j.problem, j.sample.completion)),
    { ...options, label: 'execute' },
  );
  const executed: ExecutedSample[] = jobs.map((j, i) => ({
    task_id: j.sample.task_id,
    completion_id: j.completionId,
    completion: j.sample.completion,
    result: results[i]!.result,
    passed: results[i]!.passed,
  }));
  const perTask = new Map<string, { n: number; c: number }>();
  for (const e of executed) {
    const t = perTask.get(e.task_id) ?? { n: 0, c: 0 };
    t.n++;
    if (e.passed) t.c++;
    perTask.set(e.task_id, t);
  }
  const metrics = passAtKTable([...perTask.values()], options.ks ?? [1, 10, 100]);
  return { metrics, samples: executed, problems: perTask.size, passedSamples: executed.filter((e) => e.passed).length };
}
