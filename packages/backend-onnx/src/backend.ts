/**
 * The `onnx` ModelBackend: exports the checkpoint to ONNX (in memory, or cached on disk) and runs it
 * with onnxruntime-node on the CPU. Inputs are validated before they reach ONNX Runtime, so malformed
 * batches give typed errors instead of native failures. KV caches stay ORT tensors between decode
 * steps: each step's `present.*` outputs are fed back as the next step's `past_key_values.*`.
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
  tuneAllocatorForInference,
  type BackendLoadOptions,
  type CausalLM,
  type DecodeSession,
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
  POSITION_IDS,
  checkExportable,
  exportLlamaOnnx,
  exportLlamaOnnxBytes,
  exportWeightBytes,
  pastKeyName,
  pastValueName,
  presentKeyName,
  presentValueName,
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
   * Directory for exported models, keyed by the checkpoint's files and the export format (default: the
   * LLAMA_PRO_ONNX_CACHE environment variable). Without either, the export happens in memory at load,
   * except for models beyond 2 GB, which go to `<tmpdir>/llama-pro-onnx`.
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

/** The tensors one graph run needs. Past tensors are [B, kvHeads, P, headDim]; `attentionMask` is [B, P+T]. */
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
   * B * kvHeads * (P+T) * headDim floats: ONNX Runtime writes the outputs there instead of allocating
   * and copying them into new JavaScript buffers.
   */
  readonly presentInto?: readonly Float32Array[];
}

export interface OnnxStepOutputs {
  /** [B, T', V] where T' = T or logitsToKeep. */
  readonly logits: ort.Tensor;
  /** key 0, value 0, key 1, ...: [B, kvHeads, P+T, headDim]. */
  readonly present: ort.Tensor[];
}

function toInt64(a: ArrayLike<number>): BigInt64Array {
  const out = new BigInt64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = BigInt(a[i]!);
  return out;
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

  /** One graph run with validated inputs (the low-level entry point; `forward` and sessions use it). */
  async runStep(inp: OnnxStepInputs): Promise<OnnxStepOutputs> {
    const c = this.config;
    const session = this.live();
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

    const feeds: Record<string, ort.Tensor> = {
      [INPUT_IDS]: new ort.Tensor('int64', toInt64(inp.ids), [B, T]),
      [ATTENTION_MASK]: new ort.Tensor('int64', toInt64(mask), [B, S]),
      [POSITION_IDS]: new ort.Tensor('int64', toInt64(pos), [B, T]),
      [LOGITS_TO_KEEP]: new ort.Tensor('int64', BigInt64Array.of(BigInt(keep)), []),
    };
    const empty = P === 0 && !inp.past ? new ort.Tensor('float32', new Float32Array(0), [B, KV, 0, hd]) : undefined;
    for (let i = 0; i < L; i++) {
      feeds[pastKeyName(i)] = inp.past ? inp.past[2 * i]! : empty!;
      feeds[pastValueName(i)] = inp.past ? inp.past[2 * i + 1]! : empty!;
    }
    // Every output is preallocated here: ONNX Runtime writes into these buffers directly (no copy into
    // fresh JavaScript arrays), and the results are typed arrays of this realm.
    const n = B * KV * S * hd;
    if (inp.presentInto && inp.presentInto.length !== 2 * L) throw new UsageError(`presentInto holds ${inp.presentInto.length} buffers; this model needs ${2 * L}`, 'PAST_MISMATCH');
    const fetches: Record<string, ort.Tensor> = { [LOGITS]: new ort.Tensor('float32', new Float32Array(B * (keep || T) * c.vocabSize), [B, keep || T, c.vocabSize]) };
    for (let i = 0; i < 2 * L; i++) {
      const buf = inp.presentInto?.[i];
      if (buf && buf.length < n) throw new UsageError(`presentInto[${i}] holds ${buf.length} floats; at least ${n} are needed`, 'PAST_MISMATCH');
      const data = !buf ? new Float32Array(n) : buf.length === n ? buf : buf.subarray(0, n);
      fetches[i % 2 ? presentValueName(i >> 1) : presentKeyName(i >> 1)] = new ort.Tensor('float32', data, [B, KV, S, hd]);
    }
    const out = await session.run(feeds, fetches);
    const present: ort.Tensor[] = [];
    for (let i = 0; i < L; i++) present.push(out[presentKeyName(i)]!, out[presentValueName(i)]!);
    return { logits: out[LOGITS]!, present };
  }

  async forward(batch: TokenBatch): Promise<Logits> {
    const { logits } = await this.runStep({ ids: batch.ids, batchSize: batch.batchSize, seqLen: batch.seqLen, attentionMask: batch.attentionMask });
    return { data: logits.data as Float32Array, batchSize: batch.batchSize, seqLen: batch.seqLen, vocabSize: this.config.vocabSize };
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

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.session.release();
  }
}

