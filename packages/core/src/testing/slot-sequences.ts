/**
 * Bookkeeping for slot-session tests: the tokens each slot's sequence holds, feeds that start a sequence
 * in a slot or extend it (tokens drawn from a deterministic per-sequence stream), and the reference a feed's
 * logits are compared with — the whole sequence run alone through `forward`.
 */
import type { CausalLM } from '../contracts/model';
import type { SlotFeed } from '../contracts/slots';

export class SlotSequences {
  private readonly bySlot = new Map<number, { id: number; tokens: number[] }>();
  private nextId = 0;

  /** `token(seqId, i)`: the i-th token of sequence `seqId`. */
  constructor(private readonly token: (seqId: number, i: number) => number) {}

  /** A new sequence of `n` tokens in `slot` (replacing whatever the slot held here). */
  admit(slot: number, n: number): SlotFeed {
    const id = this.nextId++;
    const tokens = Array.from({ length: n }, (_, i) => this.token(id, i));
    this.bySlot.set(slot, { id, tokens });
    return { slot, ids: Int32Array.from(tokens) };
  }

  /** The next `n` tokens of the sequence in `slot`. */
  extend(slot: number, n = 1): SlotFeed {
    const q = this.bySlot.get(slot);
    if (!q) throw new Error(`slot ${slot} holds no sequence; admit one first`);
    const add = Array.from({ length: n }, (_, i) => this.token(q.id, q.tokens.length + i));
    q.tokens.push(...add);
    return { slot, ids: Int32Array.from(add) };
  }

  /** Every token the sequence in `slot` holds. */
  tokens(slot: number): readonly number[] {
    const q = this.bySlot.get(slot);
    if (!q) throw new Error(`slot ${slot} holds no sequence`);
    return q.tokens;
  }
}

/** Logits [vocabSize] after the last token of `seq`, run alone (batch 1, no padding). */
export async function lastLogitsAlone(model: CausalLM, seq: readonly number[]): Promise<Float32Array> {
  const V = model.config.vocabSize;
  const { data } = await model.forward({ ids: Int32Array.from(seq), batchSize: 1, seqLen: seq.length });
  return data.slice((seq.length - 1) * V, seq.length * V);
}
