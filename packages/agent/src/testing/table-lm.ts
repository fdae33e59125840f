import { tinyRawConfig } from '@llama-pro/core/testing';
import { normalizeConfig, Rng, type CausalLM, type DecodeSession, type LlamaConfig, type Logits, type TokenBatch, type TrainingBatch } from '@llama-pro/core';

/**
 * A deterministic `CausalLM` over a fixed table of logits, for testing serving code without a tensor
 * backend. The logits after a context are those of the longest rule whose `after` is a suffix of the
 * context (an n-gram table); without a match, seeded random logits of the last token. Rules make one
 * token `boost` higher than every other, so greedy decoding follows them exactly.
 */
export interface TableRule {
  /** Context suffix (token ids). */
  after: readonly number[];
  next: number;
}

export class TableCausalLM implements CausalLM {
  readonly config: LlamaConfig;
  readonly device = 'table';
  private readonly rules = new Map<string, number>();
  private readonly base: Float32Array;
  /** Distinct rule lengths, longest first. */
  private lengths: number[] = [];
  /** Forward / step calls so far. */
  calls = 0;
  /** Decode sessions open now, and the most ever open at once (tests use it to see queueing). */
  activeSessions = 0;
  maxActiveSessions = 0;
  /** Milliseconds each decode step waits (to make requests overlap in tests). */
  stepDelayMs: number;

  constructor(
    vocabSize: number,
    rules: readonly TableRule[],
    options: { maxPositions?: number; seed?: number; boost?: number; eosTokenId?: number; stepDelayMs?: number } = {},
  ) {
    this.config = normalizeConfig(tinyRawConfig({ vocab: vocabSize, maxPositions: options.maxPositions ?? 512, extra: { eos_token_id: options.eosTokenId ?? 2 } }));
    const rng = new Rng(options.seed ?? 1);
    this.base = new Float32Array(vocabSize * vocabSize);
    for (let i = 0; i < this.base.length; i++) this.base[i] = rng.normal();
    this.boost = options.boost ?? 20;
    this.stepDelayMs = options.stepDelayMs ?? 0;
    const lengths = new Set<number>();
    for (const r of rules) {
      this.rules.set(r.after.join(','), r.next);
      lengths.add(r.after.length);
    }
    this.lengths = [...lengths].sort((a, b) => b - a);
  }

  private readonly boost: number;

  /** Logits after `context` (non-empty). */
  logitsAfter(context: readonly number[]): Float32Array {
    const V = this.config.vocabSize;
    const last = context[context.length - 1]!;
    const out = this.base.slice(last * V, (last + 1) * V);
    for (const k of this.lengths) {
      if (k > context.length || k === 0) continue;
      const next = this.rules.get(context.slice(context.length - k).join(','));
      if (next !== undefined) {
        out[next] = this.boost;
        break;
      }
    }
    return out;
  }

  private rows(batch: TokenBatch): number[][] {
    const rows: number[][] = [];
    for (let b = 0; b < batch.batchSize; b++) {
      const row: number[] = [];
      for (let t = 0; t < batch.seqLen; t++) {
        const i = b * batch.seqLen + t;
        if (!batch.attentionMask || batch.attentionMask[i]) row.push(batch.ids[i]!);
      }
      rows.push(row);
    }
    return rows;
  }

  async forward(batch: TokenBatch): Promise<Logits> {
    this.calls++;
    const V = this.config.vocabSize;
    const data = new Float32Array(batch.batchSize * batch.seqLen * V);
    for (let b = 0; b < batch.batchSize; b++) {
      const ctx: number[] = [];
      for (let t = 0; t < batch.seqLen; t++) {
        const i = b * batch.seqLen + t;
        if (batch.attentionMask && !batch.attentionMask[i]) continue;
        ctx.push(batch.ids[i]!);
        data.set(this.logitsAfter(ctx), i * V);
      }
    }
    return { data, batchSize: batch.batchSize, seqLen: batch.seqLen, vocabSize: V };
  }

  async tokenLogprobs(batch: TrainingBatch): Promise<Float32Array> {
    const logits = await this.forward(batch);
    const V = this.config.vocabSize;
    const out = new Float32Array(batch.batchSize * batch.seqLen);
    for (let i = 0; i < out.length; i++) {
      const target = batch.targets[i]!;
      if (target < 0) continue;
      const row = logits.data.subarray(i * V, (i + 1) * V);
      const max = Math.max(...row);
      let s = 0;
      for (const v of row) s += Math.exp(v - max);
      out[i] = row[target]! - max - Math.log(s);
    }
    return out;
  }

  startSession(batchSize: number): DecodeSession {
    const contexts: number[][] = Array.from({ length: batchSize }, () => []);
    let length = 0;
    const V = this.config.vocabSize;
    this.activeSessions++;
    this.maxActiveSessions = Math.max(this.maxActiveSessions, this.activeSessions);
    let open = true;
    return {
      get length() {
        return length;
      },
      step: async (batch: TokenBatch): Promise<Float32Array> => {
        this.calls++;
        if (this.stepDelayMs > 0) await new Promise((r) => setTimeout(r, this.stepDelayMs));
        const rows = this.rows(batch);
        length += batch.seqLen;
        const out = new Float32Array(batchSize * V);
        rows.forEach((r, b) => {
          contexts[b]!.push(...r);
          if (contexts[b]!.length > 0) out.set(this.logitsAfter(contexts[b]!), b * V);
        });
        return out;
      },
      dispose: () => {
        if (open) this.activeSessions--;
        open = false;
      },
    };
  }

  async dispose(): Promise<void> {}
}

/** Rules that make greedy decoding continue `prompt` with `reply` (token ids), then `eos`. */
export function scriptRules(prompt: readonly number[], reply: readonly number[], eos: number, contextTokens = Infinity): TableRule[] {
  const seq = [...prompt, ...reply, eos];
  const rules: TableRule[] = [];
  for (let i = prompt.length; i < seq.length; i++) rules.push({ after: seq.slice(Math.max(0, i - contextTokens), i), next: seq[i]! });
  return rules;
}
