/**
 * The study report: per-variant aggregates (mean ± sample std over seeds), the paper's qualitative
 * findings checked against this run's numbers, `results.json`, `report.md` and the plots (SVG + PNG).
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic, writeJsonAtomic } from '@llama-pro/core';
import { barChartSvg, colorMap, lineChartSvg, scatterSvg, svgToPng } from './plots';
import type { RunResult, StudyResults } from './results';
import { oneSampleTTest, welchTTest } from './stats';

export interface Stat {
  mean: number;
  /** Sample standard deviation (n − 1); 0 for a single value. */
  std: number;
  n: number;
}

export function stat(xs: readonly number[]): Stat {
  const n = xs.length;
  if (n === 0) return { mean: NaN, std: NaN, n: 0 };
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  const std = n > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, std, n };
}

export interface VariantSummary {
  variant: string;
  kind: RunResult['kind'];
  strategy: string | null;
  policy: string;
  /** Inserted blocks (expansions) or 0. */
  newBlocks: number;
  numLayers: number;
  trainableParameters: number;
  seeds: number[];
  generalBefore: Stat;
  generalAfter: Stat;
  /** generalAfter − generalBefore per seed (forgetting; positive = worse). */
  generalDelta: Stat;
  domainBefore: Stat;
  domainAfter: Stat;
  accuracy: Stat;
  identical: boolean | null;
}

export function summarizeVariants(runs: readonly RunResult[]): VariantSummary[] {
  const order: string[] = [];
  const by = new Map<string, RunResult[]>();
  for (const r of runs) {
    if (!by.has(r.variant)) {
      by.set(r.variant, []);
      order.push(r.variant);
    }
    by.get(r.variant)!.push(r);
  }
  return order.map((name) => {
    const rs = by.get(name)!;
    const r0 = rs[0]!;
    const ids = rs.map((r) => r.identity).filter((x) => x !== null);
    return {
      variant: name,
      kind: r0.kind,
      strategy: r0.strategy,
      policy: r0.policy,
      newBlocks: r0.newLayers.length,
      numLayers: r0.numLayers,
      trainableParameters: r0.trainableParameters,
      seeds: rs.map((r) => r.seed),
      generalBefore: stat(rs.map((r) => r.before.generalLoss)),
      generalAfter: stat(rs.map((r) => r.after.generalLoss)),
      generalDelta: stat(rs.map((r) => r.after.generalLoss - r.before.generalLoss)),
      domainBefore: stat(rs.map((r) => r.before.domainLoss)),
      domainAfter: stat(rs.map((r) => r.after.domainLoss)),
      accuracy: stat(rs.map((r) => r.after.accuracy)),
      identical: ids.length ? ids.every((i) => i.identical) : null,
    };
  });
}

/** The verdict words of the findings table. */
export type Verdict = 'reproduced' | 'contradicted' | 'inconclusive' | 'untested';

/** Significance level of every test, and the fewest seeds per variant for a test to be run. */
export const ALPHA = 0.05;
export const MIN_SEEDS = 3;

/** One pairwise test behind a finding: the claim is that `a`'s metric is lower (or higher) than `b`'s. */
export interface Comparison {
  a: string;
  b: string;
  metric: Metric;
  /** Direction the paper claims: `lower` = a's metric below b's. */
  claimed: 'lower' | 'higher';
  meanA: number;
  meanB: number;
  /** Welch t statistic of a − b, its degrees of freedom and the two-sided p-value (null when untested). */
  t: number | null;
  df: number | null;
  p: number | null;
  /** `supports` / `reverses`: significant at α in / against the claimed direction. */
  outcome: 'supports' | 'reverses' | 'not significant' | 'untested';
}

export interface Finding {
  /** The paper's claim, in words. */
  claim: string;
  verdict: Verdict;
  /** The numbers behind the verdict. */
  evidence: string;
  /** Every pairwise test (all variants the claim names, not only the best of each kind). */
  comparisons: Comparison[];
}

export type Metric = 'generalAfter' | 'generalDelta' | 'domainAfter' | 'domainDelta' | 'accuracy';
const METRIC_WORDS: Record<Metric, string> = {
  generalAfter: 'general loss after',
  generalDelta: 'general-loss change',
  domainAfter: 'domain loss after',
  domainDelta: 'domain-loss change',
  accuracy: 'accuracy',
};

const f4 = (x: number) => (Number.isFinite(x) ? x.toFixed(4) : 'n/a');
const pm = (s: Stat, digits = 4) => (Number.isFinite(s.mean) ? `${s.mean.toFixed(digits)} ± ${s.std.toFixed(digits)}` : 'n/a');
/** p-values as printed: 3 significant digits, "< 1e-6" below that. */
export const fmtP = (p: number | null) => (p === null ? 'n/a' : p < 1e-6 ? '< 1e-6' : p < 0.001 ? p.toExponential(2) : p.toFixed(3));

function perSeed(runs: readonly RunResult[], variant: string, metric: Metric): number[] {
  return runs
    .filter((r) => r.variant === variant)
    .map((r) =>
      metric === 'generalAfter'
        ? r.after.generalLoss
        : metric === 'generalDelta'
          ? r.after.generalLoss - r.before.generalLoss
          : metric === 'domainAfter'
            ? r.after.domainLoss
            : metric === 'domainDelta'
              ? r.after.domainLoss - r.before.domainLoss
              : r.after.accuracy,
    );
}

