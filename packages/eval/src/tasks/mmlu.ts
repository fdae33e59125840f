/**
 * MMLU (Hendrycks et al.) as lm-evaluation-harness's `mmlu` task scores it: per-subject description, the
 * first k dev rows as shots, continuations " A".." D", argmax of summed log-likelihoods (ties to A); micro
 * average over all questions (lm-eval's `mmlu`), macro average over subjects, four category averages. An
 * `original` prompt mode reproduces `hendrycks/test/evaluate.py` (double space after "about", no strip).
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { DatasetError } from '../errors';
import { readDatasetFile, type DatasetFileInfo } from '../datasets/files';
import { parseCsv, CsvError } from '../util/csv';
import { pyStrip } from '../util/py-str';

export type MmluSplit = 'dev' | 'val' | 'test';
export const LETTERS = ['A', 'B', 'C', 'D'] as const;

export interface MmluRow {
  readonly subject: string;
  readonly question: string;
  readonly choices: readonly [string, string, string, string];
  /** 0..3 */
  readonly answer: number;
}

export type MmluCategory = 'stem' | 'humanities' | 'social_sciences' | 'other';

/** Subject → category of lm-eval's `mmlu` groups (`_generate_configs.py`). */
export const MMLU_CATEGORIES: Readonly<Record<string, MmluCategory>> = {
  abstract_algebra: 'stem', anatomy: 'stem', astronomy: 'stem', college_biology: 'stem', college_chemistry: 'stem',
  college_computer_science: 'stem', college_mathematics: 'stem', college_physics: 'stem', computer_security: 'stem',
  conceptual_physics: 'stem', electrical_engineering: 'stem', elementary_mathematics: 'stem', high_school_biology: 'stem',
  high_school_chemistry: 'stem', high_school_computer_science: 'stem', high_school_mathematics: 'stem',
  high_school_physics: 'stem', high_school_statistics: 'stem', machine_learning: 'stem',
  formal_logic: 'humanities', high_school_european_history: 'humanities', high_school_us_history: 'humanities',
  high_school_world_history: 'humanities', international_law: 'humanities', jurisprudence: 'humanities',
  logical_fallacies: 'humanities', moral_disputes: 'humanities', moral_scenarios: 'humanities', philosophy: 'humanities',
  prehistory: 'humanities', professional_law: 'humanities', world_religions: 'humanities',
  econometrics: 'social_sciences', high_school_geography: 'social_sciences', high_school_government_and_politics: 'social_sciences',
  high_school_macroeconomics: 'social_sciences', high_school_microeconomics: 'social_sciences', high_school_psychology: 'social_sciences',
  human_sexuality: 'social_sciences', professional_psychology: 'social_sciences', public_relations: 'social_sciences',
  security_studies: 'social_sciences', sociology: 'social_sciences', us_foreign_policy: 'social_sciences',
  business_ethics: 'other', clinical_knowledge: 'other', college_medicine: 'other', global_facts: 'other', human_aging: 'other',
  management: 'other', marketing: 'other', medical_genetics: 'other', miscellaneous: 'other', nutrition: 'other',
  professional_accounting: 'other', professional_medicine: 'other', virology: 'other',
};

export interface MmluData {
  /** Subjects in sorted order. */
  readonly subjects: string[];
  readonly splits: Record<MmluSplit, Map<string, MmluRow[]>>;
  readonly files: DatasetFileInfo[];
}

