/**
 * A LLaMA-family decoder (LLaMA, Mistral, Qwen2 dense) on TensorFlow.js with Hugging Face semantics:
 * RMSNorm, rotate-half rotary embeddings with every rope scaling core's model/rope implements,
 * grouped-query attention with per-layer sliding windows, SwiGLU MLP, optional q/k/v/o/MLP biases, tied
 * or untied head; batched inputs with an attention mask. Positions, masks, validation and the padded
 * targets contract come from core (model/positions, model/validate, contracts/targets), shared with
 * the onnx backend.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  CheckpointError,
  EMBED,
  LM_HEAD,
  UsageError,
  additiveMask,
  checkRepresentable,
  checkTargets,
  checkTensorShape,
  checkTokenBatch,
  cosSin,
  countedTargets,
  decoder,
  expectedShape,
  expectedTensorNames,
  numel,
  positionIds,
  projections,
  type DecoderOps,
  type DecodeSession,
  type GradientResult,
  type LlamaConfig,
  type Logits,
  type LossResult,
  type TokenBatch,
  type TrainableLM,
  type TrainingBatch,
  type WeightSource,
} from '@llama-pro/core';
import { embedTrainable, linearFrozen, linearTrainable, nllRows, rmsNorm, rope, rotateHalfMatrix, weightedCrossEntropy } from './ops';
import { activateVariant, type TfjsVariant } from './variant';

/** Parameter bytes above which the wasm engine (4 GiB address space) cannot also hold activations. */
const WASM_PARAM_BYTES = 3 * 2 ** 30;

interface Param {
  /** Hugging Face layout, e.g. [out, in] for linear weights. */
  w: tf.Tensor;
  /** Transposed copy [in, out] of a matrix used as a linear layer's weight (forward product). */
  wT?: tf.Tensor;
}

interface LayerCache {
  k: tf.Tensor4D; // [B, kvH, S, hd] (after rotary embedding)
  v: tf.Tensor4D; // [B, kvH, S, hd]
}

export class TfjsLlama implements TrainableLM {
  readonly device: string;
  private readonly params = new Map<string, Param>();
  private disposed = false;

  private constructor(
    readonly config: LlamaConfig,
    readonly variant: TfjsVariant,
  ) {
    this.device = `tfjs:${variant}`;
  }

  /** Checks the config is one this backend runs, before any weights are read. */
  static checkConfig(c: LlamaConfig): void {
    checkRepresentable(c, 'tfjs');
  }

  /** Bytes the parameters take on the engine (matrices are kept in two layouts). */
  static parameterBytes(c: LlamaConfig): number {
    let bytes = 0;
    for (const name of expectedTensorNames(c)) {
      const shape = expectedShape(c, name)!;
      const copies = shape.length === 2 && (name !== EMBED || c.tieWordEmbeddings) ? 2 : 1;
      bytes += numel(shape) * 4 * copies;
    }
    return bytes;
  }

  static async load(source: WeightSource, variant: TfjsVariant): Promise<TfjsLlama> {
    const c = source.config;
    TfjsLlama.checkConfig(c);
    const bytes = TfjsLlama.parameterBytes(c);
    if (variant === 'wasm' && bytes > WASM_PARAM_BYTES) {
      throw new UsageError(
        `the model needs ${(bytes / 2 ** 30).toFixed(1)} GiB for its float32 parameters on tfjs, more than the wasm engine's 4 GiB memory allows; use --backend tfjs:tensorflow (tfjs-node), tfjs:cpu or the onnx backend`,
        'MODEL_TOO_LARGE',
      );
    }
    await activateVariant(variant);
    const m = new TfjsLlama(c, variant);
    const have = new Set(source.tensorNames());
    try {
      for (const name of expectedTensorNames(c)) {
        if (!have.has(name)) throw new CheckpointError(`checkpoint has no tensor "${name}", which the config requires; the checkpoint is incomplete or does not match config.json`, 'CHECKPOINT_MISSING_TENSOR');
        checkTensorShape(c, name, source.info(name).shape);
        const shape = expectedShape(c, name)!;
        m.setTensor(name, await source.readFloat32(name), shape);
      }
    } catch (e) {
      m.disposeParams();
      throw e;
    }
    return m;
  }

