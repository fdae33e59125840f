/** The built-in evaluators registered under TOKENS.Evaluator. */
import * as path from 'node:path';
import { ROLLING_SCORINGS, type RollingScoring } from '@llama-pro/core';
import { EvalError } from '../errors';
import {
  applyLimit,
  datasetRecord,
  generateWithProgress,
  loglikelihoodWithProgress,
  option,
  requireLm,
  type EvalContext,
  type Evaluator,
  type TaskResult,
} from '../evaluator';
import { mean, stderrOfMean, stripPromptEcho, truncateAtStops } from '../metrics';
import { PythonSandbox, type CodeSandbox } from '../sandbox/python-sandbox';
import {
  cotStrictMatch,
  flexibleExtract,
  FEWSHOT_RANDOM_SEED,
  GSM8K_COT_UNTIL,
  GSM8K_MAX_GEN_TOKS,
  GSM8K_UNTIL,
  gsm8kCotPrompt,
  gsm8kExactMatch,
  gsm8kFewshotIndices,
  gsm8kPrompt,
  loadGsm8k,
  strictMatch,
} from './gsm8k';
import { evaluateFunctionalCorrectness, HUMANEVAL_STOPS, loadHumanEval, readSamplesJsonl, type CompletionSample } from './humaneval';
import { loadMbpp, mbppDir, MBPP_FEWSHOT_IDS, MBPP_UNTIL, mbppJob, mbppPrompt } from './mbpp';
import { aggregateMmlu, argmax, loadMmlu, MMLU_CATEGORIES, MMLU_CONTINUATIONS, mmluPrompt, type MmluPromptStyle, type MmluRow } from './mmlu';
import { loadCorpus, perplexityMetrics } from './perplexity';

function sandboxOf(ctx: EvalContext): CodeSandbox {
  return ctx.sandbox ?? new PythonSandbox();
}

function checkFewshot(task: string, n: number, max: number): number {
  if (!Number.isInteger(n) || n < 0 || n > max) throw new EvalError(`${task}: --num-fewshot must be an integer in 0..${max} (got ${n})`, 'USAGE');
  return n;
}

/** HumanEval: generate (greedy, lm-eval stops) or score a samples file; pass@k in the sandbox. */
export const humanevalEvaluator: Evaluator = {
  name: 'humaneval',
  description: 'HumanEval pass@k (openai/human-eval execution, lm-eval stop strings, greedy by default)',
  dataset: 'humaneval',
  needs: ['generate_until', 'sandbox'],
  defaultFewshot: 0,
  async evaluate(ctx: EvalContext): Promise<TaskResult> {
    const dir = path.join(ctx.dataDir, 'humaneval');
    const { problems: all, files } = await loadHumanEval(dir);
    if ((ctx.numFewshot ?? 0) !== 0) throw new EvalError('humaneval is 0-shot; drop --num-fewshot', 'USAGE');
    const samplesFile = option<string | undefined>(ctx, 'samplesFile', undefined);
    const ks = option<number[]>(ctx, 'ks', [1, 10, 100]);
    const timeoutS = option<number>(ctx, 'timeoutS', 3.0);
    const maxGenTokens = option<number>(ctx, 'maxGenTokens', 512);
    const temperature = option<number>(ctx, 'temperature', 0);
    const nSamples = option<number>(ctx, 'nSamples', 1);
    const problems = applyLimit(all, ctx.limit);
    let samples: CompletionSample[];
    let raw: string[] | undefined;
    if (samplesFile) {
      samples = await readSamplesJsonl(samplesFile);
      // With --limit, score the first N problems and ignore samples of the others; without it every problem
      // must be attempted (the reference asserts it).
      const keep = new Set(problems.map((p) => p.task_id));
      const known = new Set(all.map((p) => p.task_id));
      samples = samples.filter((s) => keep.has(s.task_id) || !known.has(s.task_id));
    } else {
      const lm = requireLm(ctx, 'humaneval');
      const reqs = problems.flatMap((p) =>
        Array.from({ length: nSamples }, (_, i) => ({ context: p.prompt, until: [...HUMANEVAL_STOPS], maxGenTokens, temperature, seed: i })),
      );
      raw = await generateWithProgress(lm, reqs, ctx.progress, 'humaneval generate');
      samples = reqs.map((_, i) => {
        const p = problems[Math.floor(i / nSamples)]!;
        return { task_id: p.task_id, completion: truncateAtStops(stripPromptEcho(p.prompt, raw![i]!), HUMANEVAL_STOPS) };
      });
    }
    const sandbox = sandboxOf(ctx);
    const r = await evaluateFunctionalCorrectness(problems, samples, sandbox, { ks, timeoutS, progress: ctx.progress, workers: option<number | undefined>(ctx, 'workers', undefined) });
    return {
      task: 'humaneval',
      metrics: r.metrics,
      details: { problems: r.problems, samples: r.samples.length, passed_samples: r.passedSamples },
      config: {
        num_fewshot: 0,
        source: samplesFile ? { samples_file: path.resolve(samplesFile) } : 'generated',
        until: [...HUMANEVAL_STOPS],
        max_gen_toks: maxGenTokens,
        temperature,
        n_samples: nSamples,
        ks,
        timeout_s: timeoutS,
        limit: ctx.limit ?? null,
        sandbox: await sandbox.describe(),
      },
      dataset: datasetRecord('humaneval', dir, files),
      samples: r.samples.map((s, i) => ({ ...s, ...(raw ? { raw_generation: raw[i] } : {}) })),
    };
  },
};