/** Welch's t-test of one claimed ordering between two variants' per-seed values. */
export function compare(runs: readonly RunResult[], a: string, b: string, metric: Metric, claimed: 'lower' | 'higher', alpha = ALPHA): Comparison {
  const xa = perSeed(runs, a, metric);
  const xb = perSeed(runs, b, metric);
  const meanA = stat(xa).mean;
  const meanB = stat(xb).mean;
  if (xa.length < MIN_SEEDS || xb.length < MIN_SEEDS) return { a, b, metric, claimed, meanA, meanB, t: null, df: null, p: null, outcome: 'untested' };
  const w = welchTTest(xa, xb);
  const inClaimed = claimed === 'lower' ? w.diff < 0 : w.diff > 0;
  const outcome = w.p < alpha ? (inClaimed ? 'supports' : 'reverses') : 'not significant';
  return { a, b, metric, claimed, meanA, meanB, t: w.t, df: w.df, p: w.p, outcome };
}

/**
 * The verdict over a finding's comparisons. `reproduced` needs every comparison significant in the
 * claimed direction (an intersection–union test: level α without correction); `contradicted` needs one
 * significant the other way at α / k (Bonferroni over the k comparisons, since any one suffices);
 * `untested` when a comparison lacks seeds (< MIN_SEEDS) or there is none; `inconclusive` otherwise.
 */
export function verdictOf(cs: readonly Comparison[], alpha = ALPHA): Verdict {
  if (cs.length === 0 || cs.some((c) => c.outcome === 'untested')) return 'untested';
  if (cs.every((c) => c.outcome === 'supports')) return 'reproduced';
  if (cs.some((c) => c.p !== null && c.p < alpha / cs.length && c.outcome === 'reverses')) return 'contradicted';
  return 'inconclusive';
}

function describe(c: Comparison): string {
  const sign = c.claimed === 'lower' ? '<' : '>';
  return `${c.a} ${f4(c.meanA)} ${sign}? ${c.b} ${f4(c.meanB)} (p ${fmtP(c.p)}${c.outcome === 'reverses' ? ', reversed' : c.outcome === 'not significant' ? ', n.s.' : c.outcome === 'untested' ? `, < ${MIN_SEEDS} seeds` : ''})`;
}

function finding(claim: string, cs: Comparison[], missing: string): Finding {
  if (cs.length === 0) return { claim, verdict: 'untested', evidence: missing, comparisons: [] };
  return { claim, verdict: verdictOf(cs), evidence: `${METRIC_WORDS[cs[0]!.metric]}: ${cs.map(describe).join('; ')}`, comparisons: cs };
}

/** Margin of the "keeps general ability" test: general perplexity may grow by at most 10 %. */
export const KEEP_MARGIN = Math.log(1.1);

/**
 * The paper's qualitative findings (LLaMA Pro, Table 5 / Fig. 5 and §5), each tested on this run's
 * per-seed values with Welch's t-test over every pair of variants the claim names.
 */
export function computeFindings(results: StudyResults): Finding[] {
  const runs = results.runs;
  const vs = summarizeVariants(runs);
  const expand = vs.filter((v) => v.kind === 'expand');
  const byStrategy = (s: string) => expand.filter((v) => v.strategy === s);
  const inter = byStrategy('interleaved');
  const others = expand.filter((v) => v.strategy !== 'interleaved');
  const full = vs.filter((v) => v.policy === 'full');
  const lora = vs.filter((v) => v.policy === 'lora');
  const originals = vs.filter((v) => v.kind === 'baseline' && v.policy !== 'lora');
  const pairsOf = (xs: readonly VariantSummary[], ys: readonly VariantSummary[]) => xs.flatMap((x) => ys.map((y) => [x, y] as const));
  const sameCount = (ys: readonly VariantSummary[]) => pairsOf(inter, ys).filter(([i, o]) => i.newBlocks === o.newBlocks);
  const out: Finding[] = [];

  // 0. Identity at step 0: exact and deterministic, so no statistics (any mismatch contradicts it).
  const idRuns = runs.filter((r) => r.identity);
  out.push({
    claim: 'Every expanded model starts from the base model exactly (zero-initialized output projections: identical general loss at step 0)',
    verdict: idRuns.length ? (idRuns.every((r) => r.identity!.identical) ? 'reproduced' : 'contradicted') : 'untested',
    evidence: idRuns.length
      ? `${idRuns.filter((r) => r.identity!.identical).length}/${idRuns.length} expanded runs have step-0 general loss exactly equal to the base's ${f4(results.base.eval.generalLoss)} (exact check, no test needed)`
      : 'no expansion variant in this run',
    comparisons: [],
  });

  out.push(
    finding(
      'Interleaved expansion reaches a lower domain loss than every other expansion (top / bottom, any block count)',
      pairsOf(inter, others).map(([i, o]) => compare(runs, i.variant, o.variant, 'domainAfter', 'lower')),
      'needs interleaved and other expansion variants',
    ),
  );
  out.push(
    finding(
      'Bottom stacking is worse than interleaved at the same number of new blocks (higher domain loss)',
      sameCount(byStrategy('bottom')).map(([i, o]) => compare(runs, i.variant, o.variant, 'domainAfter', 'lower')),
      'needs bottom and interleaved variants with equal block counts',
    ),
  );
  out.push(
    finding(
      'Top stacking learns the domain worse than interleaved at the same number of new blocks (higher domain loss)',
      sameCount(byStrategy('top')).map(([i, o]) => compare(runs, i.variant, o.variant, 'domainAfter', 'lower')),
      'needs top and interleaved variants with equal block counts',
    ),
  );
  out.push(
    finding(
      'Interleaved expansion answers more test problems than top / bottom stacking at the same number of new blocks (exact match)',
      sameCount(others).map(([i, o]) => compare(runs, i.variant, o.variant, 'accuracy', 'higher')),
      'needs interleaved and top/bottom variants with equal block counts',
    ),
  );
  out.push(
    finding(
      'Full fine-tuning forgets more general ability than interleaved block expansion (larger general-loss increase)',
      pairsOf(inter, full).map(([i, f]) => compare(runs, i.variant, f.variant, 'generalDelta', 'lower')),
      'needs the full and interleaved variants',
    ),
  );
  out.push(
    finding(
      'LoRA under-fits the domain compared with interleaved block expansion (higher domain loss)',
      pairsOf(inter, lora).map(([i, l]) => compare(runs, i.variant, l.variant, 'domainAfter', 'lower')),
      'needs the lora and interleaved variants',
    ),
  );
  out.push(
    finding(
      'Interleaved expansion retains general ability better than training the original weights (full or existing layers)',
      pairsOf(inter, originals).map(([i, b]) => compare(runs, i.variant, b.variant, 'generalAfter', 'lower')),
      'needs interleaved and full/layers variants',
    ),
  );
  const sorted = [...inter].sort((a, b) => a.newBlocks - b.newBlocks);
  out.push(
    finding(
      'More interleaved blocks reach a lower domain loss (over the block counts tried)',
      sorted.slice(1).map((v, i) => compare(runs, v.variant, sorted[i]!.variant, 'domainAfter', 'lower')),
      'needs at least two interleaved block counts',
    ),
  );

  // Keeping general ability is a non-inferiority claim: the general-loss increase of each interleaved
  // variant is tested (one-sample t-test over seeds) against a margin of +10 % general perplexity.
  const keep: Comparison[] = inter.map((v) => {
    const d = perSeed(runs, v.variant, 'generalDelta');
    const m = stat(d).mean;
    if (d.length < MIN_SEEDS) return { a: v.variant, b: `+${KEEP_MARGIN.toFixed(4)} nats (10 % ppl)`, metric: 'generalDelta', claimed: 'lower', meanA: m, meanB: KEEP_MARGIN, t: null, df: null, p: null, outcome: 'untested' };
    const r = oneSampleTTest(d, KEEP_MARGIN);
    const outcome = r.p < ALPHA ? (r.diff < 0 ? 'supports' : 'reverses') : 'not significant';
    return { a: v.variant, b: `+${KEEP_MARGIN.toFixed(4)} nats (10 % ppl)`, metric: 'generalDelta', claimed: 'lower', meanA: m, meanB: KEEP_MARGIN, t: r.t, df: r.df, p: r.p, outcome };
  });
  out.push(finding('Block expansion keeps general ability: interleaved variants raise general perplexity by less than 10 %', keep, 'needs interleaved variants'));
  return out;
}

