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
  /**
   * One RNG seed per prompt: each row samples with its own RNG, so a prompt's tokens do not depend on the prompts
   * batched with it (row i matches a one-prompt call with `seed: seeds[i]`). Default: one RNG (`seed`) for all rows.
   */
  seeds?: readonly number[];
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

/** Scratch buffers reused by every sampleToken call (it is synchronous): no vocabulary-sized allocation per token. */
const scratch = { keys: new Uint32Array(0), keys2: new Uint32Array(0), idx: new Int32Array(0), idx2: new Int32Array(0), probs: new Float64Array(0) };

function ensureScratch(V: number): void {
  if (scratch.keys.length >= V) return;
  scratch.keys = new Uint32Array(V);
  scratch.keys2 = new Uint32Array(V);
  scratch.idx = new Int32Array(V);
  scratch.idx2 = new Int32Array(V);
  scratch.probs = new Float64Array(V);
}

/**
 * The token ids ordered by logit, largest first, equal logits by id (the order `sort((a, b) => l[b] - l[a] || a - b)`
 * gives), as a view of a scratch buffer: a stable LSD radix sort (4 passes of 8 bits) over the float32 bits mapped to
 * an order-preserving unsigned key, O(V) instead of a comparison sort over V JS numbers. -0 counts as +0.
 */
function idsByLogit(logits: Float32Array): Int32Array {
  const V = logits.length;
  ensureScratch(V);
  const bits = new Uint32Array(logits.buffer, logits.byteOffset, V);
  let keys = scratch.keys;
  let keys2 = scratch.keys2;
  let idx = scratch.idx;
  let idx2 = scratch.idx2;
  for (let i = 0; i < V; i++) {
    let b = bits[i]!;
    if (b === 0x80000000) b = 0;
    // ascending float order as unsigned: flip negatives entirely, set the sign bit of positives; then invert (descending)
    const asc = b & 0x80000000 ? ~b : b | 0x80000000;
    keys[i] = ~asc >>> 0;
    idx[i] = i;
  }
  const count = new Int32Array(256);
  for (let shift = 0; shift < 32; shift += 8) {
    count.fill(0);
    for (let i = 0; i < V; i++) count[(keys[i]! >>> shift) & 255]!++;
    let sum = 0;
    for (let d = 0; d < 256; d++) {
      const c = count[d]!;
      count[d] = sum;
      sum += c;
    }
    for (let i = 0; i < V; i++) {
      const k = keys[i]!;
      const at = count[(k >>> shift) & 255]!++;
      keys2[at] = k;
      idx2[at] = idx[i]!;
    }
    [keys, keys2] = [keys2, keys];
    [idx, idx2] = [idx2, idx];
  }
  // 4 passes: the sorted data is back in the first buffers
  return idx.subarray(0, V);
}

/**
 * Samples one token from logits. Greedy picks the first maximal index. Otherwise: the top-k ids by logit (ties by
 * id), softmax at the temperature over them, the smallest prefix whose probability reaches top-p (renormalized),
 * then one draw from the RNG walking the cumulative sum in that order.
 */
export function sampleToken(logits: Float32Array, opts: SamplingOptions, rng: Rng): number {
  const t = opts.temperature ?? 0;
  const V = logits.length;
  if (!(t > 0)) {
    let best = 0;
    let bestValue = logits[0]!;
    for (let i = 1; i < V; i++) {
      const x = logits[i]!;
      if (x > bestValue) {
        best = i;
        bestValue = x;
      }
    }
    return best;
  }
  const idx = idsByLogit(logits);
  const k = opts.topK && opts.topK > 0 ? Math.min(opts.topK, V) : V;
  const probs = scratch.probs;
  const max = logits[idx[0]!]!;
  // Sums in the order above (left to right from 0): the same floating-point values a plain array reduce gives.
  let sum = 0;
  for (let i = 0; i < k; i++) {
    const p = Math.exp((logits[idx[i]!]! - max) / t);
    probs[i] = p;
    sum += p;
  }
  for (let i = 0; i < k; i++) probs[i] = probs[i]! / sum;
  let n = k;
  const topP = opts.topP ?? 1;
  if (topP < 1) {
    let cum = 0;
    for (let i = 0; i < n; i++) {
      cum += probs[i]!;
      if (cum >= topP) {
        n = i + 1;
        break;
      }
    }
    sum = 0;
    for (let i = 0; i < n; i++) sum += probs[i]!;
    for (let i = 0; i < n; i++) probs[i] = probs[i]! / sum;
  }
  const r = rng.next();
  let cum = 0;
  for (let i = 0; i < n; i++) {
    cum += probs[i]!;
    if (r < cum) return idx[i]!;
  }
  return idx[n - 1]!;
}

function endsWith(a: readonly number[], b: readonly number[]): boolean {
  if (b.length === 0 || b.length > a.length) return false;
  for (let i = 0; i < b.length; i++) if (a[a.length - b.length + i] !== b[i]) return false;
  return true;
}

/** What one row of a generation needs to pick its tokens and decide when it ends (GenerateOptions, per row). */
export interface RowOptions extends SamplingOptions {
  maxNewTokens: number;
  eosTokenIds?: readonly number[];
  stopTokenSequences?: readonly (readonly number[])[];
  stopStrings?: readonly string[];
  decode?: (ids: readonly number[]) => string;
  adjustLogits?: (logits: Float32Array, generated: readonly number[]) => void;
  onToken?: (token: number) => void;
}

/**
 * One sequence being generated: takes the logits after its last token, samples the next token and decides whether
 * the sequence ends (EOS, stop token sequence, stop string, all-masked logits, max new tokens). `generate()` runs one
 * per prompt over a shared DecodeSession; continuous batching (agent's server) runs one per request over a
 * SlotDecodeSession. Both therefore pick the same tokens for the same logits and RNG.
 */
