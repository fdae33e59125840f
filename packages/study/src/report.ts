/**
 * The study report: per-variant aggregates (mean ± sample std over seeds), the paper's qualitative
 * findings checked against this run's numbers, `results.json`, `report.md` and the plots (SVG + PNG).
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic, writeJsonAtomic } from '@llama-pro/core';
import { barChartSvg, lineChartSvg, scatterSvg, svgToPng } from './plots';
import type { RunResult, StudyResults } from './results';

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

export interface Finding {
  /** The paper's claim, in words. */
  claim: string;
  /** true / false from this run's numbers; null when the run has no variants to test it. */
  reproduced: boolean | null;
  /** The numbers behind the verdict. */
  evidence: string;
  /** When the verdict rests on a difference smaller than the seeds' spread. */
  withinNoise?: boolean;
}

const f4 = (x: number) => (Number.isFinite(x) ? x.toFixed(4) : 'n/a');
const pm = (s: Stat, digits = 4) => (Number.isFinite(s.mean) ? `${s.mean.toFixed(digits)} ± ${s.std.toFixed(digits)}` : 'n/a');

/** True when |a − b| is smaller than the larger of the two stds (a 1σ overlap). */
function noisy(a: Stat, b: Stat): boolean {
  return Math.abs(a.mean - b.mean) < Math.max(a.std, b.std);
}

function minBy<T>(xs: readonly T[], f: (x: T) => number): T | undefined {
  let best: T | undefined;
  for (const x of xs) if (best === undefined || f(x) < f(best)) best = x;
  return best;
}

/**
 * The paper's qualitative findings (LLaMA Pro, Table 5 / Fig. 5 and §5), each evaluated on this run's
 * per-variant means. Verdicts are computed, never assumed.
 */
