/**
 * The `onnx` ModelBackend: exports the checkpoint to ONNX (in memory, or cached on disk) and runs it
 * with onnxruntime-node on the CPU. Inputs are validated before they reach ONNX Runtime, so malformed
 * batches give typed errors instead of native failures.
 *
 * KV cache: one preallocated buffer per layer and kind ([rows, kvHeads, capacity, headDim], `KvCache`),
 * bound as the graph's `past_key_values.*` inputs without copying (onnxruntime-node wraps the typed
 * arrays); the graph returns only the new tokens' keys and values, which are written into the cache at
 * each row's length. Nothing copies the cache per step; it is copied only when its capacity grows (in
 * steps of 32 positions). `DecodeSession` (all rows advance together, with padding masks) and the
 * native `SlotDecodeSession` (rows at their own lengths, joining and leaving) share this cache and run.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
// Cyclic (train/model uses OnnxBackend for session options), but only used at call time: safe under CommonJS.
import { loadOnnxTrainable, type OnnxTrainableLM } from './train/model';
import {
  UsageError,
  checkTargets,
  checkTokenBatch,
  countedTargets,
  positionIds,
  pathExists,
  hugePagesStatus,
  tuneAllocatorForInference,
  checkSlotFeed,
  type BackendLoadOptions,
  type CausalLM,
  type DecodeSession,
  type SlotDecodeSession,
  type SlotFeed,
  type LlamaConfig,
  type Logits,
  type ModelBackend,
  type TokenBatch,
  type TrainingBatch,
  type WeightSource,
} from '@llama-pro/core';
import {
  ATTENTION_MASK,
  EXPORT_FORMAT_VERSION,
  EXTERNAL_DATA_THRESHOLD_BYTES,
  INPUT_IDS,
  LOGITS,
  LOGITS_TO_KEEP,
  NEW_KEYS,
  NEW_VALUES,
  PAST_LENGTH,
  POSITION_IDS,
  checkExportable,
  exportLlamaOnnx,
  exportWeightBytes,
  pastKeyName,
  pastValueName,
} from './export';

export type GraphOptimizationLevel = 'disabled' | 'basic' | 'extended' | 'all';
export const GRAPH_OPTIMIZATION_LEVELS: readonly GraphOptimizationLevel[] = ['disabled', 'basic', 'extended', 'all'];
/** Environment variable naming the export cache directory when `cacheDir` is not given. */
export const CACHE_ENV = 'LLAMA_PRO_ONNX_CACHE';
/** Execution variants of the onnx backend. */
export const ONNX_VARIANTS = ['cpu'] as const;

export interface OnnxLoadOptions extends BackendLoadOptions {
  /** ONNX Runtime graph optimization level (default 'all'). */
  graphOptimizationLevel?: GraphOptimizationLevel;
  /** Threads between independent nodes (default 1: the graph is a chain). */
  interOpThreads?: number;
  /**
   * Directory for exported models (graph + external weight data), keyed by the checkpoint's files and the
   * export format (default: the LLAMA_PRO_ONNX_CACHE environment variable). Without either, each load
   * exports to a private temporary file that is removed once the session exists, except for models
   * beyond 2 GB, which are cached in `<tmpdir>/llama-pro-onnx`.
   */
  cacheDir?: string;
  /** Use this already exported `.onnx` file (from `llama-pro export-onnx`) instead of exporting. */
  onnxFile?: string;
  /**
   * Let idle intra-op threads spin (ONNX Runtime's default, true): lowest latency on an otherwise idle
   * machine; false yields the cores, which is faster when the machine is oversubscribed.
   */
  spinning?: boolean;
  /**
   * ONNX Runtime's CPU memory arena (default true, as in ONNX Runtime). It makes repeated full-logit
   * forwards 1.5x faster; decoding in a fresh process was 1.3x faster without it (bench:onnx, with the
   * allocator tuned; before that tuning, the arena made cold decode 3.8x slower).
   */
  memArena?: boolean;
}

/**
 * `runStep`'s inputs (the explicit-past API). Past tensors are [B, kvHeads, P, headDim]; `attentionMask`
 * is [B, P+T]. The sessions do not use this: they bind their in-place cache through `runCached`.
 */
export interface OnnxStepInputs {
  readonly ids: Int32Array;
  readonly batchSize: number;
  readonly seqLen: number;
  /** [B, P+T], 1 real / 0 padding (default: all ones). */
  readonly attentionMask?: Uint8Array;
  /** [B, T] (default: counted over real tokens of the mask). */
  readonly positionIds?: Int32Array;
  /** 2 * layers tensors in the order key 0, value 0, key 1, ... (default: empty past). */
  readonly past?: readonly ort.Tensor[];
  /** Return logits only for the last `logitsToKeep` positions (0 = all). */
  readonly logitsToKeep?: number;
  /**
   * Preallocated storage for the present tensors (same order as `past`), each holding at least
   * B * kvHeads * (P+T) * headDim floats: past + new are assembled there instead of in fresh buffers.
   */
  readonly presentInto?: readonly Float32Array[];
}