/** KV-cache decoding: the cache lives in the ORT tensors returned by the previous step. */
export class OnnxDecodeSession implements DecodeSession {
  private past: ort.Tensor[] | undefined;
  /** Two sets of cache storage, used alternately as this step's past and present (no per-step allocation). */
  private buffers: [Float32Array[], Float32Array[]] | undefined;
  private capacity = 0;
  private flip = 0;
  private mask = new Uint8Array(0);
  private readonly realCount: Int32Array;
  private len = 0;
  private closed = false;

  constructor(
    private readonly model: OnnxCausalLM,
    readonly batchSize: number,
  ) {
    this.realCount = new Int32Array(batchSize);
  }

  get length(): number {
    return this.len;
  }

  async step(batch: TokenBatch): Promise<Float32Array> {
    if (this.closed) throw new UsageError('this decode session was disposed', 'SESSION_DISPOSED');
    const B = this.batchSize;
    const T = batch.seqLen;
    if (batch.batchSize !== B) throw new UsageError(`this session decodes ${B} rows; the step has ${batch.batchSize}`);
    const V = this.model.config.vocabSize;
    const newMask = batch.attentionMask ?? new Uint8Array(B * T).fill(1);
    if (newMask.length !== B * T) throw new UsageError(`the step's attention mask has ${newMask.length} elements; expected ${B * T} (new tokens only)`);
    const P = this.len;
    const S = P + T;
    const mask = new Uint8Array(B * S);
    const pos = new Int32Array(B * T);
    const last = new Int32Array(B).fill(T - 1);
    for (let b = 0; b < B; b++) {
      mask.set(this.mask.subarray(b * P, (b + 1) * P), b * S);
      let n = this.realCount[b]!;
      for (let t = 0; t < T; t++) {
        const m = newMask[b * T + t]!;
        mask[b * S + P + t] = m;
        pos[b * T + t] = Math.min(n, this.model.config.maxPositionEmbeddings - 1);
        if (m === 1) last[b] = t;
        n += m;
      }
    }
    const keep = T - Math.min(...last);
    const presentInto = this.storageFor(S);
    const out = await this.model.runStep({ ids: batch.ids, batchSize: B, seqLen: T, attentionMask: mask, positionIds: pos, past: this.past, logitsToKeep: keep, presentInto });
    // Commit the state only after a successful run.
    this.past = out.present;
    this.flip ^= 1;
    this.mask = mask;
    for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) this.realCount[b]! += newMask[b * T + t]!;
    this.len = S;
    const data = out.logits.data as Float32Array;
    if (keep === 1) return data; // [B, 1, V]: already one row per batch entry
    const res = new Float32Array(B * V);
    for (let b = 0; b < B; b++) {
      const t = last[b]! - (T - keep);
      res.set(data.subarray((b * keep + t) * V, (b * keep + t + 1) * V), b * V);
    }
    return res;
  }

  /** The buffer set the next present goes to, grown (doubling, up to the model's positions) when needed. */
  private storageFor(S: number): Float32Array[] {
    const c = this.model.config;
    const perPos = this.batchSize * c.numKeyValueHeads * c.headDim;
    if (!this.buffers || S > this.capacity) {
      // Room for at least 128 more positions (or double), so that decoding rarely reallocates.
      const cap = Math.min(c.maxPositionEmbeddings, Math.ceil(Math.max(S + 128, 2 * this.capacity) / 64) * 64);
      const fresh = () => Array.from({ length: 2 * c.numHiddenLayers }, () => new Float32Array(perPos * cap));
      // The current past may live in the old set: keep it referenced until the next step replaces it.
      this.buffers = [fresh(), fresh()];
      this.capacity = cap;
      this.flip = 0;
    }
    return this.buffers[this.flip]!;
  }

  dispose(): void {
    this.past = undefined;
    this.buffers = undefined;
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
      ...(options.spinning === false ? { extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } } } : {}),
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
    if (tuneAllocatorForInference()) log('onnx: glibc malloc thresholds raised for step-to-step memory reuse');
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
          await exportLlamaOnnx(source, file, { force: true });
        }
        session = await this.create(file, so);
      } else {
        const t0 = Date.now();
        const bytes = await exportLlamaOnnxBytes(source);
        log(`onnx: exported in memory (${(bytes.byteLength / 1e6).toFixed(1)} MB, ${Date.now() - t0} ms)`);
        session = await this.create(bytes, so);
      }
    }
    log(`onnx: session ready (cpu, optimization ${so.graphOptimizationLevel}, ${so.intraOpNumThreads || 'default'} intra-op threads)`);
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
