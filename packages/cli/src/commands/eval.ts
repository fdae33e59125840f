import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { OutputError, TOKENS, UsageError, pathExists, recoverTempSiblings, renameIntoPlace, resolveRegistry, tempSibling, trackTemp, type ModelBackend } from '@llama-pro/core';
import {
  compareRuns,
  ensureDataset,
  markdownTable,
  readRun,
  runEvaluation,
  PythonSandbox,
  type CodeSandbox,
  type Evaluator,
  type LanguageModelProvider,
  type ModelRecord,
  type OpenedModel,
} from '@llama-pro/eval';
import { buildContainer } from '../container';
import { BACKEND_OPTION_HELP, DEFAULT_BACKEND, parseBackendSpec } from '../backend-option';
import { progressReporter } from '../output';

interface EvalOpts {
  byteTokens?: boolean;
  model?: string;
  tasks?: string;
  task?: string;
  samples?: string;
  numFewshot?: string;
  limit?: string;
  out: string;
  name?: string;
  overwrite?: boolean;
  dataDir?: string;
  cacheDir?: string;
  download: boolean;
  backend?: string;
  bos: boolean;
  tokenizer?: string;
  servedModel?: string;
  apiKeyEnv: string;
  generation: string;
  corpus?: string;
  rollingScoring: string;
  mmluPrompt: string;
  subjects?: string;
  maxGenTokens?: string;
  workers?: string;
  nSamples?: string;
  k?: string;
  temperature?: string;
  timeout?: string;
  python?: string;
  unsafeNoSandbox?: boolean;
  plugin?: string[];
  json?: boolean;
}

function int(name: string, v: string | undefined, min: number): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (!/^\d+$/.test(v.trim()) || x < min) throw new UsageError(`${name} must be an integer >= ${min}, got "${v}"`);
  return x;
}

