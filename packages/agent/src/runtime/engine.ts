/**
 * Text generation over the core contracts: a `CausalLM` + `TextTokenizer`, sampling by core's
 * `generate()`. Adds what serving needs: streamed text deltas that never leak a stop string or a
 * half-decoded character, and per-token log-probabilities from one extra forward pass.
 */
import { GenerationRow, Rng, UsageError, checkGeneration, decodeAfter, generate, type CausalLM, type FinishReason as CoreFinishReason, type GenerateOptions, type GenerationResult, type TextTokenizer } from '@llama-pro/core';

export interface TextGenerationRequest {
  promptIds: readonly number[];
  maxTokens: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
  stop?: readonly string[];
  /** Token ids that end generation besides EOS (e.g. a template's `<|im_end|>`). */
  stopTokenIds?: readonly number[];
  /**
   * Generate past EOS and `stopTokenIds` (vLLM's `ignore_eos`): the row ends only at maxTokens, a stop string, or
   * its signal; the EOS tokens it samples are part of its tokens (and left out of its text, as special tokens).
   */
  ignoreEos?: boolean;
  signal?: AbortSignal;
  /** Changes the next-token logits before sampling (see core GenerateOptions.adjustLogits). */
  adjustLogits?: (logits: Float32Array, generated: readonly number[]) => void;
  /** Receives text as it becomes final (stop strings held back until they cannot match). */
  onText?: (delta: string) => void;
}

export interface TextGenerationResult {
  tokens: number[];
  text: string;
  /** core's reason: eos, stop (stop string), length, aborted. */
  finishReason: CoreFinishReason;
  promptTokens: number;
}

export interface TokenLogprob {
  token: number;
  /** null for the first prompt token (nothing precedes it). */
  logprob: number | null;
  top: { token: number; logprob: number }[];
}

function longestStopPrefixSuffix(text: string, stops: readonly string[]): number {
  let hold = 0;
  for (const s of stops) {
    for (let k = Math.min(s.length - 1, text.length); k > hold; k--) {
      if (text.endsWith(s.slice(0, k))) {
        hold = k;
        break;
      }
    }
  }
  return hold;
}

/** Tracks generated tokens and emits the part of their text that is final. */
export class StreamingText {
  private tokens: number[] = [];
  private emitted = 0;

  constructor(
    private readonly decode: (ids: readonly number[]) => string,
    private readonly stops: readonly string[],
    private readonly emit: (delta: string) => void,
  ) {}

  push(token: number): void {
    this.tokens.push(token);
    let text = this.decode(this.tokens);
    // A trailing replacement character may be half of a multi-byte character.
    if (text.endsWith('\uFFFD')) return;
    const hit = this.stops.length ? firstIndexOfAny(text, this.stops) : -1;
    if (hit >= 0) text = text.slice(0, hit);
    else text = text.slice(0, text.length - longestStopPrefixSuffix(text, this.stops));
    if (text.length > this.emitted) {
      this.emit(text.slice(this.emitted));
      this.emitted = text.length;
    }
  }

  /** Emits what remains of the final text. */
  finish(finalText: string): void {
    if (finalText.length > this.emitted) this.emit(finalText.slice(this.emitted));
    this.emitted = Math.max(this.emitted, finalText.length);
  }
}

function firstIndexOfAny(text: string, stops: readonly string[]): number {
  let best = -1;
  for (const s of stops) {
    if (!s) continue;
    const i = text.indexOf(s);
    if (i >= 0 && (best < 0 || i < best)) best = i;
  }
  return best;
}

export class TextGenerator {
  constructor(
    readonly model: CausalLM,
    readonly tokenizer: TextTokenizer,
  ) {}

  get contextLength(): number {
    return this.model.config.maxPositionEmbeddings;
  }

  /** Token ids that end generation: the tokenizer's EOS and the config's. */
  eosIds(): number[] {
    const ids = new Set<number>();
    if (this.tokenizer.eosTokenId !== null) ids.add(this.tokenizer.eosTokenId);
    for (const id of this.model.config.eosTokenIds) ids.add(id);
    return [...ids];
  }

  async generate(req: TextGenerationRequest): Promise<TextGenerationResult> {
    const { decode, stream, options } = this.prepare(req);
    const [r] = await generate(this.model, [req.promptIds], {
      ...options,
      signal: req.signal,
      adjustLogits: req.adjustLogits ? (_row, logits, generated) => req.adjustLogits!(logits, generated) : undefined,
      onToken: stream ? (_row, tok) => stream.push(tok) : undefined,
    });
    return this.result(req, r!, decode, stream);
  }

