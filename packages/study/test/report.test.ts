import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { inflateSync } from 'node:zlib';
import { resolveStudyConfig } from '../src/config';
import { computeFindings, costAtGain, frontierPoints, meanCurve, movingAverage, renderPlots, renderReportMarkdown, stat, summarizeVariants, writeStudyReport } from '../src/report';
import { lineChartSvg, niceTicks, svgToPng } from '../src/plots';
import type { RunResult, StudyResults } from '../src/results';

/** Minimal XML well-formedness check: one root, properly nested and closed tags, quoted attributes, escaped text. */
function checkWellFormed(svg: string): void {
  const body = svg.replace(/^<\?xml[^?]*\?>\s*/, '');
  const stack: string[] = [];
  let roots = 0;
  const re = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|([^<]+)|(<)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(body))) {
    if (m[6]) throw new Error(`stray "<" at ${m.index}: ${body.slice(m.index, m.index + 40)}`);
    if (m[5] !== undefined) {
      if (/&(?!(amp|lt|gt|quot|apos);)/.test(m[5])) throw new Error(`unescaped & in text: ${m[5]}`);
      if (stack.length === 0 && m[5].trim()) throw new Error('text outside the root element');
      continue;
    }
    const [, close, name, , selfClose] = m;
    if (close) {
      const open = stack.pop();
      if (open !== name) throw new Error(`</${name}> closes <${open}>`);
    } else {
      if (stack.length === 0) roots++;
      if (!selfClose) stack.push(name!);
    }
  }
  if (stack.length) throw new Error(`unclosed: ${stack.join(', ')}`);
  if (roots !== 1) throw new Error(`${roots} root elements`);
}

/** Decodes a PNG (8-bit RGBA or RGB, non-interlaced): size and raw scanlines, checking every chunk. */
function decodePng(buf: Buffer): { width: number; height: number; pixels: Buffer; channels: number } {
  expect(buf.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
  let off = 8;
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat: Buffer[] = [];
  for (;;) {
    const len = buf.readUInt32BE(off);
    const type = buf.toString('latin1', off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      expect(data[8]).toBe(8);
      channels = data[9] === 6 ? 4 : data[9] === 2 ? 3 : 0;
      expect(channels).toBeGreaterThan(0);
      expect(data[12]).toBe(0);
    } else if (type === 'IDAT') idat.push(data);
    off += 12 + len;
    if (type === 'IEND') break;
  }
  const raw = inflateSync(Buffer.concat(idat));
  expect(raw.length).toBe(height * (1 + width * channels));
  // Undo the scanline filters to get the pixels.
  const stride = width * channels;
  const pixels = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)]!;
    for (let x = 0; x < stride; x++) {
      const v = raw[y * (stride + 1) + 1 + x]!;
      const a = x >= channels ? pixels[y * stride + x - channels]! : 0;
      const b = y > 0 ? pixels[(y - 1) * stride + x]! : 0;
      const c = x >= channels && y > 0 ? pixels[(y - 1) * stride + x - channels]! : 0;
      let pred = 0;
      if (f === 1) pred = a;
      else if (f === 2) pred = b;
      else if (f === 3) pred = (a + b) >> 1;
      else if (f === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - b);
        const pc = Math.abs(p - c);
        pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      pixels[y * stride + x] = (v + pred) & 255;
    }
  }
  return { width, height, pixels, channels };
}

function darkPixels(png: ReturnType<typeof decodePng>): number {
  let n = 0;
  for (let i = 0; i < png.pixels.length; i += png.channels) if (png.pixels[i]! < 128 && png.pixels[i + 1]! < 128 && png.pixels[i + 2]! < 128) n++;
  return n;
}

type Spec = { variant: string; strategy: string | null; policy: string; blocks: number; general: number[]; domain: number[]; acc: number[] };

