/**
 * Slot decoding: the contract continuous batching is built on. A slot session holds `slots` independent
 * sequences (each with its own length and positions) that share batched decode steps; sequences join a
 * free slot and leave it while the others keep decoding.
 *
 * A backend implements `CausalLM.startSlotSession` natively (one batched run per feed, a preallocated
 * cache); `startSlotSession()` below falls back to one single-row `DecodeSession` per slot, which is
 * correct on every backend but runs the slots one after another.
 */
import { UsageError } from '../errors';
import type { CausalLM, DecodeSession } from './model';

/** New tokens for one slot: a prompt for a free slot, or the next token(s) of an occupied one. */
export interface SlotFeed {
  readonly slot: number;
  readonly ids: Int32Array;
}

export interface SlotSessionOptions {
  /** Most tokens any one slot will hold (prompt + generated); at most the model's positions (the default). */
  readonly maxLength?: number;
}

export interface SlotDecodeSession {
  readonly slots: number;
  /** Most tokens one slot may hold. */
  readonly maxLength: number;
  /** Tokens held by `slot` (0 when it is free). */
  length(slot: number): number;
  /**
   * Appends each entry's tokens to its slot (entries name distinct slots; each has ≥ 1 token) and returns
   * the logits after each entry's last token, [entries.length, vocabSize] in entry order. A feed refused
   * by its checks changes nothing; a feed that fails while running releases every slot it named (the
   * others are untouched).
   */
  feed(entries: readonly SlotFeed[]): Promise<Float32Array>;
  /** Drops the sequence in `slot`; the slot is free (length 0) again. Releasing a free slot is a no-op. */
  release(slot: number): void;
  dispose(): void;
}

/**
 * Checks a feed against a session's slots and lengths and the model's vocabulary; shared by every
 * implementation so that they refuse the same things with the same words.
 */
export function checkSlotFeed(session: Pick<SlotDecodeSession, 'slots' | 'maxLength' | 'length'>, entries: readonly SlotFeed[], vocabSize: number): void {
  if (entries.length === 0) throw new UsageError('a slot feed needs at least one entry');
  const seen = new Set<number>();
  for (const e of entries) {
    if (!Number.isInteger(e.slot) || e.slot < 0 || e.slot >= session.slots) throw new UsageError(`slot ${e.slot} does not exist: this session has slots 0..${session.slots - 1}`);
    if (seen.has(e.slot)) throw new UsageError(`slot ${e.slot} is fed twice in one feed`);
    seen.add(e.slot);
    if (e.ids.length === 0) throw new UsageError(`slot ${e.slot}: a feed entry needs at least one token`);
    for (const id of e.ids) if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new UsageError(`slot ${e.slot}: token id ${id} is outside the vocabulary [0, ${vocabSize})`);
    const total = session.length(e.slot) + e.ids.length;
    if (total > session.maxLength) throw new UsageError(`slot ${e.slot} would hold ${total} tokens; this session allows ${session.maxLength} per slot`);
  }
}

/** The maximum slot length a session on `model` may use. */
export function slotMaxLength(model: CausalLM, options: SlotSessionOptions = {}): number {
  const cap = model.config.maxPositionEmbeddings;
  const m = options.maxLength ?? cap;
  if (!Number.isInteger(m) || m < 1 || m > cap) throw new UsageError(`maxLength ${m} must be an integer in [1, ${cap}] (the model's positions)`);
  return m;
}

/** One single-row DecodeSession per slot: correct on every backend, slots run one after another. */
class PerSlotSessions implements SlotDecodeSession {
  private readonly sessions: (DecodeSession | undefined)[];
  private readonly lengths: Int32Array;
  private closed = false;

  constructor(
    private readonly model: CausalLM,
    readonly slots: number,
    readonly maxLength: number,
  ) {
    this.sessions = new Array<DecodeSession | undefined>(slots).fill(undefined);
    this.lengths = new Int32Array(slots);
  }

  length(slot: number): number {
    return this.lengths[slot] ?? 0;
  }

  async feed(entries: readonly SlotFeed[]): Promise<Float32Array> {
    if (this.closed) throw new UsageError('this slot session was disposed', 'SESSION_DISPOSED');
    const V = this.model.config.vocabSize;
    checkSlotFeed(this, entries, V);
    const out = new Float32Array(entries.length * V);
    try {
      for (let i = 0; i < entries.length; i++) {
        const { slot, ids } = entries[i]!;
        const s = (this.sessions[slot] ??= this.model.startSession(1));
        out.set((await s.step({ ids, batchSize: 1, seqLen: ids.length })).subarray(0, V), i * V);
        this.lengths[slot]! += ids.length;
      }
    } catch (err) {
      // A DecodeSession cannot step back: the fed slots are dropped rather than left half-advanced.
      for (const { slot } of entries) this.release(slot);
      throw err;
    }
    return out;
  }

  release(slot: number): void {
    this.sessions[slot]?.dispose();
    this.sessions[slot] = undefined;
    if (slot >= 0 && slot < this.slots) this.lengths[slot] = 0;
  }

  dispose(): void {
    for (let s = 0; s < this.slots; s++) this.release(s);
    this.closed = true;
  }
}

/** The model's own slot session when its backend has one, else the per-slot fallback. */
export function startSlotSession(model: CausalLM, slots: number, options: SlotSessionOptions = {}): SlotDecodeSession {
  if (!Number.isInteger(slots) || slots < 1) throw new UsageError(`a slot session needs at least one slot (got ${slots})`);
  const maxLength = slotMaxLength(model, options);
  return model.startSlotSession ? model.startSlotSession(slots, { maxLength }) : new PerSlotSessions(model, slots, maxLength);
}