  /**
   * The request as one sequence for a running batch (continuous batching): its prompt, a GenerationRow that samples
   * exactly as `generate` does for this request alone (its own RNG seeded with the request's seed), and how to turn
   * the row's result into this request's result (text, streamed tail). Checks the prompt like `generate`.
   */
  job(req: TextGenerationRequest): { prompt: readonly number[]; row: GenerationRow; result(r: GenerationResult): TextGenerationResult } {
    const { decode, stream, options } = this.prepare(req);
    checkGeneration(this.model, [req.promptIds], options);
    const row = new GenerationRow(
      {
        ...options,
        adjustLogits: req.adjustLogits,
        onToken: stream ? (tok) => stream.push(tok) : undefined,
      },
      new Rng(req.seed ?? 0),
    );
    return { prompt: req.promptIds, row, result: (r) => this.result(req, r, decode, stream) };
  }

  /** The request's text decoding, streaming and the sampling / ending options both generation paths share. */
  private prepare(req: TextGenerationRequest): {
    decode: (ids: readonly number[]) => string;
    stream: StreamingText | null;
    options: Pick<GenerateOptions, 'maxNewTokens' | 'temperature' | 'topP' | 'topK' | 'seed' | 'eosTokenIds' | 'stopStrings' | 'decode'>;
  } {
    // The completion's text is what its tokens add after the prompt (vLLM's incremental detokenizer): decoding the
    // tokens alone would drop the first one's leading space with SentencePiece-style (Strip) decoders.
    // Streaming and the stop-string check decode the same tokens at every step (and the result once more): the
    // last decode is remembered, so each step decodes once.
    let lastIds: readonly number[] = [];
    let lastText = '';
    const decode = (ids: readonly number[]): string => {
      if (ids.length === lastIds.length && ids.every((t, i) => t === lastIds[i])) return lastText;
      lastText = decodeAfter(this.tokenizer, req.promptIds, ids, { skipSpecialTokens: true });
      lastIds = ids.slice();
      return lastText;
    };
    const stops = (req.stop ?? []).filter((s) => s.length > 0);
    const stream = req.onText ? new StreamingText(decode, stops, req.onText) : null;
    const options = {
      maxNewTokens: req.maxTokens,
      temperature: req.temperature,
      topP: req.topP,
      topK: req.topK,
      seed: req.seed,
      eosTokenIds: req.ignoreEos ? [] : [...this.eosIds(), ...(req.stopTokenIds ?? [])],
      stopStrings: stops,
      decode,
    };
    return { decode, stream, options };
  }

  private result(req: TextGenerationRequest, r: GenerationResult, decode: (ids: readonly number[]) => string, stream: StreamingText | null): TextGenerationResult {
    const text = r.text ?? decode(r.tokens);
    stream?.finish(text);
    return { tokens: r.tokens, text, finishReason: r.finishReason, promptTokens: req.promptIds.length };
  }

  /**
   * Log-probabilities of `ids[1..]` under the model (one forward pass), with the `top` most likely
   * alternatives at each position. Entry 0 has logprob null.
   */
  async logprobs(ids: readonly number[], top: number): Promise<TokenLogprob[]> {
    if (ids.length === 0) return [];
    if (ids.length > this.contextLength) throw new UsageError(`${ids.length} tokens exceed the model's ${this.contextLength} positions`);
    const logits = await this.model.forward({ ids: Int32Array.from(ids), batchSize: 1, seqLen: ids.length });
    const V = logits.vocabSize;
    const out: TokenLogprob[] = [{ token: ids[0]!, logprob: null, top: [] }];
    for (let t = 1; t < ids.length; t++) {
      const row = logits.data.subarray((t - 1) * V, t * V);
      let max = -Infinity;
      for (let i = 0; i < V; i++) if (row[i]! > max) max = row[i]!;
      let sum = 0;
      for (let i = 0; i < V; i++) sum += Math.exp(row[i]! - max);
      const lse = max + Math.log(sum);
      const lp = (i: number): number => row[i]! - lse;
      let alts: { token: number; logprob: number }[] = [];
      if (top > 0) {
        const idx = Array.from({ length: V }, (_, i) => i).sort((a, b) => row[b]! - row[a]! || a - b);
        alts = idx.slice(0, top).map((i) => ({ token: i, logprob: lp(i) }));
      }
      out.push({ token: ids[t]!, logprob: lp(ids[t]!), top: alts });
    }
    return out;
  }
}