export interface OnnxStepOutputs {
  /** [B, T', V] where T' = T or logitsToKeep. */
  readonly logits: ort.Tensor;
  /** key 0, value 0, key 1, ...: [B, kvHeads, P+T, headDim]. */
  readonly present: ort.Tensor[];
}

const LITTLE_ENDIAN = os.endianness() === 'LE';

/** int32-range integers as int64 (on little-endian machines through 32-bit words: no BigInt per element). */
function toInt64(a: ArrayLike<number>): BigInt64Array {
  const out = new BigInt64Array(a.length);
  if (LITTLE_ENDIAN) {
    const w = new Int32Array(out.buffer);
    for (let i = 0; i < a.length; i++) {
      const v = a[i]!;
      w[2 * i] = v;
      w[2 * i + 1] = v < 0 ? -1 : 0;
    }
  } else for (let i = 0; i < a.length; i++) out[i] = BigInt(a[i]!);
  return out;
}

/** Cache capacity grows in steps of this many positions (each growth copies the cache once). */
const CACHE_STEP = 32;

/** One graph run over a cache of capacity C (already validated by the caller). */
interface CachedRun {
  readonly ids: Int32Array;
  readonly B: number;
  readonly T: number;
  /** [B*T] */
  readonly positions: Int32Array;
  /** [B, C+T]: cache entries, then the new tokens. */
  readonly mask: Uint8Array;
  /** [B]: valid cache entries per row (≤ C). */
  readonly pastLength: ArrayLike<number>;
  /** Per layer [B, kvHeads, C, headDim] (views into a cache, or the caller's past tensors). */
  readonly keys: readonly Float32Array[];
  readonly values: readonly Float32Array[];
  readonly C: number;
  readonly keep: number;
  /** Skip the new keys and values (a plain forward). */
  readonly logitsOnly?: boolean;
}

interface CachedRunOutput {
  /** [B, keep || T, V] */
  readonly logits: Float32Array;
  /** [L*B, kvHeads, T, headDim], layer-major (empty when logitsOnly). */
  readonly newKeys: Float32Array;
  readonly newValues: Float32Array;
}

/**
 * Per-layer key and value storage [rows, kvHeads, capacity, headDim]. Rows are contiguous, so a run over
 * rows lo..hi binds one view per layer.
 */
class KvCache {
  keys: Float32Array[] = [];
  values: Float32Array[] = [];
  capacity = 0;

  constructor(
    private readonly c: LlamaConfig,
    readonly rows: number,
    private readonly maxCapacity: number,
  ) {}

  private get headStride(): number {
    return this.capacity * this.c.headDim;
  }

  /** Makes room for `needed` positions per row (growing in CACHE_STEP steps, contents kept). */
  ensure(needed: number): void {
    if (needed <= this.capacity) return;
    const cap = Math.min(this.maxCapacity, Math.max(this.capacity + CACHE_STEP, Math.ceil(needed / CACHE_STEP) * CACHE_STEP));
    if (needed > cap) throw new UsageError(`the cache would need ${needed} positions; at most ${this.maxCapacity} are allowed`);
    const { numHiddenLayers: L, numKeyValueHeads: KV, headDim: hd } = this.c;
    const grow = (old: Float32Array | undefined): Float32Array => {
      const out = new Float32Array(this.rows * KV * cap * hd);
      if (old && this.capacity > 0) {
        const n = this.capacity * hd;
        for (let r = 0; r < this.rows * KV; r++) out.set(old.subarray(r * n, (r + 1) * n), r * cap * hd);
      }
      return out;
    };
    this.keys = Array.from({ length: L }, (_, l) => grow(this.keys[l]));
    this.values = Array.from({ length: L }, (_, l) => grow(this.values[l]));
    this.capacity = cap;
  }

  /** Views of rows [lo, lo + n) of every layer. */
  view(lo: number, n: number): { keys: Float32Array[]; values: Float32Array[] } {
    const rowLen = this.c.numKeyValueHeads * this.headStride;
    return { keys: this.keys.map((k) => k.subarray(lo * rowLen, (lo + n) * rowLen)), values: this.values.map((v) => v.subarray(lo * rowLen, (lo + n) * rowLen)) };
  }

