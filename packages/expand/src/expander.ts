/**
 * The streaming expander. Output shards are written in sequence; each tensor is copied by byte range
 * from its base shard, in the kernel (copy_file_range via @llama-pro/native-io) where available, else
 * through two reused buffers, so memory stays bounded whatever the model size and the bytes need not
 * pass through JavaScript. Zeroed tensors are holes (nothing allocated or written); dtypes are
 * preserved. The base shards are hashed for the manifest on a worker thread meanwhile. The output is
 * built in a temporary sibling directory and renamed into place at the very end (after the optional
 * identity check), so an interrupted run never leaves anything at the output path.
 */
import * as path from 'node:path';
import {
  isParameterTensor,
  type BackendLoadOptions,
  CheckpointError,
  type CopyStats,
  type SafetensorsWriterOptions,
  HfCheckpoint,
  LlamaProError,
  type ModelBackend,
  type OutputTensor,
  type TokenBatch,
  type TensorInfo,
  type AtomicDirOptions,
  MAX_INDEX_JSON_BYTES,
  OutputError,
  buildDirAtomic,
  checkReplaceable,
  isInside,
  readJsonFile,
  recoverTempSiblings,
  parseLayerTensorName,
  withLayerCount,
  writeJsonAtomic,
  writeModelFiles,
  DEFAULT_MAX_SHARD_BYTES,
} from '@llama-pro/core';
import type { BlockInitializer } from './initializer';
import { type ExpansionManifest, type IdentityReport, MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_VERSION, parseExpansionManifest } from './manifest';
import { type ExpansionPlan, sourceOfEachLayer } from './plan';
import { FileHasher } from './hash';
import { verifyIdentity, type VerifyResult } from './verify';
import { STREAM_VERIFIER, verifyStreaming, type MatmulKernel, type StreamVerifyResult } from './stream-verify';

/** `identity`: the check must find max |Δlogit| = 0 or nothing is published; `report`: measured only. */
export type VerifyMode = 'identity' | 'report';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const PKG = require('../package.json') as { name: string; version: string };

/** The identity check failed: the expanded model does not compute the base model's function. */
export class IdentityError extends LlamaProError {
  constructor(message: string) {
    super('EXPAND_NOT_IDENTICAL', message);
  }
}

/** One tensor of the expanded model. */
export interface PlannedTensor {
  readonly name: string;
  /** Tensor of the base model whose bytes (or, when zeroed, shape and dtype) it takes. */
  readonly from: string;
  readonly zero: boolean;
  readonly info: TensorInfo;
}

/** The plan at tensor level: every output tensor, in write order, and the manifest lists. */
export interface TensorPlan {
  readonly tensors: readonly PlannedTensor[];
  readonly zeroedTensors: readonly string[];
  readonly trainableTensors: readonly string[];
  readonly copies: readonly { layer: number; source: number }[];
}

/**
 * Maps a layer plan onto the checkpoint's tensors. Write order follows the base checkpoint's storage
 * order (shard by shard, data order within each): every original tensor, renamed to its new layer, is
 * followed by the same tensor of each new block copied from it. So the base is read sequentially, once
 * (plus the re-read of each copied tensor while it is still in the page cache). Tensor order inside
 * safetensors files carries no meaning; the index maps names to shards.
 */