/** Mean training-loss curve of a variant over its seeds (steps present in every seed). */
export function meanCurve(runs: readonly RunResult[]): { x: number; y: number }[] {
  if (runs.length === 0) return [];
  const maps = runs.map((r) => new Map(r.curve.map((p) => [p.step, p.loss])));
  const steps = runs[0]!.curve.map((p) => p.step).filter((s) => maps.every((m) => m.has(s)));
  return steps.map((s) => ({ x: s, y: maps.reduce((a, m) => a + m.get(s)!, 0) / maps.length }));
}

/** Trailing moving average over `window` points (the first points average what exists). */
export function movingAverage(points: readonly { x: number; y: number }[], window: number): { x: number; y: number }[] {
  return points.map((p, i) => {
    const from = Math.max(0, i - window + 1);
    let sum = 0;
    for (let j = from; j <= i; j++) sum += points[j]!.y;
    return { x: p.x, y: sum / (i - from + 1) };
  });
}

/** Rise (nats) of the training loss above its step-1 value that counts as an early spike. */
export const SPIKE_NATS = 0.1;

/** Per (variant, lr, steps): mean over seeds of the step-1 loss and of the maximum over the first quarter. */
export function spikeRows(results: StudyResults): { variant: string; lr: number; steps: number; first: number; max: number; rise: number }[] {
  const all = [...results.runs, ...(results.sweep ?? [])];
  const groups = new Map<string, RunResult[]>();
  for (const r of all) {
    const k = JSON.stringify([r.variant, r.lr ?? results.config.train.lr, r.steps]);
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k)!.push(r);
  }
  return [...groups.values()]
    .filter((rs) => rs.every((r) => r.curve.length > 0))
    .map((rs) => {
      const first = stat(rs.map((r) => r.curve[0]!.loss)).mean;
      const max = stat(rs.map((r) => Math.max(...r.curve.slice(0, Math.max(1, Math.ceil(r.curve.length / 4))).map((p) => p.loss)))).mean;
      return { variant: rs[0]!.variant, lr: rs[0]!.lr ?? results.config.train.lr, steps: rs[0]!.steps, first, max, rise: max - first };
    });
}

export interface FrontierPoint {
  variant: string;
  lr: number;
  steps: number;
  seeds: number;
  /** Mean general-loss increase (forgetting; lower is better). */
  generalIncrease: number;
  /** Mean domain-loss decrease (learning; higher is better). */
  domainDecrease: number;
  accuracy: number;
  /** Not dominated by any other point (no other point forgets no more and learns no less, one strictly). */
  onFront: boolean;
  /** Labels of points that dominate this one. */
  dominatedBy: string[];
}

export const pointLabel = (p: Pick<FrontierPoint, 'variant' | 'lr' | 'steps'>) => `${p.variant} lr ${p.lr} × ${p.steps}`;

