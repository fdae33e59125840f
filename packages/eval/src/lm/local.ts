/**
 * A LanguageModel over a local backend model (core `CausalLM`) and tokenizer (core `TextTokenizer`), with
 * lm-evaluation-harness's tokenization rules: trailing whitespace of the context moves into the
 * continuation, the continuation's tokens are `tok(context + continuation)[len(tok(context)):]`, inputs are
 * truncated from the left to the model's length, rolling log-likelihoods use disjoint windows after a prefix
 * token, and generation runs core `generate()` with stop strings searched only in the generated text.
 */
import { generate, type CausalLM, type RollingScoring, type GenerateUntilRequest, type LanguageModel, type LoglikelihoodRequest, type LoglikelihoodResult, type TextTokenizer } from '@llama-pro/core';
import { EvalError } from '../errors';
import { pyRstrip } from '../util/py-str';

export interface LocalLanguageModelOptions {
  /** Prepend BOS to every context (current lm-eval with a Llama tokenizer; lm-eval <= 0.4.9 did not). Default true. */
  addBos?: boolean;
  /** Maximum sequence length (default: the model's max_position_embeddings). */
  maxLength?: number;
  /** Token budget (rows × longest row) per forward pass. Default 8192. */
  batchTokens?: number;
  /** Maximum rows per forward / generation batch. Default 16. */
  maxBatchSize?: number;
  name?: string;
}

export interface EncodedPair {
  readonly context: number[];
  readonly continuation: number[];
}

/** lm-eval `_encode_pair` (+ the prefix token). */
export function encodePair(tokenizer: TextTokenizer, context: string, continuation: string, prefix: number[]): EncodedPair {
  const trimmed = pyRstrip(context); // n_spaces = len(context) - len(context.rstrip())
  const nSpaces = context.length - trimmed.length;
  if (nSpaces > 0) {
    continuation = context.slice(trimmed.length) + continuation;
    context = trimmed;
  }
  const whole = tokenizer.encode(context + continuation);
  const ctx = tokenizer.encode(context);
  const cont = whole.slice(ctx.length);
  return { context: [...prefix, ...ctx], continuation: cont };
}

/** lm-eval `get_rolling_token_windows(..., context_len=1)` + `make_disjoint_window`: [input, targets] pairs. */
export function rollingWindows(tokens: readonly number[], prefixToken: number, maxLen: number): { input: number[]; targets: number[] }[] {
  const out: { input: number[]; targets: number[] }[] = [];
  if (tokens.length === 0) return out;
  const first = Math.min(maxLen, tokens.length);
  out.push({ input: [prefixToken, ...tokens.slice(0, first - 1)], targets: tokens.slice(0, first) });
  let predicted = first;
  while (predicted < tokens.length) {
    const n = Math.min(tokens.length - predicted, maxLen);
    const end = predicted + n;
    out.push({ input: tokens.slice(end - maxLen - 1, end - 1), targets: tokens.slice(end - n, end) });
    predicted += n;
  }
  return out;
}

/** Continuations of at most this many tokens are scored through a decode session (see scoreRows). */
const SESSION_SCORING_MAX_POSITIONS = 8;

interface ScoreRow {
  /** Model input. */
  input: number[];
  /** For each consumer: target tokens at the last positions of `input + [last target]`. */
  consumers: { index: number; targets: number[] }[];
}

export class LocalLanguageModel implements LanguageModel {
  readonly name: string;
  readonly addBos: boolean;
  readonly maxLength: number;
  private readonly batchTokens: number;
  private readonly maxBatch: number;

  constructor(
    readonly model: CausalLM,
    readonly tokenizer: TextTokenizer,
    options: LocalLanguageModelOptions = {},
  ) {
    this.addBos = options.addBos ?? true;
    this.maxLength = options.maxLength ?? model.config.maxPositionEmbeddings;
    this.batchTokens = options.batchTokens ?? 8192;
    this.maxBatch = options.maxBatchSize ?? 16;
    this.name = options.name ?? `local:${model.device}`;
    if (this.addBos && tokenizer.bosTokenId === null) throw new EvalError('the tokenizer has no BOS token; run without BOS (--no-bos)', 'EVAL_NO_BOS');
  }

  private prefix(): number[] {
    return this.addBos ? [this.tokenizer.bosTokenId!] : [];
  }

  private prefixToken(): number {
    const t = this.tokenizer.bosTokenId ?? this.tokenizer.eosTokenId;
    if (t === null) throw new EvalError('the tokenizer has neither BOS nor EOS; an empty context cannot be scored', 'EVAL_NO_BOS');
    return t;
  }

  /** Context and continuation token ids as scored (context includes BOS when enabled). */
  encode(context: string, continuation: string): EncodedPair {
    const p = encodePair(this.tokenizer, context, continuation, this.prefix());
    if (p.context.length === 0) return { context: [this.prefixToken()], continuation: p.continuation };
    return p;
  }

