/**
 * `runStudy`: the LLaMA Pro insertion-position / block-count ablation in miniature.
 * (a) a base model: pretrained here on the general corpus (full policy) and cached by config hash, or given;
 * (b) variants: expansions (interleaved / top / bottom, ...) trained with the new-blocks policy, and baselines
 *     (full, lora, layers) trained on the base model;
 * (c) the same domain data, token budget and seeds for every variant;
 * (d) evaluation: general loss (held-out stories), domain loss (held-out problems), exact-match accuracy of
 *     greedy `#### n` answers on held-out test questions; the identity check of each expansion at step 0;
 * (e) resumable: a run whose `result.json` exists is not redone.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  HfCheckpoint,
  IGNORE_INDEX,
  type ModelBackend,
  type NamedRegistry,
  type ProgressReporter,
  Rng,
  type TextTokenizer,
  type TrainableLM,
  type TrainingBatch,
  UsageError,
  byteTokenizerJson,
  expectedShape,
  expectedTensorNames,
  generate,
  loadTokenizerOrBytes,
  normalizeConfig,
  pathExists,
  saveModelDir,
  silentProgress,
  writeFileAtomic,
  writeJsonAtomic,
  writeTokenizerFiles,
} from '@llama-pro/core';
import { type BlockInitializer, type ExpansionStrategy, MANIFEST_FILE, expandModel, readExpansionManifest } from '@llama-pro/expand';
import { type Experiment, type FreezePolicy, type LrSchedule, type MetricsRecord, parseExperiment, readMetrics, runTraining } from '@llama-pro/train';
import { gsm8kExactMatch, strictMatch } from '@llama-pro/eval';
import type { StudyConfig, VariantSpec } from './config';
import { type MathProblem, type StudyCorpora, generateCorpora, problemPrompt } from './corpora';
import { type AccuracyNumbers, type BaseResult, type EvalNumbers, type RunResult, RESULTS_FORMAT, RESULTS_VERSION, type StudyResults } from './results';
import { writeStudyReport } from './report';

export interface StudyDeps {
  backend: ModelBackend;
  strategies: NamedRegistry<ExpansionStrategy>;
  initializers: NamedRegistry<BlockInitializer>;
  policies: NamedRegistry<FreezePolicy>;
  schedules: NamedRegistry<LrSchedule>;
  /** Overall progress: one unit per run (base pretraining included). */
  progress?: ProgressReporter;
  log?: (message: string) => void;
  /** Extra version strings recorded in results.json (e.g. the CLI's). */
  versions?: Record<string, string>;
}

export interface StudyOptions {
  out: string;
  /** Where pretrained bases are cached (default `<out>/cache`). */
  cacheDir?: string;
  signal?: AbortSignal;
  /** Skip the PNG renderings (SVG only). */
  noPng?: boolean;
  /**
   * Prepare only (for external engines): write the data, expand every expansion variant and hand each
   * variant × seed experiment to this callback instead of training here.
   */
  prepare?: (jobs: PreparedJob[]) => Promise<void>;
  /**
   * Processes for the variant runs, this one included (default 1). The runs are independent and each
   * model trains on one core, so on a 2-core machine two processes halve the wall time of that phase.
   * Needs `spawnWorker`.
   */
  workers?: number;
  /**
   * Starts worker `index` of `count`: another process running this same study (same resolved config,
   * out and cache) with `shard` set. Resolves when it exits, with its CPU seconds.
   */
  spawnWorker?: (index: number, count: number) => Promise<{ cpuS: number }>;
  /** Run as a worker: claim and run pending runs only (base and expansions must exist); no report. */
  shard?: { index: number; count: number };
}

/** One variant × seed of the protocol, ready for an external engine. */
export interface PreparedJob {
  variant: string;
  seed: number;
  /** The (expanded) model the run starts from, and the domain training file. */
  modelDir: string;
  data: string;
  experiment: Experiment;
  kind: 'expand' | 'baseline';
}

export interface StudySummary {
  out: string;
  results: StudyResults;
  /** Runs computed now / reused from an earlier invocation. */
  ran: number;
  reused: number;
  files: string[];
}

function pkgVersion(name: string): string {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require(`${name}/package.json`) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const STUDY_VERSION = (require('../package.json') as { version: string }).version;

export function studyVersions(): Record<string, string> {
  return {
    '@llama-pro/study': STUDY_VERSION,
    '@llama-pro/core': pkgVersion('@llama-pro/core'),
    '@llama-pro/expand': pkgVersion('@llama-pro/expand'),
    '@llama-pro/train': pkgVersion('@llama-pro/train'),
    '@llama-pro/eval': pkgVersion('@llama-pro/eval'),
    node: process.version,
  };
}

function hashOf(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 16);
}