  private headName(): string {
    return this.config.tieWordEmbeddings ? EMBED : LM_HEAD;
  }

  private setTensor(name: string, values: Float32Array, shape: number[]): void {
    const old = this.params.get(name);
    // The cpu (and native) engines keep the given array as the tensor's storage: copy, so callers may
    // reuse theirs (wasm copies into its heap anyway).
    const w = tf.tensor(this.variant === 'wasm' ? values : values.slice(), shape, 'float32');
    const isMatrix = shape.length === 2 && (name !== EMBED || this.config.tieWordEmbeddings);
    const p: Param = { w, wT: isMatrix ? tf.transpose(w) : undefined };
    this.params.set(name, p);
    if (old) {
      old.w.dispose();
      old.wT?.dispose();
    }
  }

  private param(name: string): Param {
    const p = this.params.get(name);
    if (!p) throw new UsageError(`unknown parameter "${name}"; see parameterNames()`);
    return p;
  }

  private async ready(): Promise<void> {
    if (this.disposed) throw new UsageError('this model has been disposed');
    await activateVariant(this.variant);
  }

  // ---------------------------------------------------------------- parameters

  parameterNames(): string[] {
    return expectedTensorNames(this.config);
  }

  parameterShape(name: string): readonly number[] {
    return this.param(name).w.shape;
  }

  async getParameter(name: string): Promise<Float32Array> {
    await this.ready();
    return new Float32Array(await this.param(name).w.data());
  }

  async setParameter(name: string, values: Float32Array): Promise<void> {
    await this.ready();
    const shape = this.param(name).w.shape;
    if (values.length !== numel(shape)) throw new UsageError(`setParameter("${name}"): got ${values.length} values, the parameter has shape [${shape.join(', ')}] (${numel(shape)})`);
    this.setTensor(name, values, [...shape]);
  }

  // ---------------------------------------------------------------- forward

  /** cos/sin [B, 1, T, hd] for the given positions [B*T] (core's model/rope). */
  private ropeTables(positions: Int32Array, B: number, T: number): { cos: tf.Tensor; sin: tf.Tensor } {
    const hd = this.config.headDim;
    let maxPos = 0;
    for (const p of positions) maxPos = Math.max(maxPos, p);
    const { cos, sin } = cosSin(this.config, positions, maxPos + 1);
    return { cos: tf.tensor4d(cos, [B, 1, T, hd]), sin: tf.tensor4d(sin, [B, 1, T, hd]) };
  }