export function registerEval(program: Command): void {
  const cmd = program
    .command('eval')
    .description('Evaluate a model (directory or OpenAI-compatible endpoint) on humaneval, mbpp, gsm8k, gsm8k_cot, mmlu, perplexity; or score pre-generated HumanEval samples')
    .option('--model <dir|url>', 'Hugging Face model directory, or an OpenAI-compatible endpoint such as http://localhost:8000/v1')
    .option('--tasks <list>', 'comma-separated tasks, e.g. humaneval,gsm8k,mmlu')
    .option('--task <name>', 'a single task (with --samples: humaneval)')
    .option('--samples <file>', 'score pre-generated completions ({"task_id", "completion"} JSONL, openai/human-eval format)')
    .option('--num-fewshot <n>', "shots (default: each task's lm-eval default: gsm8k 5, gsm8k_cot 8, mmlu 0, mbpp 3)")
    .option('--limit <n>', 'evaluate only the first N documents (per subject for mmlu)')
    .option('--out <dir>', 'results root; the run is written to <dir>/<name>/', 'results')
    .option('--name <name>', 'run name (default: <model>-<timestamp>); an existing run is refused unless --overwrite')
    .option('--overwrite', 'replace an existing run of the same --name')
    .option('--data-dir <dir>', 'directory with the official datasets: humaneval/, gsm8k/, mmlu/ (else the download cache)')
    .option('--cache-dir <dir>', 'download cache (default ~/.cache/llama-pro/datasets)')
    .option('--no-download', 'never download datasets')
    .option('--backend <name[:variant]>', BACKEND_OPTION_HELP, DEFAULT_BACKEND)
    .option('--no-bos', 'do not prepend BOS to contexts (lm-eval <= 0.4.9 behaviour)')
    .option('--tokenizer <dir>', "for endpoints: a local copy of the served model's tokenizer (prompts go as token ids)")
    .option('--served-model <name>', 'for endpoints: the model name to request (default: the only model the endpoint lists)')
    .option('--api-key-env <var>', 'for endpoints: environment variable holding the API key', 'OPENAI_API_KEY')
    .option('--generation <api>', 'for endpoints: completions or chat', 'completions')
    .option('--corpus <path>', 'perplexity corpus: .txt, .jsonl (field "text") or a directory of them')
    .option('--rolling-scoring <mode>', 'perplexity: lm-eval (lm-eval 0.4.x loglikelihood_rolling: BOS is scored when BOS is added) or text-only', 'lm-eval')
    .option('--mmlu-prompt <style>', 'mmlu prompt: lm-eval or original (hendrycks/test evaluate.py)', 'lm-eval')
    .option('--subjects <list>', 'mmlu: comma-separated subjects (default: all 57)')
    .option('--max-gen-tokens <n>', 'maximum generated tokens (default: humaneval 512, gsm8k 256)')
    .option('--n-samples <n>', 'humaneval: completions per problem (pass@k for k <= n; use with --temperature)')
    .option('--k <list>', 'humaneval: comma-separated k for pass@k (default 1,10,100; a k is reported when every problem has >= k samples)')
    .option('--temperature <t>', 'humaneval: sampling temperature (default 0 = greedy)')
    .option('--workers <n>', 'parallel sandbox workers for code execution')
    .option('--timeout <s>', 'seconds per program in the sandbox (default 3.0)')
    .option('--python <exe>', 'interpreter for generated code (default python3), e.g. a venv with numpy')
    .option('--unsafe-no-sandbox', 'run generated code without isolation where bubblewrap/user namespaces are unavailable (it can read your files and environment)')
    .option('--plugin <module...>', 'extra plugin modules (paths or package names) to load')
    .option('--json', 'print the results.json record instead of the markdown table')
    .option('--byte-tokens', 'allow a local model without tokenizer.json: prompts and targets as raw byte tokens (ids 3..258)')
    .action(async (opts: EvalOpts) => {
      const tasks = opts.samples ? [opts.task ?? 'humaneval'] : (opts.tasks ?? opts.task ?? '').split(',').map((t) => t.trim()).filter(Boolean);
      if (tasks.length === 0) throw new UsageError('give --tasks (e.g. --tasks humaneval,gsm8k,mmlu) or --task humaneval --samples samples.jsonl');
      if (opts.samples && tasks[0] !== 'humaneval') throw new UsageError('--samples scores HumanEval completions; use --task humaneval');
      if (!opts.samples && !opts.model) throw new UsageError('give --model <dir|http(s) endpoint> (or --samples to score completions)');
      if (opts.generation !== 'completions' && opts.generation !== 'chat') throw new UsageError(`--generation must be completions or chat, got "${opts.generation}"`);
      const replacing = opts.name !== undefined && (await checkRunName(path.join(opts.out, opts.name), opts.name, opts.overwrite === true));
      const limit = int('--limit', opts.limit, 1);
      const numFewshot = int('--num-fewshot', opts.numFewshot, 0);
      const maxGenTokens = int('--max-gen-tokens', opts.maxGenTokens, 1);
      const workers = int('--workers', opts.workers, 1);
      const nSamples = int('--n-samples', opts.nSamples, 1);
      const ks = opts.k === undefined ? undefined : opts.k.split(',').map((x) => int('--k', x.trim(), 1)!);
      if (ks !== undefined && ks.length === 0) throw new UsageError('--k needs at least one integer, e.g. --k 1,5');
      const temperature = opts.temperature === undefined ? undefined : Number(opts.temperature);
      if (temperature !== undefined && !(temperature >= 0)) throw new UsageError(`--temperature must be a number >= 0, got "${opts.temperature}"`);
      const timeoutS = opts.timeout === undefined ? undefined : Number(opts.timeout);
      if (timeoutS !== undefined && !(timeoutS > 0)) throw new UsageError(`--timeout must be a positive number of seconds, got "${opts.timeout}"`);

      const container = await buildContainer(opts.plugin ?? []);
      const evaluators = resolveRegistry<Evaluator>(container, TOKENS.Evaluator, 'evaluator');
      for (const t of tasks) evaluators.get(t);
      const sandboxes = resolveRegistry<CodeSandbox & { name: string }>(container, TOKENS.CodeSandbox, 'code sandbox');
      const sandbox =
        opts.python !== undefined || opts.unsafeNoSandbox
          ? new PythonSandbox({ python: opts.python, unsafeNoSandbox: opts.unsafeNoSandbox === true })
          : sandboxes.has('python')
            ? sandboxes.get('python')
            : undefined;

      // Datasets: the data dir when it has them, else the verified download cache.
      const dataDirs: Record<string, string> = {};
      for (const t of tasks) {
        const e = evaluators.get(t);
        if (e.dataset === 'corpus') continue;
        dataDirs[t] = await ensureDataset(e.dataset, { dataDir: opts.dataDir, cacheDir: opts.cacheDir, download: opts.download, log: (m) => process.stderr.write(`eval: ${m}\n`) });
      }

      let opened: OpenedModel | undefined;
      // A local model without a tokenizer would be scored on raw bytes, not its vocabulary: only on request.
      if (!opts.samples && !/^https?:\/\//i.test(opts.model!) && existsSync(path.join(opts.model!, 'config.json')) && !existsSync(path.join(opts.model!, 'tokenizer.json')) && !opts.byteTokens)
        throw new UsageError(`${opts.model} has no tokenizer.json: evaluation would encode text as raw byte tokens (ids 3..258), not the model's vocabulary. Add its tokenizer (llama-pro convert model.bin out --tokenizer tok.bin), or pass --byte-tokens to evaluate on bytes deliberately`);
      if (!opts.samples) {
        const providers = resolveRegistry<LanguageModelProvider>(container, TOKENS.LanguageModelProvider, 'language-model provider');
        const provider = providers.list().find((p) => p.matches(opts.model!));
        if (!provider) throw new UsageError(`no language-model provider understands --model ${opts.model}; known providers: ${providers.names().join(', ')}`);
        const spec = parseBackendSpec(opts.backend);
        opened = await provider.open(opts.model!, {
          backends: resolveRegistry<ModelBackend>(container, TOKENS.Backend, 'backend'),
          backend: spec,
          addBos: opts.bos,
          tokenizerDir: opts.tokenizer,
          servedModel: opts.servedModel,
          apiKey: process.env[opts.apiKeyEnv],
          generation: opts.generation as 'completions' | 'chat',
          log: (m) => process.stderr.write(`eval: ${m}\n`),
        });
      }
      const model: ModelRecord = opened?.record ?? { kind: 'samples', source: path.resolve(opts.samples!), sha256: null, backend: null, device: null, dtype: null };

      const name = opts.name ?? `${opts.model ? path.basename(opts.model.replace(/\/+$/, '')).replace(/[^A-Za-z0-9_.-]/g, '_') : 'samples'}-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      const outDir = path.join(opts.out, name);
      const options: Record<string, unknown> = { promptStyle: opts.mmluPrompt };
      if (opts.samples) options['samplesFile'] = opts.samples;
      if (opts.corpus) options['corpus'] = opts.corpus;
      options['rollingScoring'] = opts.rollingScoring;
      if (opts.subjects) options['subjects'] = opts.subjects.split(',').map((x) => x.trim()).filter(Boolean);
      if (maxGenTokens !== undefined) options['maxGenTokens'] = maxGenTokens;
      if (workers !== undefined) options['workers'] = workers;
      if (nSamples !== undefined) options['nSamples'] = nSamples;
      if (ks !== undefined) options['ks'] = ks;
      if (temperature !== undefined) options['temperature'] = temperature;
      if (timeoutS !== undefined) options['timeoutS'] = timeoutS;
      // The run is written to a temporary sibling and renamed into place when complete; with --overwrite the
      // earlier run stays until then (and comes back if this one is killed, see core's renameIntoPlace).
      const tmpRun = tempSibling(path.resolve(outDir));
      trackTemp(tmpRun);
      try {
        const run = await runEvaluation({
          evaluators,
          tasks,
          lm: opened?.lm,
          sandbox,
          dataDir: opts.dataDir ?? '.',
          dataDirs,
          limit,
          numFewshot,
          options,
          model,
          addBos: opened ? opened.addBos : null,
          tokenizer: opened?.tokenizer ?? null,
          outDir: tmpRun,
          name,
          progress: progressReporter(),
        });
        if (!replacing && (await pathExists(outDir))) throw new OutputError(`eval run ${outDir} appeared while this run was going; choose another --name`, 'OUTPUT_EXISTS');
        await renameIntoPlace([{ tmp: tmpRun, target: path.resolve(outDir) }]);
        process.stdout.write(opts.json ? JSON.stringify(run, null, 2) + '\n' : markdownTable(run) + `\nwrote ${outDir}\n`);
      } catch (e) {
        await fsp.rm(tmpRun, { recursive: true, force: true });
        throw e;
      } finally {
        await opened?.dispose();
      }
    });

  cmd
    .command('compare')
    .description('Compare several eval runs (results.json files or run directories); deltas against the first')
    .argument('<runs...>', 'results.json files or run directories; the first is the baseline')
    .action(async (runs: string[]) => {
      const recs = await Promise.all(runs.map((r) => readRun(r)));
      process.stdout.write(compareRuns(recs));
    });
}

/**
 * `--name` is one path component, and an existing run of that name is kept unless `--overwrite` (which
 * replaces only an earlier eval run: a directory holding a llama-pro-eval results.json).
 */
async function checkRunName(dir: string, name: string, overwrite: boolean): Promise<boolean> {
  if (name === '' || name === '.' || name === '..' || /[/\\\0]/.test(name)) throw new UsageError(`--name must be a plain name (no "/", not "." or ".."), got ${JSON.stringify(name)}`);
  await recoverTempSiblings(path.dirname(path.resolve(dir)), name); // a run killed midway: drop its temporary, restore an earlier run
  if (!(await pathExists(dir))) return false;
  if (!overwrite) throw new OutputError(`eval run ${dir} already exists; choose another --name or pass --overwrite to replace it`, 'OUTPUT_EXISTS');
  const isRun = await readRun(dir).then(
    () => true,
    () => false,
  );
  if (!isRun) throw new OutputError(`${dir} exists and is not an eval run (no llama-pro-eval results.json); --overwrite will not replace it, remove it yourself or choose another --name`, 'OUTPUT_NOT_OURS');
  return true;
}
