import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import type { Command } from 'commander';
import { HfCheckpoint, UsageError, writeFileAtomic } from '@llama-pro/core';
import { initializerRegistry, readExpansionManifest, strategyRegistry } from '@llama-pro/expand';
import { freezePolicies, lrSchedules } from '@llama-pro/train';
import { BASE_REQUIRED_PRESETS, STUDY_PRESETS, defaultVariants, parseStudyConfig, prepareStudy, readStudyYaml, resolveStudyConfig, runStudy, type PreparedJob, type StudyConfig } from '@llama-pro/study';
import { emitAccelerate, emitLlamaFactory, engineCorpusFromExperiment, engineSettingsFromExperiment } from '@llama-pro/engines';
import { buildContainer } from '../container';
import { BACKEND_OPTION_HELP, parseBackendSpec, resolveBackend } from '../backend-option';
import { progressReporter } from '../output';
import { cliHubOptions, resolveConfigModelSpec } from '../hub';

interface StudyFlags {
  preset: string;
  config?: string;
  base?: string;
  byteTokens?: boolean;
  out: string;
  seeds?: string;
  seed?: string;
  baseSeed?: string;
  workers?: string;
  backend?: string;
  cacheDir?: string;
  plugin?: string[];
  png?: boolean;
  json?: boolean;
  engine?: string;
  emit?: string;
  force?: boolean;
}

/** Default cache of pretrained study bases: $XDG_CACHE_HOME/llama-pro/study or ~/.cache/llama-pro/study. */
export function defaultStudyCache(): string {
  const root = process.env['XDG_CACHE_HOME'] || path.join(os.homedir(), '.cache');
  return path.join(root, 'llama-pro', 'study');
}