  /**
   * The decoder. `past` holds the mask of tokens already in the cache ([B][S0]) and `pastReal` their
   * real-token counts; returns logits [B*T, V] (or [B, V] at the last position when `lastOnly`).
   * Must run inside tf.tidy (or a gradient function).
   */
  private decoder(
    ids: Int32Array,
    B: number,
    T: number,
    mask: Uint8Array | undefined,
    o: { trainable?: ReadonlySet<string>; cache?: LayerCache[]; pastMask?: Uint8Array[]; pastReal?: number[]; lastOnly?: boolean; newCache?: LayerCache[] },
  ): tf.Tensor2D {
    const c = this.config;
    const H = c.numAttentionHeads;
    const KV = c.numKeyValueHeads;
    const hd = c.headDim;
    const rep = H / KV;
    const N = B * T;
    const S0 = o.pastMask?.[0]?.length ?? 0;
    const S = S0 + T;
    const trainable = o.trainable ?? new Set<string>();

    // Positions (real tokens before each one) and the additive attention bias [B, 1, T, S] per window
    // kind (core's model/positions: causal over sequence index, padding keys masked, sliding windows).
    const positions = positionIds(mask, B, T, o.pastReal);
    const fullMask = new Uint8Array(B * S);
    for (let b = 0; b < B; b++) {
      if (S0 > 0) fullMask.set(o.pastMask![b]!, b * S);
      for (let t = 0; t < T; t++) fullMask[b * S + S0 + t] = mask ? mask[b * T + t]! : 1;
    }
    const biasByWindow = new Map<number | null, tf.Tensor4D>();
    for (const win of c.attentionWindows) if (!biasByWindow.has(win)) biasByWindow.set(win, tf.tensor4d(additiveMask(fullMask, B, T, S, win), [B, 1, T, S]));
    const { cos, sin } = this.ropeTables(positions, B, T);
    const idsT = tf.tensor1d(ids, 'int32');
    const rot = rotateHalfMatrix(hd);

    const grad = o.trainable !== undefined; // under a gradient tape: linear layers need their custom gradients
    const lin = (name: string, x: tf.Tensor): tf.Tensor => {
      const p = this.param(name);
      if (!grad) return tf.matMul(x as tf.Tensor2D, p.wT! as tf.Tensor2D);
      return trainable.has(name) ? linearTrainable(x, p.w, p.wT!) : linearFrozen(x, p.wT!, p.w);
    };
    const heads = (t: tf.Tensor, n: number): tf.Tensor4D => tf.transpose(tf.reshape(t, [B, T, n, hd]), [0, 2, 1, 3]);
    const scale = 1 / Math.sqrt(hd);

    // The shared decoder (core's model/decoder) over eager tfjs tensors: activations are [N, D] rows,
    // heads [B, heads, T, hd].
    const ops: DecoderOps<tf.Tensor> = {
      embed: () => {
        const emb = this.param(EMBED).w;
        return trainable.has(EMBED) ? embedTrainable(emb, idsT) : tf.gather(emb, idsT);
      },
      rmsNorm: (x, weight) => rmsNorm(x, this.param(weight).w, c.rmsNormEps),
      project: (x, layer, group) =>
        projections(c, layer, group).map((p) => {
          const y = lin(p.weight, x);
          return p.bias ? tf.add(y, this.param(p.bias).w) : y;
        }),
      rope: (x, kind) => rope(heads(x, kind === 'q' ? H : KV), cos, sin, rot),
      attention: (q, k0, v0, layer) => {
        let k = k0 as tf.Tensor4D;
        let v = heads(v0, KV);
        if (o.cache) {
          k = tf.concat([o.cache[layer]!.k, k], 2);
          v = tf.concat([o.cache[layer]!.v, v], 2);
        }
        o.newCache?.push({ k, v });
        // Grouped-query attention without repeating k/v: the rep query heads of a kv head share its batch entry.
        // (Batched products take the engine's general path either way, where a transposed operand costs nothing.)
        const qs = tf.reshape(tf.mul(q, scale), [B, KV, rep * T, hd]);
        const scores = tf.add(tf.reshape(tf.matMul(qs, k, false, true), [B, H, T, S]), biasByWindow.get(c.attentionWindows[layer]!)!);
        const probs = tf.reshape(tf.softmax(scores), [B, KV, rep * T, S]);
        return tf.reshape(tf.transpose(tf.reshape(tf.matMul(probs, v), [B, H, T, hd]), [0, 2, 1, 3]), [N, H * hd]);
      },
      swiglu: (g, u) => tf.mul(tf.mul(g, tf.sigmoid(g)), u),
      add: (a, b) => tf.add(a, b),
      head: (x) => {
        const rows = o.lastOnly ? tf.gather(x, tf.tensor1d(Int32Array.from({ length: B }, (_, b) => b * T + T - 1), 'int32')) : x;
        return lin(this.headName(), rows);
      },
    };
    return decoder(c, ops) as tf.Tensor2D;
  }

