/**
 * MBPP (Austin et al. 2021) in lm-eval's `mbpp` form: test split = task_ids 11..510, 3-shot with the
 * prompt-pool tasks 2, 3, 4, prompt `You are an expert Python programmer, and here is your task: {text} Your
 * code should pass these tests:\n\n{tests}\n[BEGIN]\n`, generation until `[DONE]`, and the program
 * `completion + "\n" + test_setup_code + asserts` executed in the sandbox.
 */
import * as path from 'node:path';
import { pathExists } from '@llama-pro/core';
import { parseJsonl, readDatasetFile, requireFields, type DatasetFileInfo } from '../datasets/files';
import type { CheckJob } from '../sandbox/python-sandbox';

export interface MbppDoc {
  readonly task_id: number;
  readonly text: string;
  readonly code: string;
  readonly test_list: readonly string[];
  readonly test_setup_code: string;
  readonly challenge_test_list: readonly string[];
}

export const MBPP_FEWSHOT_IDS = [2, 3, 4] as const;
export const MBPP_UNTIL = ['[DONE]'] as const;

/** The directory holding mbpp.jsonl under a data root: `mbpp/`, else `humaneval/` (the older layout). */
export async function mbppDir(root: string): Promise<string> {
  const own = path.join(root, 'mbpp');
  if (await pathExists(path.join(own, 'mbpp.jsonl'))) return own;
  const legacy = path.join(root, 'humaneval');
  return (await pathExists(path.join(legacy, 'mbpp.jsonl'))) ? legacy : own;
}

export async function loadMbpp(dir: string): Promise<{ test: MbppDoc[]; prompt: MbppDoc[]; files: DatasetFileInfo[] }> {
  const { data, info } = await readDatasetFile(dir, 'mbpp.jsonl', 'put google-research mbpp/mbpp.jsonl there (or pass --data-dir)');
  const docs = parseJsonl<MbppDoc>(data, 'mbpp.jsonl');
  docs.forEach((d, i) => requireFields(d as unknown as Record<string, unknown>, ['task_id', 'text', 'code', 'test_list'], `mbpp.jsonl record ${i + 1}`));
  return {
    test: docs.filter((d) => d.task_id >= 11 && d.task_id <= 510),
    prompt: docs.filter((d) => d.task_id >= 1 && d.task_id <= 10),
    files: [info],
  };
}

export function mbppDocToText(doc: MbppDoc): string {
  return `You are an expert Python programmer, and here is your task: ${doc.text} Your code should pass these tests:\n\n${doc.test_list.map((t) => t + '\n').join('')}[BEGIN]\n`;
}

export function mbppPrompt(doc: MbppDoc, shots: readonly MbppDoc[]): string {
  return shots.map((s) => mbppDocToText(s) + s.code + '\n[DONE]' + '\n\n').join('') + mbppDocToText(doc);
}

/**
 * The MBPP program split for the sandbox: the completion runs sandboxed; test_setup_code and the asserts run in the
 * checker after it (as in the program above), with the functions the reference code defines allowed to shadow
 * builtins (task 126 defines `sum`).
 */
export function mbppJob(doc: MbppDoc, completion: string): CheckJob {
  const setup = doc.test_setup_code ? doc.test_setup_code + '\n' : '';
  const calls = [...doc.code.matchAll(/^(?:def|class)\s+([A-Za-z_]\w*)/gm)].map((m) => m[1]!);
  return { code: completion, test: setup + doc.test_list.join('\n'), calls };
}

export function mbppProgram(doc: MbppDoc, completion: string): string {
  const setup = doc.test_setup_code ? doc.test_setup_code + '\n' : '';
  return completion + '\n' + setup + doc.test_list.join('\n');
}