  /**
   * Writes new positions from[b] .. from[b] + count[b] - 1 of run row b (of B rows, T new positions each)
   * into cache row `row[b]` at position `at[b]` (rows with count 0 are skipped).
   */
  write(out: CachedRunOutput, B: number, T: number, row: ArrayLike<number>, at: ArrayLike<number>, count: ArrayLike<number>, from?: ArrayLike<number>): void {
    const { numHiddenLayers: L, numKeyValueHeads: KV, headDim: hd } = this.c;
    const hs = this.headStride;
    const { newKeys, newValues } = out;
    for (let l = 0; l < L; l++) {
      const K = this.keys[l]!;
      const Vv = this.values[l]!;
      for (let b = 0; b < B; b++) {
        const n = count[b]! * hd;
        if (n === 0) continue;
        for (let h = 0; h < KV; h++) {
          const src = (((l * B + b) * KV + h) * T + (from?.[b] ?? 0)) * hd;
          const dst = (row[b]! * KV + h) * hs + at[b]! * hd;
          if (n > 1024) {
            K.set(newKeys.subarray(src, src + n), dst);
            Vv.set(newValues.subarray(src, src + n), dst);
          } else {
            // a decode step writes one position per head: a plain loop beats a subarray view and set
            for (let j = 0; j < n; j++) {
              K[dst + j] = newKeys[src + j]!;
              Vv[dst + j] = newValues[src + j]!;
            }
          }
        }
      }
    }
  }
}

export class OnnxCausalLM implements CausalLM {
  readonly device: string;
  private disposed = false;

  constructor(
    readonly config: LlamaConfig,
    private readonly session: ort.InferenceSession,
    variant: string,
  ) {
    this.device = `onnx:${variant}`;
  }

  private live(): ort.InferenceSession {
    if (this.disposed) throw new UsageError('this onnx model was disposed; load it again', 'MODEL_DISPOSED');
    return this.session;
  }

  /** @internal One graph run over a cache (inputs already validated). */
  async runCached(r: CachedRun): Promise<CachedRunOutput> {
    const c = this.config;
    const session = this.live();
    const { B, T, C } = r;
    const L = c.numHiddenLayers;
    const KV = c.numKeyValueHeads;
    const hd = c.headDim;
    const feeds: Record<string, ort.Tensor> = {
      [INPUT_IDS]: new ort.Tensor('int64', toInt64(r.ids), [B, T]),
      [ATTENTION_MASK]: new ort.Tensor('int64', toInt64(r.mask), [B, C + T]),
      [POSITION_IDS]: new ort.Tensor('int64', toInt64(r.positions), [B, T]),
      [PAST_LENGTH]: new ort.Tensor('int64', toInt64(r.pastLength), [B]),
      [LOGITS_TO_KEEP]: new ort.Tensor('int64', BigInt64Array.of(BigInt(r.keep)), []),
    };
    for (let i = 0; i < L; i++) {
      feeds[pastKeyName(i)] = new ort.Tensor('float32', r.keys[i]!, [B, KV, C, hd]);
      feeds[pastValueName(i)] = new ort.Tensor('float32', r.values[i]!, [B, KV, C, hd]);
    }
    // Outputs are preallocated: ONNX Runtime writes into these buffers directly (no copy into fresh
    // JavaScript arrays), and the results are typed arrays of this realm.
    const kept = r.keep || T;
    const logits = new Float32Array(B * kept * c.vocabSize);
    const fetches: Record<string, ort.Tensor> = { [LOGITS]: new ort.Tensor('float32', logits, [B, kept, c.vocabSize]) };
    const n = r.logitsOnly ? 0 : L * B * KV * T * hd;
    const newKeys = new Float32Array(n);
    const newValues = new Float32Array(n);
    if (!r.logitsOnly) {
      fetches[NEW_KEYS] = new ort.Tensor('float32', newKeys, [L * B, KV, T, hd]);
      fetches[NEW_VALUES] = new ort.Tensor('float32', newValues, [L * B, KV, T, hd]);
    }
    await session.run(feeds, fetches);
    return { logits, newKeys, newValues };
  }

