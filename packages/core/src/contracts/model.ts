/**
 * The backend contract: what every tensor backend (tfjs, onnx, third-party) implements, so that
 * expansion verification, training, evaluation and serving work on any of them.
 */
import type { LlamaConfig } from '../config/llama-config';
import type { WeightSource } from '../io/hf-dir';
import type { SlotDecodeSession } from './slots';

/** A batch of token ids, row-major [batchSize, seqLen]. */
export interface TokenBatch {
  readonly ids: Int32Array;
  readonly batchSize: number;
  readonly seqLen: number;
  /**
   * 1 for real tokens, 0 for padding, [batchSize, seqLen]. Padding may be on either side; positions
   * are counted over real tokens only (position of a token = number of real tokens before it).
   */
  readonly attentionMask?: Uint8Array;
}

/** Next-token targets for a batch: targets[b, t] is the token after position t, or `ignoreIndex`. */
export interface TrainingBatch extends TokenBatch {
  readonly targets: Int32Array;
}

export { IGNORE_INDEX } from './targets';

/** Logits [batchSize, seqLen, vocabSize], row-major. */
export interface Logits {
  readonly data: Float32Array;
  readonly batchSize: number;
  readonly seqLen: number;
  readonly vocabSize: number;
}

/** Incremental decoding state (KV cache) for a fixed batch size. */
export interface DecodeSession {
  /** Tokens fed so far per row, padding included. */
  readonly length: number;
  /**
   * Appends `batch` (seqLen new tokens per row, with a mask covering only the new tokens) and returns the
   * logits at the last new position of each row: [batchSize, vocabSize].
   */
  step(batch: TokenBatch): Promise<Float32Array>;
  dispose(): void;
}

export interface LossResult {
  /** Mean next-token cross-entropy over non-ignored targets. */
  readonly loss: number;
  /** Number of non-ignored targets. */
  readonly tokens: number;
}

export interface GradientResult extends LossResult {
  /** Gradients of the mean loss for exactly the requested parameter names. */
  readonly gradients: Map<string, Float32Array>;
}

/** A loaded causal language model (inference). */
export interface CausalLM {
  readonly config: LlamaConfig;
  /** Backend and variant actually used, e.g. "tfjs:wasm" or "onnx:cpu". */
  readonly device: string;
  forward(batch: TokenBatch): Promise<Logits>;
  /** Per-position log-probability of `targets`, 0 where a target does not count (contracts/targets), [batchSize, seqLen]. */
  tokenLogprobs(batch: TrainingBatch): Promise<Float32Array>;
  startSession(batchSize: number): DecodeSession;
  /**
   * Optional native slot session for continuous batching (contracts/slots). Callers use core's
   * `startSlotSession(model, slots)`, which validates the options and falls back to per-slot sessions.
   */
  startSlotSession?(slots: number, options: { readonly maxLength: number }): SlotDecodeSession;
  dispose(): Promise<void>;
}

/** A model whose parameters can be read, replaced and differentiated. */
export interface TrainableLM extends CausalLM {
  parameterNames(): string[];
  parameterShape(name: string): readonly number[];
  getParameter(name: string): Promise<Float32Array>;
  setParameter(name: string, values: Float32Array): Promise<void>;
  loss(batch: TrainingBatch): Promise<LossResult>;
  /** Loss and gradients for `trainable` only; every other parameter is a constant. */
  lossAndGradients(batch: TrainingBatch, trainable: readonly string[]): Promise<GradientResult>;
  /**
   * Optional zero-copy path for trainers: the model's own array of a parameter. A trainer that changes
   * it in place must then call `parametersChanged` with its name (instead of `setParameter`).
   */
  residentParameter?(name: string): Promise<Float32Array>;
  /** Tells the model that resident arrays of `names` were changed in place. */
  parametersChanged?(names: readonly string[]): void;
}

/**
 * The default backend of every command (inference and training alike, study included): onnx passes the
 * golden, KV-cache, generation and training-gradient parity checks and is the faster engine. Pass
 * `--backend tfjs` (or set `backend:` in an experiment or study file) for the tfjs reference engine.
 */
export const DEFAULT_BACKEND = 'onnx';

export interface BackendLoadOptions {
  /** Backend-specific variant, e.g. "wasm" / "cpu" / "tensorflow" for tfjs. */
  variant?: string;
  threads?: number;
  /** Receives one-line log messages (e.g. which engine was chosen). */
  log?: (message: string) => void;
}

export interface ModelBackend {
  readonly name: string;
  readonly description: string;
  /** Whether `loadTrainable` is implemented. */
  readonly supportsTraining: boolean;
  load(source: WeightSource, options?: BackendLoadOptions): Promise<CausalLM>;
  loadTrainable?(source: WeightSource, options?: BackendLoadOptions): Promise<TrainableLM>;
}
