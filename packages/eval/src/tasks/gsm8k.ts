/**
 * GSM8K as lm-evaluation-harness runs it: `gsm8k` (5-shot, few-shot docs drawn from train with
 * `random.Random(1234).sample`, one RNG stream over the test docs in order) and `gsm8k_cot` (8 fixed
 * chain-of-thought exemplars); `exact_match` after the `strict-match` and `flexible-extract` filters.
 */
import { DatasetError } from '../errors';
import { parseJsonl, readDatasetFile, requireFields, type DatasetFileInfo } from '../datasets/files';
import { PyRandom } from '../util/py-random';
import { pyStrip } from '../util/py-str';

export interface Gsm8kDoc {
  readonly question: string;
  readonly answer: string;
}

export async function loadGsm8k(dir: string): Promise<{ test: Gsm8kDoc[]; train: Gsm8kDoc[]; files: DatasetFileInfo[] }> {
  const hint = 'put openai/grade-school-math grade_school_math/data/{train,test}.jsonl there (or pass --data-dir)';
  const t = await readDatasetFile(dir, 'test.jsonl', hint);
  const tr = await readDatasetFile(dir, 'train.jsonl', hint);
  const test = parseJsonl<Gsm8kDoc>(t.data, 'test.jsonl');
  const train = parseJsonl<Gsm8kDoc>(tr.data, 'train.jsonl');
  for (const [name, docs] of [['test.jsonl', test], ['train.jsonl', train]] as const) {
    docs.forEach((d, i) => requireFields(d as unknown as Record<string, unknown>, ['question', 'answer'], `${name} record ${i + 1}`));
  }
  return { test, train, files: [t.info, tr.info] };
}

/** `doc_to_text` of `gsm8k.yaml`. */
export function gsm8kDocToText(doc: Gsm8kDoc): string {
  return `Question: ${doc.question}\nAnswer:`;
}

/** lm-eval's default few-shot seed (`lm_eval/defaults.py`). */
export const FEWSHOT_RANDOM_SEED = 1234;

/**
 * Few-shot train indices for test docs 0..count-1 in order, continuing one `random.Random(seed)` stream
 * (`ContextSampler.sample` draws `rnd.sample(train_docs, k)` for each doc).
 */
export function gsm8kFewshotIndices(trainSize: number, count: number, k = 5, seed = FEWSHOT_RANDOM_SEED): number[][] {
  const rng = new PyRandom(seed);
  const population = Array.from({ length: trainSize }, (_, i) => i);
  const out: number[][] = [];
  for (let i = 0; i < count; i++) out.push(k > 0 ? rng.sample(population, k) : []);
  return out;
}

/** The `gsm8k` context: Σ shots `Question: q\nAnswer: <full answer>\n\n`, then `Question: q\nAnswer:`. */
export function gsm8kPrompt(doc: Gsm8kDoc, shots: readonly Gsm8kDoc[]): string {
  return shots.map((s) => gsm8kDocToText(s) + ' ' + s.answer + '\n\n').join('') + gsm8kDocToText(doc);
}

/** The 8 exemplars of `gsm8k-cot.yaml` (Wei et al. 2022, Table 20). */
export const GSM8K_COT_EXEMPLARS: readonly { question: string; target: string }[] = [
  {
    question: 'There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, there will be 21 trees. How many trees did the grove workers plant today?',
    target: 'There are 15 trees originally. Then there were 21 trees after some more were planted. So there must have been 21 - 15 = 6. The answer is 6.',
  },
  {
    question: 'If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?',
    target: 'There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5.',
  },
  {
    question: 'Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?',
    target: 'Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After eating 35, they had 74 - 35 = 39. The answer is 39.',
  },
  {
    question: 'Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did Jason give to Denny?',
    target: 'Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8. The answer is 8.',
  },
  {
    question: 'Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he have now?',
    target: 'Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. 5 + 4 = 9. The answer is 9.',
  },
  {
    question: 'There were nine computers in the server room. Five more computers were installed each day, from monday to thursday. How many computers are now in the server room?',
    target: 'There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 computers were added. 9 + 20 is 29. The answer is 29.',
  },
  {
    question: 'Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many golf balls did he have at the end of wednesday?',
    target: 'Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 more, he had 35 - 2 = 33 golf balls. The answer is 33.',
  },
  {
    question: 'Olivia has $23. She bought five bagels for $3 each. How much money does she have left?',
    target: 'Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 dollars left. 23 - 15 is 8. The answer is 8.',
  },
];