  /** One graph run with validated inputs (the low-level entry point with explicit past tensors). */
  async runStep(inp: OnnxStepInputs): Promise<OnnxStepOutputs> {
    const c = this.config;
    this.live();
    const { batchSize: B, seqLen: T } = inp;
    checkTokenBatch(c, { ids: inp.ids, batchSize: B, seqLen: T });
    const L = c.numHiddenLayers;
    const KV = c.numKeyValueHeads;
    const hd = c.headDim;
    let P = 0;
    if (inp.past) {
      if (inp.past.length !== 2 * L) throw new UsageError(`past holds ${inp.past.length} tensors; this model needs ${2 * L} (key and value for ${L} layers)`, 'PAST_MISMATCH');
      P = inp.past[0]!.dims[2] ?? -1;
      inp.past.forEach((t, i) => {
        const d = t.dims;
        if (t.type !== 'float32' || d.length !== 4 || d[0] !== B || d[1] !== KV || d[2] !== P || d[3] !== hd) {
          throw new UsageError(
            `past tensor ${i} (${i % 2 ? 'value' : 'key'} of layer ${i >> 1}) is ${t.type} [${d.join(', ')}]; expected float32 [${B}, ${KV}, ${P}, ${hd}] (batch, kv heads, past length, head dim) like the others`,
            'PAST_MISMATCH',
          );
        }
      });
    }
    const S = P + T;
    checkTokenBatch(c, { ids: inp.ids, batchSize: B, seqLen: T, attentionMask: inp.attentionMask }, { pastLength: P, maskCoversPast: true });
    const mask = inp.attentionMask ?? new Uint8Array(B * S).fill(1);
    let pos = inp.positionIds;
    if (pos) {
      if (pos.length !== B * T) throw new UsageError(`position ids have ${pos.length} elements; expected ${B * T}`);
      for (const p of pos) if (p < 0 || p >= c.maxPositionEmbeddings) throw new UsageError(`position id ${p} is outside [0, ${c.maxPositionEmbeddings})`);
    } else {
      // core's position rule over the whole row (cache and new tokens).
      const all = positionIds(mask, B, S);
      pos = new Int32Array(B * T);
      for (let b = 0; b < B; b++) pos.set(all.subarray(b * S + P, (b + 1) * S), b * T);
    }
    const keep = inp.logitsToKeep ?? 0;
    if (!Number.isInteger(keep) || keep < 0 || keep > T) throw new UsageError(`logitsToKeep must be an integer in [0, ${T}], got ${keep}`);
    const n = B * KV * S * hd;
    if (inp.presentInto && inp.presentInto.length !== 2 * L) throw new UsageError(`presentInto holds ${inp.presentInto.length} buffers; this model needs ${2 * L}`, 'PAST_MISMATCH');
    inp.presentInto?.forEach((buf, i) => {
      if (buf.length < n) throw new UsageError(`presentInto[${i}] holds ${buf.length} floats; at least ${n} are needed`, 'PAST_MISMATCH');
    });
    const past = (i: number) => (inp.past ? (inp.past[i]!.data as Float32Array) : new Float32Array(0));
    const out = await this.runCached({
      ids: inp.ids,
      B,
      T,
      positions: pos,
      mask,
      pastLength: new Int32Array(B).fill(P),
      keys: Array.from({ length: L }, (_, l) => past(2 * l)),
      values: Array.from({ length: L }, (_, l) => past(2 * l + 1)),
      C: P,
      keep,
    });
    // present = past + new, per layer (this API hands out whole tensors; the sessions do not copy).
    const present: ort.Tensor[] = [];
    for (let i = 0; i < 2 * L; i++) {
      const buf = inp.presentInto?.[i];
      const data = !buf ? new Float32Array(n) : buf.length === n ? buf : buf.subarray(0, n);
      const old = past(i);
      const fresh = i % 2 ? out.newValues : out.newKeys;
      const l = i >> 1;
      for (let r = 0; r < B * KV; r++) {
        data.set(old.subarray(r * P * hd, (r + 1) * P * hd), r * S * hd);
        const src = (l * B * KV + r) * T * hd;
        data.set(fresh.subarray(src, src + T * hd), r * S * hd + P * hd);
      }
      present.push(new ort.Tensor('float32', data, [B, KV, S, hd]));
    }
    return { logits: new ort.Tensor('float32', out.logits, [B, keep || T, c.vocabSize]), present };
  }

  async forward(batch: TokenBatch): Promise<Logits> {
    const c = this.config;
    const { batchSize: B, seqLen: T } = batch;
    checkTokenBatch(c, batch);
    const mask = batch.attentionMask ?? new Uint8Array(B * T).fill(1);
    const L = c.numHiddenLayers;
    const empty = new Float32Array(0);
    const { logits } = await this.runCached({
      ids: batch.ids,
      B,
      T,
      positions: positionIds(mask, B, T),
      mask,
      pastLength: new Int32Array(B),
      keys: new Array<Float32Array>(L).fill(empty),
      values: new Array<Float32Array>(L).fill(empty),
      C: 0,
      keep: 0,
      logitsOnly: true,
    });
    return { data: logits, batchSize: B, seqLen: T, vocabSize: c.vocabSize };
  }

  /** Log-probabilities of the counted targets, 0 elsewhere (core's contracts/targets). */
  async tokenLogprobs(batch: TrainingBatch): Promise<Float32Array> {
    const { batchSize: B, seqLen: T } = batch;
    const V = this.config.vocabSize;
    checkTokenBatch(this.config, batch);
    checkTargets(this.config, batch);
    const { counted } = countedTargets(batch.targets, batch.attentionMask);
    const { data } = await this.forward(batch);
    const out = new Float32Array(B * T);
    for (let i = 0; i < B * T; i++) {
      if (!counted[i]) continue;
      const t = batch.targets[i]!;
      const row = data.subarray(i * V, (i + 1) * V);
      let max = -Infinity;
      for (let v = 0; v < V; v++) if (row[v]! > max) max = row[v]!;
      let sum = 0;
      for (let v = 0; v < V; v++) sum += Math.exp(row[v]! - max);
      out[i] = row[t]! - max - Math.log(sum);
    }
    return out;
  }

