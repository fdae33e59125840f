/**
 * Backend-independent generation on top of `DecodeSession`: batched prompts (left-padded), greedy /
 * temperature / top-k / top-p sampling with a seeded RNG, EOS, max new tokens, and stop sequences that
 * are searched only in the generated text and cut from the output.
 */
import { Rng } from '../rng';
import { UsageError } from '../errors';
import type { CausalLM } from './model';

export interface SamplingOptions {
  /** 0 = greedy. */
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
}

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens: number;
  /** Token ids that end generation (excluded from the output). */
  eosTokenIds?: readonly number[];
  /** Token-id sequences that end generation (excluded from the output). */
  stopTokenSequences?: readonly (readonly number[])[];
  /** Text stop sequences; needs `decode`. Searched only in generated text, cut from the output. */
  stopStrings?: readonly string[];
  decode?: (ids: readonly number[]) => string;
  /**
   * Changes a row's next-token logits in place before sampling (logit bias, repetition penalties, grammar masks);
   * `generated` holds the row's tokens so far. A row whose logits are all -Infinity ends with reason `stop`.
   */
  adjustLogits?: (row: number, logits: Float32Array, generated: readonly number[]) => void;
  /** Called with each row's newly sampled token. */
  onToken?: (row: number, token: number) => void;
  signal?: AbortSignal;
}

export type FinishReason = 'length' | 'eos' | 'stop' | 'aborted';

export interface GenerationResult {
  /** Generated ids (prompt excluded, stop sequence / EOS excluded). */
  tokens: number[];
  /** The decoded text (only when `decode` is given), cut at the first stop string. */
  text?: string;
  finishReason: FinishReason;
  /** The stop string or token sequence that matched, if any. */
  stop?: string;
}

/** Samples one token from logits. Greedy picks the first maximal index. */
export function sampleToken(logits: Float32Array, opts: SamplingOptions, rng: Rng): number {
  const t = opts.temperature ?? 0;
  if (!(t > 0)) {
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
    return best;
  }
  const V = logits.length;
  let idx = Array.from({ length: V }, (_, i) => i);
  const k = opts.topK && opts.topK > 0 ? Math.min(opts.topK, V) : V;
  idx.sort((a, b) => logits[b]! - logits[a]! || a - b);
  idx = idx.slice(0, k);
  const max = logits[idx[0]!]!;
  let probs = idx.map((i) => Math.exp((logits[i]! - max) / t));
  let sum = probs.reduce((a, b) => a + b, 0);
  probs = probs.map((p) => p / sum);
  const topP = opts.topP ?? 1;
  if (topP < 1) {
    let cum = 0;
    let cut = probs.length;
    for (let i = 0; i < probs.length; i++) {
      cum += probs[i]!;
      if (cum >= topP) {
        cut = i + 1;
        break;
      }
    }
    probs = probs.slice(0, cut);
    idx = idx.slice(0, cut);
    sum = probs.reduce((a, b) => a + b, 0);
    probs = probs.map((p) => p / sum);
  }
  const r = rng.next();
  let cum = 0;
  for (let i = 0; i < probs.length; i++) {
    cum += probs[i]!;
    if (r < cum) return idx[i]!;
  }
  return idx[idx.length - 1]!;
}

function endsWith(a: readonly number[], b: readonly number[]): boolean {
  if (b.length === 0 || b.length > a.length) return false;
  for (let i = 0; i < b.length; i++) if (a[a.length - b.length + i] !== b[i]) return false;
  return true;
}