  async forward(batch: TokenBatch): Promise<Logits> {
    await this.ready();
    checkTokenBatch(this.config, batch);
    const logits = tf.tidy(() => this.decoder(batch.ids, batch.batchSize, batch.seqLen, batch.attentionMask, {}));
    try {
      const data = (await logits.data()) as Float32Array;
      return { data, batchSize: batch.batchSize, seqLen: batch.seqLen, vocabSize: this.config.vocabSize };
    } finally {
      logits.dispose();
    }
  }

  /** Flat gather indices, clamped targets and which targets count (core's contracts/targets). */
  private targetsInfo(batch: TrainingBatch): { flat: Int32Array; clamped: Int32Array; valid: Uint8Array; count: number } {
    checkTargets(this.config, batch);
    const V = this.config.vocabSize;
    const { counted, count } = countedTargets(batch.targets, batch.attentionMask);
    const flat = new Int32Array(counted.length);
    const clamped = new Int32Array(counted.length);
    for (let i = 0; i < counted.length; i++) {
      if (!counted[i]) continue;
      clamped[i] = batch.targets[i]!;
      flat[i] = i * V + clamped[i]!;
    }
    return { flat, clamped, valid: counted, count };
  }

  async tokenLogprobs(batch: TrainingBatch): Promise<Float32Array> {
    await this.ready();
    checkTokenBatch(this.config, batch);
    const info = this.targetsInfo(batch);
    const out = tf.tidy(() => {
      const z = this.decoder(batch.ids, batch.batchSize, batch.seqLen, batch.attentionMask, {});
      return tf.neg(nllRows(z, tf.tensor1d(info.flat, 'int32')).nll);
    });
    try {
      const lp = new Float32Array((await out.data()) as Float32Array);
      for (let i = 0; i < lp.length; i++) if (!info.valid[i]) lp[i] = 0;
      return lp;
    } finally {
      out.dispose();
    }
  }

  async loss(batch: TrainingBatch): Promise<LossResult> {
    const lp = await this.tokenLogprobs(batch);
    const info = this.targetsInfo(batch);
    if (info.count === 0) throw new UsageError('the batch has no targets to score (all are the ignore index or padding)');
    let s = 0;
    for (let i = 0; i < lp.length; i++) s -= lp[i]!;
    return { loss: s / info.count, tokens: info.count };
  }

  async lossAndGradients(batch: TrainingBatch, trainable: readonly string[]): Promise<GradientResult> {
    await this.ready();
    checkTokenBatch(this.config, batch);
    const names = [...new Set(trainable)];
    for (const n of names) this.param(n);
    const info = this.targetsInfo(batch);
    if (info.count === 0) throw new UsageError('the batch has no targets to train on (all are the ignore index or padding)');
    const weight = new Float32Array(info.valid.length);
    for (let i = 0; i < weight.length; i++) weight[i] = info.valid[i] ? 1 / info.count : 0;
    const set = new Set(names);
    const xs = names.map((n) => this.param(n).w);
    const out = tf.tidy(() => {
      const flat = tf.tensor1d(info.flat, 'int32');
      const tg = tf.tensor1d(info.clamped, 'int32');
      const wt = tf.tensor1d(weight, 'float32');
      const f = (): tf.Scalar => weightedCrossEntropy(this.decoder(batch.ids, batch.batchSize, batch.seqLen, batch.attentionMask, { trainable: set }), tg, flat, wt);
      if (names.length === 0) return [f()];
      const { value, grads } = tf.valueAndGrads(f)(xs);
      return [value, ...grads];
    });
    try {
      const loss = ((await out[0]!.data()) as Float32Array)[0]!;
      const gradients = new Map<string, Float32Array>();
      for (let i = 0; i < names.length; i++) gradients.set(names[i]!, new Float32Array((await out[i + 1]!.data()) as Float32Array));
      return { loss, tokens: info.count, gradients };
    } finally {
      for (const t of out) t.dispose();
    }
  }