/** MBPP: lm-eval 3-shot prompt, until [DONE], pass@1 by execution. */
export const mbppEvaluator: Evaluator = {
  name: 'mbpp',
  description: 'MBPP pass@k (lm-eval 3-shot prompt with tasks 2,3,4; test split 11-510)',
  dataset: 'mbpp',
  needs: ['generate_until', 'sandbox'],
  defaultFewshot: 3,
  async evaluate(ctx: EvalContext): Promise<TaskResult> {
    const dir = await mbppDir(ctx.dataDir);
    const { test, prompt: pool, files } = await loadMbpp(dir);
    const k = checkFewshot('mbpp', ctx.numFewshot ?? 3, MBPP_FEWSHOT_IDS.length);
    const shots = MBPP_FEWSHOT_IDS.slice(0, k).map((id) => pool.find((d) => d.task_id === id)!);
    const docs = applyLimit(test, ctx.limit);
    const lm = requireLm(ctx, 'mbpp');
    const maxGenTokens = option<number>(ctx, 'maxGenTokens', 512);
    const prompts = docs.map((d) => mbppPrompt(d, shots));
    const raw = await generateWithProgress(lm, prompts.map((context) => ({ context, until: [...MBPP_UNTIL], maxGenTokens, temperature: 0 })), ctx.progress, 'mbpp generate');
    const completions = raw.map((g, i) => truncateAtStops(stripPromptEcho(prompts[i]!, g), MBPP_UNTIL));
    const problems = docs.map((d) => ({ task_id: `MBPP/${d.task_id}`, prompt: '', canonical_solution: d.code, test: '', entry_point: '' }));
    const byId = new Map(docs.map((d) => [`MBPP/${d.task_id}`, d]));
    const sandbox = sandboxOf(ctx);
    const r = await evaluateFunctionalCorrectness(problems, completions.map((c, i) => ({ task_id: problems[i]!.task_id, completion: c })), sandbox, {
      ks: [1],
      progress: ctx.progress,
      program: (p, c) => mbppJob(byId.get(p.task_id)!, c),
    });
    return {
      task: 'mbpp',
      metrics: r.metrics,
      details: { problems: r.problems, passed_samples: r.passedSamples },
      config: { num_fewshot: k, fewshot_task_ids: MBPP_FEWSHOT_IDS.slice(0, k), until: [...MBPP_UNTIL], max_gen_toks: maxGenTokens, temperature: 0, limit: ctx.limit ?? null, sandbox: await sandbox.describe() },
      dataset: datasetRecord('mbpp', dir, files),
      samples: r.samples.map((s, i) => ({ ...s, prompt: prompts[i], raw_generation: raw[i] })),
    };
  },
};

