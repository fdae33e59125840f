/**
 * Identity verification: run the base and the expanded model on the same token batch through any
 * `ModelBackend` and report max |Δlogit|. With zero-output initialization the new blocks add exactly +0
 * to the residual stream, so in fp32 the difference must be exactly 0.
 */
import { HfCheckpoint, Rng, UsageError, type BackendLoadOptions, type Logits, type ModelBackend, type TokenBatch } from '@llama-pro/core';

/** A fixed, seeded batch of token ids valid for a vocabulary (2 rows of up to 16 tokens). */
export function defaultVerificationBatch(vocabSize: number, maxPositions: number, seed = 20240102): TokenBatch {
  const rng = new Rng(seed);
  const batchSize = 2;
  const seqLen = Math.max(1, Math.min(16, maxPositions));
  const ids = new Int32Array(batchSize * seqLen);
  for (let i = 0; i < ids.length; i++) ids[i] = rng.int(vocabSize);
  return { ids, batchSize, seqLen };
}

export interface VerifyResult {
  backend: string;
  device: string;
  batchSize: number;
  seqLen: number;
  tokens: number[];
  maxAbsDiff: number;
  /** Logits of the base model (for comparisons against golden files). */
  baseLogits: Logits;
}

async function runModel(dir: string, backend: ModelBackend, batch: TokenBatch, options?: BackendLoadOptions): Promise<{ logits: Logits; device: string }> {
  const ckpt = await HfCheckpoint.open(dir);
  try {
    const model = await backend.load(ckpt, options);
    try {
      return { logits: await model.forward(batch), device: model.device };
    } finally {
      await model.dispose();
    }
  } finally {
    await ckpt.close();
  }
}

/** max |a - b| over two logit tensors of the same shape (NaN anywhere counts as infinite). */
export function maxAbsDiff(a: Logits, b: Logits): number {
  if (a.batchSize !== b.batchSize || a.seqLen !== b.seqLen || a.vocabSize !== b.vocabSize || a.data.length !== b.data.length) {
    throw new UsageError(`logit shapes differ: [${a.batchSize}, ${a.seqLen}, ${a.vocabSize}] vs [${b.batchSize}, ${b.seqLen}, ${b.vocabSize}]`, 'VERIFY_SHAPE');
  }
  let m = 0;
  for (let i = 0; i < a.data.length; i++) {
    const d = Math.abs(a.data[i]! - b.data[i]!);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

/**
 * Loads `baseDir` and `expandedDir` one after the other through `backend`, runs `tokens` (default: a fixed
 * seeded batch) and returns max |Δlogit|. Expand never imports a backend: the caller passes one.
 */
export async function verifyIdentity(baseDir: string, expandedDir: string, backend: ModelBackend, tokens?: TokenBatch, options?: BackendLoadOptions): Promise<VerifyResult> {
  const ck = await HfCheckpoint.open(baseDir, { validate: false });
  const { vocabSize, maxPositionEmbeddings } = ck.config;
  await ck.close();
  const batch = tokens ?? defaultVerificationBatch(vocabSize, maxPositionEmbeddings);
  for (const id of batch.ids) if (id < 0 || id >= vocabSize) throw new UsageError(`verification token ${id} is outside the vocabulary (0..${vocabSize - 1})`, 'VERIFY_TOKENS');
  const base = await runModel(baseDir, backend, batch, options);
  const expanded = await runModel(expandedDir, backend, batch, options);
  return {
    backend: backend.name,
    device: expanded.device,
    batchSize: batch.batchSize,
    seqLen: batch.seqLen,
    tokens: [...batch.ids],
    maxAbsDiff: maxAbsDiff(base.logits, expanded.logits),
    baseLogits: base.logits,
  };
}