export function computeFindings(results: StudyResults): Finding[] {
  const vs = summarizeVariants(results.runs);
  const expand = vs.filter((v) => v.kind === 'expand');
  const byStrategy = (s: string) => expand.filter((v) => v.strategy === s);
  const inter = byStrategy('interleaved');
  const top = byStrategy('top');
  const bottom = byStrategy('bottom');
  const full = vs.find((v) => v.policy === 'full');
  const lora = vs.find((v) => v.policy === 'lora');
  const out: Finding[] = [];

  // 0. Identity at step 0.
  const idRuns = results.runs.filter((r) => r.identity);
  out.push({
    claim: 'Every expanded model starts from the base model exactly (zero-initialized output projections: identical general loss at step 0)',
    reproduced: idRuns.length ? idRuns.every((r) => r.identity!.identical) : null,
    evidence: idRuns.length
      ? `${idRuns.filter((r) => r.identity!.identical).length}/${idRuns.length} expanded runs have step-0 general loss exactly equal to the base's ${f4(results.base.eval.generalLoss)}`
      : 'no expansion variant in this run',
  });

  // 1. Interleaved best domain loss among expansions.
  const bestExp = minBy(expand, (v) => v.domainAfter.mean);
  if (bestExp && inter.length && expand.length > inter.length) {
    const bestInter = minBy(inter, (v) => v.domainAfter.mean)!;
    const bestOther = minBy(expand.filter((v) => v.strategy !== 'interleaved'), (v) => v.domainAfter.mean)!;
    out.push({
      claim: 'Interleaved expansion reaches the best domain loss among the expansion variants',
      reproduced: bestExp.strategy === 'interleaved',
      evidence: `best expansion by domain loss: ${bestExp.variant} (${pm(bestExp.domainAfter)}); best interleaved ${bestInter.variant} ${pm(bestInter.domainAfter)} vs best other ${bestOther.variant} ${pm(bestOther.domainAfter)}`,
      withinNoise: noisy(bestInter.domainAfter, bestOther.domainAfter),
    });
  } else out.push({ claim: 'Interleaved expansion reaches the best domain loss among the expansion variants', reproduced: null, evidence: 'needs interleaved and other expansion variants' });

  // 2. Bottom stacking is worse than interleaved at the same block count.
  const pairs = (others: typeof expand) =>
    others.map((o) => ({ o, i: inter.find((x) => x.newBlocks === o.newBlocks) })).filter((p): p is { o: VariantSummary; i: VariantSummary } => p.i !== undefined);
  const bp = pairs(bottom);
  out.push(
    bp.length
      ? {
          claim: 'Bottom stacking is worse than interleaved at the same number of new blocks (higher domain loss)',
          reproduced: bp.every((p) => p.o.domainAfter.mean > p.i.domainAfter.mean),
          evidence: bp.map((p) => `${p.o.newBlocks} blocks: bottom ${pm(p.o.domainAfter)} vs interleaved ${pm(p.i.domainAfter)}`).join('; '),
          withinNoise: bp.some((p) => noisy(p.o.domainAfter, p.i.domainAfter)),
        }
      : { claim: 'Bottom stacking is worse than interleaved at the same number of new blocks (higher domain loss)', reproduced: null, evidence: 'needs bottom and interleaved variants with equal block counts' },
  );

  // 3. Top stacking keeps general ability but learns the domain worse than interleaved.
  const tp = pairs(top);
  out.push(
    tp.length
      ? {
          claim: 'Top stacking learns the domain worse than interleaved at the same number of new blocks (higher domain loss)',
          reproduced: tp.every((p) => p.o.domainAfter.mean > p.i.domainAfter.mean),
          evidence: tp.map((p) => `${p.o.newBlocks} blocks: top ${pm(p.o.domainAfter)} vs interleaved ${pm(p.i.domainAfter)}`).join('; '),
          withinNoise: tp.some((p) => noisy(p.o.domainAfter, p.i.domainAfter)),
        }
      : { claim: 'Top stacking learns the domain worse than interleaved at the same number of new blocks (higher domain loss)', reproduced: null, evidence: 'needs top and interleaved variants with equal block counts' },
  );

  // 4. Full fine-tuning forgets more than block expansion.
  const bestInterForget = minBy(inter, (v) => v.generalDelta.mean);
  out.push(
    full && bestInterForget
      ? {
          claim: 'Full fine-tuning forgets more general ability than interleaved block expansion (larger general-loss increase)',
          reproduced: full.generalDelta.mean > Math.max(...inter.map((v) => v.generalDelta.mean)),
          evidence: `general-loss change: full ${pm(full.generalDelta)}; interleaved ${inter.map((v) => `${v.variant} ${pm(v.generalDelta)}`).join(', ')}`,
          withinNoise: inter.some((v) => noisy(full.generalDelta, v.generalDelta)),
        }
      : { claim: 'Full fine-tuning forgets more general ability than interleaved block expansion (larger general-loss increase)', reproduced: null, evidence: 'needs the full and interleaved variants' },
  );

  // 5. LoRA under-fits the domain.
  const bestInterDomain = minBy(inter, (v) => v.domainAfter.mean);
  out.push(
    lora && bestInterDomain
      ? {
          claim: 'LoRA under-fits the domain compared with interleaved block expansion (higher domain loss)',
          reproduced: lora.domainAfter.mean > bestInterDomain.domainAfter.mean,
          evidence: `domain loss: lora ${pm(lora.domainAfter)} vs ${bestInterDomain.variant} ${pm(bestInterDomain.domainAfter)}`,
          withinNoise: noisy(lora.domainAfter, bestInterDomain.domainAfter),
        }
      : { claim: 'LoRA under-fits the domain compared with interleaved block expansion (higher domain loss)', reproduced: null, evidence: 'needs the lora and interleaved variants' },
  );

  // 6. Expansion keeps general ability (general loss after training close to the base's, i.e. less forgetting than every baseline that trains original weights).
  const baselines = vs.filter((v) => v.kind === 'baseline' && v.policy !== 'lora');
  const bestInterGen = minBy(inter, (v) => v.generalAfter.mean);
  out.push(
    baselines.length && bestInterGen
      ? {
          claim: 'Interleaved expansion retains general ability better than training the original weights (full or existing layers)',
          reproduced: baselines.every((b) => b.generalAfter.mean > bestInterGen.generalAfter.mean),
          evidence: `general loss after: ${bestInterGen.variant} ${pm(bestInterGen.generalAfter)}; ${baselines.map((b) => `${b.variant} ${pm(b.generalAfter)}`).join(', ')}`,
          withinNoise: baselines.some((b) => noisy(b.generalAfter, bestInterGen.generalAfter)),
        }
      : { claim: 'Interleaved expansion retains general ability better than training the original weights (full or existing layers)', reproduced: null, evidence: 'needs interleaved and full/layers variants' },
  );

  // 7. More interleaved blocks help the domain.
  const interSorted = [...inter].sort((a, b) => a.newBlocks - b.newBlocks);
  out.push(
    interSorted.length >= 2
      ? {
          claim: 'More interleaved blocks reach a lower domain loss (over the block counts tried)',
          reproduced: interSorted.every((v, i) => i === 0 || v.domainAfter.mean < interSorted[i - 1]!.domainAfter.mean),
          evidence: interSorted.map((v) => `${v.newBlocks} blocks ${pm(v.domainAfter)}`).join(' → '),
          withinNoise: interSorted.some((v, i) => i > 0 && noisy(v.domainAfter, interSorted[i - 1]!.domainAfter)),
        }
      : { claim: 'More interleaved blocks reach a lower domain loss (over the block counts tried)', reproduced: null, evidence: 'needs at least two interleaved block counts' },
  );
  return out;
}

