/**
 * The streaming expander. Source tensors are read by byte range and written to output shards in
 * sequence, so memory stays bounded whatever the model size; zeroed tensors are written without
 * allocating them; dtypes are preserved. The output is built in a temporary sibling directory and renamed
 * into place at the very end (after the optional identity check), so an interrupted run never leaves
 * anything at the output path.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { Worker } from 'node:worker_threads';
import * as path from 'node:path';
import {
  isParameterTensor,
  type BackendLoadOptions,
  CheckpointError,
  HfCheckpoint,
  LlamaProError,
  type ModelBackend,
  OutputError,
  type OutputTensor,
  type TokenBatch,
  type TensorInfo,
  buildDirAtomic,
  isInside,
  parseLayerTensorName,
  pathExists,
  withLayerCount,
  writeJsonAtomic,
  writeModelFiles,
  DEFAULT_MAX_SHARD_BYTES,
} from '@llama-pro/core';
import type { BlockInitializer } from './initializer';
import { type ExpansionManifest, type IdentityReport, MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_VERSION, parseExpansionManifest } from './manifest';
import { type ExpansionPlan, sourceOfEachLayer } from './plan';
import { verifyIdentity, type VerifyResult } from './verify';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const PKG = require('../package.json') as { name: string; version: string };

/** Chunk size for streamed tensor copies (two buffers of this size are reused for every tensor). */
const COPY_CHUNK = 8 << 20;

/**
 * Streams a tensor's bytes through two reusable buffers: the read of the next chunk runs while the
 * consumer writes the current one. The consumer must finish with a chunk before asking for the next
 * (the SafetensorsWriter awaits each write), and tensors are consumed one at a time.
 */
export function doubleBufferedSource(
  ckpt: HfCheckpoint,
  name: string,
  buffers: readonly [Buffer, Buffer],
  onChunk?: (offset: number, chunk: Buffer) => Promise<void>,
): () => AsyncGenerator<Uint8Array> {
  return async function* () {
    const shard = ckpt.shardOf(name);
    const length = shard.info(name).byteLength;
    const chunk = buffers[0].length;
    let which = 0;
    let offset = 0;
    const start = (): Promise<Buffer> | null => {
      if (offset >= length) return null;
      const n = Math.min(chunk, length - offset);
      const p = shard.readRange(name, offset, n, buffers[which]);
      // A read still in flight when the consumer gives up (e.g. after a write error) must not crash the process.
      p.catch(() => undefined);
      offset += n;
      which ^= 1;
      return p;
    };
    let pending = start();
    let at = 0;
    while (pending) {
      const got = await pending;
      pending = start();
      if (onChunk) await onChunk(at, got);
      at += got.length;
      yield got;
    }
  };
}