function synthetic(specs: Spec[], baseGeneral = 2.0, baseDomain = 3.0): StudyResults {
  const config = resolveStudyConfig('micro');
  const runs: RunResult[] = [];
  for (const s of specs) {
    s.general.forEach((g, seed) => {
      const expand = s.strategy !== null;
      runs.push({
        variant: s.variant,
        seed,
        kind: expand ? 'expand' : 'baseline',
        strategy: s.strategy,
        params: expand ? { blocks: s.blocks } : {},
        policy: s.policy,
        numLayers: 4 + s.blocks,
        newLayers: Array.from({ length: s.blocks }, (_, i) => i),
        trainableParameters: 1000,
        tokensSeen: 512,
        steps: 4,
        before: { generalLoss: baseGeneral, domainLoss: baseDomain },
        after: { generalLoss: g, domainLoss: s.domain[seed]!, accuracy: s.acc[seed]!, correct: Math.round(s.acc[seed]! * 10), total: 10 },
        identity: expand ? { baseGeneralLoss: baseGeneral, expandedGeneralLoss: baseGeneral, identical: true, verifyMaxAbsDiff: 0 } : null,
        curve: [1, 2, 3, 4].map((step) => ({ step, loss: baseDomain - step * 0.1 * (seed + 1) })),
        samples: [],
        elapsedS: 1,
      });
    });
  }
  return {
    format: 'llama-pro.study-results',
    version: 1,
    createdAt: '2026-01-01T00:00:00.000Z',
    config,
    versions: { '@llama-pro/study': '0.1.0' },
    backend: { name: 'fake', device: 'fake:cpu' },
    base: { origin: 'pretrained', dir: '/x', numLayers: 4, parameters: 5000, eval: { generalLoss: baseGeneral, domainLoss: baseDomain, accuracy: 0, correct: 0, total: 10 }, pretrainCurve: [] },
    runs,
    elapsedS: 3,
    cpuS: 2,
  };
}

/** The paper's picture: interleaved best on the domain, top/bottom worse, full forgets, LoRA under-fits. */
const PAPER_LIKE: Spec[] = [
  { variant: 'interleaved-2', strategy: 'interleaved', policy: 'new-blocks', blocks: 2, general: [2.01, 2.02, 2.03], domain: [2.5, 2.52, 2.51], acc: [0.3, 0.4, 0.3] },
  { variant: 'interleaved-4', strategy: 'interleaved', policy: 'new-blocks', blocks: 4, general: [2.02, 2.02, 2.04], domain: [2.3, 2.31, 2.29], acc: [0.5, 0.5, 0.4] },
  { variant: 'top-2', strategy: 'top', policy: 'new-blocks', blocks: 2, general: [2.0, 2.01, 2.0], domain: [2.7, 2.72, 2.71], acc: [0.2, 0.2, 0.1] },
  { variant: 'bottom-2', strategy: 'bottom', policy: 'new-blocks', blocks: 2, general: [2.3, 2.32, 2.31], domain: [2.9, 2.95, 2.92], acc: [0, 0.1, 0] },
  { variant: 'full', strategy: null, policy: 'full', blocks: 0, general: [2.6, 2.65, 2.62], domain: [2.2, 2.21, 2.2], acc: [0.5, 0.6, 0.5] },
  { variant: 'lora', strategy: null, policy: 'lora', blocks: 0, general: [2.0, 2.0, 2.0], domain: [2.95, 2.96, 2.97], acc: [0, 0, 0] },
  { variant: 'layers-2', strategy: null, policy: 'layers', blocks: 0, general: [2.2, 2.21, 2.22], domain: [2.6, 2.6, 2.6], acc: [0.1, 0.1, 0.1] },
];

