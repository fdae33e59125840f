import * as os from 'node:os';
import * as path from 'node:path';
import type { Command } from 'commander';
import { HfCheckpoint, UsageError } from '@llama-pro/core';
import { initializerRegistry, strategyRegistry } from '@llama-pro/expand';
import { freezePolicies, lrSchedules } from '@llama-pro/train';
import { STUDY_PRESETS, defaultVariants, readStudyYaml, resolveStudyConfig, runStudy } from '@llama-pro/study';
import { buildContainer } from '../container';
import { BACKEND_OPTION_HELP, parseBackendSpec, resolveBackend } from '../backend-option';
import { progressReporter } from '../output';

interface StudyFlags {
  preset: string;
  config?: string;
  base?: string;
  out: string;
  seeds?: string;
  backend?: string;
  cacheDir?: string;
  plugin?: string[];
  png?: boolean;
  json?: boolean;
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
    .option('--base <dir>', 'use this HF model directory as the base instead of pretraining one (e.g. stories260K converted; byte tokens when it has no tokenizer.json)')
    .option('--out <dir>', 'output directory: results.json, report.md, plots, runs/ (rerun to resume)', 'runs/study')
    .option('--seeds <n>', 'number of seeds per variant')
    .option('--backend <name[:variant]>', BACKEND_OPTION_HELP)
    .option('--cache-dir <dir>', `cache of pretrained bases (default ${defaultStudyCache()})`)
    .option('--no-png', 'write SVG plots only')
    .option('--plugin <module...>', 'extra plugin modules (strategies, policies, backends)')
    .option('--json', 'print a JSON summary on stdout')
    .action(async (o: StudyFlags) => {
      const overrides: Record<string, unknown>[] = [];
      if (o.config) {
        const y = await readStudyYaml(o.config);
        // Corpus and base paths in the YAML are relative to it.
        const dir = path.dirname(path.resolve(o.config));
        const base = y['base'] as Record<string, unknown> | undefined;
        if (base && typeof base['path'] === 'string') base['path'] = path.resolve(dir, base['path']);
        const files = (y['corpus'] as Record<string, unknown> | undefined)?.['files'] as Record<string, unknown> | undefined;
        if (files) for (const k of Object.keys(files)) if (typeof files[k] === 'string') files[k] = path.resolve(dir, files[k] as string);
        if (typeof y['cacheDir'] === 'string') y['cacheDir'] = path.resolve(dir, y['cacheDir']);
        overrides.push(y);
      }
      const flags: Record<string, unknown> = {};
      if (o.seeds !== undefined) {
        const n = Number(o.seeds);
        if (!Number.isInteger(n) || n < 1) throw new UsageError(`--seeds must be a positive integer, got "${o.seeds}"`);
        flags['seeds'] = n;
      }
      if (o.base !== undefined) flags['base'] = { path: path.resolve(o.base) };
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
      const config = resolveStudyConfig(o.preset, overrides, o.config ?? `preset ${o.preset}`);
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
        const summary = await runStudy(
          config,
          {
            backend,
            strategies: strategyRegistry(container),
            initializers: initializerRegistry(container),
            policies: freezePolicies(container),
            schedules: lrSchedules(container),
            progress: progressReporter(),
            log,
          },
          { out: o.out, cacheDir: o.cacheDir ?? config.cacheDir ?? defaultStudyCache(), signal: ac.signal, noPng: o.png === false },
        );
        if (o.json) process.stdout.write(JSON.stringify({ out: summary.out, ran: summary.ran, reused: summary.reused, files: summary.files, elapsedS: summary.results.elapsedS, cpuS: summary.results.cpuS }) + '\n');
        else process.stdout.write(`study done in ${summary.results.elapsedS.toFixed(0)} s (${summary.results.cpuS.toFixed(0)} s CPU; ${summary.ran} runs computed, ${summary.reused} reused): ${path.join(summary.out, 'report.md')}\n`);
      } finally {
        process.removeListener('SIGINT', onSigint);
      }
    });
}
