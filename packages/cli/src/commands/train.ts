import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { ByteTokenizer, HfCheckpoint, UsageError, expectedShape, expectedTensorNames, loadTokenizerOrBytes, type TextTokenizer } from '@llama-pro/core';
import { MANIFEST_FILE, readExpansionManifest } from '@llama-pro/expand';
import { type Experiment, formatOf, freezePolicies, listInputFiles, loadExperimentFile, lrSchedules, overrideExperiment, parseExperiment, runTraining } from '@llama-pro/train';
import { buildContainer } from '../container';
import { noteInterrupted } from '../exit-codes';
import { BACKEND_OPTION_HELP, backendLoadOptions, parseBackendSpec, resolveBackend } from '../backend-option';
import { progressReporter } from '../output';
import { cliHubOptions, resolveConfigModelSpec } from '../hub';
import { emitAccelerate, emitLlamaFactory, engineCorpusFromExperiment, engineSettingsFromExperiment } from '@llama-pro/engines';

interface TrainFlags {
  model?: string;
  data?: string;
  out?: string;
  config?: string;
  policy?: string;
  steps?: string;
  batchSize?: string;
  gradAccum?: string;
  seqLen?: string;
  lr?: string;
  seed?: string;
  layers?: string;
  loraRank?: string;
  loraAlpha?: string;
  loraTargets?: string;
  format?: string;
  field?: string;
  glob?: string;
  textSplit?: string;
  valFraction?: string;
  evalInterval?: string;
  general?: string;
  checkpointInterval?: string;
  resume?: boolean;
  allowBackendChange?: boolean;
  engine?: string;
  emit?: string;
  precision?: string;
  deepspeedStage?: string;
  force?: boolean;
  backend?: string;
  plugin?: string[];
  json?: boolean;
  byteTokens?: boolean;
}

function num(flag: string, v: string | undefined, integer = true): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (v.trim() === '' || !Number.isFinite(x) || (integer && !Number.isInteger(x))) throw new UsageError(`${flag} must be ${integer ? 'an integer' : 'a number'}, got "${v}"`);
  return x;
}

/** `--layers every:4,offset:3` / `top:2` / `bottom:1` / `4,9,14` (explicit indices). */
export function parseLayersFlag(s: string): Record<string, unknown> {
  if (/^\d+(,\d+)*$/.test(s.trim())) return { indices: s.split(',').map(Number) };
  const out: Record<string, unknown> = {};
  for (const part of s.split(',')) {
    const m = /^(every|offset|top|bottom):(\d+)$/.exec(part.trim());
    if (!m) throw new UsageError(`--layers: cannot parse "${part}"; use e.g. every:4, top:2, bottom:2 or explicit indices 3,7`);
    out[m[1]!] = Number(m[2]);
  }
  return out;
}

/** Flag values as an experiment override object (undefined = keep the file's value). */
function overrides(o: TrainFlags): Record<string, unknown> {
  const backend = o.backend !== undefined ? parseBackendSpec(o.backend) : undefined;
  return {
    model: o.model,
    out: o.out,
    backend: backend?.name,
    backendVariant: backend?.variant,
    steps: num('--steps', o.steps),
    batchSize: num('--batch-size', o.batchSize),
    gradAccum: num('--grad-accum', o.gradAccum),
    seqLen: num('--seq-len', o.seqLen),
    seed: num('--seed', o.seed),
    optimizer: { lr: num('--lr', o.lr, false) },
    policy: {
      name: o.policy,
      layers: o.layers !== undefined ? parseLayersFlag(o.layers) : undefined,
      lora:
        o.loraRank !== undefined || o.loraAlpha !== undefined || o.loraTargets !== undefined
          ? { rank: num('--lora-rank', o.loraRank), alpha: num('--lora-alpha', o.loraAlpha, false), targets: o.loraTargets?.split(',').map((t) => t.trim()) }
          : undefined,
    },
    data: { path: o.data, format: o.format, field: o.field, glob: o.glob, textSplit: o.textSplit, valFraction: num('--val-fraction', o.valFraction, false) },
    eval: { interval: num('--eval-interval', o.evalInterval), general: o.general },
    checkpoint: { interval: num('--checkpoint-interval', o.checkpointInterval) },
  };
}