export function planTensors(ckpt: HfCheckpoint, plan: ExpansionPlan, initializer: BlockInitializer): TensorPlan {
  const L = ckpt.config.numHiddenLayers;
  if (plan.originalLayers !== L) throw new CheckpointError(`the plan is for ${plan.originalLayers} layers but ${ckpt.dir} has ${L}`, 'EXPAND_PLAN_MISMATCH');
  const names = ckpt.tensorNames();
  const perLayer: string[][] = Array.from({ length: L }, () => []);
  for (const name of names) {
    const p = parseLayerTensorName(name);
    if (p && p.layer >= L) throw new CheckpointError(`${ckpt.dir} holds tensor "${name}" but config.json says ${L} layers; the checkpoint is inconsistent`, 'CHECKPOINT_EXTRA_LAYER');
    if (p) perLayer[p.layer]!.push(p.suffix);
  }
  const copiesOf: number[][] = Array.from({ length: L }, () => []);
  for (const l of plan.layers) if (l.isNew) copiesOf[l.source]!.push(l.index);
  const zeroSets = new Map<number, Set<string>>();
  for (const l of plan.layers) if (l.isNew) zeroSets.set(l.index, new Set(initializer.zeroedSuffixes(ckpt.config, perLayer[l.source]!)));

  const tensors: PlannedTensor[] = [];
  for (const name of names) {
    const info = ckpt.info(name);
    const p = parseLayerTensorName(name);
    if (!p) {
      tensors.push({ name, from: name, zero: false, info });
      continue;
    }
    tensors.push({ name: `model.layers.${plan.originalToNew[p.layer]!}.${p.suffix}`, from: name, zero: false, info });
    for (const idx of copiesOf[p.layer]!) {
      tensors.push({ name: `model.layers.${idx}.${p.suffix}`, from: name, zero: zeroSets.get(idx)!.has(p.suffix), info });
    }
  }
  // Manifest lists in layer order (new layer index, then the source layer's storage order).
  const zeroed: string[] = [];
  const trainable: string[] = [];
  for (const l of plan.layers) {
    if (!l.isNew) continue;
    for (const s of perLayer[l.source]!) {
      const name = `model.layers.${l.index}.${s}`;
      if (zeroSets.get(l.index)!.has(s)) zeroed.push(name);
      if (isParameterTensor(s)) trainable.push(name);
    }
  }
  const copies = plan.layers.filter((l) => l.isNew).map((l) => ({ layer: l.index, source: l.source }));
  return { tensors, zeroedTensors: zeroed, trainableTensors: trainable, copies };
}

/** Progress events: bytes written, then (with verification) the check. */
export interface ExpandProgress {
  readonly phase: 'write' | 'verify';
  readonly done: number;
  readonly total: number;
}

export interface ExpandOptions {
  input: string;
  output: string;
  plan: ExpansionPlan;
  initializer: BlockInitializer;
  /** Maximum output shard size in bytes (default 5 GB). */
  maxShardBytes?: number;
  /** Replace an existing output. */
  force?: boolean;
  /**
   * sha256 the base shards into the manifest (default true). Hashing runs on a worker thread alongside
   * the copy, but costs a core for about as long as the copy takes; false records null hashes.
   */
  hashBase?: boolean;
  /**
   * Output writer settings: `nativeCopy: false` copies tensor bytes through user space instead of the
   * kernel (the output is byte-identical either way); `writebackBytes` tunes background writeback.
   */
  writer?: SafetensorsWriterOptions;
  /**
   * Run the check before publishing the output; the report goes into the manifest. `mode: 'identity'`
   * (default) requires max |Δlogit| = 0 and publishes nothing otherwise, whatever the initializer;
   * `'report'` only measures the difference (for initializers that are not identity-preserving, e.g. copy).
   * Without `backend` the streaming verifier (stream-verify) runs: a byte pre-check of the copied and
   * zeroed tensors, then both models forward layer by layer with weights read from disk (bounded memory);
   * with `backend` both models are loaded whole through it. `kernel` runs the streaming verifier's matrix
   * products (e.g. backend-onnx's onnxruntime kernel; default plain JavaScript).
   */
  verify?: { backend?: ModelBackend; tokens?: TokenBatch; loadOptions?: BackendLoadOptions; mode?: VerifyMode; kernel?: MatmulKernel };
  onProgress?: (p: ExpandProgress) => void;
}