  startSession(batchSize: number): DecodeSession {
    this.live();
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new UsageError(`session batch size must be a positive integer, got ${batchSize}`);
    return new OnnxDecodeSession(this, batchSize);
  }

  /** Native slot decoding (core's contracts/slots): one batched run per group of entries, one shared cache. */
  startSlotSession(slots: number, options: { readonly maxLength: number }): SlotDecodeSession {
    this.live();
    if (!Number.isInteger(slots) || slots < 1) throw new UsageError(`a slot session needs at least one slot (got ${slots})`);
    const m = options.maxLength;
    if (!Number.isInteger(m) || m < 1 || m > this.config.maxPositionEmbeddings) throw new UsageError(`maxLength ${m} must be an integer in [1, ${this.config.maxPositionEmbeddings}] (the model's positions)`);
    return new OnnxSlotSession(this, slots, m);
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.session.release();
  }
}

/** Row b's logits at new position `last[b]` out of a run's [B, keep, V] logits (T new positions). */
function pickRows(logits: Float32Array, V: number, T: number, keep: number, last: ArrayLike<number>, B: number): Float32Array {
  if (keep === 1) return logits; // [B, 1, V]: already one row per batch entry
  const res = new Float32Array(B * V);
  for (let b = 0; b < B; b++) {
    const t = last[b]! - (T - keep);
    res.set(logits.subarray((b * keep + t) * V, (b * keep + t + 1) * V), b * V);
  }
  return res;
}

/** KV-cache decoding of B rows that advance together (padding masks allowed), over a `KvCache`. */
export class OnnxDecodeSession implements DecodeSession {
  private readonly cache: KvCache;
  /** [B, cache capacity]: 1 real / 0 padding for every cached position. */
  private mask = new Uint8Array(0);
  private readonly realCount: Int32Array;
  private len = 0;
  private closed = false;

  constructor(
    private readonly model: OnnxCausalLM,
    readonly batchSize: number,
  ) {
    this.realCount = new Int32Array(batchSize);
    this.cache = new KvCache(model.config, batchSize, model.config.maxPositionEmbeddings);
  }

  get length(): number {
    return this.len;
  }

  async step(batch: TokenBatch): Promise<Float32Array> {
    if (this.closed) throw new UsageError('this decode session was disposed', 'SESSION_DISPOSED');
    const c = this.model.config;
    const B = this.batchSize;
    const T = batch.seqLen;
    if (batch.batchSize !== B) throw new UsageError(`this session decodes ${B} rows; the step has ${batch.batchSize}`);
    const V = c.vocabSize;
    const newMask = batch.attentionMask ?? new Uint8Array(B * T).fill(1);
    if (newMask.length !== B * T) throw new UsageError(`the step's attention mask has ${newMask.length} elements; expected ${B * T} (new tokens only)`);
    const P = this.len;
    checkTokenBatch(c, { ids: batch.ids, batchSize: B, seqLen: T, attentionMask: newMask }, { pastLength: P });
    // The first step reads no cache; later ones bind the whole cache (entries beyond P are masked out).
    this.cache.ensure(P + T);
    const C = P === 0 ? 0 : this.cache.capacity;
    const cap = this.cache.capacity;
    if (this.mask.length !== B * cap) {
      const grown = new Uint8Array(B * cap);
      const oldCap = this.mask.length / B;
      for (let b = 0; b < B; b++) grown.set(this.mask.subarray(b * oldCap, b * oldCap + P), b * cap);
      this.mask = grown;
    }
    const mask = new Uint8Array(B * (C + T));
    const pos = new Int32Array(B * T);
    const last = new Int32Array(B).fill(T - 1);
    for (let b = 0; b < B; b++) {
      if (C > 0) mask.set(this.mask.subarray(b * cap, b * cap + P), b * (C + T));
      let n = this.realCount[b]!;
      for (let t = 0; t < T; t++) {
        const m = newMask[b * T + t]!;
        mask[b * (C + T) + C + t] = m;
        pos[b * T + t] = Math.min(n, c.maxPositionEmbeddings - 1);
        if (m === 1) last[b] = t;
        n += m;
      }
    }
    const keep = T - Math.min(...last);
    const view = C === 0 ? { keys: new Array<Float32Array>(c.numHiddenLayers).fill(new Float32Array(0)), values: new Array<Float32Array>(c.numHiddenLayers).fill(new Float32Array(0)) } : this.cache.view(0, B);
    const out = await this.model.runCached({ ids: batch.ids, B, T, positions: pos, mask, pastLength: new Int32Array(B).fill(P), ...view, C, keep });
    // Commit the state only after a successful run.
    const rows = Int32Array.from({ length: B }, (_, b) => b);
    this.cache.write(out, B, T, rows, new Int32Array(B).fill(P), new Int32Array(B).fill(T));
    for (let b = 0; b < B; b++) {
      this.mask.set(newMask.subarray(b * T, (b + 1) * T), b * cap + P);
      for (let t = 0; t < T; t++) this.realCount[b]! += newMask[b * T + t]!;
    }
    this.len = P + T;
    return pickRows(out.logits, V, T, keep, last, B);
  }