/** Resolves the experiment's paths: values from the experiment file relative to it, flag values relative to the cwd. */
function resolvePaths(o: TrainFlags, exp: Experiment): Experiment {
  const baseDir = o.config ? path.dirname(path.resolve(o.config)) : process.cwd();
  const rel = (p: string | undefined, fromFlag: unknown) => (p === undefined ? undefined : fromFlag === undefined ? path.resolve(baseDir, p) : path.resolve(p));
  return {
    ...exp,
    model: rel(exp.model, o.model),
    out: rel(exp.out, o.out),
    data: { ...exp.data, path: rel(exp.data.path, o.data) },
    eval: { ...exp.eval, general: rel(exp.eval.general, o.general) },
    plugins: exp.plugins.map((p) => (p.startsWith('.') ? path.resolve(baseDir, p) : p)),
  };
}

/** `--engine llamafactory|accelerate --emit <dir>`: write a job for an external engine instead of training here. */
async function emitEngineJob(o: TrainFlags, exp: Experiment): Promise<void> {
  if (o.engine !== 'llamafactory' && o.engine !== 'accelerate') throw new UsageError(`unknown engine "${o.engine}"; known: llama-pro, llamafactory, accelerate`);
  if (!o.emit) throw new UsageError(`--engine ${o.engine} needs --emit <dir> (where the job is written)`);
  if (!exp.model) throw new UsageError('no model: pass --model <expanded-dir>');
  if (!exp.data.path) throw new UsageError('no data: pass --data <path>');
  const precision = o.precision ?? 'bf16';
  if (precision !== 'bf16' && precision !== 'fp16' && precision !== 'fp32') throw new UsageError(`--precision must be bf16, fp16 or fp32, got "${precision}"`);
  const stage = Number(o.deepspeedStage ?? '2');
  if (stage !== 2 && stage !== 3) throw new UsageError(`--deepspeed-stage must be 2 or 3, got "${o.deepspeedStage}"`);
  const manifest = await readExpansionManifest(exp.model);
  const job = {
    modelDir: exp.model,
    manifest,
    corpus: engineCorpusFromExperiment(exp, exp.data.path),
    settings: engineSettingsFromExperiment(exp, precision),
    outputDir: exp.out ?? 'out',
  };
  const files =
    o.engine === 'llamafactory'
      ? await emitLlamaFactory({ ...job, deepspeedStage: stage }, o.emit, { force: o.force })
      : await emitAccelerate({ ...job, distributed: 'deepspeed' }, o.emit, { force: o.force });
  if (o.json) process.stdout.write(JSON.stringify({ engine: o.engine, emit: o.emit, files, trainable: manifest.trainableTensors.length, newLayers: manifest.newLayers }) + '\n');
  else process.stdout.write(`wrote ${o.engine} job to ${o.emit} (${files.join(', ')}); launch commands in ${path.join(o.emit, 'README.md')}\n`);
}