async function readDocs(file: string): Promise<string[]> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    throw new UsageError(`corpus file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, 'STUDY_CORPUS_MISSING');
  }
  const docs = text.split(/\n\s*\n/).map((d) => d.trim()).filter((d) => d.length > 0);
  if (docs.length === 0) throw new UsageError(`corpus file ${file} holds no documents (documents are separated by blank lines)`, 'STUDY_CORPUS_EMPTY');
  return docs;
}

async function readTestProblems(file: string): Promise<MathProblem[]> {
  const text = await fsp.readFile(file, 'utf8').catch((e: NodeJS.ErrnoException) => {
    throw new UsageError(`test problems ${file}: ${e.code ?? e.message}`, 'STUDY_CORPUS_MISSING');
  });
  return text
    .split('\n')
    .filter((l) => l.trim())
    .map((l, i) => {
      let r: { question?: unknown; answer?: unknown };
      try {
        r = JSON.parse(l) as typeof r;
      } catch {
        throw new UsageError(`${file} line ${i + 1} is not JSON`, 'STUDY_CORPUS_INVALID');
      }
      if (typeof r.question !== 'string' || typeof r.answer !== 'string') throw new UsageError(`${file} line ${i + 1} needs string "question" and "answer" fields`, 'STUDY_CORPUS_INVALID');
      const m = /####\s*(-?[0-9.,]+)\s*$/.exec(r.answer);
      if (!m) throw new UsageError(`${file} line ${i + 1}: the answer must end with "#### <number>"`, 'STUDY_CORPUS_INVALID');
      return { question: r.question, answer: r.answer, value: Number(m[1]!.replace(/,/g, '')) };
    });
}

/** The built-in corpora, with any real corpora from `corpus.files` replacing the matching split. */
export async function loadStudyCorpora(c: StudyConfig): Promise<StudyCorpora> {
  const gen = generateCorpora(c.corpus.seed, c.corpus, c.corpus.task);
  const f = c.corpus.files;
  return {
    seed: gen.seed,
    generalTrain: f.generalTrain ? await readDocs(f.generalTrain) : gen.generalTrain,
    generalVal: f.generalVal ? await readDocs(f.generalVal) : gen.generalVal,
    domainTrain: f.domainTrain ? await readDocs(f.domainTrain) : gen.domainTrain,
    domainVal: f.domainVal ? await readDocs(f.domainVal) : gen.domainVal,
    domainTest: f.domainTest ? await readTestProblems(f.domainTest) : gen.domainTest,
  };
}

async function writeJsonl(file: string, docs: readonly string[]): Promise<void> {
  await writeFileAtomic(file, docs.map((text) => JSON.stringify({ text })).join('\n') + '\n');
}

/** Token-weighted mean next-token loss over documents (BOS + text, truncated to seqLen + 1 tokens). */
export async function corpusLoss(model: TrainableLM, tok: TextTokenizer, docs: readonly string[], seqLen: number, batchSize: number): Promise<number> {
  let sum = 0;
  let tokens = 0;
  const bos = tok.bosTokenId;
  for (let i = 0; i < docs.length; i += batchSize) {
    const rows = docs.slice(i, i + batchSize).map((d) => [...(bos !== null && bos !== undefined ? [bos] : []), ...tok.encode(d)].slice(0, seqLen + 1));
    const T = Math.max(...rows.map((r) => r.length - 1));
    if (T < 1) continue;
    const ids = new Int32Array(rows.length * T);
    const targets = new Int32Array(rows.length * T).fill(IGNORE_INDEX);
    rows.forEach((r, b) => {
      for (let t = 0; t < r.length - 1; t++) {
        ids[b * T + t] = r[t]!;
        targets[b * T + t] = r[t + 1]!;
      }
    });
    const batch: TrainingBatch = { ids, targets, batchSize: rows.length, seqLen: T };
    const r = await model.loss(batch);
    sum += r.loss * r.tokens;
    tokens += r.tokens;
  }
  if (tokens === 0) throw new UsageError('evaluation corpus has no tokens', 'STUDY_CORPUS_EMPTY');
  return sum / tokens;
}

/**
 * Always answering the most frequent final answer (`#### n`) of the training text: how many test
 * problems that gets right (ties: the smallest answer). Exact match below or at this level is chance.
 */
export function majorityAnswerBaseline(trainingTexts: readonly string[], problems: readonly MathProblem[]): { answer: string; accuracy: number; correct: number; total: number } {
  const counts = new Map<string, number>();
  for (const t of trainingTexts) {
    const m = /####\s*(-?[0-9.,]+)\s*$/.exec(t);
    if (m) counts.set(m[1]!, (counts.get(m[1]!) ?? 0) + 1);
  }
  const answer = [...counts.entries()].sort((a, b) => b[1] - a[1] || Number(a[0]) - Number(b[0]))[0]?.[0] ?? '';
  const correct = problems.filter((p) => answer !== '' && gsm8kExactMatch(answer, p.answer)).length;
  return { answer, accuracy: problems.length ? correct / problems.length : 0, correct, total: problems.length };
}

/**
 * Scores one generated continuation of `problemPrompt(p)`: GSM8K strict match (the first `#### n` in
 * the text, lm-eval's regex) compared with the gold `#### n` after lm-eval's normalisation. A number
 * without `#### ` in front of it does not count, whatever it is.
 */
export function scoreAnswer(generation: string, p: MathProblem): { extracted: string; correct: boolean } {
  const extracted = strictMatch(generation);
  return { extracted, correct: gsm8kExactMatch(extracted, p.answer) };
}

/** Greedy answers to the test questions, scored by exact match of the `#### n` answer (GSM8K strict-match). */
export async function answerAccuracy(
  model: TrainableLM,
  tok: TextTokenizer,
  problems: readonly MathProblem[],
  maxNewTokens: number,
  batchSize: number,
): Promise<AccuracyNumbers & { samples: RunResult['samples'] }> {
  let correct = 0;
  const samples: RunResult['samples'] = [];
  const bos = tok.bosTokenId;
  for (let i = 0; i < problems.length; i += batchSize) {
    const chunk = problems.slice(i, i + batchSize);
    const prompts = chunk.map((p) => [...(bos !== null && bos !== undefined ? [bos] : []), ...tok.encode(problemPrompt(p))]);
    const gens = await generate(model, prompts, {
      maxNewTokens,
      temperature: 0,
      stopStrings: ['\nQuestion:', '\n\n'],
      decode: (ids) => tok.decode(ids, { skipSpecialTokens: true }),
      // Training documents start with BOS, so a model that finished its answer predicts BOS (or EOS) next.
      eosTokenIds: [tok.eosTokenId, tok.bosTokenId].filter((x): x is number => x !== null && x !== undefined),
    });
    gens.forEach((g, j) => {
      const p = chunk[j]!;
      const text = g.text ?? tok.decode(g.tokens, { skipSpecialTokens: true });
      const { extracted, correct: ok } = scoreAnswer(text, p);
      if (ok) correct++;
      if (samples.length < 3) samples.push({ prompt: problemPrompt(p), generation: text, gold: String(p.value), extracted, correct: ok });
    });
  }
  return { accuracy: problems.length ? correct / problems.length : 0, correct, total: problems.length, samples };
}

function experimentFor(c: StudyConfig['train'], o: { out: string; data: string; seed: number; policy: Experiment['policy']; exportDir?: string; backend: string; tokenizer: TextTokenizer }): Experiment {
  return parseExperiment({
    out: o.out,
    backend: o.backend,
    seed: o.seed,
    steps: c.steps,
    batchSize: c.batchSize,
    gradAccum: 1,
    seqLen: c.seqLen,
    policy: o.policy,
    optimizer: { lr: c.lr, weightDecay: c.weightDecay, clip: c.clip },
    schedule: { name: c.schedule, warmupRatio: c.warmupRatio, minLr: 0 },
    data: { path: o.data, format: 'jsonl', field: 'text', tokenizer: o.tokenizer.kind === 'bytes' ? 'bytes' : 'auto', valFraction: 0, bos: true, shuffle: true },
    eval: { interval: 0, batches: 1 },
    checkpoint: { interval: 0, keep: 1 },
    export: o.exportDir ? { enabled: true, dir: o.exportDir } : { enabled: false },
  });
}

/** Seeded N(0, std) weights, unit norms: the untrained base model. */
async function writeInitialModel(dir: string, m: StudyConfig['base']['model'], seed: number): Promise<void> {
  const raw = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: m.hiddenSize,
    intermediate_size: m.intermediateSize,
    num_hidden_layers: m.layers,
    num_attention_heads: m.heads,
    num_key_value_heads: m.kvHeads,
    vocab_size: m.vocabSize,
    max_position_embeddings: m.maxPositions,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    hidden_act: 'silu',
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: 'float32',
  };
  const config = normalizeConfig(raw);
  const rng = new Rng(seed);
  const tensors = expectedTensorNames(config).map((name) => {
    const shape = expectedShape(config, name)!;
    const n = shape.reduce((a, b) => a * b, 1);
    const v = new Float32Array(n);
    const isNorm = name.endsWith('norm.weight');
    for (let i = 0; i < n; i++) v[i] = isNorm ? 1 : m.initStd * rng.normal();
    return { name, dtype: 'F32' as const, shape, source: new Uint8Array(v.buffer) };
  });
  await saveModelDir(dir, { config: raw, tensors }, { force: true });
  // A real byte-level tokenizer.json (same ids as ByteTokenizer), so `generate --prompt`, `eval` and
  // `serve` work on the study's bases and their expansions (training export and expand copy it).
  await writeTokenizerFiles(dir, byteTokenizerJson(m.vocabSize, { modelMaxLength: m.maxPositions }));
}