export interface ExpandResult {
  readonly output: string;
  readonly manifest: ExpansionManifest;
  /** Present when verification ran (includes the base logits). */
  readonly verification?: VerifyResult;
  /** How tensor bytes were copied: in the kernel or through user space. */
  readonly copy: CopyStats;
}

/** Whether `dir` is an earlier `expand` output (marker, or the llama_pro.json manifest of versions before the marker). */
async function isExpandOutput(dir: string): Promise<boolean> {
  try {
    const m = await readJsonFile(path.join(dir, MANIFEST_FILE), (d, c) => new CheckpointError(d, c), { maxBytes: MAX_INDEX_JSON_BYTES });
    return (m as { format?: unknown } | null)?.format === MANIFEST_FORMAT;
  } catch {
    return false;
  }
}

/** What `--force` may replace for `expand`: only its own previous outputs, never the input. */
export function expandOutputOptions(input: string, force = false): AtomicDirOptions {
  return { force, owner: 'expand', marker: false, isPreviousOutput: isExpandOutput, inputs: [input] };
}

/**
 * Refuses outputs that would clobber the input, an existing directory (without `force`), or, with
 * `force`, anything that is not a previous `expand` output; run before any write.
 */
export async function checkOutputPath(input: string, output: string, force = false): Promise<void> {
  const inAbs = path.resolve(input);
  const outAbs = path.resolve(output);
  if (isInside(outAbs, inAbs)) throw new OutputError(`output ${output} is inside the input model ${input}; choose a path outside it`, 'OUTPUT_INSIDE_INPUT');
  if (isInside(inAbs, outAbs)) throw new OutputError(`output ${output} contains the input model ${input}; replacing it would destroy the input, choose another path`, 'OUTPUT_CONTAINS_INPUT');
  await checkReplaceable(path.resolve(output), expandOutputOptions(input, force));
}

/**
 * Cleans up after killed runs next to `target` (see core's `recoverTempSiblings`: dead runs' temporaries
 * are deleted, a previous output moved aside by a run killed mid-replace is renamed back). Returns the
 * removed paths.
 */
export async function removeStaleTemps(target: string): Promise<string[]> {
  return (await recoverTempSiblings(path.dirname(path.resolve(target)), path.basename(target))).removed;
}