describe('study report', () => {
  it('moving average is trailing', () => {
    const pts = [1, 2, 3, 4].map((y, x) => ({ x, y }));
    expect(movingAverage(pts, 2).map((p) => p.y)).toEqual([1, 1.5, 2.5, 3.5]);
    expect(movingAverage(pts, 1)).toEqual(pts);
  });

  it('stat is the mean and sample standard deviation', () => {
    const s = stat([1, 2, 3, 4]);
    expect(s.mean).toBe(2.5);
    expect(s.std).toBeCloseTo(Math.sqrt(5 / 3), 12);
    expect(stat([7]).std).toBe(0);
  });

  it('summarizes variants and averages curves over seeds', () => {
    const r = synthetic(PAPER_LIKE);
    const vs = summarizeVariants(r.runs);
    expect(vs.map((v) => v.variant)).toEqual(PAPER_LIKE.map((s) => s.variant));
    const full = vs.find((v) => v.variant === 'full')!;
    expect(full.generalAfter.mean).toBeCloseTo((2.6 + 2.65 + 2.62) / 3, 12);
    expect(full.generalDelta.mean).toBeCloseTo((2.6 + 2.65 + 2.62) / 3 - 2.0, 12);
    const curve = meanCurve(r.runs.filter((x) => x.variant === 'top-2'));
    // Seeds 0..2 drop 0.1, 0.2, 0.3 per step: mean 0.2 per step.
    expect(curve.map((p) => p.y)).toEqual([1, 2, 3, 4].map((s) => expect.closeTo(3 - 0.2 * s, 12)));
  });

  it('computes the findings from the numbers: a paper-like run reproduces them, with p-values', () => {
    const f = computeFindings(synthetic(PAPER_LIKE));
    const by = (s: string) => f.find((x) => x.claim.startsWith(s))!;
    for (const x of f) expect([x.claim, x.verdict]).toEqual([x.claim, 'reproduced']);
    // Every pair the claim names is tested: 2 interleaved × (top-2, bottom-2) for the domain-loss claim.
    expect(by('Interleaved expansion reaches a lower domain loss').comparisons.map((c) => `${c.a}<${c.b}`)).toEqual(['interleaved-2<top-2', 'interleaved-2<bottom-2', 'interleaved-4<top-2', 'interleaved-4<bottom-2']);
    // Both interleaved counts against both baselines that train original weights.
    expect(by('Interleaved expansion retains').comparisons).toHaveLength(4);
    // Hand check of one p-value: interleaved-2 vs top-2 accuracy [0.3, 0.4, 0.3] vs [0.2, 0.2, 0.1]:
    // equal sample variances 1/300, t = (1/6) / √(2/900) = 3.5355, Welch df = 4, two-sided p = 0.024
    // (t table: t(0.975; 4) = 2.776, t(0.99; 4) = 3.747; scipy ttest_ind gives 0.02410).
    const acc = by('Interleaved expansion answers more').comparisons.find((c) => c.a === 'interleaved-2' && c.b === 'top-2')!;
    expect(acc.t).toBeCloseTo(3.5355339, 6);
    expect(acc.df).toBeCloseTo(4, 9);
    expect(acc.p!).toBeGreaterThan(0.01);
    expect(acc.p!).toBeLessThan(0.05);
    expect(acc.p!).toBeCloseTo(0.0241, 4);
    const md = renderReportMarkdown(synthetic(PAPER_LIKE), f);
    expect(md).toContain(`Summary: ${f.length} reproduced, 0 contradicted, 0 inconclusive, 0 untested`);
    expect(md).toMatch(/interleaved-2 0\.3333 >\? top-2 0\.1667 \(p 0\.024\)/);
    // Accuracy against the base's 0 %: lora stays at 0, every other variant ends above it.
    expect(md).toContain('Exact match: the base answers 0.0% (0/10); after domain training the best variant is full (53.3% ± 5.8); 6 variant(s) end above the base');
  });

  it('reports contradicted findings when a difference is significant the other way', () => {
    // Swap: top gets the best domain loss; full forgets nothing; interleaved-4 forgets more than layers-2
    // (only the worse interleaved count); the identity check fails for one run.
    const specs = PAPER_LIKE.map((s) => ({ ...s }));
    specs.find((s) => s.variant === 'top-2')!.domain = [2.0, 2.01, 2.02];
    specs.find((s) => s.variant === 'full')!.general = [1.9, 1.91, 1.9];
    specs.find((s) => s.variant === 'interleaved-4')!.domain = [2.6, 2.61, 2.6];
    specs.find((s) => s.variant === 'interleaved-4')!.general = [2.6, 2.61, 2.62];
    const r = synthetic(specs);
    r.runs.find((x) => x.variant === 'bottom-2')!.identity = { baseGeneralLoss: 2, expandedGeneralLoss: 2.0000001, identical: false, verifyMaxAbsDiff: 1e-7 };
    const f = computeFindings(r);
    const by = (s: string) => f.find((x) => x.claim.startsWith(s))!;
    expect(by('Every expanded model').verdict).toBe('contradicted');
    expect(by('Interleaved expansion reaches a lower domain loss').verdict).toBe('contradicted');
    expect(by('Interleaved expansion reaches a lower domain loss').evidence).toContain('top-2');
    expect(by('Top stacking').verdict).toBe('contradicted');
    expect(by('Full fine-tuning forgets').verdict).toBe('contradicted');
    expect(by('More interleaved blocks').verdict).toBe('contradicted');
    // interleaved-2 still beats full and layers-2; interleaved-4 does not: the finding is not reproduced.
    expect(by('Interleaved expansion retains').verdict).toBe('contradicted');
    expect(by('Block expansion keeps general ability').verdict).toBe('contradicted');
    const md = renderReportMarkdown(r, f);
    expect(md).toMatch(/\| Top stacking[^\n]*\| contradicted \|/);
    expect(md).toContain('| **no** |');
    expect(md).not.toContain('does not separate the variants');
    const zero = synthetic(PAPER_LIKE.map((x) => ({ ...x, acc: x.acc.map(() => 0) })));
    expect(renderReportMarkdown(zero)).toContain('Exact-match accuracy is 0.0% for the base and every run');
  });

  it('states the majority-answer chance level and names the variants that do not beat it', () => {
    const r = synthetic(PAPER_LIKE);
    // PAPER_LIKE mean accuracies: lora 0, bottom-2 0.033, layers-2 0.1, top-2 0.167, the others higher.
    r.majorityBaseline = { answer: '6', accuracy: 0.1, correct: 1, total: 10 };
    const md = renderReportMarkdown(r);
    expect(md).toContain('Chance level: always answering the most frequent training answer (6) scores 10.0% (1/10).');
    expect(md).toContain('4 of 7 variants end above the chance level (10.0%); at or below it: bottom-2, lora, layers-2.');
    r.majorityBaseline = { answer: '6', accuracy: 0.6, correct: 6, total: 10 };
    expect(renderReportMarkdown(r)).toContain('No variant ends above the chance level (60.0%): exact match here says nothing about the question being read.');
    // Results written before the chance level existed render without it.
    delete r.majorityBaseline;
    expect(renderReportMarkdown(r)).not.toContain('chance level');
  });

  it('calls a difference within seed noise inconclusive, in either direction', () => {
    const specs = PAPER_LIKE.map((s) => ({ ...s }));
    // Means 2.667 vs 2.633 with spreads of ±0.2: Welch p ≈ 0.85.
    specs.find((s) => s.variant === 'interleaved-2')!.domain = [2.5, 2.9, 2.6];
    specs.find((s) => s.variant === 'top-2')!.domain = [2.7, 2.4, 2.8];
    const f = computeFindings(synthetic(specs));
    const top = f.find((x) => x.claim.startsWith('Top stacking'))!;
    expect(top.verdict).toBe('inconclusive');
    expect(top.comparisons[0]!.outcome).toBe('not significant');
    expect(top.comparisons[0]!.p!).toBeGreaterThan(0.5);
    expect(top.evidence).toContain('n.s.');
  });

  it('leaves every statistical finding untested with fewer than 3 seeds', () => {
    for (const n of [1, 2]) {
      const specs = PAPER_LIKE.map((s) => ({ ...s, general: s.general.slice(0, n), domain: s.domain.slice(0, n), acc: s.acc.slice(0, n) }));
      const f = computeFindings(synthetic(specs));
      for (const x of f.filter((y) => !y.claim.startsWith('Every expanded model'))) expect([x.claim, x.verdict]).toEqual([x.claim, 'untested']);
      // The identity check is exact and needs no seeds.
      expect(f.find((y) => y.claim.startsWith('Every expanded model'))!.verdict).toBe('reproduced');
      expect(renderReportMarkdown(synthetic(specs), f)).toContain(`1 reproduced, 0 contradicted, 0 inconclusive, ${f.length - 1} untested`);
    }
  });

  it('names the run seeds and the base seed, and says the spreads are domain-training noise on one base', () => {
    const r = synthetic(PAPER_LIKE);
    for (const x of r.runs) x.seed += 10;
    r.config = { ...r.config, seeds: 3, firstSeed: 10, base: { ...r.config.base, seed: 42 } };
    const md = renderReportMarkdown(r);
    expect(md).toContain('3 seed(s) (seeds 10, 11, 12)');
    expect(md).toContain('base seed 42 for the initial weights');
    r.machine = { cpus: 2, loadAvg: 0.5, workers: 2 };
    expect(renderReportMarkdown(r)).toContain('CPU time 2 s (this invocation, 2 processes sharing the runs; reused runs excluded) on 2 cores, 1-minute load average 0.5 at the start.');
    expect(md).toContain('measure domain-training noise on this base, not the variation between independently pretrained bases (`--base-seed <n>`');
    // A given base is not pretrained here: no --base-seed hint.
    r.base = { ...r.base, origin: 'given' };
    const given = renderReportMarkdown(r);
    expect(given).toContain('not the variation between independently pretrained bases.');
    expect(given).not.toContain('--base-seed');
  });

  it('says when the pretrained base does not beat the chance level (before the copying transition)', () => {
    const r = synthetic(PAPER_LIKE);
    r.majorityBaseline = { answer: '6', accuracy: 0.1, correct: 1, total: 10 };
    r.base = { ...r.base, eval: { ...r.base.eval, accuracy: 0.1, correct: 1 } };
    expect(renderReportMarkdown(r)).toContain('The base does not beat the chance level');
    r.base = { ...r.base, eval: { ...r.base.eval, accuracy: 0.2, correct: 2 } };
    expect(renderReportMarkdown(r)).not.toContain('The base does not beat the chance level');
    // A given base was not pretrained here: the pretraining advice does not apply.
    r.base = { ...r.base, origin: 'given', eval: { ...r.base.eval, accuracy: 0, correct: 0 } };
    expect(renderReportMarkdown(r)).not.toContain('The base does not beat the chance level');
  });

  it('marks findings it cannot test', () => {
    const f = computeFindings(synthetic(PAPER_LIKE.filter((s) => s.variant === 'full')));
    expect(f.filter((x) => x.verdict === 'untested').length).toBe(f.length);
  });

  it('marks the Pareto front over variants × lr × steps and ranks variants at equal domain gain', () => {
    const r = synthetic(PAPER_LIKE);
    // Sweep points (one seed each): full at a small lr forgets little and learns little; lora at a large
    // lr; interleaved-2 at a small lr, dominated by interleaved-4's main point.
    const mk = (variant: string, lr: number, g: number, d: number): RunResult => ({ ...r.runs.find((x) => x.variant === variant)!, seed: 0, lr, after: { generalLoss: g, domainLoss: d, accuracy: 0, correct: 0, total: 10 } });
    r.sweep = [mk('full', 1e-4, 2.001, 2.9), mk('lora', 0.1, 2.05, 2.4), mk('interleaved-2', 1e-4, 2.1, 2.8)];
    const pts = frontierPoints(r);
    expect(pts).toHaveLength(PAPER_LIKE.length + 3);
    const lr0 = r.config.train.lr;
    const at = (v: string, lr: number) => pts.find((p) => p.variant === v && p.lr === lr)!;
    // interleaved-4 at the main point: general 2.02, 2.02, 2.04 from 2.0 (mean +0.08/3), domain 3.0 → 2.3.
    expect(at('interleaved-4', lr0).generalIncrease).toBeCloseTo(0.08 / 3, 12);
    expect(at('interleaved-4', lr0).domainDecrease).toBeCloseTo(0.7, 12);
    expect(at('lora', lr0).onFront).toBe(true); // forgets nothing (general 2.0 = the base's)
    // full at lr 1e-4 (+0.001, 0.1): only lora's main point forgets less (0), and it learns less (0.04).
    expect(at('full', 1e-4).onFront).toBe(true);
    expect(at('interleaved-4', lr0).onFront).toBe(true);
    expect(at('full', lr0).onFront).toBe(true); // the largest domain gain (0.797)
    expect(at('interleaved-2', 1e-4).onFront).toBe(false);
    expect(at('interleaved-2', 1e-4).dominatedBy).toContain(`interleaved-4 lr ${lr0} × 4`);
    expect(at('bottom-2', lr0).onFront).toBe(false);
    // Domain gain ≥ 0.65 is reached only by interleaved-4 (0.7, +0.027) and full (0.797, +0.623).
    expect(costAtGain(pts, 0.65).map((x) => x.variant)).toEqual(['interleaved-4', 'full']);
    const md = renderReportMarkdown(r);
    expect(md).toContain('## Forgetting–learning frontier');
    expect(md).toMatch(/At equal domain gain ≥ 0\.59[78] nats \(75 % of the largest\): least forgetting interleaved-4/);
  });

  it('gives each variant one colour in every plot and notes an all-zero accuracy chart', () => {
    const r = synthetic(PAPER_LIKE.map((x) => ({ ...x, acc: x.acc.map(() => 0) })));
    const plots = renderPlots(r);
    // Legend entries: a marker element followed by the label's text element.
    const colourOf = (svg: string, label: string) => new RegExp(`(?:stroke|fill)="(#[0-9A-Fa-f]{6})"[^>]*/>\\n<text[^>]*>${label}</text>`).exec(svg)?.[1];
    const names = ['full', 'lora', 'interleaved-2', 'bottom-2'];
    for (const v of names) {
      const c = colourOf(plots.lossCurves, v);
      expect(c).toBeDefined();
      expect(colourOf(plots.generalVsDomain, v)).toBe(c);
      expect(colourOf(plots.frontier, v)).toBe(c);
      expect(plots.accuracy).toContain(`fill="${c}"`);
    }
    expect(new Set(names.map((v) => colourOf(plots.lossCurves, v))).size).toBe(names.length);
    expect(plots.accuracy).toContain('accuracy is 0 for the base and every variant');
    expect(plots.frontier).toContain('no lr × steps sweep in this run');
    // Seed bands on the loss curves: one shaded polygon per variant.
    expect((plots.lossCurves.match(/<polygon /g) ?? []).length).toBe(PAPER_LIKE.length);
    // Scatter points carry their labels.
    expect(plots.generalVsDomain).toContain('>layers-2</text>');
  });

  it('writes results.json, report.md, well-formed SVGs and legible PNGs', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'study-report-'));
    try {
      const r = synthetic(PAPER_LIKE);
      const files = await writeStudyReport(dir, r);
      const names = files.map((f) => path.basename(f)).sort();
      expect(names).toEqual(['accuracy.png', 'accuracy.svg', 'frontier-accuracy.png', 'frontier-accuracy.svg', 'frontier.png', 'frontier.svg', 'general-vs-domain.png', 'general-vs-domain.svg', 'loss-curves.png', 'loss-curves.svg', 'report.md', 'results.json']);
      const json = JSON.parse(await fsp.readFile(path.join(dir, 'results.json'), 'utf8')) as StudyResults & { findings: unknown[] };
      expect(json.runs).toHaveLength(r.runs.length);
      expect(json.runs[0]!.after.generalLoss).toBe(2.01);
      expect(json.findings).toHaveLength(10);
      const md = await fsp.readFile(path.join(dir, 'report.md'), 'utf8');
      expect(md).toContain('| interleaved-4 | new-blocks | 4 |');
      expect(md).toContain('2.3000 ± 0.0100'); // interleaved-4 domain loss: mean 2.3, sample std 0.01
      for (const n of ['accuracy', 'general-vs-domain', 'loss-curves', 'frontier', 'frontier-accuracy']) {
        const svg = await fsp.readFile(path.join(dir, `${n}.svg`), 'utf8');
        checkWellFormed(svg);
        expect(svg).toContain('interleaved-2');
        const png = decodePng(await fsp.readFile(path.join(dir, `${n}.png`)));
        expect(png.width).toBe(1350);
        expect(png.height).toBe(Math.round((1350 * 560) / 900));
        expect(darkPixels(png)).toBeGreaterThan(2000);
      }
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });

  it('renders text in the PNG with the bundled font (text adds dark pixels)', () => {
    const series = [{ label: 'a', points: [{ x: 0, y: 0 }, { x: 1, y: 1 }] }];
    const withText = lineChartSvg('A LONG TITLE WITH MANY LETTERS', 'x axis label', 'y axis label', series);
    const noText = withText.replace(/<text[^>]*>[^<]*<\/text>/g, '');
    const a = darkPixels(decodePng(svgToPng(withText, 900)));
    const b = darkPixels(decodePng(svgToPng(noText, 900)));
    expect(a - b).toBeGreaterThan(500);
  });

  it('nice ticks cover the range with round steps', () => {
    expect(niceTicks(0, 1)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(2.13, 2.96)).toEqual([2.2, 2.4, 2.6, 2.8]);
    checkWellFormed(lineChartSvg('t <&> "q"', 'x', 'y', [{ label: 'a&b', points: [{ x: 0, y: 1 }] }]));
  });
});