function curveOf(records: { step: number; loss?: number }[]): { step: number; loss: number }[] {
  return records.filter((r) => typeof r.loss === 'number').map((r) => ({ step: r.step, loss: r.loss! }));
}

/** Where `pretrainBase` writes: `<entry>/init` (seeded initial weights), `<entry>/run` (training run), `<entry>/model` (the base). */
export function baseModelDir(entry: string): string {
  return path.join(entry, 'model');
}

/**
 * Pretrains the study's base from scratch on `generalTrain` (full training, `config.base.pretrain`):
 * initial weights from `config.base.seed`, the data order fixed (seed 0). What `runStudy` does on a cold cache; the
 * base-transition harness (`scripts/base-transition.js`) calls it with `onStep` to evaluate the live model
 * along the way.
 */
export async function pretrainBase(
  config: StudyConfig,
  generalTrain: readonly string[],
  deps: Pick<StudyDeps, 'backend' | 'policies' | 'schedules'>,
  o: { entry: string; loadOptions?: Record<string, unknown>; signal?: AbortSignal; onStep?: (r: MetricsRecord, model: TrainableLM, tok: TextTokenizer) => void | Promise<void> },
): Promise<{ modelDir: string; curve: { step: number; loss: number }[] }> {
  const { backend } = deps;
  if (!backend.supportsTraining || !backend.loadTrainable) throw new UsageError(`backend "${backend.name}" cannot train; the study needs a backend with training (e.g. tfjs)`, 'BACKEND_NO_TRAINING');
  const entry = o.entry;
  await fsp.rm(entry, { recursive: true, force: true });
  await fsp.mkdir(entry, { recursive: true });
  const initDir = path.join(entry, 'init');
  await writeInitialModel(initDir, config.base.model, config.base.seed);
  const generalTrainFile = path.join(entry, 'general-train.jsonl');
  await writeJsonl(generalTrainFile, generalTrain);
  const ckpt = await HfCheckpoint.open(initDir);
  const model = await backend.loadTrainable(ckpt, o.loadOptions ?? {});
  try {
    const tok = await loadTokenizerOrBytes(initDir, ckpt.config.vocabSize);
    const exp = experimentFor(config.base.pretrain, { out: path.join(entry, 'run'), data: generalTrainFile, seed: 0, policy: { name: 'full' }, exportDir: baseModelDir(entry), backend: config.backend, tokenizer: tok });
    await runTraining({
      experiment: exp,
      model,
      source: ckpt,
      tokenizer: tok,
      policies: deps.policies,
      schedules: deps.schedules,
      signal: o.signal,
      onStep: o.onStep ? (r) => o.onStep!(r, model, tok) : undefined,
      info: { study: true },
    });
  } finally {
    await model.dispose();
    await ckpt.close();
  }
  return { modelDir: baseModelDir(entry), curve: curveOf(await readMetrics(path.join(entry, 'run'))) };
}

