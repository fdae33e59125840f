import type { Command } from 'commander';
import { HfCheckpoint, UsageError, exitCleanlyOnInterrupt, nativeIoStatus, parseByteSize } from '@llama-pro/core';
import { type VerifyMode, checkOutputPath, expandModel, loadExpandConfig, parseExpandConfig, formatPlanTable, initializerRegistry, planTensors, strategyRegistry } from '@llama-pro/expand';
import { createOnnxMatmulKernel } from '@llama-pro/backend-onnx';
import { BACKEND_OPTION_HELP, DEFAULT_BACKEND, backendLoadOptions, resolveBackend } from '../backend-option';
import { buildContainer } from '../container';
import { humanBytes, progressReporter } from '../output';
import { resolveModelSpec } from '../hub';

interface ExpandFlags {
  config?: string;
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
  verifyMode?: string;
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
    .argument('[in-dir]', 'Hugging Face model directory or hub id org/name[@revision] (or input: in --config)')
    .argument('[out-dir]', 'output directory, built in a temporary sibling and renamed into place at the end (or output: in --config)')
    .option('--config <file>', 'expansion config (YAML; schema packages/expand/schema/expand.schema.json) holding any of these flags; flags given here override it')
    .option('--strategy <name>', 'interleaved | top | bottom | positions (or a plugin strategy)', 'interleaved')
    .option('--groups <n>', 'interleaved: number of groups N (must divide the layer count)')
    .option('--copies <p>', 'interleaved: copies on top of each group (default 1)')
    .option('--blocks <k>', 'top / bottom: number of new blocks')
    .option('--at <list>', 'positions: indices of the new blocks IN THE EXPANDED MODEL, e.g. 4,9,14')
    .option('--from <list>', 'positions: original block copied into each new block (same order as --at; default: the block below)')
    .option('--param <key=value>', 'extra strategy parameter (plugin strategies), repeatable', collect, [])
    .option('--init <name>', 'block initializer: zero-output (identity, paper) or copy', 'zero-output')
    .option('--dry-run', 'print the plan and exit without writing anything')
    .option('--verify', 'run base and expanded model on a fixed token batch and require identical logits (max |Δlogit| = 0) before publishing; otherwise nothing is written and the exit code is 1')
    .option('--verify-mode <mode>', 'identity (default: identical logits required) or report (implies --verify; only measures max |Δlogit|, not an identity check, e.g. for --init copy)')
    .option('--backend <name>', `load both models whole through this backend for --verify (${BACKEND_OPTION_HELP}); without it --verify streams the weights from disk (bounded memory, matmuls on onnxruntime) and proves identity with one pass of the expanded model, running both only when a check fails`, DEFAULT_BACKEND)
    .option('--shard-size <size>', 'maximum output shard size, e.g. 5GB', '5GB')
    .option('--force', 'replace an existing output directory')
    .option('--no-base-hash', 'do not sha256 the base shards into the manifest (saves CPU on large models)')
    .option('--plugin <spec>', 'load a plugin module (strategies, initializers, backends), repeatable', collect, [])
    .option('--json', 'machine-readable output')
    .action(async (inArg: string | undefined, outArg: string | undefined, o: ExpandFlags, cmd: Command) => {
      exitCleanlyOnInterrupt();
      const fromCli = (k: string): boolean => cmd.getOptionValueSource(k) === 'cli';
      const file = o.config ? await loadExpandConfig(o.config) : parseExpandConfig({});
      const inDir = inArg ?? (file.input !== undefined ? await resolveModelSpec(file.input, { progress: progressReporter() }) : undefined);
      const outDir = outArg ?? file.output;
      if (inDir === undefined || outDir === undefined) throw new UsageError(`give the base model and the output: llama-pro expand <in-dir> <out-dir>${o.config ? ` (or input: and output: in ${o.config})` : ' (or --config expand.yaml with input: and output:)'}`);
      const container = await buildContainer([...file.plugins, ...o.plugin]);
      const strategy = strategyRegistry(container).get(fromCli('strategy') ? o.strategy : file.strategy.name);
      const initializer = initializerRegistry(container).get(fromCli('init') ? o.init : file.init);
      const maxShardBytes = fromCli('shardSize') || typeof file.shardSize === 'string' ? parseByteSize(fromCli('shardSize') ? o.shardSize : String(file.shardSize)) : file.shardSize;
      if (o.verifyMode !== undefined && o.verifyMode !== 'identity' && o.verifyMode !== 'report') throw new UsageError(`--verify-mode must be identity or report, got "${o.verifyMode}"`);
      const fileVerify = file.verify === true ? { mode: 'identity' as const } : file.verify === false ? undefined : file.verify;
      const verifyMode: VerifyMode | undefined = (o.verifyMode as VerifyMode | undefined) ?? (o.verify ? 'identity' : fileVerify?.mode);
      // --verify streams both models layer by layer (bounded memory); a backend named explicitly loads them whole through it.
      const explicitBackend = fromCli('backend') ? o.backend : fileVerify?.backend;
      const resolved = verifyMode && explicitBackend !== undefined ? resolveBackend(container, explicitBackend) : undefined;
      const force = o.force === true || file.force;
      const baseHash = fromCli('baseHash') ? o.baseHash : file.baseHash;
      const { name: _name, params: extraParams, ...fileParams } = file.strategy;
      const params = { ...fileParams, ...extraParams, ...strategyParams(o) };
      const ckpt = await HfCheckpoint.open(inDir);
      let plan;
      try {
        plan = strategy.plan(ckpt.config, params);
        if (o.dryRun) {
          const tp = planTensors(ckpt, plan, initializer);
          await checkOutputPath(inDir, outDir, force);
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
      let total = 0;
      // The streaming verifier's matrix products run on onnxruntime (weights still streamed, memory bounded).
      const kernel = verifyMode && !resolved ? await createOnnxMatmulKernel() : undefined;
      const r = await expandModel({
        input: inDir,
        output: outDir,
        plan,
        initializer,
        maxShardBytes,
        force,
        hashBase: baseHash,
        ...(verifyMode ? { verify: resolved ? { backend: resolved.backend, loadOptions: backendLoadOptions(resolved.spec), mode: verifyMode } : { mode: verifyMode, ...(kernel ? { kernel } : {}) } } : {}),
        onProgress: (p) => {
          // a new phase, or the verifier going on to compare both models (more steps)
          if (p.phase !== phase || p.total !== total) {
            if (phase) progress.stop();
            phase = p.phase;
            total = p.total;
            progress.start(p.total, p.phase === 'write' ? 'expand' : 'verify');
          }
          progress.update(p.done);
        },
      }).finally(() => kernel?.dispose());
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
            verification: m.verification && { backend: m.verification.backend, device: m.verification.device, maxAbsDiff: m.verification.maxAbsDiff, identical: m.verification.identical, mode: m.verification.mode ?? 'identity', ...(m.verification.method ? { method: m.verification.method } : {}) },
          }) + '\n',
        );
      } else {
        const v = m.verification;
        process.stdout.write(
          `wrote ${r.output}: ${m.plan.originalLayers} -> ${m.plan.newLayerCount} layers (new blocks ${m.newLayers.join(', ')}), ${m.output.shards.length} shard(s), ${humanBytes(m.output.totalBytes)}; ${m.trainableTensors.length} trainable tensors listed in llama_pro.json\n` +
            (v
              ? v.mode === 'report'
                ? `difference measured on ${v.backend} (${v.device}), ${v.batchSize}x${v.seqLen} tokens: max |Δlogit| = ${v.maxAbsDiff}${v.identical ? ' (identical)' : ''} — not an identity check (--verify-mode report)\n`
                : `identity check on ${v.backend} (${v.device}), ${v.batchSize}x${v.seqLen} tokens: max |Δlogit| = ${v.maxAbsDiff} (identical${v.method === 'proof' ? '; proven: byte-identical copies, the same config, zero new-block outputs, each new block the identity on these tokens' : ''})\n`
              : ''),
        );
      }
    });
}
