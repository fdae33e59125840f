import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { parse } from 'yaml';
import { HfCheckpoint, encodeFromFloat32, normalizeConfig, saveModelDir, passthroughTensors, UsageError } from '@llama-pro/core';
import { tinyRawConfig, writeRandomCheckpoint } from '@llama-pro/core/testing';
import {
  bottomStrategy,
  expandModel,
  interleavedStrategy,
  positionsStrategy,
  readExpansionManifest,
  topStrategy,
  zeroOutputInitializer,
  type ExpansionManifest,
  type ExpansionStrategy,
} from '@llama-pro/expand';
import { PAPER_SETTINGS, emitAccelerate, emitLlamaFactory, importRun, llamaFactoryConfig, llamaFactoryFreezeArgs } from '@llama-pro/engines';

/**
 * LLaMA-Factory's layer selection, re-derived here from its documented semantics (FreezeArguments help text
 * and the LLaMA Pro mode of `finetuning_type: freeze`), independently of the emitter:
 * - use_llama_pro with N trainable layers of L: stride L/N, layers stride-1, 2*stride-1, ..., L-1;
 * - freeze_trainable_layers > 0: the last n layers; < 0: the first n layers.
 */
function llamaFactorySelects(L: number, useLlamaPro: boolean, n: number): number[] {
  if (useLlamaPro) {
    if (L % n !== 0) throw new Error('LLaMA-Factory rejects this: num_layers must be divisible');
    const stride = L / n;
    const out: number[] = [];
    for (let i = stride - 1; i < L + stride - 1; i += stride) out.push(i);
    return out;
  }
  if (n > 0) return Array.from({ length: L }, (_, i) => i).slice(Math.max(0, L - n));
  return Array.from({ length: Math.min(-n, L) }, (_, i) => i);
}

/**
 * Every key the emitted YAML may use, as documented by LLaMA-Factory (hiyouga/LLaMA-Factory,
 * src/llamafactory/hparams: model_args.py ModelArguments.model_name_or_path; data_args.py DataArguments:
 * dataset, dataset_dir, cutoff_len, packing, preprocessing_num_workers; finetuning_args.py: stage,
 * finetuning_type, use_llama_pro, FreezeArguments.freeze_trainable_layers / freeze_trainable_modules) and by
 * transformers.Seq2SeqTrainingArguments, which LLaMA-Factory uses for the rest.
 */
const DOCUMENTED_KEYS = new Set([
  'model_name_or_path',
  'stage',
  'do_train',
  'finetuning_type',
  'use_llama_pro',
  'freeze_trainable_layers',
  'freeze_trainable_modules',
  'dataset',
  'dataset_dir',
  'cutoff_len',
  'packing',
  'preprocessing_num_workers',
  'output_dir',
  'logging_steps',
  'save_steps',
  'overwrite_output_dir',
  'per_device_train_batch_size',
  'gradient_accumulation_steps',
  'learning_rate',
  'max_steps',
  'lr_scheduler_type',
  'lr_scheduler_kwargs',
  'warmup_ratio',
  'weight_decay',
  'adam_beta1',
  'adam_beta2',
  'max_grad_norm',
  'seed',
  'bf16',
  'fp16',
  'report_to',
  'deepspeed',
]);

let dir: string;
let base: string;
const expanded = new Map<string, string>();

async function expandWith(name: string, strategy: ExpansionStrategy, params: Record<string, unknown>): Promise<string> {
  const out = path.join(dir, name);
  const config = normalizeConfig(JSON.parse(await fsp.readFile(path.join(base, 'config.json'), 'utf8')));
  await expandModel({ input: base, output: out, plan: strategy.plan(config, params), initializer: zeroOutputInitializer });
  expanded.set(name, out);
  return out;
}

beforeAll(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-engines-'));
  base = path.join(dir, 'base');
  await writeRandomCheckpoint(base, tinyRawConfig({ layers: 8, hiddenSize: 16, intermediateSize: 32, heads: 2, kvHeads: 1, vocab: 40 }), { seed: 5 });
  await expandWith('interleaved', interleavedStrategy, { groups: 4 });
  await expandWith('interleaved2', interleavedStrategy, { groups: 2, copies: 2 });
  await expandWith('top', topStrategy, { blocks: 3 });
  await expandWith('bottom', bottomStrategy, { blocks: 2 });
  await expandWith('positions', positionsStrategy, { at: [1, 6] });
  await fsp.writeFile(path.join(dir, 'corpus.jsonl'), '{"text": "hello"}\n');
});