  async loglikelihood(requests: readonly LoglikelihoodRequest[]): Promise<LoglikelihoodResult[]> {
    const rows = new Map<string, ScoreRow>();
    requests.forEach((r, index) => {
      const { context, continuation } = this.encode(r.context, r.continuation);
      if (continuation.length === 0) throw new EvalError(`empty continuation for context ending ${JSON.stringify(r.context.slice(-40))}`, 'EVAL_EMPTY_CONTINUATION');
      if (continuation.length > this.maxLength) throw new EvalError(`continuation of ${continuation.length} tokens exceeds the model length ${this.maxLength}`, 'EVAL_TOO_LONG');
      const full = [...context, ...continuation].slice(-(this.maxLength + 1));
      const input = full.slice(0, -1);
      const key = input.join(',');
      const row = rows.get(key) ?? { input, consumers: [] };
      row.consumers.push({ index, targets: continuation });
      rows.set(key, row);
    });
    const out = new Array<LoglikelihoodResult>(requests.length);
    await this.scoreRows([...rows.values()], (index, logprob, isGreedy) => (out[index] = { logprob, isGreedy }));
    return out;
  }

  /** The tokens a rolling log-likelihood scores (see RollingScoring): with `lm-eval`, BOS first when BOS is added. */
  rollingTokens(text: string, scoring: RollingScoring = 'lm-eval'): number[] {
    const ids = this.tokenizer.encode(text);
    return scoring === 'lm-eval' ? [...this.prefix(), ...ids] : ids;
  }

  async loglikelihoodRolling(texts: readonly string[], options: { scoring?: RollingScoring } = {}): Promise<{ logprob: number; tokens: number }[]> {
    const rows: ScoreRow[] = [];
    const owner: number[] = [];
    const totals = texts.map(() => ({ logprob: 0, tokens: 0 }));
    texts.forEach((t, i) => {
      const ids = this.rollingTokens(t, options.scoring);
      for (const w of rollingWindows(ids, this.prefixToken(), this.maxLength)) {
        // input + [last target] ends with the targets; the consumer index is the window's position in rows.
        owner.push(i);
        rows.push({ input: w.input, consumers: [{ index: owner.length - 1, targets: w.targets }] });
      }
    });
    await this.scoreRows(rows, (index, logprob) => {
      const t = totals[owner[index]!]!;
      t.logprob += logprob;
      t.tokens += rows[index]!.consumers[0]!.targets.length;
    });
    return totals;
  }

  /**
   * Scores rows in token-budgeted batches (longest first) and reports each consumer's summed logprob. A batch whose
   * continuations are short (MMLU's one-token answers) runs as a decode session: the inputs up to the first scored
   * position as one left-padded prefill, then one step per further position, so only the logits that are scored are
   * computed and copied (a forward computes the vocabulary projection at every position). Longer continuations
   * (rolling windows) take one forward pass.
   */
  private async scoreRows(rows: ScoreRow[], emit: (index: number, logprob: number, isGreedy: boolean) => void): Promise<void> {
    // Rows that score few positions batch with rows scoring as many (they take the session path), the others
    // together (a forward each batch); longest first within each group.
    const group = rows.map((r) => Math.min(SESSION_SCORING_MAX_POSITIONS + 1, Math.max(...r.consumers.map((c) => c.targets.length))));
    const order = rows.map((_, i) => i).sort((a, b) => group[a]! - group[b]! || rows[b]!.input.length - rows[a]!.input.length);
    let i = 0;
    const V = this.model.config.vocabSize;
    while (i < order.length) {
      const T = rows[order[i]!]!.input.length;
      let B = Math.max(1, Math.min(this.maxBatch, Math.floor(this.batchTokens / Math.max(1, T)), order.length - i));
      for (let j = 1; j < B; j++) if (group[order[i + j]!] !== group[order[i]!]) B = j;
      const batch = order.slice(i, i + B).map((r) => rows[r]!);
      i += B;
      const at = await this.batchLogits(batch, T);
      batch.forEach((row, b) => {
        const L = row.input.length;
        for (const c of row.consumers) {
          // The sequence input + [last target] ends with the targets; logits at position p predict token p + 1.
          let lp = 0;
          let greedy = true;
          const n = c.targets.length;
          for (let j = 0; j < n; j++) {
            const logits = at(b, L - n + j);
            const tgt = c.targets[j]!;
            let max = -Infinity;
            let arg = 0;
            for (let v = 0; v < V; v++) {
              const x = logits[v]!;
              if (x > max) {
                max = x;
                arg = v;
              }
            }
            let sum = 0;
            for (let v = 0; v < V; v++) sum += Math.exp(logits[v]! - max);
            lp += logits[tgt]! - max - Math.log(sum);
            if (arg !== tgt) greedy = false;
          }
          emit(c.index, lp, greedy);
        }
      });
    }
  }