export function registerStudy(program: Command): void {
  program
    .command('study')
    .description("The LLaMA Pro ablation in miniature: pretrain (or take) a base, expand it at several positions and block counts, train every variant and the full / LoRA / layers baselines on the same domain data and seeds, and report which of the paper's findings hold")
    .option('--preset <name>', `preset: ${Object.keys(STUDY_PRESETS).join(', ')}`, 'mini')
    .option('--config <file>', 'study YAML overriding any preset field (seeds, base, train, variants, eval, corpus)')
    .option('--base <dir>', 'use this HF model directory as the base instead of pretraining one (e.g. stories260K converted with --tokenizer)')
    .option('--byte-tokens', 'allow a --base without tokenizer.json: train and evaluate it on raw byte tokens (ids 3..258)')
    .option('--out <dir>', 'output directory: results.json, report.md, plots, runs/ (rerun to resume)', 'runs/study')
    .option('--seeds <n>', 'number of seeds per variant')
    .option('--seed <n>', 'first domain-training seed (the runs use seeds n .. n+seeds-1; default 0)')
    .option('--base-seed <n>', "seed of the pretrained base's initial weights (one base for every run; default the preset's)")
    .option('--workers <n>', 'processes for the variant runs (each trains on one core; default: the number of cores, at most 4)')
    .option('--backend <name[:variant]>', BACKEND_OPTION_HELP)
    .option('--cache-dir <dir>', `cache of pretrained bases (default ${defaultStudyCache()})`)
    .option('--no-png', 'write SVG plots only')
    .option('--plugin <module...>', 'extra plugin modules (strategies, policies, backends)')
    .option('--json', 'print a JSON summary on stdout')
    .option('--engine <name>', 'emit the protocol as external-engine jobs instead of training here: llamafactory or accelerate (needs --base and --emit)')
    .option('--emit <dir>', 'with --engine: where the jobs are written (one per expansion variant × seed)')
    .option('--force', 'with --engine: replace existing job directories')
    .action(async (o: StudyFlags) => {
      const overrides: Record<string, unknown>[] = [];
      if (o.config) {
        const y = await readStudyYaml(o.config);
        // Corpus and base paths in the YAML are relative to it.
        const dir = path.dirname(path.resolve(o.config));
        const base = y['base'] as Record<string, unknown> | undefined;
        if (base && typeof base['path'] === 'string') base['path'] = await resolveConfigModelSpec(base['path'], dir, cliHubOptions()); // a path or a hub id, like --base
        const files = (y['corpus'] as Record<string, unknown> | undefined)?.['files'] as Record<string, unknown> | undefined;
        if (files) for (const k of Object.keys(files)) if (typeof files[k] === 'string') files[k] = path.resolve(dir, files[k] as string);
        if (typeof y['cacheDir'] === 'string') y['cacheDir'] = path.resolve(dir, y['cacheDir']);
        overrides.push(y);
      }
      const flags: Record<string, unknown> = {};
      const int = (name: string, v: string, min: number) => {
        const n = Number(v);
        if (!Number.isInteger(n) || n < min) throw new UsageError(`${name} must be ${min === 0 ? 'a non-negative' : 'a positive'} integer, got "${v}"`);
        return n;
      };
      if (o.seeds !== undefined) flags['seeds'] = int('--seeds', o.seeds, 1);
      if (o.seed !== undefined) flags['firstSeed'] = int('--seed', o.seed, 0);
      if (o.base !== undefined) flags['base'] = { path: path.resolve(o.base), ...(o.byteTokens ? { byteTokens: true } : {}) };
      else if (o.byteTokens) flags['base'] = { byteTokens: true };
      if (o.baseSeed !== undefined) flags['base'] = { ...(flags['base'] as object | undefined), seed: int('--base-seed', o.baseSeed, 0) };
      const workers = o.workers !== undefined ? int('--workers', o.workers, 1) : Math.min(4, os.availableParallelism());
      if (o.backend !== undefined) {
        const spec = parseBackendSpec(o.backend);
        flags['backend'] = spec.name;
        if (spec.variant) flags['backendVariant'] = spec.variant;
      }
      // With a given base, the preset's variant list is rebuilt for that base's layer count (unless the YAML lists variants).
      const basePath = o.base !== undefined ? path.resolve(o.base) : ((overrides[0]?.['base'] as Record<string, unknown> | undefined)?.['path'] as string | undefined);
      if (basePath !== undefined && !overrides.some((x) => x['variants'] !== undefined)) {
        const ckpt = await HfCheckpoint.open(basePath);
        const layers = ckpt.config.numHiddenLayers;
        await ckpt.close();
        flags['variants'] = defaultVariants(layers);
      }
      overrides.push(flags);
      if (BASE_REQUIRED_PRESETS.includes(o.preset) && basePath === undefined)
        throw new UsageError(`preset ${o.preset} runs the study's protocol on a given model: pass --base <dir> (e.g. stories260K converted with --tokenizer tok512.bin); add --engine llamafactory --emit <dir> to write it as LLaMA-Factory jobs for a GPU cluster`);
      if (o.engine !== undefined && (o.engine !== 'llamafactory' && o.engine !== 'accelerate')) throw new UsageError(`unknown engine "${o.engine}"; known: llamafactory, accelerate`);
      if (o.engine !== undefined && (!o.emit || basePath === undefined)) throw new UsageError(`--engine ${o.engine} needs --emit <dir> and --base <dir> (the study's protocol is emitted for a given model)`);
      // A worker (started by a study with --workers) takes the resolved config of the study that started it, as is.
      const worker = workerFromEnv();
      const config = worker ? parseStudyConfig(JSON.parse(await fsp.readFile(worker.config, 'utf8')), worker.config) : resolveStudyConfig(o.preset, overrides, o.config ?? `preset ${o.preset}`);
      const container = await buildContainer(o.plugin ?? []);
      const { backend } = resolveBackend(container, config.backendVariant ? `${config.backend}:${config.backendVariant}` : config.backend);
      const log = (m: string) => process.stderr.write(`llama-pro study: ${m}\n`);
      const ac = new AbortController();
      const onSigint = () => {
        log('interrupt: stopping after saving the current step; rerun the same command to resume');
        ac.abort();
      };
      process.once('SIGINT', onSigint);
      try {
        if (o.engine) {
          const deps = { backend, strategies: strategyRegistry(container), initializers: initializerRegistry(container), policies: freezePolicies(container), schedules: lrSchedules(container), log };
          const jobs = await prepareStudy(config, deps, { out: o.out, cacheDir: o.cacheDir ?? config.cacheDir ?? defaultStudyCache(), signal: ac.signal });
          const written = await emitJobs(o.engine, path.resolve(o.emit!), jobs, o.force === true);
          if (o.json) process.stdout.write(JSON.stringify({ engine: o.engine, emit: o.emit, jobs: written, skipped: jobs.filter((j) => j.kind === 'baseline').map((j) => `${j.variant}/seed-${j.seed}`) }) + '\n');
          else process.stdout.write(`wrote ${written.length} ${o.engine} job(s) to ${o.emit}; see ${path.join(o.emit!, 'README.md')}\n`);
          return;
        }
        const cacheDir = o.cacheDir ?? config.cacheDir ?? defaultStudyCache();
        const deps = { backend, strategies: strategyRegistry(container), initializers: initializerRegistry(container), policies: freezePolicies(container), schedules: lrSchedules(container), log };
        if (worker) {
          const cpu0 = process.cpuUsage();
          await runStudy(config, deps, { out: o.out, cacheDir, signal: ac.signal, shard: { index: worker.index, count: worker.count } });
          const c = process.cpuUsage(cpu0);
          process.stdout.write(JSON.stringify({ cpuS: (c.user + c.system) / 1e6 }) + '\n');
          return;
        }
        const spawnWorker = (index: number, count: number) => startWorker(config, { out: path.resolve(o.out), cacheDir: path.resolve(cacheDir), plugins: o.plugin ?? [], index, count, log, signal: ac.signal });
        const summary = await runStudy(config, { ...deps, progress: progressReporter() }, { out: o.out, cacheDir, signal: ac.signal, noPng: o.png === false, workers, spawnWorker });
        if (o.json) process.stdout.write(JSON.stringify({ out: summary.out, ran: summary.ran, reused: summary.reused, files: summary.files, elapsedS: summary.results.elapsedS, cpuS: summary.results.cpuS }) + '\n');
        else process.stdout.write(`study done in ${summary.results.elapsedS.toFixed(0)} s (${summary.results.cpuS.toFixed(0)} s CPU; ${summary.ran} runs computed, ${summary.reused} reused): ${path.join(summary.out, 'report.md')}\n`);
      } finally {
        process.removeListener('SIGINT', onSigint);
      }
    });
}