function verdict(f: Finding): string {
  if (f.reproduced === null) return 'not tested';
  return f.reproduced ? (f.withinNoise ? 'yes (within seed noise)' : 'yes') : f.withinNoise ? 'no (within seed noise)' : 'no';
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

export function renderReportMarkdown(results: StudyResults, findings: readonly Finding[] = computeFindings(results)): string {
  const vs = summarizeVariants(results.runs);
  const c = results.config;
  const b = results.base;
  const L: string[] = [];
  const ppl = (s: Stat) => (Number.isFinite(s.mean) ? Math.exp(s.mean).toFixed(3) : 'n/a');
  L.push('# LLaMA Pro study (miniature)');
  L.push('');
  L.push(`Generated ${results.createdAt} by @llama-pro/study ${results.versions['@llama-pro/study'] ?? ''} on ${results.backend.name} (${results.backend.device}); ${c.seeds} seed(s); wall time ${results.elapsedS.toFixed(0)} s, CPU time ${results.cpuS.toFixed(0)} s (this invocation; reused runs excluded). Every number below comes from \`results.json\` of this run.`);
  L.push('');
  L.push('## Setup');
  L.push('');
  L.push(`- Base model: ${b.origin === 'pretrained' ? `pretrained here from scratch on ${c.corpus.generalTrain} built-in stories (${c.base.pretrain.steps} steps × ${c.base.pretrain.batchSize} × ${c.base.pretrain.seqLen} tokens, full training)` : `given (${b.dir})`}; ${b.numLayers} layers, ${b.parameters} parameters; byte tokens.`);
  L.push(`- Domain: built-in arithmetic word problems with worked answers ending in \`#### n\`; every variant trains ${c.train.steps} steps × ${c.train.batchSize} sequences × ${c.train.seqLen} tokens (same data, same seeds, lr ${c.train.lr}, ${c.train.schedule}).`);
  L.push(`- Evaluation: loss (nats/token) on ${c.eval.generalDocs} held-out stories (general) and ${c.eval.domainDocs} held-out problems (domain); exact match of the greedy \`#### n\` answer on ${b.eval.total} held-out test questions. Perplexity = exp(loss). Values are mean ± sample std over seeds.`);
  L.push('');
  L.push(`Base model: general loss ${f4(b.eval.generalLoss)} (ppl ${Math.exp(b.eval.generalLoss).toFixed(3)}), domain loss ${f4(b.eval.domainLoss)} (ppl ${Math.exp(b.eval.domainLoss).toFixed(3)}), accuracy ${(100 * b.eval.accuracy).toFixed(1)}% (${b.eval.correct}/${b.eval.total}).`);
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
  L.push('Verdicts are computed from the numbers above. "within seed noise" marks a verdict that rests on a difference smaller than the spread over seeds.');
  L.push('');
  L.push('| finding (paper) | reproduced here | evidence |');
  L.push('|---|---|---|');
  for (const f of findings) L.push(`| ${f.claim} | ${verdict(f)} | ${f.evidence.replace(/\|/g, '\\|')} |`);
  const yes = findings.filter((f) => f.reproduced === true).length;
  const no = findings.filter((f) => f.reproduced === false).length;
  const accs = [results.base.eval.accuracy, ...results.runs.map((r) => r.after.accuracy)];
  if (accs.every((a) => a === accs[0])) {
    L.push('');
    L.push(`Exact-match accuracy is ${(100 * accs[0]!).toFixed(1)}% for the base and every run, so at this scale it does not separate the variants; the comparisons rest on the losses. A larger budget (\`train.steps\`, \`base.model\`, \`--config\`) is needed for the model to solve the problems.`);
  }
  L.push('');
  L.push(`Summary: ${yes} reproduced, ${no} not reproduced, ${findings.length - yes - no} not tested. This is a ${b.parameters}-parameter model trained for seconds on synthetic data; the paper's setting is a 7B model on 80B tokens, so disagreements are expected and are reported as they come out.`);
  L.push('');
  L.push('## Plots');
  L.push('');
  L.push('- `loss-curves.svg` / `.png`: mean training loss per step for each variant (Fig. 5 analogue).');
  L.push('- `general-vs-domain.svg` / `.png`: general loss vs domain loss after training, mean ± std over seeds, base model as a hollow square (Table 5 analogue).');
  L.push('- `accuracy.svg` / `.png`: exact-match accuracy per variant, mean ± std.');
  L.push('');
  L.push('![loss curves](loss-curves.png)');
  L.push('');
  L.push('![general vs domain](general-vs-domain.png)');
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
}

export function renderPlots(results: StudyResults): StudyPlots {
  const vs = summarizeVariants(results.runs);
  const curves = vs.map((v) => ({ label: v.variant, points: meanCurve(results.runs.filter((r) => r.variant === v.variant)) }));
  const longest = Math.max(0, ...curves.map((c) => c.points.length));
  const window = Math.max(1, Math.round(longest / 10));
  const series = curves.map((c) => ({ label: c.label, points: movingAverage(c.points, window) }));
  const lossCurves = lineChartSvg(
    `Training loss on the domain corpus (mean of ${results.config.seeds} seeds${window > 1 ? `, moving average of ${window} steps` : ''})`,
    'step',
    'training loss (nats/token)',
    series,
  );
  const pts = [
    { label: 'base', x: results.base.eval.generalLoss, y: results.base.eval.domainLoss, xErr: 0, yErr: 0, reference: true, group: 'base' },
    ...vs.map((v) => ({ label: v.variant, x: v.generalAfter.mean, y: v.domainAfter.mean, xErr: v.generalAfter.std, yErr: v.domainAfter.std, group: v.variant })),
  ];
  const generalVsDomain = scatterSvg('General vs domain loss after training (mean ± std)', 'general loss (held-out stories) — lower keeps more', 'domain loss (held-out problems) — lower learns more', pts);
  const accuracy = barChartSvg('Exact-match accuracy on held-out problems (mean ± std)', 'accuracy', [
    { label: 'base', value: results.base.eval.accuracy, err: 0, reference: true },
    ...vs.map((v) => ({ label: v.variant, value: v.accuracy.mean, err: v.accuracy.std })),
  ]);
  return { lossCurves, generalVsDomain, accuracy };
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
  ];
  for (const [name, svg] of named) {
    await put(`${name}.svg`, svg);
    if (o.png !== false) await put(`${name}.png`, svgToPng(svg));
  }
  await put('report.md', renderReportMarkdown(results, findings));
  return files;
}