/** Every (variant, learning rate, steps) point of the main runs and the sweep, with the Pareto front marked. */
export function frontierPoints(results: StudyResults): FrontierPoint[] {
  const all = [...results.runs.map((r) => ({ ...r, lr: r.lr ?? results.config.train.lr })), ...(results.sweep ?? []).map((r) => ({ ...r, lr: r.lr ?? results.config.train.lr }))];
  const groups = new Map<string, typeof all>();
  for (const r of all) {
    const k = JSON.stringify([r.variant, r.lr, r.steps]);
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k)!.push(r);
  }
  const pts: FrontierPoint[] = [...groups.values()].map((rs) => ({
    variant: rs[0]!.variant,
    lr: rs[0]!.lr,
    steps: rs[0]!.steps,
    seeds: rs.length,
    generalIncrease: stat(rs.map((r) => r.after.generalLoss - r.before.generalLoss)).mean,
    domainDecrease: stat(rs.map((r) => r.before.domainLoss - r.after.domainLoss)).mean,
    accuracy: stat(rs.map((r) => r.after.accuracy)).mean,
    onFront: false,
    dominatedBy: [],
  }));
  for (const p of pts) {
    p.dominatedBy = pts.filter((q) => q !== p && q.generalIncrease <= p.generalIncrease && q.domainDecrease >= p.domainDecrease && (q.generalIncrease < p.generalIncrease || q.domainDecrease > p.domainDecrease)).map(pointLabel);
    p.onFront = p.dominatedBy.length === 0;
  }
  return pts;
}

/**
 * At a domain gain `g`: each variant's least general-loss increase among its points that reach at least
 * `g` (no interpolation between points), best first; variants that never reach `g` are left out.
 */
export function costAtGain(points: readonly FrontierPoint[], g: number): { variant: string; generalIncrease: number; point: string }[] {
  const by = new Map<string, FrontierPoint>();
  for (const p of points) {
    if (p.domainDecrease < g) continue;
    const cur = by.get(p.variant);
    if (!cur || p.generalIncrease < cur.generalIncrease) by.set(p.variant, p);
  }
  return [...by.values()].map((p) => ({ variant: p.variant, generalIncrease: p.generalIncrease, point: pointLabel(p) })).sort((a, b) => a.generalIncrease - b.generalIncrease);
}

/** Which variants' mean exact match does not exceed the majority-answer level (they do not read the question). */
function atChance(vs: readonly VariantSummary[], chance: number): string {
  // A mean of equal fractions can land an ulp above them: equal within 1e-9 counts as at the chance level.
  const low = vs.filter((v) => v.accuracy.mean <= chance + 1e-9);
  if (low.length === 0) return `Every variant's mean exact match is above the chance level (${(100 * chance).toFixed(1)}%).`;
  return `${low.length === vs.length ? 'No variant' : `${vs.length - low.length} of ${vs.length} variants`} ${low.length === vs.length ? 'ends' : 'end'} above the chance level (${(100 * chance).toFixed(1)}%)${low.length < vs.length ? `; at or below it: ${low.map((v) => v.variant).join(', ')}` : ': exact match here says nothing about the question being read'}.`;
}

