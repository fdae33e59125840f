/**
 * A `TrainableLM` on ONNX Runtime: `lossAndGradients` runs a generated training graph (train-graph.ts)
 * whose trainable tensors are graph inputs, so changing them needs no rebuild (`loss` runs a loss-only
 * graph that takes every parameter as an input, so it is never rebuilt either); parameter values live in
 * resident Float32Arrays wrapped once by ORT tensors (in-place updates are seen by the next run without
 * copies). Frozen tensors are initializers: changing one with `setParameter` rebuilds the graphs that
 * froze it. Inference (`forward`, `tokenLogprobs`, decode sessions) is delegated to the onnx backend's
 * exported model, re-exported lazily from the current parameter values after changes.
 */
import * as os from 'node:os';
import * as ort from 'onnxruntime-node';
import {
  IGNORE_INDEX,
  UsageError,
  expectedShape,
  expectedTensorNames,
  tuneAllocatorForInference,
  type CausalLM,
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
import { OnnxBackend, type OnnxLoadOptions } from '../backend';
import { checkExportable } from '../export';
import { encodeModel } from '../graph';
import { TRAIN_IDS, TRAIN_LOSS, TRAIN_TARGETS, buildTrainingGraph, checkTrainable, gradName } from './train-graph';

interface TrainSession {
  readonly session: ort.InferenceSession;
  readonly trainable: readonly string[];
  /** Whether the graph holds `name` as a frozen initializer (so changing it needs a rebuild). */
  readonly frozenSet: (name: string) => boolean;
  /** Persistent ORT tensors over the resident parameter arrays. */
  readonly feeds: Record<string, ort.Tensor>;
}

/** Validates a training batch for the onnx training graph; returns the number of scored targets. */
export function checkTrainingBatch(batch: TrainingBatch, V: number): number {
  const { batchSize: B, seqLen: T } = batch;
  if (!Number.isInteger(B) || B < 1) throw new UsageError(`batch size must be a positive integer, got ${B}`);
  if (!Number.isInteger(T) || T < 1) throw new UsageError(`sequence length must be a positive integer, got ${T}`);
  if (batch.ids.length !== B * T) throw new UsageError(`ids has ${batch.ids.length} elements but batchSize*seqLen = ${B * T}`);
  if (batch.targets.length !== B * T) throw new UsageError(`targets has ${batch.targets.length} elements but batchSize*seqLen = ${B * T}`);
  if (batch.attentionMask && batch.attentionMask.some((m) => m !== 1)) {
    throw new UsageError('the onnx training graph does not take padded batches; pack sequences to full length (or train with the tfjs backend)', 'ONNX_TRAIN_PADDING');
  }
  let count = 0;
  for (let i = 0; i < B * T; i++) {
    const id = batch.ids[i]!;
    if (id < 0 || id >= V) throw new UsageError(`token id ${id} at row ${Math.floor(i / T)}, position ${i % T} is outside the vocabulary [0, ${V})`, 'TOKEN_OUT_OF_VOCAB');
    const t = batch.targets[i]!;
    if (t === IGNORE_INDEX) continue;
    if (t < 0 || t >= V) throw new UsageError(`target ${t} at row ${Math.floor(i / T)}, position ${i % T} is outside the vocabulary [0, ${V}) and is not the ignore index ${IGNORE_INDEX}`, 'TOKEN_OUT_OF_VOCAB');
    count++;
  }
  return count;
}

function int64(a: Int32Array): BigInt64Array {
  const out = new BigInt64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = BigInt(a[i]!);
  return out;
}

export class OnnxTrainableLM implements TrainableLM {
  readonly device = 'onnx:cpu';
  /** Resident parameter values: every tensor that was trained, set, or fed to a training graph. */
  private readonly values = new Map<string, Float32Array>();
  private readonly sessions = new Map<string, TrainSession>();
  private inference: Promise<CausalLM> | null = null;
  private disposed = false;
  private readonly names: string[];
  /** The current parameters as a weight source (resident values over the original source). */
  readonly current: WeightSource;

  constructor(
    private readonly source: WeightSource,
    private readonly options: OnnxLoadOptions = {},
  ) {
    this.names = expectedTensorNames(source.config);
    const values = this.values;
    this.current = {
      config: source.config,
      tensorNames: () => source.tensorNames(),
      info: (n) => source.info(n),
      readFloat32: async (n) => values.get(n) ?? source.readFloat32(n),
    };
  }

  get config(): LlamaConfig {
    return this.source.config;
  }

  private live(): void {
    if (this.disposed) throw new UsageError('this onnx model was disposed; load it again', 'MODEL_DISPOSED');
  }

  parameterNames(): string[] {
    return [...this.names];
  }

  parameterShape(name: string): readonly number[] {
    const s = this.names.includes(name) ? expectedShape(this.config, name) : undefined;
    if (!s) throw new UsageError(`"${name}" is not a parameter of this model`, 'UNKNOWN_PARAMETER');
    return s;
  }

  /** The resident array of a parameter (loaded on first use). Mutating it in place changes the model for training graphs. */
  async resident(name: string): Promise<Float32Array> {
    this.parameterShape(name);
    let v = this.values.get(name);
    if (!v) {
      v = new Float32Array(await this.source.readFloat32(name));
      this.values.set(name, v);
    }
    return v;
  }

  /** `TrainableLM.residentParameter`: the array the training graphs read (updated in place by the trainer's AdamW). */
  async residentParameter(name: string): Promise<Float32Array> {
    this.live();
    return this.resident(name);
  }

  async getParameter(name: string): Promise<Float32Array> {
    this.live();
    return new Float32Array(await this.resident(name));
  }

  async setParameter(name: string, values: Float32Array): Promise<void> {
    this.live();
    const shape = this.parameterShape(name);
    const n = shape.reduce((a, b) => a * b, 1);
    if (values.length !== n) throw new UsageError(`parameter ${name} has ${n} elements (shape [${shape.join(', ')}]) but ${values.length} were given`);
    (await this.resident(name)).set(values);
    this.parametersChanged([name]);
  }

  /**
   * Tells the model that resident arrays of `names` were changed in place (e.g. by an optimizer): graphs
   * that hold them as frozen initializers and the inference model are rebuilt on next use.
   */
  parametersChanged(names: readonly string[]): void {
    for (const [key, s] of this.sessions) {
      if (names.some((n) => s.frozenSet(n))) {
        this.sessions.delete(key);
        void s.session.release();
      }
    }
    const inf = this.inference;
    this.inference = null;
    if (inf) void inf.then((m) => m.dispose(), () => undefined);
  }

  /**
   * The training graph of `trainable` at `seqLen`, built on first use. The loss-only graph (no trainable
   * tensor) takes every parameter as an input over its resident array, so parameter updates never
   * rebuild it.
   */
  private async trainSession(trainable: readonly string[], seqLen: number): Promise<TrainSession> {
    const names = checkTrainable(this.config, trainable);
    const key = `${seqLen}|${names.join(',')}`;
    const have = this.sessions.get(key);
    if (have) return have;
    const graph = await buildTrainingGraph(this.current, { seqLen, trainable: names, inputs: names.length === 0 ? this.names : [] });
    // Training steps are long (hundreds of ms): idle threads yield instead of spinning unless asked to,
    // which is much faster on a shared machine (measured 2.4x on 2 busy cores) and costs nothing alone.
    // The thread count is explicit (the CPUs this process may use, unless asked): left at its default, ORT
    // pins each pool thread to one core, and a step then waits whenever another process holds that core
    // (measured 1.08x faster unpinned on the 2 shared cores, same process, alternating).
    // Denormals flush to zero, as in every onnx session (OnnxBackend.sessionOptions): the attention mask made about half of
    // every score-sized softmax output denormal; the training graph's attention Softmax ran ~4x faster with the flag.
    const so = new OnnxBackend().sessionOptions({ ...this.options, threads: this.options.threads ?? os.availableParallelism(), spinning: this.options.spinning ?? false });
    // No memory pattern: with it, ORT records the first run's allocations and on the second run allocates (and
    // first-touches) one block for all of them, so the second step was as slow as the first, and the arena
    // chunks of run 1 stayed held beside that block. bench:train-onnx's graph (2048 tokens, same process,
    // alternating): session.run per step 3059, 3250, then ~575 ms with it; 2550, 584, then ~580 ms without;
    // RSS 2.27 GB -> 1.40 GB. The steady state is the same within the run-to-run spread.
    so.enableMemPattern = false;
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(encodeModel(graph.model), so);
    } catch (e) {
      throw new UsageError(`onnxruntime could not load the training graph: ${(e as Error).message}`, 'ONNX_LOAD');
    }
    const feeds: Record<string, ort.Tensor> = {};
    for (const n of graph.inputs) feeds[n] = new ort.Tensor('float32', await this.resident(n), [...this.parameterShape(n)]);
    const set = new Set(graph.inputs);
    const s: TrainSession = { session, trainable: names, frozenSet: (n) => !set.has(n), feeds };
    this.sessions.set(key, s);
    return s;
  }

  /** Runs the training graph; gradients are the ORT output arrays (no copies). */
  async lossAndGradients(batch: TrainingBatch, trainable: readonly string[]): Promise<GradientResult> {
    this.live();
    const tokens = checkTrainingBatch(batch, this.config.vocabSize);
    if (tokens === 0) throw new UsageError('the batch has no targets to train on (all are the ignore index)');
    const s = await this.trainSession(trainable, batch.seqLen);
    const shape = [batch.batchSize, batch.seqLen];
    const out = await s.session.run({
      ...s.feeds,
      [TRAIN_IDS]: new ort.Tensor('int64', int64(batch.ids), shape),
      [TRAIN_TARGETS]: new ort.Tensor('int64', int64(batch.targets), shape),
    });
    const gradients = new Map<string, Float32Array>();
    for (const n of s.trainable) gradients.set(n, out[gradName(n)]!.data as Float32Array);
    return { loss: (out[TRAIN_LOSS]!.data as Float32Array)[0]!, tokens, gradients };
  }

  async loss(batch: TrainingBatch): Promise<LossResult> {
    const r = await this.lossAndGradients(batch, []);
    return { loss: r.loss, tokens: r.tokens };
  }

  private model(): Promise<CausalLM> {
    this.live();
    if (!this.inference) this.inference = new OnnxBackend().load(this.current, this.options);
    return this.inference;
  }

  async forward(batch: TokenBatch): Promise<Logits> {
    return (await this.model()).forward(batch);
  }

  async tokenLogprobs(batch: TrainingBatch): Promise<Float32Array> {
    return (await this.model()).tokenLogprobs(batch);
  }

  startSession(batchSize: number): DecodeSession {
    this.live();
    const pending = this.model();
    let inner: DecodeSession | null = null;
    let length = 0;
    const get = async (): Promise<DecodeSession> => (inner ??= (await pending).startSession(batchSize));
    return {
      get length() {
        return inner?.length ?? length;
      },
      async step(b: TokenBatch): Promise<Float32Array> {
        const s = await get();
        const r = await s.step(b);
        length = s.length;
        return r;
      },
      dispose(): void {
        inner?.dispose();
      },
    };
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    for (const s of this.sessions.values()) await s.session.release();
    this.sessions.clear();
    if (this.inference) await (await this.inference).dispose();
    this.inference = null;
  }
}

/** Loads `source` as a trainable model on ONNX Runtime (CPU). */
export async function loadOnnxTrainable(source: WeightSource, options: OnnxLoadOptions = {}): Promise<OnnxTrainableLM> {
  const variant = options.variant ?? 'cpu';
  if (variant !== 'cpu') throw new UsageError(`unknown onnx backend variant "${variant}"; known: cpu`, 'USAGE');
  new OnnxBackend().sessionOptions(options); // validates the options
  checkExportable(source.config);
  tuneAllocatorForInference();
  return new OnnxTrainableLM(source, options);
}