  dispose(): void {
    this.cache.keys = [];
    this.cache.values = [];
    this.closed = true;
  }
}

/** A group of feed entries that runs as one batch. */
interface SlotRun {
  /** Entry indices, one per run row that is fed (rows without an entry get a placeholder token). */
  readonly entries: readonly (number | undefined)[];
  /** First cache row (cache-bound runs bind rows lo .. lo + rows - 1); -1 for runs on an empty cache. */
  readonly lo: number;
  readonly T: number;
}

/**
 * Native slot decoding: every slot is a row of one `KvCache`. A feed runs its single-token entries as one
 * batch over the contiguous rows they span, prompts of free slots as left-padded batches on an empty
 * cache (grouped by length, so that padding stays under a quarter; every row ends at the last position,
 * so only that position's logits are computed), and multi-token extensions of occupied slots one by one
 * on their own row; the new keys and values are written into each slot's row afterwards.
 */
export class OnnxSlotSession implements SlotDecodeSession {
  private readonly cache: KvCache;
  private readonly lengths: Int32Array;
  private closed = false;

  constructor(
    private readonly model: OnnxCausalLM,
    readonly slots: number,
    readonly maxLength: number,
  ) {
    this.lengths = new Int32Array(slots);
    this.cache = new KvCache(model.config, slots, maxLength);
  }

  length(slot: number): number {
    return this.lengths[slot] ?? 0;
  }

  private plan(entries: readonly SlotFeed[]): SlotRun[] {
    const runs: SlotRun[] = [];
    const single = entries.map((e, i) => ({ e, i })).filter(({ e }) => e.ids.length === 1);
    if (single.length > 0) {
      const lo = Math.min(...single.map(({ e }) => e.slot));
      const hi = Math.max(...single.map(({ e }) => e.slot));
      const rows = new Array<number | undefined>(hi - lo + 1).fill(undefined);
      for (const { e, i } of single) rows[e.slot - lo] = i;
      runs.push({ entries: rows, lo, T: 1 });
    }
    const prompts = entries
      .map((e, i) => ({ e, i }))
      .filter(({ e }) => e.ids.length > 1 && this.lengths[e.slot] === 0)
      .sort((a, b) => b.e.ids.length - a.e.ids.length);
    let group: number[] = [];
    let real = 0;
    const flush = () => {
      if (group.length > 0) runs.push({ entries: group, lo: -1, T: entries[group[0]!]!.ids.length });
      group = [];
      real = 0;
    };
    for (const { e, i } of prompts) {
      // sorted longest first: the group's length is its first entry's
      const T = group.length > 0 ? entries[group[0]!]!.ids.length : e.ids.length;
      if (group.length > 0 && (group.length + 1) * T > 1.25 * (real + e.ids.length)) flush();
      group.push(i);
      real += e.ids.length;
    }
    flush();
    entries.forEach((e, i) => {
      if (e.ids.length > 1 && this.lengths[e.slot] !== 0) runs.push({ entries: [i], lo: e.slot, T: e.ids.length });
    });
    return runs;
  }

