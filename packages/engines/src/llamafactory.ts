/**
 * LLaMA-Factory emission. LLaMA-Factory selects trainable layers of a `finetuning_type: freeze` run from
 * two arguments (documented in its FreezeArguments / FinetuningArguments):
 * - `use_llama_pro: true`, `freeze_trainable_layers: N`: with L layers, stride s = L / N (L must divide),
 *   trainable layers s-1, 2s-1, ..., L-1 — the paper's evenly interleaved layout with one copy per group;
 * - otherwise `freeze_trainable_layers: +N` trains the last N layers, `-N` the first N.
 * With `freeze_trainable_modules: all` every parameter of a selected layer trains, and nothing outside the
 * layers (no `freeze_extra_modules`). Any other layout cannot be expressed: we refuse and name `accelerate`.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { stringify } from 'yaml';
import { UsageError, buildDirAtomic, parseLayerTensorName } from '@llama-pro/core';
import type { ExpansionManifest } from '@llama-pro/expand';
import { deepspeedConfig } from './deepspeed';
import { hfSchedulerName, type EngineCorpus, type EngineTrainingSettings } from './settings';

export interface FreezeArgs {
  use_llama_pro: boolean;
  freeze_trainable_layers: number;
}

function sameSet(a: readonly number[], b: readonly number[]): boolean {
  const sa = [...a].sort((x, y) => x - y);
  const sb = [...b].sort((x, y) => x - y);
  return sa.length === sb.length && sa.every((v, i) => v === sb[i]);
}

/** Finds LLaMA-Factory freeze arguments selecting exactly the manifest's new layers, or refuses. */
export function llamaFactoryFreezeArgs(manifest: ExpansionManifest): FreezeArgs {
  const L = manifest.plan.newLayerCount;
  const layers = manifest.newLayers;
  const N = layers.length;
  if (N === 0) throw new UsageError('the manifest has no new layers to train', 'ENGINE_UNSUPPORTED');
  // Trainable tensors must lie in the new layers: LLaMA-Factory's "all" modules train whole layers and nothing else.
  for (const name of manifest.trainableTensors) {
    const p = parseLayerTensorName(name);
    if (!p || !layers.includes(p.layer)) {
      throw new UsageError(`trainable tensor ${name} is not inside a new layer; LLaMA-Factory cannot express that, use --engine accelerate`, 'ENGINE_UNSUPPORTED');
    }
  }
  if (L % N === 0) {
    const s = L / N;
    const interleaved = Array.from({ length: N }, (_, k) => (k + 1) * s - 1);
    if (sameSet(interleaved, layers)) return { use_llama_pro: true, freeze_trainable_layers: N };
  }
  if (sameSet(layers, Array.from({ length: N }, (_, k) => L - N + k))) return { use_llama_pro: false, freeze_trainable_layers: N };
  if (sameSet(layers, Array.from({ length: N }, (_, k) => k))) return { use_llama_pro: false, freeze_trainable_layers: -N };
  throw new UsageError(
    `LLaMA-Factory can train evenly interleaved, last-N or first-N layers only; new layers ${layers.join(',')} of ${L} are none of these. Use --engine accelerate, which freezes by exact tensor names`,
    'ENGINE_UNSUPPORTED',
  );
}

export interface LlamaFactoryJob {
  modelDir: string;
  manifest: ExpansionManifest;
  corpus: EngineCorpus;
  settings: EngineTrainingSettings;
  /** Where LLaMA-Factory writes checkpoints (relative paths resolve against the emit dir). */
  outputDir: string;
  deepspeedStage?: 2 | 3;
}

export const DATASET_NAME = 'llama_pro_corpus';