  // ---------------------------------------------------------------- decoding

  startSession(batchSize: number): DecodeSession {
    if (this.disposed) throw new UsageError('this model has been disposed');
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new UsageError(`session batch size must be a positive integer, got ${batchSize}`);
    return new TfjsDecodeSession(this, batchSize, (ids, B, T, mask, cache, pastMask, pastReal) => {
      const newCache: LayerCache[] = [];
      const logits = tf.tidy(() => {
        const z = this.decoder(ids, B, T, mask, { cache, pastMask, pastReal, lastOnly: true, newCache });
        return [z, ...newCache.flatMap((e) => [e.k, e.v])];
      });
      const fresh: LayerCache[] = [];
      for (let l = 0; l < this.config.numHiddenLayers; l++) fresh.push({ k: logits[1 + 2 * l] as tf.Tensor4D, v: logits[2 + 2 * l] as tf.Tensor4D });
      return { logits: logits[0] as tf.Tensor2D, cache: fresh };
    });
  }

  /** @internal */
  async activate(): Promise<void> {
    await this.ready();
  }

  /** @internal */
  checkInput(batch: TokenBatch, pastLength: number): void {
    checkTokenBatch(this.config, batch, { pastLength });
  }

  private disposeParams(): void {
    for (const p of this.params.values()) {
      p.w.dispose();
      p.wT?.dispose();
    }
    this.params.clear();
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.disposeParams();
  }
}

type StepFn = (
  ids: Int32Array,
  B: number,
  T: number,
  mask: Uint8Array | undefined,
  cache: LayerCache[] | undefined,
  pastMask: Uint8Array[] | undefined,
  pastReal: number[] | undefined,
) => { logits: tf.Tensor2D; cache: LayerCache[] };

/** KV-cache decoding: keys and values per layer, plus each row's mask history. */
class TfjsDecodeSession implements DecodeSession {
  private cache: LayerCache[] | undefined;
  private pastMask: Uint8Array[];
  private pastReal: number[];
  private closed = false;

  constructor(
    private readonly model: TfjsLlama,
    private readonly batchSize: number,
    private readonly run: StepFn,
  ) {
    this.pastMask = Array.from({ length: batchSize }, () => new Uint8Array(0));
    this.pastReal = new Array<number>(batchSize).fill(0);
  }

  get length(): number {
    return this.pastMask[0]!.length;
  }

  async step(batch: TokenBatch): Promise<Float32Array> {
    if (this.closed) throw new UsageError('this decode session has been disposed');
    if (batch.batchSize !== this.batchSize) throw new UsageError(`decode step has batch size ${batch.batchSize}, but the session was started for ${this.batchSize}`);
    this.model.checkInput(batch, this.length);
    await this.model.activate();
    const B = this.batchSize;
    const T = batch.seqLen;
    const { logits, cache } = this.run(batch.ids, B, T, batch.attentionMask, this.cache, this.length > 0 ? this.pastMask : undefined, this.pastReal);
    for (const e of this.cache ?? []) {
      e.k.dispose();
      e.v.dispose();
    }
    this.cache = cache;
    for (let b = 0; b < B; b++) {
      const grown = new Uint8Array(this.pastMask[b]!.length + T);
      grown.set(this.pastMask[b]!);
      for (let t = 0; t < T; t++) {
        const real = batch.attentionMask ? batch.attentionMask[b * T + t]! : 1;
        grown[this.pastMask[b]!.length + t] = real ? 1 : 0;
        if (real) this.pastReal[b] = this.pastReal[b]! + 1;
      }
      this.pastMask[b] = grown;
    }
    try {
      return new Float32Array((await logits.data()) as Float32Array);
    } finally {
      logits.dispose();
    }
  }

  dispose(): void {
    if (this.closed) return;
    this.closed = true;
    for (const e of this.cache ?? []) {
      e.k.dispose();
      e.v.dispose();
    }
    this.cache = undefined;
  }
}