async function runGsm8k(ctx: EvalContext, cot: boolean): Promise<TaskResult> {
  const task = cot ? 'gsm8k_cot' : 'gsm8k';
  const dir = path.join(ctx.dataDir, 'gsm8k');
  const { test, train, files } = await loadGsm8k(dir);
  const docs = applyLimit(test, ctx.limit);
  const k = checkFewshot(task, ctx.numFewshot ?? (cot ? 8 : 5), cot ? 8 : train.length);
  const seed = option<number>(ctx, 'fewshotSeed', FEWSHOT_RANDOM_SEED);
  const indices = cot ? [] : gsm8kFewshotIndices(train.length, docs.length, k, seed);
  const prompts = docs.map((d, i) => (cot ? gsm8kCotPrompt(d, k) : gsm8kPrompt(d, indices[i]!.map((j) => train[j]!))));
  const maxGenTokens = option<number>(ctx, 'maxGenTokens', GSM8K_MAX_GEN_TOKS);
  const until = [...(cot ? GSM8K_COT_UNTIL : GSM8K_UNTIL)];
  const lm = requireLm(ctx, task);
  const raw = await generateWithProgress(lm, prompts.map((context) => ({ context, until, maxGenTokens, temperature: 0 })), ctx.progress, `${task} generate`);
  const strictFn = cot ? cotStrictMatch : strictMatch;
  const samples = docs.map((d, i) => {
    const resp = raw[i]!;
    const strict = strictFn(resp);
    const flexible = flexibleExtract(resp);
    return {
      doc_id: i,
      ...(cot ? {} : { fewshot_indices: indices[i] }),
      question: d.question,
      target: d.answer,
      response: resp,
      strict_match: strict,
      flexible_extract: flexible,
      exact_match_strict: gsm8kExactMatch(strict, d.answer) ? 1 : 0,
      exact_match_flexible: gsm8kExactMatch(flexible, d.answer) ? 1 : 0,
    };
  });
  const s = samples.map((x) => x.exact_match_strict);
  const f = samples.map((x) => x.exact_match_flexible);
  return {
    task,
    metrics: {
      'exact_match,strict-match': mean(s),
      'exact_match_stderr,strict-match': stderrOfMean(s),
      'exact_match,flexible-extract': mean(f),
      'exact_match_stderr,flexible-extract': stderrOfMean(f),
    },
    details: { docs: docs.length },
    config: {
      num_fewshot: k,
      fewshot: cot ? 'first_n of the 8 gsm8k-cot.yaml exemplars' : `random.Random(${seed}).sample(train, ${k}) per test doc, one stream`,
      until,
      max_gen_toks: maxGenTokens,
      temperature: 0,
      limit: ctx.limit ?? null,
      harness: 'lm-evaluation-harness gsm8k.yaml / gsm8k-cot.yaml v3.0',
    },
    dataset: datasetRecord('gsm8k', dir, files),
    samples: samples.map((x, i) => ({ ...x, prompt: prompts[i] })),
  };
}

export const gsm8kEvaluator: Evaluator = {
  name: 'gsm8k',
  description: 'GSM8K 5-shot as lm-eval gsm8k (seeded few-shot draw), strict-match and flexible-extract exact match',
  dataset: 'gsm8k',
  needs: ['generate_until'],
  defaultFewshot: 5,
  evaluate: (ctx) => runGsm8k(ctx, false),
};

export const gsm8kCotEvaluator: Evaluator = {
  name: 'gsm8k_cot',
  description: 'GSM8K 8-shot chain of thought as lm-eval gsm8k_cot',
  dataset: 'gsm8k',
  needs: ['generate_until'],
  defaultFewshot: 8,
  evaluate: (ctx) => runGsm8k(ctx, true),
};

/** MMLU: lm-eval prompts (or the original evaluate.py ones), argmax over " A".." D". */
export const mmluEvaluator: Evaluator = {
  name: 'mmlu',
  description: 'MMLU accuracy (lm-eval mmlu: " A".." D" log-likelihoods; micro, macro, 4 categories, 57 subjects). lm-eval defaults to 0-shot; the paper used 5',
  dataset: 'mmlu',
  needs: ['loglikelihood'],
  defaultFewshot: 0,
  async evaluate(ctx: EvalContext): Promise<TaskResult> {
    const dir = path.join(ctx.dataDir, 'mmlu');
    const k = checkFewshot('mmlu', ctx.numFewshot ?? 0, 5);
    const style = option<MmluPromptStyle>(ctx, 'promptStyle', 'lm-eval');
    if (style !== 'lm-eval' && style !== 'original') throw new EvalError(`unknown MMLU prompt style "${style}"; known: lm-eval, original`, 'USAGE');
    const subjectsOpt = option<string[] | undefined>(ctx, 'subjects', undefined);
    const known = Object.keys(MMLU_CATEGORIES).sort();
    for (const s of subjectsOpt ?? []) if (!MMLU_CATEGORIES[s]) throw new EvalError(`unknown MMLU subject "${s}"; known: ${known.join(', ')}`, 'USAGE');
    const data = await loadMmlu(dir, ['dev', 'test'], subjectsOpt);
    const subjects = subjectsOpt ?? data.subjects;
    for (const s of subjects) if (!data.splits.test.has(s)) throw new EvalError(`MMLU subject "${s}" has no test file in ${dir}`, 'DATASET_MISSING');
    const docs: { row: MmluRow; prompt: string }[] = [];
    for (const s of subjects) {
      const shots = (data.splits.dev.get(s) ?? []).slice(0, k);
      // --limit applies per subject, as lm-eval's does for each subtask.
      for (const row of applyLimit(data.splits.test.get(s)!, ctx.limit)) docs.push({ row, prompt: mmluPrompt(s, row, shots, style) });
    }
    const lm = requireLm(ctx, 'mmlu');
    const reqs = docs.flatMap((d) => MMLU_CONTINUATIONS.map((continuation) => ({ context: d.prompt, continuation })));
    // 64 requests = 16 questions (one full LocalLM batch) per progress step; 256 left a 271M model silent for about 100 s.
    const lls = await loglikelihoodWithProgress(lm, reqs, ctx.progress, 'mmlu loglikelihood', 64);
    const samples = docs.map((d, i) => {
      const ll = [0, 1, 2, 3].map((j) => lls[4 * i + j]!.logprob);
      const pred = argmax(ll);
      return { doc_id: i, subject: d.row.subject, gold: d.row.answer, pred, correct: pred === d.row.answer, loglikelihoods: ll };
    });
    const agg = aggregateMmlu(samples);
    const metrics: Record<string, number> = { acc: agg.acc, acc_macro: agg.accMacro };
    for (const [c, v] of Object.entries(agg.categories)) if (v.total) metrics[`acc,${c}`] = v.acc;
    return {
      task: 'mmlu',
      metrics,
      details: { correct: agg.correct, total: agg.total, categories: agg.categories, subjects: agg.subjects },
      config: {
        num_fewshot: k,
        fewshot: 'first_n dev rows',
        prompt_style: style,
        continuations: [...MMLU_CONTINUATIONS],
        scoring: 'argmax of summed continuation log-likelihoods, ties to A; acc = micro (lm-eval mmlu), acc_macro = mean over subjects',
        limit_per_subject: ctx.limit ?? null,
        subjects: subjects.length,
      },
      dataset: datasetRecord('mmlu', dir, data.files),
      samples: samples.map((s, i) => ({ ...s, prompt: docs[i]!.prompt })),
    };
  },
};

