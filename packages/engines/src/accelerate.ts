/**
 * Hugging Face Accelerate emission: works for any layout, because the emitted script freezes every
 * parameter except the manifest's exact trainable tensor names. The script is copied from
 * `templates/train_accelerate.py`; the run's specifics go to `job.json` beside it.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { stringify } from 'yaml';
import { buildDirAtomic } from '@llama-pro/core';
import type { ExpansionManifest } from '@llama-pro/expand';
import { deepspeedConfig } from './deepspeed';
import { hfSchedulerName, type EngineCorpus, type EngineTrainingSettings } from './settings';

export const ACCELERATE_TEMPLATE = path.join(__dirname, '..', 'templates', 'train_accelerate.py');

export interface AccelerateJob {
  modelDir: string;
  manifest: ExpansionManifest;
  corpus: EngineCorpus;
  settings: EngineTrainingSettings;
  outputDir: string;
  /** 'ddp' (plain multi-GPU), 'deepspeed' (ZeRO-2) or 'fsdp'. */
  distributed?: 'ddp' | 'deepspeed' | 'fsdp';
}

export function accelerateJobJson(job: AccelerateJob, emitDir: string): Record<string, unknown> {
  const s = job.settings;
  return {
    model_dir: path.resolve(job.modelDir),
    output_dir: path.resolve(emitDir, job.outputDir),
    trainable: [...job.manifest.trainableTensors].sort(),
    corpus: { path: path.resolve(job.corpus.path), format: job.corpus.format, field: job.corpus.field ?? null },
    settings: {
      learning_rate: s.learningRate,
      scheduler: hfSchedulerName(s),
      min_lr_ratio: s.minLrRatio ?? 0,
      warmup_ratio: s.warmupRatio,
      weight_decay: s.weightDecay,
      beta1: s.beta1,
      beta2: s.beta2,
      max_grad_norm: s.maxGradNorm,
      batch_size: s.batchSize,
      gradient_accumulation: s.gradientAccumulation,
      max_steps: s.maxSteps,
      seq_len: s.seqLen,
      seed: s.seed,
      precision: s.precision,
      logging_steps: s.loggingSteps,
    },
  };
}

function accelerateConfig(kind: 'ddp' | 'deepspeed' | 'fsdp', precision: string): Record<string, unknown> {
  const base: Record<string, unknown> = {
    compute_environment: 'LOCAL_MACHINE',
    machine_rank: 0,
    main_process_ip: null,
    main_process_port: null,
    num_machines: 1,
    num_processes: 8,
    mixed_precision: precision === 'fp32' ? 'no' : precision,
    rdzv_backend: 'static',
    same_network: true,
  };
  if (kind === 'deepspeed') return { ...base, distributed_type: 'DEEPSPEED', deepspeed_config: { deepspeed_config_file: 'ds_z2_config.json', zero3_init_flag: false } };
  if (kind === 'fsdp') {
    return {
      ...base,
      distributed_type: 'FSDP',
      fsdp_config: { fsdp_auto_wrap_policy: 'TRANSFORMER_BASED_WRAP', fsdp_transformer_layer_cls_to_wrap: 'LlamaDecoderLayer', fsdp_sharding_strategy: 'FULL_SHARD', fsdp_use_orig_params: true, fsdp_state_dict_type: 'FULL_STATE_DICT' },
    };
  }
  return { ...base, distributed_type: 'MULTI_GPU' };
}

function readme(job: AccelerateJob, outputDir: string): string {
  return `# Accelerate job emitted by llama-pro

Trains exactly the ${job.manifest.trainableTensors.length} tensors listed in \`job.json\` (the expansion manifest's trainable
tensors: layers ${job.manifest.newLayers.join(', ')}) of \`${path.resolve(job.modelDir)}\`; every other parameter is frozen.

Check what will train (no GPU or torch needed):

    python3 train_accelerate.py --dry-run

## One node, 8 GPUs

    pip install torch transformers accelerate deepspeed
    accelerate launch --config_file accelerate_config.yaml train_accelerate.py

## Several nodes (run on every node; --machine_rank 0..N-1)

    accelerate launch --config_file accelerate_config.yaml --num_machines 2 --num_processes 16 \\
      --machine_rank 0 --main_process_ip <node0-ip> --main_process_port 29500 train_accelerate.py

\`accelerate_config.yaml\` uses ${job.distributed ?? 'deepspeed'}; \`ds_z2_config.json\` / \`ds_z3_config.json\` are DeepSpeed ZeRO configs.

## Bring the result back

    llama-pro import-run ${outputDir} --base ${path.resolve(job.modelDir)}
`;
}

/** Writes the Accelerate job directory atomically. */
export async function emitAccelerate(job: AccelerateJob, emitDir: string, options: { force?: boolean } = {}): Promise<string[]> {
  const script = await fsp.readFile(ACCELERATE_TEMPLATE, 'utf8');
  const jobJson = accelerateJobJson(job, emitDir);
  return buildDirAtomic(
    emitDir,
    async (tmp) => {
      const files: Record<string, string> = {
        'train_accelerate.py': script,
        'job.json': JSON.stringify(jobJson, null, 2) + '\n',
        'accelerate_config.yaml': stringify(accelerateConfig(job.distributed ?? 'deepspeed', job.settings.precision)),
        'ds_z2_config.json': JSON.stringify(deepspeedConfig(2, job.settings.precision), null, 2) + '\n',
        'ds_z3_config.json': JSON.stringify(deepspeedConfig(3, job.settings.precision), null, 2) + '\n',
        'README.md': readme(job, jobJson['output_dir'] as string),
      };
      for (const [name, text] of Object.entries(files)) await fsp.writeFile(path.join(tmp, name), text);
      await fsp.chmod(path.join(tmp, 'train_accelerate.py'), 0o755);
      return Object.keys(files).sort();
    },
    { ...options, owner: 'train --engine accelerate' },
  );
}