  /** The logits of a batch of rows (the longest has T tokens): `at(b, p)` is row b's next-token logits at position p. */
  private async batchLogits(batch: readonly ScoreRow[], T: number): Promise<(b: number, pos: number) => Float32Array> {
    const V = this.model.config.vocabSize;
    const B = batch.length;
    // K: the most positions any consumer in the batch scores (≤ every row's length: a row's input holds its context).
    const K = Math.max(...batch.map((r) => Math.max(...r.consumers.map((c) => c.targets.length))));
    if (K <= SESSION_SCORING_MAX_POSITIONS && batch.every((r) => r.input.length >= K)) {
      // Row b needs positions L_b - K .. L_b - 1: prefill input[0 .. L_b - K], then feed the rest one token a step.
      const Tp = T - K + 1;
      const ids = new Int32Array(B * Tp);
      const mask = new Uint8Array(B * Tp);
      batch.forEach((r, b) => {
        const n = r.input.length - K + 1;
        for (let t = 0; t < n; t++) {
          ids[b * Tp + Tp - n + t] = r.input[t]!;
          mask[b * Tp + Tp - n + t] = 1;
        }
      });
      const out = new Float32Array(B * K * V);
      const session = this.model.startSession(B);
      try {
        let logits = await session.step({ ids, batchSize: B, seqLen: Tp, attentionMask: mask });
        for (let j = 0; ; j++) {
          // A copy: sessions may hand out views of buffers they reuse.
          for (let b = 0; b < B; b++) out.set(logits.subarray(b * V, (b + 1) * V), (b * K + j) * V);
          if (j === K - 1) break;
          const next = Int32Array.from(batch, (r) => r.input[r.input.length - K + 1 + j]!);
          logits = await session.step({ ids: next, batchSize: B, seqLen: 1, attentionMask: new Uint8Array(B).fill(1) });
        }
      } finally {
        session.dispose();
      }
      return (b, pos) => {
        const j = pos - (batch[b]!.input.length - K);
        return out.subarray((b * K + j) * V, (b * K + j + 1) * V);
      };
    }
    const ids = new Int32Array(B * T);
    const mask = new Uint8Array(B * T);
    batch.forEach((r, b) => {
      for (let t = 0; t < r.input.length; t++) {
        ids[b * T + t] = r.input[t]!;
        mask[b * T + t] = 1;
      }
    });
    const logits = await this.model.forward({ ids, batchSize: B, seqLen: T, attentionMask: mask });
    return (b, pos) => logits.data.subarray((b * T + pos) * V, (b * T + pos + 1) * V);
  }

  /**
   * Requests with the same generation settings (until, max tokens, temperature, top-p: lm-eval's grouping by
   * gen_kwargs) are generated together, longest contexts first, in batches of at most `maxBatchSize` rows and
   * `batchTokens` tokens (rows × (longest context + max tokens)), so that rows of a batch need little left padding.
   * Each request samples with its own RNG (its seed), so its text does not depend on the requests batched with it.
   */
  async generateUntil(requests: readonly GenerateUntilRequest[]): Promise<string[]> {
    const out = new Array<string>(requests.length);
    const maxPos = this.model.config.maxPositionEmbeddings;
    const groups = new Map<string, number[]>();
    requests.forEach((r, i) => {
      const key = JSON.stringify([r.until, r.maxGenTokens ?? 256, r.temperature ?? 0, r.topP ?? 1]);
      const g = groups.get(key) ?? [];
      g.push(i);
      groups.set(key, g);
    });
    const eos = this.tokenizer.eosTokenId;
    for (const idx of groups.values()) {
      const r0 = requests[idx[0]!]!;
      const maxNew = Math.max(1, Math.min(r0.maxGenTokens ?? 256, Math.min(this.maxLength, maxPos) - 1));
      const ctxBudget = Math.min(this.maxLength, maxPos) - maxNew;
      const prompts = new Map<number, number[]>();
      for (const i of idx) {
        const ids = [...this.prefix(), ...this.tokenizer.encode(requests[i]!.context)];
        prompts.set(i, (ids.length ? ids : [this.prefixToken()]).slice(-ctxBudget));
      }
      const order = [...idx].sort((a, b) => prompts.get(b)!.length - prompts.get(a)!.length || a - b);
      for (let s = 0; s < order.length; ) {
        const longest = prompts.get(order[s]!)!.length;
        const n = Math.max(1, Math.min(this.maxBatch, Math.floor(this.batchTokens / (longest + maxNew)), order.length - s));
        const part = order.slice(s, s + n);
        s += n;
        const res = await generate(
          this.model,
          part.map((i) => prompts.get(i)!),
          {
            maxNewTokens: maxNew,
            eosTokenIds: eos === null ? [] : [eos],
            stopStrings: r0.until,
            decode: (ids) => this.tokenizer.decode(ids, { skipSpecialTokens: true }),
            temperature: r0.temperature ?? 0,
            topP: r0.topP,
            seeds: part.map((i) => requests[i]!.seed ?? 0),
          },
        );
        part.forEach((i, j) => (out[i] = res[j]!.text ?? ''));
      }
    }
    return out;
  }
}