/** The protocol's jobs (data written, expansions built) for an external engine; nothing is trained here. */
export async function prepareStudy(config: StudyConfig, deps: StudyDeps, opts: Omit<StudyOptions, 'prepare'>): Promise<PreparedJob[]> {
  let jobs: PreparedJob[] = [];
  await runStudy(config, deps, { ...opts, prepare: async (j) => void (jobs = j) });
  return jobs;
}

/** Runs (or resumes) the whole study and writes results.json, report.md and the plots into `opts.out`. */
export async function runStudy(config: StudyConfig, deps: StudyDeps, opts: StudyOptions): Promise<StudySummary> {
  const started = Date.now();
  const cpu0 = process.cpuUsage();
  const machine: NonNullable<StudyResults['machine']> = { cpus: os.cpus().length, loadAvg: os.loadavg()[0]!, workers: 1 };
  const log = deps.log ?? (() => {});
  const progress = deps.progress ?? silentProgress;
  const out = path.resolve(opts.out);
  await fsp.mkdir(out, { recursive: true });
  if (!deps.backend.supportsTraining || !deps.backend.loadTrainable) throw new UsageError(`backend "${deps.backend.name}" cannot train; the study needs a backend with training (e.g. tfjs)`, 'BACKEND_NO_TRAINING');
  const loadTrainable = deps.backend.loadTrainable.bind(deps.backend);
  const seenLines = new Set<string>();
  // Backends log their engine choice on every load; show each distinct line once.
  const backendLog = (m: string) => {
    if (seenLines.has(m)) return;
    seenLines.add(m);
    log(m);
  };
  const loadOpts = { ...(config.backendVariant ? { variant: config.backendVariant } : {}), ...(config.threads ? { threads: config.threads } : {}), log: backendLog };
  // Validate every variant's names against the registries before any work.
  for (const v of config.variants) {
    if (v.strategy) deps.strategies.get(v.strategy);
    deps.policies.get(v.policy ?? (v.strategy ? 'new-blocks' : 'full'));
  }
  deps.schedules.get(config.train.schedule);

  const corpora = await loadStudyCorpora(config);
  const dataDir = path.join(out, 'data');
  await fsp.mkdir(dataDir, { recursive: true });
  const domainTrainFile = path.join(dataDir, 'domain-train.jsonl');
  // A worker reads what the study that started it wrote.
  if (!opts.shard) {
    await writeJsonl(domainTrainFile, corpora.domainTrain);
    await writeJsonl(path.join(dataDir, 'general-val.jsonl'), corpora.generalVal);
    await writeJsonl(path.join(dataDir, 'domain-val.jsonl'), corpora.domainVal);
    await writeFileAtomic(path.join(dataDir, 'domain-test.jsonl'), corpora.domainTest.map((p) => JSON.stringify({ question: p.question, answer: p.answer })).join('\n') + '\n');
  }
  const dataHash = hashOf([corpora.domainTrain, corpora.generalVal, corpora.domainVal, corpora.domainTest]);
  const generalVal = corpora.generalVal.slice(0, config.eval.generalDocs);
  const domainVal = corpora.domainVal.slice(0, config.eval.domainDocs);
  const test = corpora.domainTest.slice(0, config.eval.testProblems);

  const seeds = Array.from({ length: config.seeds }, (_, i) => config.firstSeed + i);
  const sweepPoints = config.sweep.lrs.flatMap((lr) => config.sweep.steps.map((steps) => ({ lr, steps }))).filter((p) => !(p.lr === config.train.lr && p.steps === config.train.steps));
  const sweepSeeds = Array.from({ length: config.sweep.seeds }, (_, i) => config.firstSeed + i);
  const total = 1 + config.variants.length * (seeds.length + sweepPoints.length * sweepSeeds.length);
  let done = 0;
  progress.start(total, 'study');
  let device = deps.backend.name;
  let ran = 0;
  let reused = 0;

  const beforeByModel = new Map<string, EvalNumbers>();
  const evaluate = async (model: TrainableLM, tok: TextTokenizer): Promise<EvalNumbers> => ({
    generalLoss: await corpusLoss(model, tok, generalVal, config.eval.seqLen, config.eval.batchSize),
    domainLoss: await corpusLoss(model, tok, domainVal, config.eval.seqLen, config.eval.batchSize),
  });

  let baseDir = '';
  let base: BaseResult;
  try {
    // (a) Base model.
    let origin: BaseResult['origin'];
    let pretrainCurve: { step: number; loss: number }[] = [];
    if (config.base.path) {
      baseDir = path.resolve(config.base.path);
      origin = 'given';
      if (!(await pathExists(path.join(baseDir, 'tokenizer.json')))) {
        if (!config.base.byteTokens)
          throw new UsageError(
            `${baseDir} has no tokenizer.json: the study would train and evaluate it on raw byte tokens (ids 3..258) instead of its vocabulary. Convert it with its tokenizer (llama-pro convert model.bin out --tokenizer tok512.bin), or pass --byte-tokens to study it on bytes deliberately`,
          );
        log(`base: ${baseDir} has no tokenizer.json; byte tokens (ids 3..258) as requested by --byte-tokens`);
      }
      log(`base: ${baseDir} (given)`);
    } else {
      origin = 'pretrained';
      // Keyed by the pretraining text itself, so a change of the corpus generator retrains the base.
      const key = hashOf({ v: 3, model: config.base.model, pretrain: config.base.pretrain, seed: config.base.seed, corpus: hashOf(corpora.generalTrain), backend: config.backend });
      const cacheRoot = path.resolve(opts.cacheDir ?? config.cacheDir ?? path.join(out, 'cache'));
      const entry = path.join(cacheRoot, `base-${key}`);
      baseDir = baseModelDir(entry);
      if (await pathExists(path.join(entry, 'done.json'))) {
        log(`base: cached pretrained model ${baseDir}`);
        // Bases cached before the study wrote tokenizers get theirs now (the same byte ids).
        if (!(await pathExists(path.join(baseDir, 'tokenizer.json')))) await writeTokenizerFiles(baseDir, byteTokenizerJson(config.base.model.vocabSize, { modelMaxLength: config.base.model.maxPositions }));
        pretrainCurve = curveOf(await readMetrics(path.join(entry, 'run')));
      } else {
        if (opts.shard) throw new UsageError(`study worker ${opts.shard.index}/${opts.shard.count}: the base ${entry} is not pretrained yet; workers are started by the study itself`, 'STUDY_WORKER');
        log(`base: pretraining a ${config.base.model.layers}-layer model (dim ${config.base.model.hiddenSize}) on ${corpora.generalTrain.length} general stories, ${config.base.pretrain.steps} steps, seed ${config.base.seed} → ${entry}`);
        await pretrainBase(config, corpora.generalTrain, deps, {
          entry,
          loadOptions: loadOpts,
          signal: opts.signal,
          onStep: (r) => progress.update(done, { run: 'pretrain base', step: r.step, loss: r.loss }),
        });
        if (opts.signal?.aborted) throw new UsageError('study interrupted during base pretraining; run it again to restart', 'INTERRUPTED');
        pretrainCurve = curveOf(await readMetrics(path.join(entry, 'run')));
        await writeJsonAtomic(path.join(entry, 'done.json'), { key, createdAt: new Date().toISOString(), model: config.base.model, pretrain: config.base.pretrain, seed: config.base.seed });
      }
    }

    if (opts.prepare) {
      const jobs: PreparedJob[] = [];
      const c0 = await HfCheckpoint.open(baseDir);
      const vocabSize = c0.config.vocabSize;
      await c0.close();
      const tok0 = await loadTokenizerOrBytes(baseDir, vocabSize);
      for (const v of config.variants) {
        const modelDir = v.strategy ? await expandVariant(v) : baseDir;
        for (const seed of seeds) {
          const policy = { name: v.policy ?? (v.strategy ? 'new-blocks' : 'full'), ...(v.layers ? { layers: v.layers } : {}), ...(v.lora ? { lora: v.lora } : {}) };
          jobs.push({ variant: v.name, seed, modelDir, data: domainTrainFile, kind: v.strategy ? 'expand' : 'baseline', experiment: experimentFor(config.train, { out: path.join(out, 'runs', v.name, `seed-${seed}`, 'train'), data: domainTrainFile, seed, policy, backend: config.backend, tokenizer: tok0 }) });
        }
      }
      await opts.prepare(jobs);
      return { out, results: null as unknown as StudyResults, ran: 0, reused: 0, files: [] };
    }

    // Base evaluation (seed-independent, deterministic).
    const baseCkpt = await HfCheckpoint.open(baseDir);
    const tok = await loadTokenizerOrBytes(baseDir, baseCkpt.config.vocabSize);
    const baseResultFile = path.join(out, 'base.json');
    if (await pathExists(baseResultFile)) {
      const cached = JSON.parse(await fsp.readFile(baseResultFile, 'utf8')) as BaseResult;
      base = cached.dir === baseDir && cached.eval.total === test.length ? cached : await evalBase();
    } else base = await evalBase();
    const baseEval = base.eval;
    async function evalBase(): Promise<BaseResult> {
      const model = await loadTrainable(baseCkpt, loadOpts);
      try {
        device = model.device;
        const ev = await evaluate(model, tok);
        const acc = await answerAccuracy(model, tok, test, config.eval.maxNewTokens, Math.max(config.eval.batchSize, test.length));
        const parameters = model.parameterNames().reduce((a, n) => a + model.parameterShape(n).reduce((x, y) => x * y, 1), 0);
        const r: BaseResult = { origin, dir: baseDir, numLayers: baseCkpt.config.numHiddenLayers, parameters, eval: { ...ev, accuracy: acc.accuracy, correct: acc.correct, total: acc.total }, pretrainCurve };
        await writeJsonAtomic(baseResultFile, r);
        return r;
      } finally {
        await model.dispose();
      }
    }
    await baseCkpt.close();
    log(`base: general loss ${base.eval.generalLoss.toFixed(4)}, domain loss ${base.eval.domainLoss.toFixed(4)}, accuracy ${(100 * base.eval.accuracy).toFixed(1)}%`);
    progress.update(++done, { run: 'base' });

    // (b)-(d) Variants × seeds, then the frontier sweep (variants × learning rate × steps × sweep seeds).
    const runs: RunResult[] = [];
    const sweep: RunResult[] = [];
    const jobs = [
      ...seeds.map((seed) => ({ seed, train: config.train, sub: `seed-${seed}`, into: runs })),
      ...sweepPoints.flatMap((p) => sweepSeeds.map((seed) => ({ seed, train: { ...config.train, lr: p.lr, steps: p.steps }, sub: `lr-${p.lr}-steps-${p.steps}/seed-${seed}`, into: sweep }))),
    ];
    // Every variant × job, in the configured order (the order of results.json). Expansions are built
    // first, so that worker processes only read them.
    const modelDirs = new Map<string, string>();
    for (const v of config.variants) modelDirs.set(v.name, v.strategy ? await expandVariant(v) : baseDir);
    const items = config.variants.flatMap((v) =>
      jobs.map((job) => {
        const runDir = path.join(out, 'runs', v.name, job.sub);
        return {
          v,
          job,
          runDir,
          resultFile: path.join(runDir, 'result.json'),
          label: job.into === runs ? `${v.name} seed ${job.seed}` : `${v.name} lr ${job.train.lr} × ${job.train.steps} steps seed ${job.seed}`,
          // A finished run is reused only when everything it depends on is unchanged.
          key: hashOf({ v: 2, variant: v, seed: job.seed, base: baseDir, baseEval, train: job.train, eval: config.eval, corpus: config.corpus, data: dataHash, backend: config.backend }),
        };
      }),
    );
    type Item = (typeof items)[number];
    const readPrevious = async (it: Item) => ((await pathExists(it.resultFile)) ? (JSON.parse(await fsp.readFile(it.resultFile, 'utf8')) as RunResult & { key?: string }) : null);
    /** The items without a finished result of their current key. */
    const pendingItems = async (): Promise<Item[]> => {
      const pending: Item[] = [];
      for (const it of items) if ((await readPrevious(it))?.key !== it.key) pending.push(it);
      return pending;
    };
    const runItem = async (it: Item, previous: (RunResult & { key?: string }) | null): Promise<RunResult> => {
      if (opts.signal?.aborted) throw new UsageError('study interrupted; run the same command again to resume (finished runs are kept)', 'INTERRUPTED');
      if (previous) log(`${it.label}: the configuration changed since ${it.resultFile} was written; running it again`);
      const r = { ...(await runVariant(it.v, it.job.seed, modelDirs.get(it.v.name)!, it.runDir, baseEval, tok, it.job.train)), lr: it.job.train.lr };
      await writeJsonAtomic(it.resultFile, { ...r, key: it.key });
      ran++;
      log(`${it.label}: general ${r.before.generalLoss.toFixed(3)} → ${r.after.generalLoss.toFixed(3)}, domain ${r.before.domainLoss.toFixed(3)} → ${r.after.domainLoss.toFixed(3)}, accuracy ${(100 * r.after.accuracy).toFixed(1)}% (${r.elapsedS.toFixed(1)} s)`);
      return r;
    };
    // Runs the pending items this process claims first (an exclusive mkdir per item under `claims/`), so
    // that several processes share them without a scheduler; longest first (steps × layers), for balance.
    const claimDir = path.join(out, 'claims');
    const runClaimed = async (pending: Item[]) => {
      const cost = (it: Item) => it.job.train.steps * (config.base.model.layers + Number((it.v.params as { groups?: number; blocks?: number }).groups ?? (it.v.params as { blocks?: number }).blocks ?? 0));
      for (const it of [...pending].sort((x, y) => cost(y) - cost(x))) {
        try {
          await fsp.mkdir(path.join(claimDir, it.key));
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'EEXIST') continue;
          throw e;
        }
        await runItem(it, await readPrevious(it));
        progress.update(++done, { run: `${it.v.name}/${it.job.sub}` });
      }
    };
    if (opts.shard) {
      if (!(await pathExists(claimDir))) throw new UsageError(`study worker ${opts.shard.index}/${opts.shard.count}: ${claimDir} does not exist; workers are started by the study itself`, 'STUDY_WORKER');
      await runClaimed(await pendingItems());
      return { out, results: null as unknown as StudyResults, ran, reused, files: [] };
    }
    // Claims left by an interrupted invocation mean nothing now.
    await fsp.rm(claimDir, { recursive: true, force: true });
    const workers = Math.max(1, Math.floor(opts.workers ?? 1));
    let workersCpuS = 0;
    let parallelRan: number | null = null;
    if (workers > 1 && opts.spawnWorker) {
      const pending = await pendingItems();
      if (pending.length > 1) {
        const n = Math.min(workers, pending.length);
        log(`${pending.length} runs on ${n} processes`);
        await fsp.mkdir(claimDir, { recursive: true });
        const started = Array.from({ length: n - 1 }, (_, i) =>
          opts.spawnWorker!(i + 1, n).catch((e: Error) => {
            // What a failed worker did not finish is run below, in this process.
            log(`worker ${i + 1}/${n} failed: ${e.message}`);
            return { cpuS: 0 };
          }),
        );
        try {
          await runClaimed(pending);
        } finally {
          workersCpuS = (await Promise.all(started)).reduce((a, w) => a + w.cpuS, 0);
          await fsp.rm(claimDir, { recursive: true, force: true });
        }
        parallelRan = pending.length;
        machine.workers = n;
        done = 1;
      }
    }
    for (const it of items) {
      const previous = await readPrevious(it);
      if (previous && previous.key === it.key) {
        delete previous.key;
        it.job.into.push({ ...previous, lr: it.job.train.lr });
        reused++;
        if (parallelRan === null) log(`${it.label}: reusing ${it.resultFile}`);
      } else it.job.into.push(await runItem(it, previous));
      progress.update(++done, { run: `${it.v.name}/${it.job.sub}` });
    }
    if (parallelRan !== null) {
      // Runs finished by any process of this invocation count as computed.
      ran = parallelRan;
      reused = items.length - parallelRan;
    }

    const results: StudyResults = {
      format: RESULTS_FORMAT,
      version: RESULTS_VERSION,
      createdAt: new Date().toISOString(),
      config,
      versions: { ...studyVersions(), ...deps.versions },
      backend: { name: deps.backend.name, device },
      base,
      runs,
      sweep,
      machine,
      majorityBaseline: majorityAnswerBaseline(corpora.domainTrain, test),
      elapsedS: (Date.now() - started) / 1000,
      cpuS: (() => {
        const c = process.cpuUsage(cpu0);
        return (c.user + c.system) / 1e6 + workersCpuS;
      })(),
    };
    const files = await writeStudyReport(out, results, { png: !opts.noPng });
    return { out, results, ran, reused, files };
  } finally {
    progress.stop();
  }

  async function expandVariant(v: VariantSpec): Promise<string> {
    const dir = path.join(out, 'models', v.name);
    const ckpt = await HfCheckpoint.open(baseDir);
    let plan;
    try {
      plan = deps.strategies.get(v.strategy!).plan(ckpt.config, v.params);
    } finally {
      await ckpt.close();
    }
    if (await pathExists(path.join(dir, MANIFEST_FILE))) {
      const m = await readExpansionManifest(dir);
      const same = m.base.path === baseDir && m.strategy.name === plan.strategy && JSON.stringify(m.strategy.params) === JSON.stringify(plan.params) && m.verification !== null;
      if (same) return dir;
      log(`${v.name}: ${dir} was expanded from another base or with other parameters; expanding again`);
    }
    log(`${v.name}: expanding ${plan.originalLayers} → ${plan.newLayerCount} layers, new blocks at [${plan.newLayers.join(', ')}]`);
    await expandModel({ input: baseDir, output: dir, plan, initializer: deps.initializers.get('zero-output'), force: true, verify: { backend: deps.backend, loadOptions: loadOpts } });
    return dir;
  }

  async function runVariant(v: VariantSpec, seed: number, modelDir: string, runDir: string, baseEval: BaseResult['eval'], tok: TextTokenizer, train: StudyConfig['train']): Promise<RunResult> {
    const t0 = Date.now();
    await fsp.rm(runDir, { recursive: true, force: true });
    await fsp.mkdir(runDir, { recursive: true });
    const ckpt = await HfCheckpoint.open(modelDir);
    const model = await loadTrainable(ckpt, loadOpts);
    try {
      const manifest = v.strategy ? await readExpansionManifest(modelDir) : null;
      const policyName = v.policy ?? (v.strategy ? 'new-blocks' : 'full');
      // The expanded model at step 0 is the same for every seed: evaluated once per variant and process.
      let before = beforeByModel.get(modelDir);
      if (!before) {
        before = v.strategy ? await evaluate(model, tok) : { generalLoss: baseEval.generalLoss, domainLoss: baseEval.domainLoss };
        beforeByModel.set(modelDir, before);
      }
      const identity = manifest
        ? {
            baseGeneralLoss: baseEval.generalLoss,
            expandedGeneralLoss: before.generalLoss,
            identical: before.generalLoss === baseEval.generalLoss,
            verifyMaxAbsDiff: manifest.verification?.maxAbsDiff ?? null,
          }
        : null;
      const exp = experimentFor(train, {
        out: path.join(runDir, 'train'),
        data: domainTrainFile,
        seed,
        policy: { name: policyName, ...(v.layers ? { layers: v.layers } : {}), ...(v.lora ? { lora: v.lora } : {}) },
        backend: config.backend,
        tokenizer: tok,
      });
      const summary = await runTraining({
        experiment: exp,
        model,
        source: ckpt,
        tokenizer: tok,
        policies: deps.policies,
        schedules: deps.schedules,
        ...(manifest ? { manifest: { trainable: manifest.trainableTensors, newLayers: manifest.newLayers } } : {}),
        signal: opts.signal,
        onStep: (r) => progress.update(done, { run: `${v.name}/seed-${seed}`, step: r.step, loss: r.loss }),
      });
      if (summary.finishReason !== 'completed') throw new UsageError(`${v.name} seed ${seed}: training was interrupted; run the study again to resume`, 'INTERRUPTED');
      const after = await evaluate(model, tok);
      const acc = await answerAccuracy(model, tok, test, config.eval.maxNewTokens, Math.max(config.eval.batchSize, test.length));
      return {
        variant: v.name,
        seed,
        kind: v.strategy ? 'expand' : 'baseline',
        strategy: v.strategy ?? null,
        params: manifest ? manifest.strategy.params : { ...v.params },
        policy: policyName,
        numLayers: ckpt.config.numHiddenLayers,
        newLayers: manifest ? [...manifest.newLayers] : [],
        trainableParameters: summary.trainableParameters,
        tokensSeen: summary.tokensSeen,
        steps: summary.step,
        before,
        after: { ...after, accuracy: acc.accuracy, correct: acc.correct, total: acc.total },
        identity,
        curve: curveOf(await readMetrics(path.join(runDir, 'train'))),
        samples: acc.samples,
        elapsedS: (Date.now() - t0) / 1000,
      };
    } finally {
      await model.dispose();
      await ckpt.close();
    }
  }
}