export function renderReportMarkdown(results: StudyResults, findings: readonly Finding[] = computeFindings(results)): string {
  const vs = summarizeVariants(results.runs);
  const c = results.config;
  const b = results.base;
  const L: string[] = [];
  const ppl = (s: Stat) => (Number.isFinite(s.mean) ? Math.exp(s.mean).toFixed(3) : 'n/a');
  L.push('# LLaMA Pro study (miniature)');
  L.push('');
  L.push(`Generated ${results.createdAt} by @llama-pro/study ${results.versions['@llama-pro/study'] ?? ''} on ${results.backend.name} (${results.backend.device}); ${c.seeds} seed(s) (seeds ${[...new Set(results.runs.map((r) => r.seed))].join(', ')}); wall time ${results.elapsedS.toFixed(0)} s, CPU time ${results.cpuS.toFixed(0)} s (this invocation${(results.machine?.workers ?? 1) > 1 ? `, ${results.machine!.workers} processes sharing the runs` : ''}; reused runs excluded)${results.machine ? ` on ${results.machine.cpus} cores, 1-minute load average ${results.machine.loadAvg.toFixed(1)} at the start${results.machine.loadAvg > results.machine.cpus ? ' (a shared machine: wall time is inflated, CPU time is the cost)' : ''}` : ''}. Every number below comes from \`results.json\` of this run.`);
  L.push('');
  L.push('## Setup');
  L.push('');
  L.push(`- Base model: ${b.origin === 'pretrained' ? `pretrained here from scratch on ${c.corpus.generalTrain} built-in documents${c.corpus.domainInGeneral ? ` (stories, ${(100 * c.corpus.domainInGeneral).toFixed(0)} % of them domain problems outside the test set: the base's prior domain ability)` : ' (stories)'} (${c.base.pretrain.steps} steps × ${c.base.pretrain.batchSize} × ${c.base.pretrain.seqLen} tokens, full training, base seed ${c.base.seed ?? 0} for the initial weights); byte-level tokenizer.json` : `given (${b.dir})${c.base.byteTokens ? '; raw byte tokens (--byte-tokens)' : "; the model's tokenizer.json"}`}; ${b.numLayers} layers, ${b.parameters} parameters.`);
  L.push(`- Domain: ${c.corpus.files.domainTrain ? `${c.corpus.files.domainTrain}` : c.corpus.task === 'copy-add' ? 'built-in copy-add problems (copy a number from the question, "+ 1", or a sum of two numbers up to 5) with worked answers ending in `#### n`' : 'built-in arithmetic word problems (sums, differences, products) with worked answers ending in `#### n`'}; every variant trains ${c.train.steps} steps × ${c.train.batchSize} sequences × ${c.train.seqLen} tokens (same data, same seeds, lr ${c.train.lr}, ${c.train.schedule}).`);
  L.push(
    `- Seeds: every variant starts from this one base; a seed sets the domain-training data order (and the LoRA initialization), so the ± spreads and the t-tests below measure domain-training noise on this base, not the variation between independently pretrained bases${b.origin === 'pretrained' ? ' (`--base-seed <n>` pretrains another base to check that)' : ''}.`,
  );
  L.push(`- Evaluation: loss (nats/token) on ${c.eval.generalDocs} held-out stories (general) and ${c.eval.domainDocs} held-out problems (domain); exact match of the greedy \`#### n\` answer on ${b.eval.total} held-out test questions. Perplexity = exp(loss). Values are mean ± sample std over seeds.`);
  L.push('');
  const mb = results.majorityBaseline;
  L.push(`Base model: general loss ${f4(b.eval.generalLoss)} (ppl ${Math.exp(b.eval.generalLoss).toFixed(3)}), domain loss ${f4(b.eval.domainLoss)} (ppl ${Math.exp(b.eval.domainLoss).toFixed(3)}), accuracy ${(100 * b.eval.accuracy).toFixed(1)}% (${b.eval.correct}/${b.eval.total}).${mb ? ` Chance level: always answering the most frequent training answer (${mb.answer}) scores ${(100 * mb.accuracy).toFixed(1)}% (${mb.correct}/${mb.total}).` : ''}${mb && b.origin === 'pretrained' && b.eval.accuracy <= mb.accuracy + 1e-9 ? ` The base does not beat the chance level: it has not learned to copy a number from the question into the answer, an ability that emerges abruptly along pretraining (packages/study/README.md); the variants' exact match then starts from nothing. Pretrain longer (\`base.pretrain.steps\`) or try another \`--base-seed\`.` : ''}`);
  L.push('');
  L.push('## Results per variant');
  L.push('');
  L.push('| variant | policy | new blocks | trainable params | general loss before | general loss after | general ppl after | Δ general | domain loss before | domain loss after | domain ppl after | accuracy % |');
  L.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const v of vs) {
    L.push(
      `| ${v.variant} | ${v.policy} | ${v.newBlocks} | ${v.trainableParameters} | ${pm(v.generalBefore)} | ${pm(v.generalAfter)} | ${ppl(v.generalAfter)} | ${pm(v.generalDelta)} | ${pm(v.domainBefore)} | ${pm(v.domainAfter)} | ${ppl(v.domainAfter)} | ${(100 * v.accuracy.mean).toFixed(1)} ± ${(100 * v.accuracy.std).toFixed(1)} |`,
    );
  }
  L.push('');
  L.push('## Table 5 analogue: insertion position × number of new blocks');
  L.push('');
  L.push('Each cell: general loss after / domain loss after (means over seeds; lower is better).');
  L.push('');
  const expand = vs.filter((v) => v.kind === 'expand');
  const counts = [...new Set(expand.map((v) => v.newBlocks))].sort((x, y) => x - y);
  const strategies = [...new Set(expand.map((v) => v.strategy ?? ''))];
  if (expand.length) {
    L.push(`| position | ${counts.map((k) => `${k} blocks`).join(' | ')} |`);
    L.push(`|---|${counts.map(() => '---:').join('|')}|`);
    for (const s of strategies) {
      const cells = counts.map((k) => {
        const v = expand.find((x) => x.strategy === s && x.newBlocks === k);
        return v ? `${v.generalAfter.mean.toFixed(4)} / ${v.domainAfter.mean.toFixed(4)}` : '–';
      });
      L.push(`| ${s} | ${cells.join(' | ')} |`);
    }
    for (const v of vs.filter((x) => x.kind === 'baseline')) L.push(`| ${v.variant} (baseline) | ${counts.map((_, i) => (i === 0 ? `${v.generalAfter.mean.toFixed(4)} / ${v.domainAfter.mean.toFixed(4)}` : '')).join(' | ')} |`);
  } else L.push('(no expansion variants in this run)');
  L.push('');
  L.push('## Identity at step 0');
  L.push('');
  const idRuns = results.runs.filter((r) => r.identity);
  if (idRuns.length) {
    L.push('| variant | seed | base general loss | expanded general loss (step 0) | identical | expander check max abs Δlogit |');
    L.push('|---|---:|---:|---:|---|---:|');
    for (const r of idRuns) {
      const i = r.identity!;
      L.push(`| ${r.variant} | ${r.seed} | ${i.baseGeneralLoss} | ${i.expandedGeneralLoss} | ${i.identical ? 'yes' : '**no**'} | ${i.verifyMaxAbsDiff ?? 'n/a'} |`);
    }
  } else L.push('(no expansion variants in this run)');
  L.push('');
  L.push("## Which of the paper's findings this run reproduces");
  L.push('');
  L.push(`Each finding is tested on the per-seed values with Welch's unequal-variance t-test (two-sided, α = ${ALPHA}), over every pair of variants the claim names. **reproduced**: every pair is significant in the paper's direction; **contradicted**: at least one pair is significant the other way at α / k (Bonferroni over the finding's k pairs); **inconclusive**: neither; **untested**: fewer than ${MIN_SEEDS} seeds for a variant, or the variants are missing. "n.s." = not significant.`);
  L.push('');
  L.push('| finding (paper) | verdict | evidence (means, p-values) |');
  L.push('|---|---|---|');
  for (const f of findings) L.push(`| ${f.claim} | ${f.verdict} | ${f.evidence.replace(/\|/g, '\\|')} |`);
  const count = (v: Verdict) => findings.filter((f) => f.verdict === v).length;
  L.push('');
  L.push(`Summary: ${count('reproduced')} reproduced, ${count('contradicted')} contradicted, ${count('inconclusive')} inconclusive, ${count('untested')} untested (of ${findings.length} findings). This is a ${b.parameters}-parameter model trained for minutes of CPU time on synthetic data; the paper's setting is a 7B model on 80B tokens, so disagreements are expected and are reported as they come out.`);
  L.push('');
  L.push('## General ability');
  L.push('');
  L.push(`General perplexity of the base: ${Math.exp(b.eval.generalLoss).toFixed(3)}. After domain training (mean over seeds; ratio = ppl after / ppl of the base):`);
  L.push('');
  const ratios = vs.map((v) => ({ v, r: Math.exp(v.generalAfter.mean - b.eval.generalLoss) })).sort((x, y) => x.r - y.r);
  L.push(ratios.map(({ v, r }) => `${v.variant} ${Math.exp(v.generalAfter.mean).toFixed(3)} (×${r.toFixed(2)})`).join(', ') + '.');
  const expandR = ratios.filter((x) => x.v.kind === 'expand');
  const lost = expandR.filter((x) => x.r > 1.5);
  if (lost.length) {
    L.push('');
    L.push(
      `${lost.length === expandR.length ? `Every block-expansion variant (${lost.length})` : `${lost.length} of the ${expandR.length} block-expansion variants (${lost.map((x) => x.v.variant).join(', ')})`} raise${lost.length === 1 ? 's' : ''} general perplexity by more than 1.5× at the main setting (lr ${c.train.lr} × ${c.train.steps} steps). With the original blocks frozen, the new blocks still write into the residual stream that every later block reads, so domain-only training can pull general text off course; the paper reports general ability kept, and for ${lost.map((x) => x.v.variant).join(', ')} this run does not show that (the frontier below has the smaller learning rates).`,
    );
  } else if (expandR.length) {
    L.push('');
    L.push(`No block-expansion variant raises general perplexity by more than 1.5× at the main setting; the largest ratio is ×${Math.max(...expandR.map((x) => x.r)).toFixed(2)} (${expandR.sort((a, b) => b.r - a.r)[0]!.v.variant}).`);
  }
  const accs = [results.base.eval.accuracy, ...results.runs.map((r) => r.after.accuracy)];
  if (!accs.every((a) => a === accs[0])) {
    const byAcc = [...vs].sort((x, y) => y.accuracy.mean - x.accuracy.mean);
    const above = vs.filter((v) => v.accuracy.mean > b.eval.accuracy);
    const below = vs.filter((v) => v.accuracy.mean < b.eval.accuracy);
    L.push('');
    L.push(
      `Exact match: the base answers ${(100 * b.eval.accuracy).toFixed(1)}% (${b.eval.correct}/${b.eval.total}); after domain training the best variant is ${byAcc[0]!.variant} (${(100 * byAcc[0]!.accuracy.mean).toFixed(1)}% ± ${(100 * byAcc[0]!.accuracy.std).toFixed(1)}); ${above.length} variant(s) end above the base${above.length ? ` (${above.map((v) => v.variant).join(', ')})` : ''}, ${below.length} below${below.length ? ` (${below.map((v) => v.variant).join(', ')})` : ''}.${below.length > vs.length / 2 ? ' Domain training lowers the domain loss of every variant but lowers exact match for most: the models learn the answer template and the frequent answers faster than reading the question\'s numbers, so at this budget the loss and the accuracy disagree.' : ''}${mb ? ` ${atChance(vs, mb.accuracy)}` : ''}`,
    );
  }
  if (accs.every((a) => a === accs[0])) {
    L.push('');
    L.push(`Exact-match accuracy is ${(100 * accs[0]!).toFixed(1)}% for the base and every run, so at this scale it does not separate the variants; the comparisons rest on the losses. A larger budget (\`train.steps\`, \`base.model\`, \`--config\`) is needed for the model to solve the problems.`);
  }
  L.push('');
  L.push('## Early training-loss spikes');
  L.push('');
  const spikes = spikeRows(results);
  const spiky = spikes.filter((x) => x.rise > SPIKE_NATS);
  L.push(`A run "spikes" when its training loss rises more than ${SPIKE_NATS} nats above its step-1 loss within the first quarter of training (warmup ${c.train.warmupRatio * 100} % of the steps). ${spiky.length ? `${spiky.length} of ${spikes.length} (variant, lr, steps) points spike:` : `None of the ${spikes.length} (variant, lr, steps) points spikes.`}`);
  if (spiky.length) {
    L.push('');
    L.push('| variant | lr | steps | loss at step 1 | max in first quarter | rise |');
    L.push('|---|---:|---:|---:|---:|---:|');
    for (const x of spiky) L.push(`| ${x.variant} | ${x.lr} | ${x.steps} | ${f4(x.first)} | ${f4(x.max)} | +${x.rise.toFixed(3)} |`);
    const lrs = [...new Set(spikes.map((x) => x.lr))].sort((a, b) => a - b);
    L.push('');
    L.push(`Share of points that spike by learning rate: ${lrs.map((lr) => `${lr}: ${spikes.filter((x) => x.lr === lr && x.rise > SPIKE_NATS).length}/${spikes.filter((x) => x.lr === lr).length}`).join(', ')}.`);
  }
  L.push('');
  L.push('## Forgetting–learning frontier');
  L.push('');
  const fp = frontierPoints(results);
  if (fp.length && (results.sweep?.length ?? 0) > 0) {
    L.push(`Each variant at learning rate × steps ${[...new Set(results.sweep!.map((r) => r.lr))].join(', ')} × ${[...new Set(results.sweep!.map((r) => r.steps))].join(', ')} (${Math.max(...fp.filter((p) => !(p.lr === c.train.lr && p.steps === c.train.steps)).map((p) => p.seeds))} seed(s) per sweep point) and at the main setting (lr ${c.train.lr} × ${c.train.steps}, ${c.seeds} seeds). x: general-loss increase (forgetting), y: domain-loss decrease (learning); a point is on the Pareto front when no other point forgets no more and learns no less. Means over seeds; sweep points with one seed carry no error estimate, so this section describes, it does not test.`);
    L.push('');
    L.push('| variant | lr | steps | seeds | general-loss increase | domain-loss decrease | accuracy % | Pareto front |');
    L.push('|---|---:|---:|---:|---:|---:|---:|---|');
    for (const p of [...fp].sort((a, b) => a.variant.localeCompare(b.variant) || a.lr - b.lr || a.steps - b.steps)) {
      L.push(`| ${p.variant} | ${p.lr} | ${p.steps} | ${p.seeds} | ${f4(p.generalIncrease)} | ${f4(p.domainDecrease)} | ${(100 * p.accuracy).toFixed(1)} | ${p.onFront ? '**yes**' : `no (e.g. ${p.dominatedBy[0]})`} |`);
    }
    L.push('');
    const front = fp.filter((p) => p.onFront).sort((a, b) => a.generalIncrease - b.generalIncrease);
    const frontVariants = [...new Set(front.map((p) => p.variant))];
    L.push(`On the front: ${front.map(pointLabel).join('; ')}. Variants with a point on it: ${frontVariants.join(', ')}; never on it: ${[...new Set(fp.map((p) => p.variant))].filter((v) => !frontVariants.includes(v)).join(', ') || 'none'}.`);
    L.push('');
    const maxGain = Math.max(...fp.map((p) => p.domainDecrease));
    for (const q of [0.25, 0.5, 0.75]) {
      const g = q * maxGain;
      const ranked = costAtGain(fp, g);
      if (!ranked.length) continue;
      L.push(`- At equal domain gain ≥ ${g.toFixed(3)} nats (${(100 * q).toFixed(0)} % of the largest): least forgetting ${ranked[0]!.variant} (+${ranked[0]!.generalIncrease.toFixed(3)} at ${ranked[0]!.point}), then ${ranked.slice(1, 4).map((r) => `${r.variant} +${r.generalIncrease.toFixed(3)}`).join(', ') || '–'}${ranked.length > 4 ? ', …' : ''}; ${fp.length && [...new Set(fp.map((p) => p.variant))].length - ranked.length} variant(s) never reach it.`);
    }
  } else L.push('No sweep in this run (`sweep.lrs` / `sweep.steps` empty): the frontier has one point per variant, see general-vs-domain.');
  L.push('');
  L.push('## Plots');
  L.push('');
  L.push('- `loss-curves.svg` / `.png`: mean training loss per step for each variant (Fig. 5 analogue).');
  L.push('- `general-vs-domain.svg` / `.png`: general loss vs domain loss after training, mean ± std over seeds, base model as a hollow square (Table 5 analogue).');
  L.push('- `accuracy.svg` / `.png`: exact-match accuracy per variant, mean ± std.');
  L.push('- `frontier.svg` / `.png`: general-loss increase vs domain-loss decrease for every variant × lr × steps, Pareto front dashed and ringed; `frontier-accuracy.svg` / `.png`: the same x against accuracy.');
  L.push('');
  L.push('![loss curves](loss-curves.png)');
  L.push('');
  L.push('![general vs domain](general-vs-domain.png)');
  L.push('');
  L.push('![frontier](frontier.png)');
  L.push('');
  L.push('## Per-seed values');
  L.push('');
  L.push('| variant | seed | general before | general after | domain before | domain after | accuracy | tokens | seconds |');
  L.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of results.runs) {
    L.push(`| ${r.variant} | ${r.seed} | ${f4(r.before.generalLoss)} | ${f4(r.after.generalLoss)} | ${f4(r.before.domainLoss)} | ${f4(r.after.domainLoss)} | ${r.after.correct}/${r.after.total} | ${r.tokensSeen} | ${r.elapsedS.toFixed(1)} |`);
  }
  L.push('');
  L.push('## Versions');
  L.push('');
  for (const [k, v] of Object.entries(results.versions)) L.push(`- ${k}: ${v}`);
  L.push('');
  return L.join('\n');
}

