/** Result records: one JSON per run (full configuration), per-sample JSONL, markdown tables, and comparisons. */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic, writeJsonAtomic } from '@llama-pro/core';
import { EvalError } from './errors';
import type { DatasetRecord, TaskResult } from './evaluator';

export const RESULT_FORMAT_VERSION = 1;

export interface ModelRecord {
  /** `local` (a model directory through a backend) or `endpoint` (an OpenAI-compatible server). */
  readonly kind: 'local' | 'endpoint' | 'samples';
  /** Directory or URL. */
  readonly source: string;
  /** sha256 over the weight files (local) or null. */
  readonly sha256: string | null;
  readonly backend: string | null;
  readonly device: string | null;
  readonly dtype: string | null;
  readonly served_model?: string;
}

export interface RunConfig {
  readonly tasks: readonly string[];
  readonly num_fewshot: number | null;
  readonly limit: number | null;
  /** Whether BOS is prepended to contexts (lm-eval <= 0.4.9: no; current with Llama tokenizers: yes). */
  readonly add_bos: boolean | null;
  readonly tokenizer: string | null;
  readonly [k: string]: unknown;
}

export interface TaskRecord {
  readonly metrics: Record<string, number>;
  readonly details?: Record<string, unknown>;
  readonly config: Record<string, unknown>;
  readonly dataset: DatasetRecord;
  readonly samples_file: string;
  readonly duration_s: number;
}

export interface RunRecord {
  readonly format: 'llama-pro-eval';
  readonly version: number;
  readonly name: string;
  readonly created: string;
  readonly model: ModelRecord;
  readonly config: RunConfig;
  readonly tasks: Record<string, TaskRecord>;
  readonly versions: Record<string, string>;
}

export function samplesFileName(task: string): string {
  return `samples_${task.replace(/[^A-Za-z0-9_.-]/g, '_')}.jsonl`;
}

/** Writes `results.json`, `results.md` and one `samples_<task>.jsonl` per task into `dir` (each atomically). */
export async function writeRun(dir: string, run: Omit<RunRecord, 'tasks'>, results: readonly { result: TaskResult; durationS: number }[]): Promise<RunRecord> {
  await fsp.mkdir(dir, { recursive: true });
  const tasks: Record<string, TaskRecord> = {};
  for (const { result, durationS } of results) {
    const file = samplesFileName(result.task);
    await writeFileAtomic(path.join(dir, file), result.samples.map((s) => JSON.stringify(s)).join('\n') + (result.samples.length ? '\n' : ''));
    tasks[result.task] = { metrics: result.metrics, details: result.details, config: result.config, dataset: result.dataset, samples_file: file, duration_s: durationS };
  }
  const record: RunRecord = { ...run, tasks };
  await writeJsonAtomic(path.join(dir, 'results.json'), record);
  await writeFileAtomic(path.join(dir, 'results.md'), markdownTable(record));
  return record;
}

export async function readRun(file: string): Promise<RunRecord> {
  const p = (await fsp.stat(file).catch(() => null))?.isDirectory() ? path.join(file, 'results.json') : file;
  let rec: RunRecord;
  try {
    rec = JSON.parse(await fsp.readFile(p, 'utf8')) as RunRecord;
  } catch (e) {
    throw new EvalError(`cannot read run ${p}: ${(e as Error).message}`, 'RUN_UNREADABLE');
  }
  if (rec.format !== 'llama-pro-eval' || typeof rec.tasks !== 'object') throw new EvalError(`${p} is not a llama-pro eval results.json`, 'RUN_INVALID');
  return rec;
}

export function formatValue(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(4);
}

/** Headline metrics (stderr columns folded into their metric). */
function headline(metrics: Record<string, number>): [string, number, number | undefined][] {
  const out: [string, number, number | undefined][] = [];
  for (const [k, v] of Object.entries(metrics)) {
    if (k.includes('_stderr')) continue;
    const [name, filter] = k.split(',');
    const se = metrics[filter ? `${name}_stderr,${filter}` : `${name}_stderr`];
    out.push([k, v, se]);
  }
  return out;
}

export function markdownTable(run: RunRecord): string {
  const lines = [
    `# ${run.name}`,
    '',
    `model: \`${run.model.source}\` (${run.model.kind}${run.model.backend ? `, ${run.model.backend}` : ''}${run.model.dtype ? `, ${run.model.dtype}` : ''}${run.model.sha256 ? `, sha256 ${run.model.sha256.slice(0, 12)}` : ''}); BOS: ${run.config.add_bos ?? 'n/a'}`,
    '',
    '| task | shots | metric | value | ± stderr |',
    '|---|---|---|---|---|',
  ];
  for (const [task, t] of Object.entries(run.tasks)) {
    const shots = t.config['num_fewshot'];
    for (const [m, v, se] of headline(t.metrics)) lines.push(`| ${task} | ${shots ?? ''} | ${m} | ${formatValue(v)} | ${se === undefined ? '' : formatValue(se)} |`);
  }
  return lines.join('\n') + '\n';
}

/** A comparison table of several runs: one column per run, deltas against the first (the baseline). */
export function compareRuns(runs: readonly RunRecord[]): string {
  if (runs.length < 1) throw new EvalError('compare needs at least one run', 'USAGE');
  const base = runs[0]!;
  const keys: [string, string][] = [];
  const seen = new Set<string>();
  for (const r of runs) {
    for (const [task, t] of Object.entries(r.tasks)) {
      for (const [m] of headline(t.metrics)) {
        const k = `${task}\u0000${m}`;
        if (!seen.has(k)) {
          seen.add(k);
          keys.push([task, m]);
        }
      }
    }
  }
  const head = ['task', 'metric', ...runs.map((r, i) => (i === 0 ? `${r.name} (base)` : r.name))];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const [task, m] of keys) {
    const b = base.tasks[task]?.metrics[m];
    const cells = runs.map((r, i) => {
      const v = r.tasks[task]?.metrics[m];
      if (v === undefined) return '—';
      if (i === 0 || b === undefined) return formatValue(v);
      const d = v - b;
      return `${formatValue(v)} (${d >= 0 ? '+' : ''}${d.toFixed(4)})`;
    });
    lines.push(`| ${task} | ${m} | ${cells.join(' | ')} |`);
  }
  const shots = runs.map((r) => Object.entries(r.tasks).map(([t, x]) => `${t}:${x.config['num_fewshot'] ?? '-'}`).join(','));
  if (new Set(shots).size > 1) lines.push('', `note: the runs differ in few-shot settings (${shots.join(' vs ')}); deltas are not like for like.`);
  return lines.join('\n') + '\n';
}