/** The environment variable that makes `llama-pro study` a worker of another study: {"config", "index", "count"}. */
const WORKER_ENV = 'LLAMA_PRO_STUDY_WORKER';

function workerFromEnv(): { config: string; index: number; count: number } | null {
  const raw = process.env[WORKER_ENV];
  if (raw === undefined || raw === '') return null;
  let w: { config?: unknown; index?: unknown; count?: unknown };
  try {
    w = JSON.parse(raw) as typeof w;
  } catch {
    w = {};
  }
  if (typeof w.config !== 'string' || !Number.isInteger(w.index) || !Number.isInteger(w.count) || (w.index as number) < 0 || (w.index as number) >= (w.count as number))
    throw new UsageError(`${WORKER_ENV} must be {"config": <file>, "index": i, "count": n} with 0 <= i < n (it is set by a study started with --workers), got ${raw}; unset it to run a study`);
  return { config: w.config, index: w.index as number, count: w.count as number };
}

/**
 * Starts one worker of a study (`--workers`): this CLI again, with the resolved config (written next to
 * the claims), the same out and cache, and its index/count in LLAMA_PRO_STUDY_WORKER; its log lines come through prefixed.
 * Resolves with its CPU seconds when it exits 0.
 */
async function startWorker(config: StudyConfig, o: { out: string; cacheDir: string; plugins: string[]; index: number; count: number; log: (m: string) => void; signal: AbortSignal }): Promise<{ cpuS: number }> {
  const file = path.join(o.out, 'claims', `config-${o.index}.json`);
  await writeFileAtomic(file, JSON.stringify(config));
  const bin = path.join(__dirname, '..', '..', 'bin', 'llama-pro.js');
  const args = [bin, 'study', '--out', o.out, '--cache-dir', o.cacheDir, ...(o.plugins.length ? ['--plugin', ...o.plugins] : [])];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, [WORKER_ENV]: JSON.stringify({ config: file, index: o.index, count: o.count }) } });
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    let stdout = '';
    let pendingErr = '';
    child.stdout.on('data', (d: string) => (stdout += d));
    child.stderr.on('data', (d: string) => {
      const lines = (pendingErr + d).split('\n');
      pendingErr = lines.pop()!;
      for (const l of lines) {
        const m = /^llama-pro study: (.*)$/.exec(l);
        if (m) o.log(`[worker ${o.index}] ${m[1]}`);
        else if (l.trim() && !l.startsWith('{')) o.log(`[worker ${o.index}] ${l}`);
      }
    });
    // An interrupt of this study (Ctrl-C, or SIGINT sent to this process alone) stops the worker the same way.
    const onAbort = () => child.kill('SIGINT');
    o.signal.addEventListener('abort', onAbort, { once: true });
    child.on('error', reject);
    child.on('close', (code) => {
      o.signal.removeEventListener('abort', onAbort);
      if (code !== 0) return reject(new Error(`exited with code ${code}${pendingErr ? `: ${pendingErr}` : ''}`));
      try {
        resolve(JSON.parse(stdout.trim().split('\n').pop()!) as { cpuS: number });
      } catch {
        reject(new Error(`printed no CPU time (${stdout.slice(-200)})`));
      }
    });
  });
}