  async feed(entries: readonly SlotFeed[]): Promise<Float32Array> {
    if (this.closed) throw new UsageError('this slot session was disposed', 'SESSION_DISPOSED');
    const c = this.model.config;
    const V = c.vocabSize;
    const L = c.numHiddenLayers;
    checkSlotFeed(this, entries, V);
    const out = new Float32Array(entries.length * V);
    const writes: { run: SlotRun; res: CachedRunOutput }[] = [];
    try {
      this.cache.ensure(Math.max(...entries.map((e) => this.lengths[e.slot]! + e.ids.length)));
      const empty = new Float32Array(0);
      for (const run of this.plan(entries)) {
        const B = run.entries.length;
        const { T } = run;
        const onCache = run.lo >= 0;
        const C = onCache ? this.cache.capacity : 0;
        const ids = new Int32Array(B * T);
        const mask = new Uint8Array(B * (C + T));
        const pos = new Int32Array(B * T);
        const pastLength = new Int32Array(B);
        const last = new Int32Array(B);
        for (let b = 0; b < B; b++) {
          const ei = run.entries[b];
          const e = ei === undefined ? undefined : entries[ei]!;
          const p = onCache ? this.lengths[run.lo + b]! : 0;
          pastLength[b] = p;
          // entries past a row's length are never attended (past_length), so the cache part is all ones
          mask.fill(1, b * (C + T), b * (C + T) + C);
          // Shorter prompts of a group are left-padded (masked keys; positions count real tokens only).
          const n = e ? e.ids.length : 1;
          const pad = T - n;
          ids.set(e ? e.ids : [0], b * T + pad);
          for (let t = 0; t < T; t++) {
            mask[b * (C + T) + C + t] = t < pad ? 0 : 1;
            pos[b * T + t] = Math.min(p + Math.max(0, t - pad), c.maxPositionEmbeddings - 1);
          }
          last[b] = T - 1;
        }
        const keep = T - Math.min(...last);
        const view = onCache ? this.cache.view(run.lo, B) : { keys: new Array<Float32Array>(L).fill(empty), values: new Array<Float32Array>(L).fill(empty) };
        const res = await this.model.runCached({ ids, B, T, positions: pos, mask, pastLength, ...view, C, keep });
        const rows = pickRows(res.logits, V, T, keep, last, B);
        run.entries.forEach((ei, b) => {
          if (ei !== undefined) out.set(rows.subarray(b * V, (b + 1) * V), ei * V);
        });
        writes.push({ run, res });
      }
    } catch (err) {
      // Nothing was written yet; the contract drops the fed slots rather than guessing their state.
      for (const { slot } of entries) this.release(slot);
      throw err;
    }
    for (const { run, res } of writes) {
      const B = run.entries.length;
      const row = new Int32Array(B);
      const at = new Int32Array(B);
      const count = new Int32Array(B);
      const from = new Int32Array(B);
      run.entries.forEach((ei, b) => {
        if (ei === undefined) return;
        const e = entries[ei]!;
        row[b] = e.slot;
        at[b] = this.lengths[e.slot]!;
        count[b] = e.ids.length;
        from[b] = run.T - e.ids.length;
      });
      this.cache.write(res, B, run.T, row, at, count, from);
    }
    for (const e of entries) this.lengths[e.slot]! += e.ids.length;
    return out;
  }

  release(slot: number): void {
    if (Number.isInteger(slot) && slot >= 0 && slot < this.slots) this.lengths[slot] = 0;
  }

  dispose(): void {
    this.cache.keys = [];
    this.cache.values = [];
    this.lengths.fill(0);
    this.closed = true;
  }
}

/** A cache key for a checkpoint directory: its files' names, sizes and mtimes plus the export format. */
async function cacheKey(dir: string): Promise<string> {
  const h = createHash('sha256');
  h.update(`llama-pro-onnx:${EXPORT_FORMAT_VERSION}\n${path.resolve(dir)}\n`);
  const names = (await fsp.readdir(dir)).filter((n) => n.endsWith('.safetensors') || n.endsWith('.json')).sort();
  for (const n of names) {
    const st = await fsp.stat(path.join(dir, n));
    h.update(`${n}:${st.size}:${st.mtimeMs}\n`);
  }
  return h.digest('hex').slice(0, 24);
}

export class OnnxBackend implements ModelBackend {
  readonly name = 'onnx';
  readonly description = 'LLaMA exported to ONNX (opset 17) and run by onnxruntime-node on the CPU: fast prefill and KV-cache decode, and training through generated backward graphs';
  readonly supportsTraining = true;

  /** Training through generated backward graphs (src/train). */
  loadTrainable(source: WeightSource, options: OnnxLoadOptions = {}): Promise<OnnxTrainableLM> {
    return loadOnnxTrainable(source, options);
  }