/** The `gsm8k_cot` context (first_n of the exemplars): Σ `Q: q\nA: target\n\n`, then `Q: q\nA:`. */
export function gsm8kCotPrompt(doc: Gsm8kDoc, numFewshot = 8): string {
  if (numFewshot > GSM8K_COT_EXEMPLARS.length) throw new DatasetError(`gsm8k_cot has ${GSM8K_COT_EXEMPLARS.length} exemplars; --num-fewshot ${numFewshot} is too many`, 'FEWSHOT_TOO_MANY');
  return GSM8K_COT_EXEMPLARS.slice(0, numFewshot).map((e) => `Q: ${e.question}\nA: ${e.target}\n\n`).join('') + `Q: ${doc.question}\nA:`;
}

export const GSM8K_UNTIL = ['Question:', '</s>', '<|im_end|>'] as const;
export const GSM8K_COT_UNTIL = ['Q:', '</s>', '<|im_end|>'] as const;
export const GSM8K_MAX_GEN_TOKS = 256;

// lm-eval spells these `#### (\-?[0-9\.\,]+)` and `The answer is (\-?[0-9\.\,]+).`; the escapes are no-ops. Python's
// `.` matches every character but \n; JavaScript's also refuses \r, U+2028 and U+2029, hence `[^\n]`.
export const STRICT_MATCH = /#### (-?[0-9.,]+)/g;
export const FLEXIBLE_EXTRACT = /(-?[$0-9.,]{2,})|(-?[0-9]+)/g;
export const COT_STRICT_MATCH = /The answer is (-?[0-9.,]+)[^\n]/g;
export const INVALID = '[invalid]';

/**
 * lm-eval `RegexFilter`: `re.findall`, then the `groupSelect`-th match (negative counts from the end); a
 * multi-group match becomes its first non-empty group; `.strip()`; `[invalid]` when nothing matches.
 */
export function regexFilter(resp: string, pattern: RegExp, groupSelect = 0): string {
  const re = new RegExp(pattern.source, pattern.flags.includes('g') ? pattern.flags : pattern.flags + 'g');
  const matches = [...resp.matchAll(re)];
  if (matches.length === 0) return INVALID;
  const idx = groupSelect < 0 ? matches.length + groupSelect : groupSelect;
  const m = matches[idx];
  if (!m) return INVALID;
  let value: string;
  if (m.length <= 1) value = m[0];
  else if (m.length === 2) value = m[1] ?? '';
  else {
    const groups = m.slice(1).filter((g): g is string => !!g);
    value = groups.length ? groups[0]! : INVALID;
  }
  return pyStrip(value);
}


export const strictMatch = (resp: string): string => regexFilter(resp, STRICT_MATCH, 0);
export const flexibleExtract = (resp: string): string => regexFilter(resp, FLEXIBLE_EXTRACT, -1);
export const cotStrictMatch = (resp: string): string => regexFilter(resp, COT_STRICT_MATCH, 0);

/** `regexes_to_ignore` of the GSM8K metric, in order, as Python `re.sub` patterns translated to JS. */
const IGNORE: RegExp[] = [/,/g, /\$/g, /[\s\S]*#### /g, /\.(?=\n?$)/g];

/** lm-eval `exact_match_hf_evaluate` with ignore_case and the GSM8K `regexes_to_ignore`. */
export function gsm8kExactMatch(prediction: string, reference: string): boolean {
  let p = prediction;
  let r = reference;
  for (const re of IGNORE) {
    p = p.replace(re, '');
    r = r.replace(re, '');
  }
  return p.toLowerCase() === r.toLowerCase();
}

/** The gold answer as the metric sees it: the text after `#### ` with `,`/`$` removed. */
export function gsm8kGold(answer: string): string {
  let r = answer;
  for (const re of IGNORE) r = r.replace(re, '');
  return r;
}