export interface StudyPlots {
  lossCurves: string;
  generalVsDomain: string;
  accuracy: string;
  frontier: string;
  frontierAccuracy: string;
}

export function renderPlots(results: StudyResults): StudyPlots {
  const vs = summarizeVariants(results.runs);
  // One colour per variant in every plot: by position in the configured variant list.
  const colorOf = colorMap([...new Set([...results.config.variants.map((v) => v.name), ...vs.map((v) => v.variant)])]);
  const curves = vs.map((v) => {
    const rs = results.runs.filter((r) => r.variant === v.variant);
    return { label: v.variant, points: meanCurve(rs), band: seedBand(rs) };
  });
  const longest = Math.max(0, ...curves.map((c) => c.points.length));
  const window = Math.max(1, Math.round(longest / 10));
  const series = curves.map((c) => {
    const lo = movingAverage(c.band.map((b) => ({ x: b.x, y: b.lo })), window);
    const hi = movingAverage(c.band.map((b) => ({ x: b.x, y: b.hi })), window);
    return { label: c.label, color: colorOf(c.label), points: movingAverage(c.points, window), band: lo.map((p, i) => ({ x: p.x, lo: p.y, hi: hi[i]!.y })) };
  });
  const lossCurves = lineChartSvg(
    `Training loss on the domain corpus (mean of ${results.config.seeds} seeds, band min–max${window > 1 ? `, moving average of ${window} steps` : ''})`,
    'step',
    'training loss (nats/token)',
    series,
    longest === 0 ? 'no training curves recorded' : undefined,
  );
  const pts = [
    { label: 'base', x: results.base.eval.generalLoss, y: results.base.eval.domainLoss, xErr: 0, yErr: 0, reference: true, group: 'base', color: '#777777' },
    ...vs.map((v) => ({ label: v.variant, x: v.generalAfter.mean, y: v.domainAfter.mean, xErr: v.generalAfter.std, yErr: v.domainAfter.std, group: v.variant, color: colorOf(v.variant) })),
  ];
  const generalVsDomain = scatterSvg('General vs domain loss after training (mean ± std)', 'general loss (held-out stories) — lower keeps more', 'domain loss (held-out problems) — lower learns more', pts);
  const allZero = [results.base.eval.accuracy, ...vs.map((v) => v.accuracy.mean)].every((a) => a === 0);
  const accuracy = barChartSvg(
    'Exact-match accuracy on held-out problems (mean ± std)',
    'accuracy',
    [{ label: 'base', value: results.base.eval.accuracy, err: 0, reference: true, color: '#777777' }, ...vs.map((v) => ({ label: v.variant, value: v.accuracy.mean, err: v.accuracy.std, color: colorOf(v.variant) }))],
    allZero ? `accuracy is 0 for the base and every variant: no problem solved (${results.base.eval.total} test problems)` : undefined,
  );
  const fp = frontierPoints(results);
  const front = fp.filter((p) => p.onFront).sort((a, b) => a.generalIncrease - b.generalIncrease);
  const fpts = fp.map((p) => ({ label: p.variant, group: p.variant, color: colorOf(p.variant), x: p.generalIncrease, y: p.domainDecrease, xErr: 0, yErr: 0, ring: p.onFront, text: `${p.variant} ${p.lr}×${p.steps}` }));
  const frontier = scatterSvg('Forgetting vs learning over lr × steps (ringed, dashed: Pareto front)', 'general-loss increase (forgetting) — left is better', 'domain-loss decrease (learning) — up is better', fpts, {
    front: front.map((p) => ({ x: p.generalIncrease, y: p.domainDecrease })),
    ...((results.sweep?.length ?? 0) === 0 ? { note: 'no lr × steps sweep in this run: one point per variant' } : {}),
  });
  const allZeroF = fp.every((p) => p.accuracy === 0);
  const frontierAccuracy = scatterSvg(
    'Forgetting vs exact-match accuracy over lr × steps',
    'general-loss increase (forgetting) — left is better',
    'accuracy — up is better',
    fp.map((p) => ({ label: p.variant, group: p.variant, color: colorOf(p.variant), x: p.generalIncrease, y: p.accuracy, xErr: 0, yErr: 0, text: `${p.variant} ${p.lr}×${p.steps}` })),
    allZeroF ? { note: 'accuracy is 0 at every point: no test problem solved' } : {},
  );
  return { lossCurves, generalVsDomain, accuracy, frontier, frontierAccuracy };
}