/** Generates continuations for each prompt (token ids). Rows finish independently. */
export async function generate(model: CausalLM, prompts: readonly (readonly number[])[], opts: GenerateOptions): Promise<GenerationResult[]> {
  if (prompts.length === 0) return [];
  if (!(opts.maxNewTokens >= 0)) throw new UsageError('maxNewTokens must be >= 0');
  if (opts.stopStrings?.length && !opts.decode) throw new UsageError('stop strings need a tokenizer (decode)');
  const V = model.config.vocabSize;
  for (const p of prompts) {
    if (p.length === 0) throw new UsageError('empty prompt: give at least one token (e.g. BOS)');
    for (const id of p) if (!Number.isInteger(id) || id < 0 || id >= V) throw new UsageError(`token id ${id} is outside the vocabulary [0, ${V})`);
  }
  const B = prompts.length;
  const maxLen = Math.max(...prompts.map((p) => p.length));
  if (maxLen + opts.maxNewTokens > model.config.maxPositionEmbeddings) {
    throw new UsageError(`prompt (${maxLen}) + max new tokens (${opts.maxNewTokens}) exceeds the model's ${model.config.maxPositionEmbeddings} positions`);
  }
  const rng = new Rng(opts.seed ?? 0);
  const results: GenerationResult[] = prompts.map(() => ({ tokens: [], finishReason: 'length' }));
  const done = new Array<boolean>(B).fill(false);
  const eos = new Set(opts.eosTokenIds ?? []);
  if (opts.maxNewTokens === 0) return results;
  const session = model.startSession(B);
  try {
    const ids = new Int32Array(B * maxLen);
    const mask = new Uint8Array(B * maxLen);
    prompts.forEach((p, b) => {
      const pad = maxLen - p.length;
      for (let t = 0; t < p.length; t++) {
        ids[b * maxLen + pad + t] = p[t]!;
        mask[b * maxLen + pad + t] = 1;
      }
    });
    let logits = await session.step({ ids, batchSize: B, seqLen: maxLen, attentionMask: mask });
    for (let step = 0; step < opts.maxNewTokens; step++) {
      if (opts.signal?.aborted) {
        for (let b = 0; b < B; b++) if (!done[b]) [results[b]!.finishReason, done[b]] = ['aborted', true];
        break;
      }
      const next = new Int32Array(B);
      const nextMask = new Uint8Array(B);
      for (let b = 0; b < B; b++) {
        if (done[b]) continue;
        // A copy when adjusted: backends may hand out views of buffers they reuse.
        const row = opts.adjustLogits ? logits.slice(b * V, (b + 1) * V) : logits.subarray(b * V, (b + 1) * V);
        if (opts.adjustLogits) {
          opts.adjustLogits(b, row, results[b]!.tokens);
          if (!row.some((x) => x > -Infinity)) {
            [results[b]!.finishReason, done[b]] = ['stop', true];
            continue;
          }
        }
        const tok = sampleToken(row, opts, rng);
        next[b] = tok;
        nextMask[b] = 1;
        const r = results[b]!;
        if (eos.has(tok)) {
          r.finishReason = 'eos';
          done[b] = true;
          continue;
        }
        r.tokens.push(tok);
        opts.onToken?.(b, tok);
        const seq = opts.stopTokenSequences?.find((s) => endsWith(r.tokens, s));
        if (seq) {
          r.tokens.splice(r.tokens.length - seq.length);
          r.finishReason = 'stop';
          done[b] = true;
          continue;
        }
        if (opts.stopStrings?.length) {
          const text = opts.decode!(r.tokens);
          const hit = firstStop(text, opts.stopStrings);
          if (hit) {
            r.text = text.slice(0, hit.index);
            r.stop = hit.stop;
            r.finishReason = 'stop';
            done[b] = true;
          }
        }
      }
      if (done.every(Boolean) || step === opts.maxNewTokens - 1) break;
      logits = await session.step({ ids: next, batchSize: B, seqLen: 1, attentionMask: nextMask });
    }
  } finally {
    session.dispose();
  }
  if (opts.decode) for (const r of results) if (r.text === undefined) r.text = opts.decode(r.tokens);
  return results;
}

/** The earliest occurrence of any stop string. */
export function firstStop(text: string, stops: readonly string[]): { index: number; stop: string } | null {
  let best: { index: number; stop: string } | null = null;
  for (const s of stops) {
    if (!s) continue;
    const i = text.indexOf(s);
    if (i >= 0 && (!best || i < best.index)) best = { index: i, stop: s };
  }
  return best;
}