const job = async (name: string) => ({
  modelDir: expanded.get(name)!,
  manifest: await readExpansionManifest(expanded.get(name)!),
  corpus: { path: path.join(dir, 'corpus.jsonl'), format: 'jsonl' as const, field: 'text' },
  settings: PAPER_SETTINGS,
  outputDir: 'out',
});

describe('LLaMA-Factory emission', () => {
  it.each(['interleaved', 'top', 'bottom'])('%s: the emitted freeze arguments select exactly the manifest trainable layers', async (name) => {
    const j = await job(name);
    const emit = path.join(dir, `lf-${name}`);
    const files = await emitLlamaFactory(j, emit);
    expect(files).toEqual(['README.md', 'dataset_info.json', 'ds_z2_config.json', 'ds_z3_config.json', 'llamafactory.yaml']);
    const cfg = parse(await fsp.readFile(path.join(emit, 'llamafactory.yaml'), 'utf8'));
    const selected = llamaFactorySelects(j.manifest.plan.newLayerCount, cfg.use_llama_pro, cfg.freeze_trainable_layers);
    expect(selected).toEqual([...j.manifest.newLayers].sort((a, b) => a - b));
    // "all" modules of those layers = every tensor of the new blocks = the manifest's trainable list.
    const ck = await HfCheckpoint.open(j.modelDir);
    const lfTrainable = ck.parameterNames().filter((n) => selected.some((l) => n.startsWith(`model.layers.${l}.`)));
    await ck.close();
    expect(lfTrainable.sort()).toEqual([...j.manifest.trainableTensors].sort());
    expect(cfg).toMatchObject({ stage: 'pt', finetuning_type: 'freeze', freeze_trainable_modules: 'all', learning_rate: 2e-4, warmup_ratio: 0.06, max_grad_norm: 1, weight_decay: 0.1, bf16: true, lr_scheduler_type: 'cosine' });
    for (const k of Object.keys(cfg)) expect(DOCUMENTED_KEYS.has(k) ? k : `undocumented key ${k}`).toBe(k);
    const info = JSON.parse(await fsp.readFile(path.join(emit, 'dataset_info.json'), 'utf8'));
    expect(info[cfg.dataset]).toEqual({ file_name: path.join(dir, 'corpus.jsonl'), columns: { prompt: 'text' } });
    const readme = await fsp.readFile(path.join(emit, 'README.md'), 'utf8');
    expect(readme).toMatch(/llamafactory-cli train llamafactory\.yaml[\s\S]*NNODES=2 NODE_RANK=0/);
    // The take-back command points where LLaMA-Factory writes (output_dir, relative to the emit dir).
    expect(cfg.output_dir).toBe(path.join(emit, 'out'));
    expect(readme).toContain(`llama-pro import-run ${path.join(emit, 'out')} --base ${j.modelDir}`);
    expect(JSON.parse(await fsp.readFile(path.join(emit, 'ds_z3_config.json'), 'utf8')).zero_optimization.stage).toBe(3);
  });

  it('the paper layout (32 -> 40, groups 8) is use_llama_pro with 8 trainable layers', () => {
    const plan = interleavedStrategy.plan(normalizeConfig(tinyRawConfig({ layers: 32 })), { groups: 8 });
    const m = { plan, newLayers: plan.newLayers, trainableTensors: plan.newLayers.map((l) => `model.layers.${l}.mlp.down_proj.weight`) } as unknown as ExpansionManifest;
    expect(llamaFactoryFreezeArgs(m)).toEqual({ use_llama_pro: true, freeze_trainable_layers: 8 });
    expect(llamaFactorySelects(40, true, 8)).toEqual([4, 9, 14, 19, 24, 29, 34, 39]);
  });

  it.each(['interleaved2', 'positions'])('%s: layouts LLaMA-Factory cannot express are refused, naming accelerate', async (name) => {
    const j = await job(name);
    expect(() => llamaFactoryFreezeArgs(j.manifest)).toThrow(UsageError);
    expect(() => llamaFactoryConfig(j, dir)).toThrow(/use --engine accelerate/i);
    await expect(emitLlamaFactory(j, path.join(dir, `lf-${name}`))).rejects.toThrow(/accelerate/);
    await expect(fsp.access(path.join(dir, `lf-${name}`))).rejects.toThrow();
  });
});