export function registerTrain(program: Command): void {
  program
    .command('train')
    .description('Train an (expanded) model: new blocks only (LLaMA Pro), or the full / layers / lora baselines')
    .option('--model <dir>', 'model directory (an expanded model has llama_pro.json)')
    .option('--data <path>', 'training corpus: text/JSONL/token-id file or a directory')
    .option('--out <run-dir>', 'run directory: metrics.jsonl, checkpoints/, final/ (the exported model)')
    .option('--config <file>', 'experiment YAML (schema: packages/train/schema/experiment.schema.json); flags override it')
    .option('--policy <name>', 'freeze policy: new-blocks (default), full, layers, lora, or a plugin policy')
    .option('--steps <n>', 'optimizer updates')
    .option('--batch-size <n>', 'sequences per micro-batch')
    .option('--grad-accum <n>', 'micro-batches per update')
    .option('--seq-len <n>', 'tokens per packed sequence')
    .option('--lr <x>', 'peak learning rate')
    .option('--seed <n>', 'seed for data order, split and LoRA init')
    .option('--layers <spec>', 'policy layers: every:4[,offset:3] | top:N | bottom:N | explicit indices 3,7')
    .option('--lora-rank <r>', 'policy lora: adapter rank')
    .option('--lora-alpha <a>', 'policy lora: scale numerator (scale = alpha / rank)')
    .option('--lora-targets <list>', 'policy lora: modules, e.g. self_attn.q_proj,self_attn.v_proj')
    .option('--format <fmt>', 'data format: auto, text, jsonl, ids')
    .option('--field <name>', 'JSONL field with the text or token ids')
    .option('--glob <pattern>', 'files taken from a data directory, e.g. "**/*.txt"')
    .option('--text-split <mode>', 'documents of a text file: file, line, paragraph')
    .option('--val-fraction <x>', 'fraction of documents held out for validation')
    .option('--eval-interval <n>', 'validation loss every N steps')
    .option('--general <path>', 'general-domain sample (text, JSONL or token ids) whose loss is tracked next to the validation loss')
    .option('--checkpoint-interval <n>', 'checkpoint every N steps')
    .option('--resume', 'continue the run in --out from its newest checkpoint (refused when --out holds no run)')
    .option('--allow-backend-change', 'with --resume: continue on a different --backend than the run was trained on (run.json records each segment\'s backend)')
    .option('--engine <name>', 'llama-pro (train here, default), or emit a job for an external engine: llamafactory, accelerate', 'llama-pro')
    .option('--emit <dir>', 'with --engine llamafactory|accelerate: write the ready-to-launch job here (see docs/scaling-out.md)')
    .option('--precision <p>', 'external engines: bf16 (default), fp16 or fp32', 'bf16')
    .option('--deepspeed-stage <n>', 'external engines: DeepSpeed ZeRO stage the job uses, 2 or 3', '2')
    .option('--force', 'external engines: replace an existing --emit directory')
    .option('--backend <name[:variant]>', `${BACKEND_OPTION_HELP}; an experiment file's backend: overrides the default`)
    .option('--plugin <module...>', 'extra plugin modules (policies, schedules, backends)')
    .option('--json', 'print the run summary as one JSON object')
    .option('--byte-tokens', 'allow a model without tokenizer.json: feed text as raw byte tokens (ids 3..258; same as data.tokenizer: bytes)')
    .action(async (o: TrainFlags) => {
      let exp: Experiment = o.config ? await loadExperimentFile(o.config) : parseExperiment({});
      // model: in the file may be a hub id, resolved like --model (relative paths stay relative to the file)
      if (o.config && exp.model !== undefined && o.model === undefined) exp = { ...exp, model: await resolveConfigModelSpec(exp.model, path.dirname(path.resolve(o.config)), cliHubOptions()) };
      exp = resolvePaths(o, overrideExperiment(exp, overrides(o)));
      if (o.engine && o.engine !== 'llama-pro') return emitEngineJob(o, exp);
      const { model: modelDir, out: r, data: { path: d } } = exp;
      if (!modelDir) throw new UsageError('no model: pass --model <dir> (or set model: in the experiment file)');
      if (!d) throw new UsageError('no data: pass --data <path> (or set data.path in the experiment file)');
      if (!r) throw new UsageError('no run directory: pass --out <run-dir> (or set out: in the experiment file)');
      const container = await buildContainer([...exp.plugins, ...(o.plugin ?? [])]);
      const policies = freezePolicies(container);
      const schedules = lrSchedules(container);
      policies.get(exp.policy.name);
      schedules.get(exp.schedule.name);
      const { backend, spec } = resolveBackend(container, exp.backendVariant ? `${exp.backend}:${exp.backendVariant}` : exp.backend);
      if (!backend.supportsTraining || !backend.loadTrainable) throw new UsageError(`backend "${backend.name}" does not support training; use --backend tfjs`);
      const manifestPath = path.join(modelDir, MANIFEST_FILE);
      const expansion = existsSync(manifestPath) ? await readExpansionManifest(modelDir) : undefined;
      const ckpt = await HfCheckpoint.open(modelDir);
      const log = (m: string) => process.stderr.write(`llama-pro train: ${m}\n`);
      try {
        // Fail fast, before weights are loaded or the corpus tokenized: the freeze policy must apply to this model
        // (runTraining plans it again on the loaded model).
        policies.get(exp.policy.name).plan({
          parameterNames: expectedTensorNames(ckpt.config),
          shapeOf: (n) => expectedShape(ckpt.config, n) ?? [],
          manifest: expansion ? { trainable: expansion.trainableTensors, newLayers: expansion.newLayers } : undefined,
          options: { layers: exp.policy.layers, lora: exp.policy.lora },
        });
        const tokenizer: TextTokenizer = exp.data.tokenizer === 'bytes' || o.byteTokens ? new ByteTokenizer(ckpt.config.vocabSize) : await loadTokenizerOrBytes(modelDir, ckpt.config.vocabSize);
        // Text through a fallback the user did not ask for trains on bytes instead of the model's vocabulary.
        // Token-id files (--format ids, or auto on .bin/.i32/.u16/.ids) never meet the tokenizer.
        const textInputs = exp.data.format === 'ids' || exp.data.path === undefined ? [] : (await listInputFiles(exp.data.path, exp.data.glob)).filter((f) => formatOf(f, exp.data.format) !== 'ids');
        if (tokenizer.kind === 'bytes' && exp.data.tokenizer !== 'bytes' && !o.byteTokens && textInputs.length > 0)
          throw new UsageError(`${modelDir} has no tokenizer.json: training would feed text as raw byte tokens (ids 3..258), not the model's vocabulary. Add its tokenizer (llama-pro convert model.bin out --tokenizer tok.bin), train on token ids (--format ids), or pass --byte-tokens to train on bytes deliberately`);
        if (tokenizer.kind === 'bytes' && textInputs.length > 0) log(`${modelDir}: text is fed as byte tokens (ids 3..258)`);
        const model = await backend.loadTrainable(ckpt, backendLoadOptions(spec, log));
        const ac = new AbortController();
        const onSigint = () => {
          log('interrupt: saving a checkpoint, then exiting (resume with --resume)');
          ac.abort();
        };
        process.once('SIGINT', onSigint);
        try {
          const summary = await runTraining({
            experiment: exp,
            model,
            source: ckpt,
            tokenizer,
            policies,
            schedules,
            manifest: expansion ? { trainable: expansion.trainableTensors, newLayers: expansion.newLayers } : undefined,
            resume: o.resume,
            allowBackendChange: o.allowBackendChange,
            progress: progressReporter(),
            signal: ac.signal,
            extraExportFiles: expansion ? { [MANIFEST_FILE]: await fsp.readFile(manifestPath) } : undefined,
            info: { backend: backend.name, device: model.device, tokenizer: tokenizer.kind },
            log,
          });
          if (summary.finishReason === 'interrupted') noteInterrupted();
          if (o.json) process.stdout.write(JSON.stringify(summary) + '\n');
          else {
            const v = (x: number | null) => (x === null ? 'n/a' : x.toFixed(4));
            process.stdout.write(
              `${summary.finishReason} at step ${summary.step}/${summary.totalSteps} (${summary.policy}: ${summary.trainableParameters} trainable parameters); ` +
                `val loss ${v(summary.initialValLoss)} -> ${v(summary.finalValLoss)}; ` +
                (summary.initialGeneralLoss !== null ? `general loss ${v(summary.initialGeneralLoss)} -> ${v(summary.finalGeneralLoss)}; ` : '') +
                `peak RSS ${summary.peakRssMb} MiB; ` +
                (summary.exportDir ? `exported ${summary.exportDir}\n` : `checkpoint ${summary.lastCheckpoint}; continue with --resume\n`),
            );
          }
        } finally {
          process.removeListener('SIGINT', onSigint);
          await model.dispose();
        }
      } finally {
        await ckpt.close();
      }
    });
}
