import type { Command } from 'commander';
import { HfCheckpoint, UsageError, exitCleanlyOnInterrupt, nativeIoStatus, parseByteSize } from '@llama-pro/core';
import { checkOutputPath, expandModel, formatPlanTable, initializerRegistry, planTensors, strategyRegistry } from '@llama-pro/expand';
import { BACKEND_OPTION_HELP, DEFAULT_BACKEND, backendLoadOptions, resolveBackend } from '../backend-option';
import { buildContainer } from '../container';
import { humanBytes, progressReporter } from '../output';

interface ExpandFlags {
  strategy: string;
  groups?: string;
  copies?: string;
  blocks?: string;
  at?: string;
  from?: string;
  param: string[];
  init: string;
  dryRun?: boolean;
  verify?: boolean;
  backend: string;
  shardSize: string;
  force?: boolean;
  baseHash: boolean;
  json?: boolean;
  plugin: string[];
}

const collect = (v: string, prev: string[]) => [...prev, v];

/** Strategy parameters from the dedicated flags plus any `--param key=value`. */
function strategyParams(o: ExpandFlags): Record<string, unknown> {
  const params: Record<string, unknown> = {};
  for (const k of ['groups', 'copies', 'blocks', 'at', 'from'] as const) if (o[k] !== undefined) params[k] = o[k];
  for (const kv of o.param) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new UsageError(`--param expects key=value, got "${kv}"`);
    params[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return params;
}

export function registerExpand(program: Command): void {
  program
    .command('expand')
    .description('Grow a model by inserting copied blocks (LLaMA Pro); streams the weights and writes llama_pro.json')
    .argument('<in-dir>', 'Hugging Face model directory')
    .argument('<out-dir>', 'output directory (built in a temporary sibling, renamed into place at the end)')
    .option('--strategy <name>', 'interleaved | top | bottom | positions (or a plugin strategy)', 'interleaved')
    .option('--groups <n>', 'interleaved: number of groups N (must divide the layer count)')
    .option('--copies <p>', 'interleaved: copies on top of each group (default 1)')
    .option('--blocks <k>', 'top / bottom: number of new blocks')
    .option('--at <list>', 'positions: indices of the new blocks IN THE EXPANDED MODEL, e.g. 4,9,14')
    .option('--from <list>', 'positions: original block copied into each new block (same order as --at; default: the block below)')
    .option('--param <key=value>', 'extra strategy parameter (plugin strategies), repeatable', collect, [])
    .option('--init <name>', 'block initializer: zero-output (identity, paper) or copy', 'zero-output')
    .option('--dry-run', 'print the plan and exit without writing anything')
    .option('--verify', 'run base and expanded model on a fixed token batch and require identical logits before publishing')
    .option('--backend <name>', `backend for --verify: ${BACKEND_OPTION_HELP}`, DEFAULT_BACKEND)
    .option('--shard-size <size>', 'maximum output shard size, e.g. 5GB', '5GB')
    .option('--force', 'replace an existing output directory')
    .option('--no-base-hash', 'do not sha256 the base shards into the manifest (saves CPU on large models)')
    .option('--plugin <spec>', 'load a plugin module (strategies, initializers, backends), repeatable', collect, [])
    .option('--json', 'machine-readable output')
    .action(async (inDir: string, outDir: string, o: ExpandFlags) => {
      exitCleanlyOnInterrupt();
      const container = await buildContainer(o.plugin);
      const strategy = strategyRegistry(container).get(o.strategy);
      const initializer = initializerRegistry(container).get(o.init);
      const maxShardBytes = parseByteSize(o.shardSize);
      const resolved = o.verify ? resolveBackend(container, o.backend) : undefined;
      const ckpt = await HfCheckpoint.open(inDir);
      let plan;
      try {
        plan = strategy.plan(ckpt.config, strategyParams(o));
        if (o.dryRun) {
          const tp = planTensors(ckpt, plan, initializer);
          await checkOutputPath(inDir, outDir, o.force);
          if (o.json) {
            const { layers, ...rest } = plan;
            process.stdout.write(JSON.stringify({ dryRun: true, ...rest, initializer: initializer.name, layers, zeroedTensors: tp.zeroedTensors, trainableTensors: tp.trainableTensors }) + '\n');
          } else {
            process.stdout.write(
              `${formatPlanTable(plan)}\ninitializer ${initializer.name}: ${tp.zeroedTensors.length} tensor(s) zeroed, ${tp.trainableTensors.length} trainable tensor(s)\n` +
                (tp.zeroedTensors.length ? `zeroed: ${tp.zeroedTensors.join(', ')}\n` : '') +
                `dry run: nothing written\n`,
            );
          }
          return;
        }
      } finally {
        await ckpt.close();
      }
      const progress = progressReporter();
      let phase = '';
      const r = await expandModel({
        input: inDir,
        output: outDir,
        plan,
        initializer,
        maxShardBytes,
        force: o.force,
        hashBase: o.baseHash,
        ...(resolved ? { verify: { backend: resolved.backend, loadOptions: backendLoadOptions(resolved.spec) } } : {}),
        onProgress: (p) => {
          if (p.phase !== phase) {
            if (phase) progress.stop();
            phase = p.phase;
            progress.start(p.total, p.phase === 'write' ? 'expand' : 'verify');
          }
          progress.update(p.done);
        },
      });
      if (phase) progress.stop();
      const m = r.manifest;
      const native = nativeIoStatus();
      if (r.copy.userBytes >= 1e9 && !native.available) {
        process.stderr.write(`note: tensor bytes were copied through user space (${native.detail}); in-kernel copies are faster\n`);
      }
      if (o.json) {
        process.stdout.write(
          JSON.stringify({
            out: r.output,
            strategy: m.strategy,
            initializer: m.initializer,
            originalLayers: m.plan.originalLayers,
            layers: m.plan.newLayerCount,
            newLayers: m.newLayers,
            copies: m.copies,
            shards: m.output.shards.map((s) => s.file),
            bytes: m.output.totalBytes,
            trainableTensors: m.trainableTensors.length,
            copy: r.copy,
            verification: m.verification && { backend: m.verification.backend, device: m.verification.device, maxAbsDiff: m.verification.maxAbsDiff, identical: m.verification.identical },
          }) + '\n',
        );
      } else {
        const v = m.verification;
        process.stdout.write(
          `wrote ${r.output}: ${m.plan.originalLayers} -> ${m.plan.newLayerCount} layers (new blocks ${m.newLayers.join(', ')}), ${m.output.shards.length} shard(s), ${humanBytes(m.output.totalBytes)}; ${m.trainableTensors.length} trainable tensors listed in llama_pro.json\n` +
            (v ? `identity check on ${v.backend} (${v.device}), ${v.batchSize}x${v.seqLen} tokens: max |Δlogit| = ${v.maxAbsDiff}${v.identical ? ' (identical)' : ''}\n` : ''),
        );
      }
    });
}