/** The LLaMA-Factory training arguments (every key is a documented LLaMA-Factory / Transformers argument). */
export function llamaFactoryConfig(job: LlamaFactoryJob, emitDir: string): Record<string, unknown> {
  const freeze = llamaFactoryFreezeArgs(job.manifest);
  const s = job.settings;
  const cfg: Record<string, unknown> = {
    model_name_or_path: path.resolve(job.modelDir),
    stage: 'pt',
    do_train: true,
    finetuning_type: 'freeze',
    use_llama_pro: freeze.use_llama_pro,
    freeze_trainable_layers: freeze.freeze_trainable_layers,
    freeze_trainable_modules: 'all',
    dataset: DATASET_NAME,
    dataset_dir: path.resolve(emitDir),
    cutoff_len: s.seqLen,
    packing: true,
    preprocessing_num_workers: 16,
    output_dir: path.resolve(emitDir, job.outputDir),
    logging_steps: s.loggingSteps,
    save_steps: s.saveSteps,
    overwrite_output_dir: false,
    per_device_train_batch_size: s.batchSize,
    gradient_accumulation_steps: s.gradientAccumulation,
    learning_rate: s.learningRate,
    max_steps: s.maxSteps,
    lr_scheduler_type: hfSchedulerName(s),
    warmup_ratio: s.warmupRatio,
    weight_decay: s.weightDecay,
    adam_beta1: s.beta1,
    adam_beta2: s.beta2,
    max_grad_norm: s.maxGradNorm,
    seed: s.seed,
    bf16: s.precision === 'bf16',
    fp16: s.precision === 'fp16',
    report_to: 'none',
    deepspeed: path.resolve(emitDir, `ds_z${job.deepspeedStage ?? 2}_config.json`),
  };
  if (hfSchedulerName(s) === 'cosine_with_min_lr') cfg['lr_scheduler_kwargs'] = { min_lr_rate: s.minLrRatio };
  return cfg;
}

/** `dataset_info.json` registering the user's corpus as a pretraining dataset (text in the "prompt" column). */
export function datasetInfo(corpus: EngineCorpus): Record<string, unknown> {
  return { [DATASET_NAME]: { file_name: path.resolve(corpus.path), columns: { prompt: corpus.format === 'jsonl' ? (corpus.field ?? 'text') : 'text' } } };
}

function readme(job: LlamaFactoryJob, cfg: Record<string, unknown>): string {
  const layers = job.manifest.newLayers.join(', ');
  return `# LLaMA-Factory job emitted by llama-pro

Trains only the new blocks of \`${path.resolve(job.modelDir)}\` (layers ${layers} of ${job.manifest.plan.newLayerCount}),
selected by \`use_llama_pro: ${cfg['use_llama_pro']}\` and \`freeze_trainable_layers: ${cfg['freeze_trainable_layers']}\`.

Files: \`llamafactory.yaml\` (training arguments), \`dataset_info.json\` (the corpus as dataset \`${DATASET_NAME}\`),
\`ds_z2_config.json\` / \`ds_z3_config.json\` (DeepSpeed ZeRO-2 / ZeRO-3; the YAML points at ZeRO-${job.deepspeedStage ?? 2}).

## One node, 8 GPUs

    pip install llamafactory deepspeed
    FORCE_TORCHRUN=1 NPROC_PER_NODE=8 llamafactory-cli train llamafactory.yaml

## Several nodes (run on every node; NODE_RANK 0..NNODES-1)

    FORCE_TORCHRUN=1 NNODES=2 NODE_RANK=0 NPROC_PER_NODE=8 MASTER_ADDR=<node0-ip> MASTER_PORT=29500 llamafactory-cli train llamafactory.yaml

The global batch is per_device_train_batch_size × gradient_accumulation_steps × GPUs. Use ZeRO-3 for models
that do not fit one GPU with optimizer state for the trainable blocks.

## Bring the result back

    llama-pro import-run ${cfg['output_dir']} --base ${path.resolve(job.modelDir)}

checks that every frozen tensor is byte-identical to the expanded base and records the run in the manifest.
`;
}

/** Writes the LLaMA-Factory job directory atomically. */
export async function emitLlamaFactory(job: LlamaFactoryJob, emitDir: string, options: { force?: boolean } = {}): Promise<string[]> {
  const cfg = llamaFactoryConfig(job, emitDir);
  return buildDirAtomic(
    emitDir,
    async (tmp) => {
      const files: Record<string, string> = {
        'llamafactory.yaml': stringify(cfg),
        'dataset_info.json': JSON.stringify(datasetInfo(job.corpus), null, 2) + '\n',
        'ds_z2_config.json': JSON.stringify(deepspeedConfig(2, job.settings.precision), null, 2) + '\n',
        'ds_z3_config.json': JSON.stringify(deepspeedConfig(3, job.settings.precision), null, 2) + '\n',
        'README.md': readme(job, cfg),
      };
      for (const [name, text] of Object.entries(files)) await fsp.writeFile(path.join(tmp, name), text);
      return Object.keys(files).sort();
    },
    { ...options, owner: 'train --engine llamafactory' },
  );
}