export class GenerationRow {
  readonly result: GenerationResult = { tokens: [], finishReason: 'length' };
  private sampled = 0;
  private finished: boolean;
  private readonly eos: ReadonlySet<number>;
  private adjusted?: Float32Array;

  constructor(
    private readonly opts: RowOptions,
    private readonly rng: Rng,
  ) {
    this.eos = new Set(opts.eosTokenIds ?? []);
    this.finished = opts.maxNewTokens <= 0;
  }

  get done(): boolean {
    return this.finished;
  }

  /** Ends the row with reason `aborted` (no-op when it already ended). */
  abort(): void {
    if (this.finished) return;
    this.result.finishReason = 'aborted';
    this.finished = true;
  }

  /**
   * Samples from `logits` (the row's next-token logits; not modified: copied when adjusted) and returns the token to
   * feed next, or null when the row has ended (the ending token, EOS or the last of a stop sequence, is not fed).
   */
  next(logits: Float32Array): number | null {
    if (this.finished) return null;
    const o = this.opts;
    const r = this.result;
    let row = logits;
    if (o.adjustLogits) {
      // A copy when adjusted (backends may hand out views of buffers they reuse), into this row's own buffer.
      if (this.adjusted?.length !== logits.length) this.adjusted = new Float32Array(logits.length);
      row = this.adjusted;
      row.set(logits);
      o.adjustLogits(row, r.tokens);
      let open = false;
      for (let i = 0; i < row.length && !open; i++) open = row[i]! > -Infinity;
      if (!open) return this.end('stop');
    }
    const tok = sampleToken(row, o, this.rng);
    this.sampled++;
    if (this.eos.has(tok)) return this.end('eos');
    r.tokens.push(tok);
    o.onToken?.(tok);
    const seq = o.stopTokenSequences?.find((s) => endsWith(r.tokens, s));
    if (seq) {
      r.tokens.splice(r.tokens.length - seq.length);
      return this.end('stop');
    }
    if (o.stopStrings?.length) {
      const text = o.decode!(r.tokens);
      const hit = firstStop(text, o.stopStrings);
      if (hit) {
        r.text = text.slice(0, hit.index);
        r.stop = hit.stop;
        return this.end('stop');
      }
    }
    if (this.sampled >= o.maxNewTokens) return this.end('length');
    return tok;
  }

  /** The result, with its text decoded when the options have `decode`. */
  finish(): GenerationResult {
    if (this.opts.decode && this.result.text === undefined) this.result.text = this.opts.decode(this.result.tokens);
    return this.result;
  }

  private end(reason: FinishReason): null {
    this.result.finishReason = reason;
    this.finished = true;
    return null;
  }
}

/** Checks prompts (non-empty, ids in the vocabulary) and options shared by every generation path. */
export function checkGeneration(model: CausalLM, prompts: readonly (readonly number[])[], opts: Pick<GenerateOptions, 'maxNewTokens' | 'stopStrings' | 'decode'>): void {
  if (!(opts.maxNewTokens >= 0)) throw new UsageError('maxNewTokens must be >= 0');
  if (opts.stopStrings?.length && !opts.decode) throw new UsageError('stop strings need a tokenizer (decode)');
  const V = model.config.vocabSize;
  for (const p of prompts) {
    if (p.length === 0) throw new UsageError('empty prompt: give at least one token (e.g. BOS)');
    for (const id of p) if (!Number.isInteger(id) || id < 0 || id >= V) throw new UsageError(`token id ${id} is outside the vocabulary [0, ${V})`);
    if (p.length + opts.maxNewTokens > model.config.maxPositionEmbeddings) {
      throw new UsageError(`prompt (${p.length}) + max new tokens (${opts.maxNewTokens}) exceeds the model's ${model.config.maxPositionEmbeddings} positions`);
    }
  }
}

/** Generates continuations for each prompt (token ids). Rows finish independently. */
export async function generate(model: CausalLM, prompts: readonly (readonly number[])[], opts: GenerateOptions): Promise<GenerationResult[]> {
  if (prompts.length === 0) return [];
  checkGeneration(model, prompts, opts);
  const V = model.config.vocabSize;
  const B = prompts.length;
  const maxLen = Math.max(...prompts.map((p) => p.length));
  if (opts.seeds && opts.seeds.length !== B) throw new UsageError(`seeds has ${opts.seeds.length} entries for ${B} prompts; give one per prompt`);
  const shared = new Rng(opts.seed ?? 0);
  const rows = prompts.map(
    (_, b) =>
      new GenerationRow(
        {
          ...opts,
          adjustLogits: opts.adjustLogits ? (logits, generated) => opts.adjustLogits!(b, logits, generated) : undefined,
          onToken: opts.onToken ? (tok) => opts.onToken!(b, tok) : undefined,
        },
        opts.seeds ? new Rng(opts.seeds[b]!) : shared,
      ),
  );
  if (opts.maxNewTokens === 0) return rows.map((r) => r.result);
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
    for (;;) {
      if (opts.signal?.aborted) {
        for (const r of rows) r.abort();
        break;
      }
      const next = new Int32Array(B);
      const nextMask = new Uint8Array(B);
      for (let b = 0; b < B; b++) {
        const tok = rows[b]!.next(logits.subarray(b * V, (b + 1) * V));
        if (tok === null) continue;
        next[b] = tok;
        nextMask[b] = 1;
      }
      if (rows.every((r) => r.done)) break;
      logits = await session.step({ ids: next, batchSize: B, seqLen: 1, attentionMask: nextMask });
    }
  } finally {
    session.dispose();
  }
  return rows.map((r) => r.finish());
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