/** Loads `<dir>/{dev,val,test}/<subject>_<split>.csv` (the official data.tar layout, no header rows). */
export async function loadMmlu(dir: string, splits: readonly MmluSplit[] = ['dev', 'val', 'test'], only?: readonly string[]): Promise<MmluData> {
  const out: Record<MmluSplit, Map<string, MmluRow[]>> = { dev: new Map(), val: new Map(), test: new Map() };
  const files: DatasetFileInfo[] = [];
  const subjects = new Set<string>();
  for (const split of splits) {
    let names: string[];
    try {
      names = (await fsp.readdir(path.join(dir, split))).filter((n) => n.endsWith(`_${split}.csv`)).sort();
    } catch {
      throw new DatasetError(`${path.join(dir, split)} not found; put the MMLU data.tar folders dev/, val/, test/ in ${dir} (or pass --data-dir)`, 'DATASET_MISSING');
    }
    if (names.length === 0) throw new DatasetError(`${path.join(dir, split)} has no *_${split}.csv files`, 'DATASET_MISSING');
    for (const name of names) {
      const subject = name.slice(0, -`_${split}.csv`.length);
      if (only && !only.includes(subject)) continue;
      const rel = `${split}/${name}`;
      const { data, info } = await readDatasetFile(dir, rel, 'MMLU CSV');
      files.push(info);
      let rows: string[][];
      try {
        rows = parseCsv(data.toString('utf8'));
      } catch (e) {
        if (e instanceof CsvError) throw new DatasetError(`${rel}: ${e.message}`, 'DATASET_INVALID');
        throw e;
      }
      out[split].set(
        subject,
        rows.map((r, i) => {
          const answer = LETTERS.indexOf(r[5] as (typeof LETTERS)[number]);
          if (r.length !== 6 || answer < 0) throw new DatasetError(`${rel} row ${i + 1}: expected 6 fields "question,A,B,C,D,answer" with answer in A-D`, 'DATASET_INVALID');
          return { subject, question: r[0]!, choices: [r[1]!, r[2]!, r[3]!, r[4]!], answer };
        }),
      );
      subjects.add(subject);
    }
  }
  return { subjects: [...subjects].sort(), splits: out, files };
}

export type MmluPromptStyle = 'lm-eval' | 'original';

function docToText(row: MmluRow, style: MmluPromptStyle): string {
  const q = style === 'lm-eval' ? pyStrip(row.question) : row.question; // doc_to_text: {{question.strip()}}
  return `${q}\nA. ${row.choices[0]}\nB. ${row.choices[1]}\nC. ${row.choices[2]}\nD. ${row.choices[3]}\nAnswer:`;
}

/** The full context for one test row; continuations are `" A"`..`" D"`. */
export function mmluPrompt(subject: string, row: MmluRow, shots: readonly MmluRow[], style: MmluPromptStyle = 'lm-eval'): string {
  const words = subject.split('_').join(' ');
  const description =
    style === 'lm-eval'
      ? `The following are multiple choice questions (with answers) about ${words}.\n\n`
      : `The following are multiple choice questions (with answers) about  ${words}.\n\n`;
  return description + shots.map((s) => docToText(s, style) + ' ' + LETTERS[s.answer] + '\n\n').join('') + docToText(row, style);
}

export const MMLU_CONTINUATIONS = [' A', ' B', ' C', ' D'] as const;

/** np.argmax: the first maximal index. */
export function argmax(xs: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i]! > xs[best]!) best = i;
  return best;
}

export interface MmluAggregate {
  /** lm-eval `mmlu` acc: Σ correct / Σ questions. */
  readonly acc: number;
  readonly correct: number;
  readonly total: number;
  /** Plain mean of the subject accuracies. */
  readonly accMacro: number;
  readonly categories: Record<MmluCategory, { acc: number; correct: number; total: number; subjects: number }>;
  readonly subjects: Record<string, { acc: number; correct: number; total: number }>;
}

/** Micro, macro, category and subject accuracies from per-question correctness. */
export function aggregateMmlu(results: readonly { subject: string; correct: boolean }[]): MmluAggregate {
  const subj = new Map<string, { correct: number; total: number }>();
  for (const r of results) {
    const s = subj.get(r.subject) ?? { correct: 0, total: 0 };
    s.total++;
    if (r.correct) s.correct++;
    subj.set(r.subject, s);
  }
  const subjects: Record<string, { acc: number; correct: number; total: number }> = {};
  const cats = {} as Record<MmluCategory, { acc: number; correct: number; total: number; subjects: number }>;
  for (const c of ['stem', 'humanities', 'social_sciences', 'other'] as MmluCategory[]) cats[c] = { acc: 0, correct: 0, total: 0, subjects: 0 };
  let correct = 0;
  let total = 0;
  let macro = 0;
  for (const name of [...subj.keys()].sort()) {
    const s = subj.get(name)!;
    subjects[name] = { acc: s.correct / s.total, ...s };
    correct += s.correct;
    total += s.total;
    macro += s.correct / s.total;
    const cat = MMLU_CATEGORIES[name];
    if (cat) {
      cats[cat].correct += s.correct;
      cats[cat].total += s.total;
      cats[cat].subjects++;
    }
  }
  for (const c of Object.values(cats)) c.acc = c.total ? c.correct / c.total : 0;
  return { acc: total ? correct / total : 0, correct, total, accMacro: subj.size ? macro / subj.size : 0, categories: cats, subjects };
}