/** Expands `input` into `output` following `plan`, streaming; see the module comment. */
export async function expandModel(opts: ExpandOptions): Promise<ExpandResult> {
  const input = path.resolve(opts.input);
  const output = path.resolve(opts.output);
  await removeStaleTemps(output);
  await checkOutputPath(input, output, opts.force);
  const ckpt = await HfCheckpoint.open(input);
  let hasher: FileHasher | undefined;
  try {
    const tp = planTensors(ckpt, opts.plan, opts.initializer);
    // The base shards are hashed on a worker thread reading them itself, alongside the copy.
    hasher = opts.hashBase === false ? undefined : new FileHasher(ckpt.shards.map((s) => s.path));
    const tensors: OutputTensor[] = tp.tensors.map((t) => ({
      name: t.name,
      dtype: t.info.dtype,
      shape: t.info.shape,
      source: t.zero ? ('zeros' as const) : ckpt.fileSource(t.from),
    }));
    const config = withLayerCount(ckpt.rawConfig, opts.plan.newLayerCount, sourceOfEachLayer(opts.plan));
    return await buildDirAtomic(
      output,
      async (tmp) => {
        const written = await writeModelFiles(tmp, {
          config,
          tensors,
          maxShardBytes: opts.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES,
          copyAuxFrom: input,
          writer: opts.writer,
          onProgress: (done, total) => opts.onProgress?.({ phase: 'write', done, total }),
        });
        const hashes = hasher ? await hasher.digests() : ckpt.shards.map(() => null);
        let verification: VerifyResult | undefined;
        let report: IdentityReport | null = null;
        if (opts.verify) {
          const vb = opts.verify.backend;
          let streamed: StreamVerifyResult | undefined;
          if (vb) {
            opts.onProgress?.({ phase: 'verify', done: 0, total: 1 });
            verification = await verifyIdentity(input, tmp, vb, opts.verify.tokens, opts.verify.loadOptions);
            opts.onProgress?.({ phase: 'verify', done: 1, total: 1 });
          } else {
            streamed = await verifyStreaming(input, tmp, opts.plan, opts.verify.tokens, (done, total) => opts.onProgress?.({ phase: 'verify', done, total }), opts.verify.kernel ? { kernel: opts.verify.kernel } : {});
            verification = streamed;
          }
          const mode = opts.verify.mode ?? 'identity';
          const precheckFailed = streamed !== undefined && !(streamed.precheck.copiesIdentical && streamed.precheck.newOutputsZero && streamed.configDiffers === null);
          if (mode === 'identity' && (verification.maxAbsDiff !== 0 || precheckFailed)) {
            const preserving = tp.zeroedTensors.length > 0 || opts.plan.newLayers.length === 0;
            const where = streamed
              ? (streamed.firstDifferingLayer !== null ? `; hidden states first differ after layer ${streamed.firstDifferingLayer}` : '') +
                (streamed.precheck.differing.length ? `; not byte-identical to the base: ${streamed.precheck.differing.join(', ')}` : '') +
                (streamed.precheck.nonZero.length ? `; inserted-block output projections not zero: ${streamed.precheck.nonZero.join(', ')}` : '') +
                (streamed.configDiffers !== null ? `; config differs from the base in ${streamed.configDiffers}` : '')
              : '';
            throw new IdentityError(
              `identity check failed: max |Δlogit| = ${verification.maxAbsDiff} on ${vb?.name ?? STREAM_VERIFIER} (${verification.device})${where}; the expanded model does not compute the base function, nothing was written` +
                (preserving ? '' : ` (initializer "${opts.initializer.name}" zeroes no output projection, so it is not identity-preserving: use the zero-output initializer, or verify mode "report" to only measure the difference)`),
            );
          }
          report = {
            backend: verification.backend,
            device: verification.device,
            batchSize: verification.batchSize,
            seqLen: verification.seqLen,
            tokens: verification.tokens,
            maxAbsDiff: verification.maxAbsDiff,
            identical: verification.maxAbsDiff === 0,
            mode,
            ...(streamed ? { method: streamed.method } : {}),
          };
        }
        const manifest = parseExpansionManifest({
          format: MANIFEST_FORMAT,
          version: MANIFEST_VERSION,
          tool: { name: PKG.name, version: PKG.version },
          createdAt: new Date().toISOString(),
          base: {
            path: input,
            architecture: ckpt.config.architectureClass,
            numHiddenLayers: ckpt.config.numHiddenLayers,
            shards: ckpt.shards.map((s, i) => ({ file: path.basename(s.path), bytes: s.fileSize, sha256: hashes[i] ?? null })),
          },
          strategy: { name: opts.plan.strategy, params: opts.plan.params },
          initializer: opts.initializer.name,
          plan: { originalLayers: opts.plan.originalLayers, newLayerCount: opts.plan.newLayerCount, originalToNew: opts.plan.originalToNew, layers: opts.plan.layers },
          newLayers: opts.plan.newLayers,
          copies: tp.copies,
          zeroedTensors: tp.zeroedTensors,
          trainableTensors: tp.trainableTensors,
          output: { shards: written.shards.map((s) => ({ file: s.file, bytes: s.bytes, tensors: s.tensors.length })), totalBytes: written.totalBytes },
          verification: report,
        });
        await writeJsonAtomic(path.join(tmp, MANIFEST_FILE), manifest);
        return { output, manifest, copy: written.copy, ...(verification ? { verification } : {}) };
      },
      expandOutputOptions(input, opts.force),
    );
  } finally {
    await hasher?.close();
    await ckpt.close();
  }
}
