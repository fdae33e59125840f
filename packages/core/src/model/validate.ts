/**
 * One validation of configs and inputs for every backend: what a model can run (`checkRepresentable`),
 * token batches (shape, vocabulary range, mask values, maximum positions), targets and tensor shapes.
 * Each failure is one typed line naming the problem (and, for configs, the config.json key and value).
 */
import type { LlamaConfig } from '../config/llama-config';
import { CheckpointError, ConfigError, UsageError } from '../errors';
import type { TokenBatch, TrainingBatch } from '../contracts/model';
import { IGNORE_INDEX } from '../contracts/targets';
import { expectedShape } from '../config/tensor-names';

/**
 * Refuses what no backend computes yet, naming the key and value: mixture-of-experts MLPs, chunked
 * attention, partial rotary embeddings (transformers' LLaMA-family classes cannot run them either),
 * non-SiLU activations. `backend` names the refusing backend in the message.
 */
export function checkRepresentable(c: LlamaConfig, backend: string): void {
  const refuse = (what: string, code = 'CONFIG_UNSUPPORTED'): never => {
    throw new ConfigError(`${c.architectureClass}: ${what}, which the ${backend} backend does not implement`, code);
  };
  if (c.numExperts > 0) refuse(`config.json "num_local_experts" is ${c.numExperts} (a mixture-of-experts model; expansion still works on it)`, 'CONFIG_UNSUPPORTED_MOE');
  if (c.attentionChunkSize !== null) refuse(`config.json "attention_chunk_size" is ${c.attentionChunkSize} (chunked attention)`, 'CONFIG_UNSUPPORTED_ATTENTION');
  if (c.partialRotaryFactor !== 1) refuse(`config.json "partial_rotary_factor" is ${c.partialRotaryFactor} (partial rotary embeddings)`, 'CONFIG_UNSUPPORTED_ROPE');
  if (c.hiddenAct !== 'silu') refuse(`config.json "hidden_act" is "${c.hiddenAct}"`);
}

/**
 * Checks a batch of `seqLen` new tokens per row on top of `pastLength` cached ones: positive sizes,
 * ids and mask of the right length, ids inside the vocabulary, mask values 0/1 (`maskLength` entries
 * per row: seqLen, or pastLength + seqLen when the mask covers the cache too), and at most
 * max_position_embeddings tokens per row in all.
 */
export function checkTokenBatch(c: LlamaConfig, batch: TokenBatch, o: { pastLength?: number; maskCoversPast?: boolean } = {}): void {
  const { batchSize: B, seqLen: T, ids, attentionMask } = batch;
  if (!Number.isInteger(B) || B < 1) throw new UsageError(`batch size must be a positive integer, got ${B}`);
  if (!Number.isInteger(T) || T < 1) throw new UsageError(`sequence length must be a positive integer, got ${T}`);
  if (ids.length !== B * T) throw new UsageError(`ids has ${ids.length} elements but batchSize*seqLen = ${B}*${T} = ${B * T}`);
  const V = c.vocabSize;
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (!(id >= 0 && id < V)) {
      throw new UsageError(`token id ${id} at row ${Math.floor(i / T)}, position ${i % T} is outside the vocabulary [0, ${V}); check the tokenizer matches the model`, 'TOKEN_OUT_OF_VOCAB');
    }
  }
  const P = o.pastLength ?? 0;
  const S = P + T;
  if (attentionMask) {
    const perRow = o.maskCoversPast ? S : T;
    if (attentionMask.length !== B * perRow) {
      throw new UsageError(
        `attention mask has ${attentionMask.length} elements; expected ${o.maskCoversPast ? `batch * (past + new) = ${B} * (${P} + ${T})` : `batchSize*seqLen = ${B}*${T}`} = ${B * perRow}${o.maskCoversPast ? ' (is the past length right?)' : ''}`,
        'PAST_MISMATCH',
      );
    }
    for (let i = 0; i < attentionMask.length; i++) if (attentionMask[i] !== 0 && attentionMask[i] !== 1) throw new UsageError(`attention mask values must be 0 or 1, got ${attentionMask[i]} at index ${i}`);
  }
  if (S > c.maxPositionEmbeddings) throw new UsageError(`sequence length ${S} exceeds the model's ${c.maxPositionEmbeddings} positions`, 'SEQUENCE_TOO_LONG');
}

/** Checks targets: one per position, each IGNORE_INDEX or inside the vocabulary. */
export function checkTargets(c: LlamaConfig, batch: TrainingBatch): void {
  const { batchSize: B, seqLen: T, targets } = batch;
  const V = c.vocabSize;
  if (targets.length !== B * T) throw new UsageError(`targets has ${targets.length} elements but batchSize*seqLen = ${B}*${T} = ${B * T}`);
  for (let i = 0; i < targets.length; i++) {
    const t = targets[i]!;
    if (t === IGNORE_INDEX) continue;
    if (!(Number.isInteger(t) && t >= 0 && t < V)) {
      throw new UsageError(`target ${t} at row ${Math.floor(i / T)}, position ${i % T} is outside the vocabulary [0, ${V}) and is not the ignore index ${IGNORE_INDEX}`, 'TOKEN_OUT_OF_VOCAB');
    }
  }
}

/** Checks a stored tensor's shape against the one the config implies. */
export function checkTensorShape(c: LlamaConfig, name: string, got: readonly number[]): void {
  const want = expectedShape(c, name);
  if (!want) throw new CheckpointError(`tensor "${name}" is not part of a ${c.architectureClass} with this config.json`, 'CHECKPOINT_UNEXPECTED_TENSOR');
  if (got.length !== want.length || got.some((d, i) => d !== want[i])) {
    throw new CheckpointError(`tensor "${name}" has shape [${got.join(', ')}], but the config implies [${want.join(', ')}]`, 'CHECKPOINT_SHAPE');
  }
}