const ROLLING_SCORING_MEANS: Record<RollingScoring, string> = {
  'lm-eval': 'lm-evaluation-harness 0.4.x loglikelihood_rolling: tok_encode(text) (BOS first when BOS is added) after a BOS prefix token; BOS is scored',
  'text-only': "only the text's tokens, after a BOS (else EOS) prefix token",
};

/** Perplexity / bits-per-byte of any corpus (`options.corpus`; `options.rollingScoring`, default lm-eval). */
export const perplexityEvaluator: Evaluator = {
  name: 'perplexity',
  description: 'Token/word/byte perplexity and bits per byte of a text corpus (--corpus file.txt|file.jsonl|dir)',
  dataset: 'corpus',
  needs: ['loglikelihood_rolling'],
  defaultFewshot: 0,
  async evaluate(ctx: EvalContext): Promise<TaskResult> {
    const corpus = option<string | undefined>(ctx, 'corpus', undefined);
    if (!corpus) throw new EvalError('perplexity needs a corpus: pass --corpus <file.txt|file.jsonl|dir>', 'USAGE');
    const split = option<'paragraphs' | 'file'>(ctx, 'corpusSplit', 'paragraphs');
    const { docs: all, files } = await loadCorpus(corpus, split);
    const docs = applyLimit(all, ctx.limit);
    const lm = requireLm(ctx, 'perplexity');
    const scoring = option<RollingScoring>(ctx, 'rollingScoring', 'lm-eval');
    if (!ROLLING_SCORINGS.includes(scoring)) throw new EvalError(`unknown rolling scoring "${scoring}"; use ${ROLLING_SCORINGS.join(' or ')}`, 'USAGE');
    const per: { logprob: number; tokens: number }[] = [];
    ctx.progress?.start(docs.length, 'perplexity');
    try {
      for (let i = 0; i < docs.length; i += 8) {
        per.push(...(await lm.loglikelihoodRolling(docs.slice(i, i + 8).map((d) => d.text), { scoring })));
        ctx.progress?.update(per.length);
      }
    } finally {
      ctx.progress?.stop();
    }
    const m = perplexityMetrics(docs.map((d, i) => ({ ...per[i]!, text: d.text })));
    return {
      task: 'perplexity',
      metrics: { bits_per_byte: m.bits_per_byte, byte_perplexity: m.byte_perplexity, word_perplexity: m.word_perplexity, token_perplexity: m.token_perplexity },
      details: { tokens: m.tokens, words: m.words, bytes: m.bytes, logprob: m.logprob, docs: docs.length },
      config: { corpus: path.resolve(corpus), split, limit: ctx.limit ?? null, rolling_scoring: scoring, rolling_scoring_means: ROLLING_SCORING_MEANS[scoring] },
      dataset: datasetRecord(path.basename(corpus), path.dirname(path.resolve(corpus)), files),
      samples: docs.map((d, i) => ({ doc_id: d.id, logprob: per[i]!.logprob, tokens: per[i]!.tokens, bytes: Buffer.byteLength(d.text, 'utf8') })),
    };
  },
};

export const BUILTIN_EVALUATORS: readonly Evaluator[] = [humanevalEvaluator, mbppEvaluator, gsm8kEvaluator, gsm8kCotEvaluator, mmluEvaluator, perplexityEvaluator];