/** One engine job per expansion variant × seed; baselines (full / lora / layers) stay on llama-pro's trainer. */
async function emitJobs(engine: string, emit: string, jobs: readonly PreparedJob[], force: boolean): Promise<string[]> {
  const written: string[] = [];
  for (const j of jobs.filter((x) => x.kind === 'expand')) {
    const dir = path.join(emit, j.variant, `seed-${j.seed}`);
    const job = { modelDir: j.modelDir, manifest: await readExpansionManifest(j.modelDir), corpus: engineCorpusFromExperiment(j.experiment, j.data), settings: engineSettingsFromExperiment(j.experiment, 'bf16'), outputDir: 'out' };
    if (engine === 'llamafactory') await emitLlamaFactory({ ...job, deepspeedStage: 2 }, dir, { force });
    else await emitAccelerate({ ...job, distributed: 'deepspeed' }, dir, { force });
    written.push(path.relative(emit, dir));
  }
  const skipped = [...new Set(jobs.filter((x) => x.kind === 'baseline').map((x) => x.variant))];
  await writeFileAtomic(
    path.join(emit, 'README.md'),
    [
      `# LLaMA Pro study protocol as ${engine} jobs`,
      '',
      `One job per expansion variant and seed (${written.length}), each in its own directory with its own launch instructions (README.md there). Every job trains the new blocks only, on the same domain data (${jobs[0]?.data ?? ''}) with the same settings and seeds.`,
      '',
      ...written.map((w) => `- ${w}`),
      '',
      skipped.length ? `Not emitted: the baselines ${skipped.join(', ')} (they train original weights; run them with \`llama-pro study\` or \`llama-pro train --policy ...\`).` : '',
      '',
      'After training, bring each run back with `llama-pro import-run` and evaluate it; the model and data paths above must be reachable from the cluster.',
      '',
    ].join('\n'),
  );
  return written;
}