describe('Accelerate emission', () => {
  it.each(['interleaved', 'interleaved2', 'top', 'bottom', 'positions'])('%s: the script parses and its dry run lists exactly the manifest names', async (name) => {
    const j = await job(name);
    const emit = path.join(dir, `acc-${name}`);
    await emitAccelerate(j, emit);
    const script = path.join(emit, 'train_accelerate.py');
    execFileSync('python3', ['-c', 'import ast,sys; ast.parse(open(sys.argv[1]).read())', script]);
    const out = execFileSync('python3', [script, '--dry-run'], { encoding: 'utf8' });
    expect(out.trim().split('\n').sort()).toEqual([...j.manifest.trainableTensors].sort());
    const cfg = parse(await fsp.readFile(path.join(emit, 'accelerate_config.yaml'), 'utf8'));
    expect(cfg.distributed_type).toBe('DEEPSPEED');
    expect(await fsp.readFile(path.join(emit, 'README.md'), 'utf8')).toContain(`llama-pro import-run ${path.join(emit, 'out')} --base ${j.modelDir}`);
  });
});

describe('import-run', () => {
  async function fakeRun(name: string, mutate: (n: string, v: Float32Array) => boolean): Promise<string> {
    const src = expanded.get('interleaved')!;
    const ck = await HfCheckpoint.open(src);
    const tensors = await Promise.all(
      passthroughTensors(ck).map(async (t) => {
        const v = await ck.readFloat32(t.name);
        return mutate(t.name, v) ? { ...t, source: encodeFromFloat32(v, 'F32') } : t;
      }),
    );
    const out = path.join(dir, name);
    await saveModelDir(out, { config: ck.rawConfig, tensors });
    await ck.close();
    return out;
  }

  it('accepts a run that changed only trainable tensors, and records it in the manifest', async () => {
    const m = await readExpansionManifest(expanded.get('interleaved')!);
    const trainable = new Set(m.trainableTensors);
    const run = await fakeRun('run-ok', (n, v) => {
      if (!trainable.has(n)) return false;
      v[0] = v[0]! + 0.5;
      return true;
    });
    const r = await importRun(run, expanded.get('interleaved')!, { engine: 'llamafactory' });
    expect(r.ok).toBe(true);
    expect(r.drift).toEqual([]);
    expect(r.trainableChanged.length).toBe(m.trainableTensors.length);
    expect(r.frozenChecked).toBeGreaterThan(0);
    const recorded = JSON.parse(await fsp.readFile(path.join(run, 'llama_pro.json'), 'utf8'));
    expect(recorded.training).toMatchObject({ engine: 'llamafactory', frozenTensorsVerified: r.frozenChecked });
  });

  it('detects a modified frozen tensor and records nothing', async () => {
    const run = await fakeRun('run-bad', (n, v) => {
      if (n !== 'model.layers.0.self_attn.q_proj.weight') return false;
      v[3] = v[3]! + 1e-3;
      return true;
    });
    const r = await importRun(run, expanded.get('interleaved')!);
    expect(r.ok).toBe(false);
    expect(r.drift).toHaveLength(1);
    expect(r.drift[0]).toMatchObject({ name: 'model.layers.0.self_attn.q_proj.weight', reason: 'changed' });
    expect(r.drift[0]!.maxAbsDiff).toBeCloseTo(1e-3, 6);
    await expect(fsp.access(path.join(run, 'llama_pro.json'))).rejects.toThrow();
  });

  it('refuses a run of another model', async () => {
    await expect(importRun(base, expanded.get('interleaved')!)).rejects.toThrow(/has 8 layers but the expanded base .* has 12/);
  });
});