  sessionOptions(options: OnnxLoadOptions = {}): ort.InferenceSession.SessionOptions {
    const level = options.graphOptimizationLevel ?? 'all';
    if (!GRAPH_OPTIMIZATION_LEVELS.includes(level)) throw new UsageError(`unknown graph optimization level "${String(level)}"; use one of ${GRAPH_OPTIMIZATION_LEVELS.join(', ')}`);
    const threads = options.threads;
    if (threads !== undefined && (!Number.isInteger(threads) || threads < 1)) throw new UsageError(`threads must be a positive integer, got ${threads}`);
    const inter = options.interOpThreads ?? 1;
    if (!Number.isInteger(inter) || inter < 1) throw new UsageError(`interOpThreads must be a positive integer, got ${inter}`);
    return {
      executionProviders: ['cpu'],
      graphOptimizationLevel: level,
      intraOpNumThreads: threads ?? 0,
      interOpNumThreads: inter,
      executionMode: 'sequential',
      enableCpuMemArena: options.memArena ?? true,
      logSeverityLevel: 3,
      extra: {
        session: {
          // Flush denormals to zero (FTZ/DAZ on the session's threads). Causal masking adds float32's lowest value
          // to the masked scores; MLAS's Softmax clamps them to the bottom of its exp range, so about half of a
          // prefill's attention probabilities came out denormal and every pass over them took the CPU's slow path:
          // prefill 1x256 on the S shape ran 7-13 % faster with the flag (same window, alternating), the training
          // graph's attention Softmax ~4x. The flushed values are below 1.2e-38, where transformers computes exactly
          // 0 (exp of a -3.4e38 score), and move no gradient beyond float32 rounding. ORT also sets the flag once per
          // process on the thread that creates the first session (the JS thread here), so JS arithmetic on values
          // below the normal range flushes too; a training run and its resume do the same, so resuming stays
          // bit-identical.
          set_denormal_as_zero: '1',
          ...(options.spinning === false ? { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } : {}),
        },
      },
    };
  }

  async load(source: WeightSource, options: OnnxLoadOptions = {}): Promise<OnnxCausalLM> {
    const variant = options.variant ?? 'cpu';
    if (!(ONNX_VARIANTS as readonly string[]).includes(variant)) throw new UsageError(`unknown onnx backend variant "${variant}"; known: ${ONNX_VARIANTS.join(', ')}`, 'USAGE');
    const config = source.config;
    checkExportable(config);
    const so = this.sessionOptions(options);
    const log = options.log ?? (() => {});
    // Steps allocate and free the same large tensors over and over: keep that memory for reuse.
    if (tuneAllocatorForInference()) log(`onnx: glibc malloc thresholds raised for step-to-step memory reuse${hugePagesStatus().startsWith('on') ? '; malloc on transparent huge pages' : ''}`);
    let session: ort.InferenceSession;
    if (options.onnxFile) {
      session = await this.create(options.onnxFile, so);
    } else {
      const dir = (source as { dir?: unknown }).dir;
      const big = exportWeightBytes(config) > EXTERNAL_DATA_THRESHOLD_BYTES;
      const cacheRoot = options.cacheDir ?? (process.env[CACHE_ENV] || undefined) ?? (big ? path.join(os.tmpdir(), 'llama-pro-onnx') : undefined);
      if (cacheRoot && typeof dir === 'string') {
        const file = path.join(cacheRoot, await cacheKey(dir), 'model.onnx');
        if (await pathExists(file)) log(`onnx: using cached export ${file}`);
        else {
          log(`onnx: exporting ${dir} to ${file}`);
          await exportLlamaOnnx(source, file, { force: true, externalData: true });
        }
        session = await this.create(file, so);
      } else {
        // Weights go to an external data file that ONNX Runtime reads at session creation, so they are
        // held once, by ORT: embedded model bytes were held three times while loading (the bytes, ORT's
        // parsed copy, the initializers) and 1.7x the weights after it. The private file is removed once
        // the session exists.
        const t0 = Date.now();
        const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'llama-pro-onnx-'));
        try {
          const file = path.join(tmp, 'model.onnx');
          const res = await exportLlamaOnnx(source, file, { force: true, externalData: true });
          log(`onnx: exported (${(res.dataBytes / 1e6).toFixed(1)} MB of weights as external data, ${Date.now() - t0} ms)`);
          session = await this.create(file, so);
        } finally {
          await fsp.rm(tmp, { recursive: true, force: true });
        }
      }
    }
    if (!session.inputNames.includes(PAST_LENGTH)) {
      await session.release();
      throw new UsageError(
        `the onnx model${options.onnxFile ? ` ${options.onnxFile}` : ''} was exported by an older llama-pro (it has no "${PAST_LENGTH}" input); export it again with this version (export format ${EXPORT_FORMAT_VERSION})`,
        'ONNX_LOAD',
      );
    }
    log(`onnx: session ready (cpu, optimization ${so.graphOptimizationLevel}, ${so.intraOpNumThreads || 'default'} intra-op threads)`);
    log('onnx: in-place KV cache decode (graph returns only new keys/values); fused RotaryEmbedding and SkipSimplifiedLayerNormalization on every architecture');
    return new OnnxCausalLM(config, session, variant);
  }

  private async create(model: string | Uint8Array, so: ort.InferenceSession.SessionOptions): Promise<ort.InferenceSession> {
    try {
      return typeof model === 'string' ? await ort.InferenceSession.create(model, so) : await ort.InferenceSession.create(model, so);
    } catch (e) {
      throw new UsageError(`onnxruntime could not load the model${typeof model === 'string' ? ` ${model}` : ''}: ${(e as Error).message}`, 'ONNX_LOAD');
    }
  }
}

export const onnxBackend = new OnnxBackend();