/** A tensor of zeros streamed from one shared zero buffer (never allocated at full size). */

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
  /** True for an original tensor (read exactly once, in storage order); false for a tensor of a new block. */
  readonly original: boolean;
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
 * (plus the re-read of each copied tensor while it is still in the page cache), which lets the expander
 * hash the base shards on the fly. Tensor order inside safetensors files carries no meaning; the index
 * maps names to shards.
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
      tensors.push({ name, from: name, zero: false, original: true, info });
      continue;
    }
    tensors.push({ name: `model.layers.${plan.originalToNew[p.layer]!}.${p.suffix}`, from: name, zero: false, original: true, info });
    for (const idx of copiesOf[p.layer]!) {
      tensors.push({ name: `model.layers.${idx}.${p.suffix}`, from: name, zero: zeroSets.get(idx)!.has(p.suffix), original: false, info });
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

const HASH_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { sab, slotSize, shards } = workerData;
const hashes = Array.from({ length: shards }, () => createHash('sha256'));
parentPort.on('message', (m) => {
  if (m.op === 'update') {
    hashes[m.shard].update(new Uint8Array(sab, m.slot * slotSize, m.length));
    parentPort.postMessage({ free: m.slot });
  } else if (m.op === 'digest') {
    parentPort.postMessage({ digests: hashes.map((h) => h.digest('hex')) });
  }
});
`;

/**
 * sha256 of each base shard, fed with the bytes as the expander reads them, hashed on a worker thread
 * (so hashing overlaps the copy) through a few shared-memory slots (bounded memory, backpressure when
 * the worker lags). A shard whose tensors do not arrive in storage order is hashed by a separate
 * sequential read at the end (never happens with `planTensors`' order, but kept correct regardless).
 */
export class ShardHasher {
  private static readonly SLOTS = 4;
  private readonly state: { next: number; ok: boolean }[];
  private readonly shardIndex = new Map<string, number>();
  private readonly sab: SharedArrayBuffer;
  private readonly free: number[] = [];
  private readonly waiters: (() => void)[] = [];
  private readonly worker: Worker;
  private failure: Error | undefined;
  private digestWaiter: { resolve: (d: string[]) => void; reject: (e: Error) => void } | undefined;

  constructor(
    private readonly ckpt: HfCheckpoint,
    private readonly slotSize = COPY_CHUNK,
  ) {
    this.state = ckpt.shards.map(() => ({ next: 0, ok: true }));
    ckpt.shards.forEach((s, i) => this.shardIndex.set(s.path, i));
    this.sab = new SharedArrayBuffer(ShardHasher.SLOTS * slotSize);
    for (let i = 0; i < ShardHasher.SLOTS; i++) this.free.push(i);
    this.worker = new Worker(HASH_WORKER, { eval: true, workerData: { sab: this.sab, slotSize, shards: ckpt.shards.length } });
    this.worker.unref();
    this.worker.on('message', (m: { free?: number; digests?: string[] }) => {
      if (m.free !== undefined) {
        this.free.push(m.free);
        this.waiters.shift()?.();
      } else if (m.digests) this.digestWaiter?.resolve(m.digests);
    });
    this.worker.on('error', (e) => this.fail(e));
    this.worker.on('exit', () => this.fail(new Error('the hashing worker exited')));
  }

  private fail(e: Error): void {
    this.failure ??= e;
    for (const w of this.waiters.splice(0)) w();
    this.digestWaiter?.reject(this.failure);
  }

  private async send(shard: number, bytes: Uint8Array): Promise<void> {
    for (let off = 0; off < bytes.byteLength; off += this.slotSize) {
      while (this.free.length === 0 && !this.failure) await new Promise<void>((r) => this.waiters.push(r));
      if (this.failure) throw this.failure;
      const slot = this.free.pop()!;
      const part = bytes.subarray(off, Math.min(bytes.byteLength, off + this.slotSize));
      new Uint8Array(this.sab, slot * this.slotSize, part.byteLength).set(part);
      this.worker.postMessage({ op: 'update', shard, slot, length: part.byteLength });
    }
  }

  /** Hashes the header bytes of every shard (call before streaming). */
  async start(): Promise<void> {
    for (const [i, s] of this.ckpt.shards.entries()) {
      const fh = await fsp.open(s.path, 'r');
      try {
        const head = Buffer.alloc(s.dataStart);
        const { bytesRead } = await fh.read(head, 0, head.length, 0);
        if (bytesRead !== head.length) this.state[i]!.ok = false;
        else await this.send(i, head);
      } finally {
        await fh.close();
      }
    }
  }

  /** Called with consecutive chunks of an original tensor, starting at `offset` bytes into it. */
  async update(name: string, offset: number, chunk: Uint8Array): Promise<void> {
    const shard = this.ckpt.shardOf(name);
    const i = this.shardIndex.get(shard.path)!;
    const st = this.state[i]!;
    if (!st.ok) return;
    if (shard.info(name).begin + offset !== st.next) {
      st.ok = false;
      return;
    }
    st.next += chunk.byteLength;
    await this.send(i, chunk);
  }

  /** Digests, in shard order; re-reads shards that were not streamed in order. */
  async digests(): Promise<string[]> {
    if (this.failure) throw this.failure;
    const streamed = await new Promise<string[]>((resolve, reject) => {
      this.digestWaiter = { resolve, reject };
      this.worker.postMessage({ op: 'digest' });
    });
    const out: string[] = [];
    for (const [i, s] of this.ckpt.shards.entries()) {
      const st = this.state[i]!;
      out.push(st.ok && st.next === s.header.dataLength ? streamed[i]! : await sha256File(s.path));
    }
    return out;
  }

  async close(): Promise<void> {
    this.worker.removeAllListeners('exit');
    await this.worker.terminate();
  }
}

/** sha256 of a file, read sequentially through one reused buffer. */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(COPY_CHUNK);
  const fh = await fsp.open(file, 'r');
  try {
    let pos = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return hash.digest('hex');
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
   * the copy, but costs CPU (about as much as the copy itself); false records null hashes.
   */
  hashBase?: boolean;
  /** Run the identity check before publishing the output; the report goes into the manifest. */
  verify?: { backend: ModelBackend; tokens?: TokenBatch; loadOptions?: BackendLoadOptions };
  onProgress?: (p: ExpandProgress) => void;
}

export interface ExpandResult {
  readonly output: string;
  readonly manifest: ExpansionManifest;
  /** Present when verification ran (includes the base logits). */
  readonly verification?: VerifyResult;
}

/** Refuses outputs that would clobber the input or an existing directory; run before any write. */
export async function checkOutputPath(input: string, output: string, force = false): Promise<void> {
  const inAbs = path.resolve(input);
  const outAbs = path.resolve(output);
  if (isInside(outAbs, inAbs)) throw new OutputError(`output ${output} is inside the input model ${input}; choose a path outside it`, 'OUTPUT_INSIDE_INPUT');
  if (isInside(inAbs, outAbs)) throw new OutputError(`output ${output} contains the input model ${input}; replacing it would destroy the input, choose another path`, 'OUTPUT_CONTAINS_INPUT');
  if (!force && (await pathExists(outAbs))) throw new OutputError(`output ${output} already exists; choose another path or pass --force to replace it`, 'OUTPUT_EXISTS');
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes temporary siblings of `target` left by a killed run (`.<name>.tmp-<pid>-<hex>` whose process
 * no longer exists). Returns the removed paths.
 */
export async function removeStaleTemps(target: string): Promise<string[]> {
  const dir = path.dirname(path.resolve(target));
  const base = path.basename(target);
  const entries = await fsp.readdir(dir).catch(() => [] as string[]);
  const removed: string[] = [];
  for (const e of entries) {
    if (!e.startsWith(`.${base}.`)) continue;
    const m = /^\.(.*)\.(tmp|old)-(\d+)-[0-9a-f]+$/.exec(e);
    if (!m || m[1] !== base || pidAlive(Number(m[3]))) continue;
    await fsp.rm(path.join(dir, e), { recursive: true, force: true });
    removed.push(path.join(dir, e));
  }
  return removed;
}

/** Expands `input` into `output` following `plan`, streaming; see the module comment. */
export async function expandModel(opts: ExpandOptions): Promise<ExpandResult> {
  const input = path.resolve(opts.input);
  const output = path.resolve(opts.output);
  await checkOutputPath(input, output, opts.force);
  await removeStaleTemps(output);
  const ckpt = await HfCheckpoint.open(input);
  let hasher: ShardHasher | undefined;
  try {
    const tp = planTensors(ckpt, opts.plan, opts.initializer);
    const h = opts.hashBase === false ? undefined : new ShardHasher(ckpt);
    hasher = h;
    await h?.start();
    const buffers: [Buffer, Buffer] = [Buffer.allocUnsafe(COPY_CHUNK), Buffer.allocUnsafe(COPY_CHUNK)];
    const tensors: OutputTensor[] = tp.tensors.map((t) => ({
      name: t.name,
      dtype: t.info.dtype,
      shape: t.info.shape,
      source: t.zero
        ? ('zeros' as const)
        : doubleBufferedSource(ckpt, t.from, buffers, h && t.original ? (offset, chunk) => h.update(t.from, offset, chunk) : undefined),
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
          onProgress: (done, total) => opts.onProgress?.({ phase: 'write', done, total }),
        });
        const hashes = h ? await h.digests() : ckpt.shards.map(() => null);
        let verification: VerifyResult | undefined;
        let report: IdentityReport | null = null;
        if (opts.verify) {
          opts.onProgress?.({ phase: 'verify', done: 0, total: 1 });
          verification = await verifyIdentity(input, tmp, opts.verify.backend, opts.verify.tokens, opts.verify.loadOptions);
          opts.onProgress?.({ phase: 'verify', done: 1, total: 1 });
          const mustBeIdentical = tp.zeroedTensors.length > 0 || opts.plan.newLayers.length === 0;
          if (mustBeIdentical && verification.maxAbsDiff !== 0) {
            throw new IdentityError(
              `identity check failed: max |Δlogit| = ${verification.maxAbsDiff} on ${opts.verify.backend.name} (${verification.device}); the expanded model does not compute the base function, nothing was written`,
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
        return { output, manifest, ...(verification ? { verification } : {}) };
      },
      { force: opts.force },
    );
  } finally {
    await hasher?.close();
    await ckpt.close();
  }
}