/** Per-step min and max training loss over seeds (steps present in every seed). */
export function seedBand(runs: readonly RunResult[]): { x: number; lo: number; hi: number }[] {
  if (runs.length === 0) return [];
  const maps = runs.map((r) => new Map(r.curve.map((p) => [p.step, p.loss])));
  const steps = runs[0]!.curve.map((p) => p.step).filter((st) => maps.every((m) => m.has(st)));
  return steps.map((st) => {
    const ys = maps.map((m) => m.get(st)!);
    return { x: st, lo: Math.min(...ys), hi: Math.max(...ys) };
  });
}

/** Writes results.json, report.md and the plots (SVG, and PNG unless `png: false`); returns the paths written. */
export async function writeStudyReport(out: string, results: StudyResults, o: { png?: boolean } = {}): Promise<string[]> {
  await fsp.mkdir(out, { recursive: true });
  const findings = computeFindings(results);
  const files: string[] = [];
  const put = async (name: string, data: string | Uint8Array) => {
    const p = path.join(out, name);
    await writeFileAtomic(p, data);
    files.push(p);
  };
  await writeJsonAtomic(path.join(out, 'results.json'), { ...results, findings });
  files.push(path.join(out, 'results.json'));
  const plots = renderPlots(results);
  const named: [string, string][] = [
    ['loss-curves', plots.lossCurves],
    ['general-vs-domain', plots.generalVsDomain],
    ['accuracy', plots.accuracy],
    ['frontier', plots.frontier],
    ['frontier-accuracy', plots.frontierAccuracy],
  ];
  for (const [name, svg] of named) {
    await put(`${name}.svg`, svg);
    if (o.png !== false) await put(`${name}.png`, svgToPng(svg));
  }
  await put('report.md', renderReportMarkdown(results, findings));
  return files;
}
