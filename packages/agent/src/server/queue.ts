/**
 * The scheduler in front of one model: a FIFO of work items and a running decode batch (continuous batching).
 *
 * Generation jobs join the batch in arrival order as slots of a core `SlotDecodeSession` free up (the backend's
 * native slot session when it has one, else core's per-slot fallback), and leave it when they end (EOS, stop,
 * length, their client gone); every decode step feeds all running jobs at once (a new job's prompt, the others'
 * last token) and each job samples from its own logits with its own RNG, penalties and grammar mask, so its tokens
 * are those it would get alone. Other model work (`run`: a logprobs forward) runs between decode steps, in its
 * place in the FIFO. The number of items waiting for admission is bounded (QueueFullError, 503).
 */
import { LlamaProError, startSlotSession, type CausalLM, type GenerationResult, type GenerationRow, type SlotDecodeSession, type SlotFeed } from '@llama-pro/core';

export class QueueFullError extends LlamaProError {
  constructor(limit: number) {
    super('QUEUE_FULL', `the server is busy: ${limit} requests are already waiting; retry later`);
  }
}

export class ShuttingDownError extends LlamaProError {
  constructor() {
    super('SHUTTING_DOWN', 'the server is shutting down; retry on another instance or after it restarts');
  }
}

/** One sequence to generate: its prompt and the row that samples it (see agent TextGenerator.job). */
export interface DecodeJob {
  readonly prompt: readonly number[];
  readonly row: GenerationRow;
  /** Ends the job (finish reason `aborted`) at the next decode step, or drops it while it waits. */
  readonly signal?: AbortSignal;
}

export interface BatchOptions {
  readonly model: CausalLM;
  /** Most sequences decoded together (slots of the slot session). */
  readonly slots: number;
  /** Most tokens one sequence holds (default: the model's positions). */
  readonly maxLength?: number;
}

interface Waiter<T> {
  readonly signal?: AbortSignal;
  readonly resolve: (v: T) => void;
  readonly reject: (e: unknown) => void;
  onAbort?: () => void;
}
type Item = (Waiter<unknown> & { readonly kind: 'run'; readonly fn: () => Promise<unknown> }) | (Waiter<GenerationResult> & { readonly kind: 'decode'; readonly job: DecodeJob });
type DecodeItem = Extract<Item, { kind: 'decode' }>;

interface Running {
  readonly item: DecodeItem;
  /** Tokens to feed at the next step: the prompt, then the last sampled token. */
  pending: Int32Array;
}

/** How long an idle queue keeps its slot session for the next request. */
const SESSION_IDLE_MS = 2000;

const cancelled = (): LlamaProError => new LlamaProError('ABORTED', 'the request was cancelled while it waited');

export class RequestQueue {
  private readonly waiting: Item[] = [];
  private readonly active = new Map<number, Running>();
  private exclusive = 0;
  private session: SlotDecodeSession | null = null;
  private pumping = false;
  private pumpScheduled = false;
  private sessionTimer: ReturnType<typeof setTimeout> | null = null;
  private idleResolvers: (() => void)[] = [];
  private closed = false;
  private readonly shutdown = new AbortController();

  constructor(
    readonly maxLength: number,
    private readonly batch?: BatchOptions,
  ) {}

  /** Aborts when the queue is closed: running work should stop and answer 503. */
  get shutdownSignal(): AbortSignal {
    return this.shutdown.signal;
  }

  /** Refuses new work and every request still waiting (ShuttingDownError), and aborts the running ones. */
  close(): void {
    this.closed = true;
    this.shutdown.abort();
    for (const item of this.waiting.splice(0)) this.settle(item, () => item.reject(new ShuttingDownError()));
    if (!this.pumping) this.releaseSessionWhenIdle();
    this.maybeIdle();
  }

  /** Whether a new request would be refused. */
  get full(): boolean {
    return this.waiting.length >= this.maxLength;
  }

  /** Work running now: sequences in the decode batch plus a `run` task. */
  get running(): number {
    return this.active.size + this.exclusive;
  }

  /** Work waiting or running. */
  get size(): number {
    return this.waiting.length + this.running;
  }

  /** Runs `fn` (model work outside the decode batch) in FIFO order, between decode steps; never while it waited aborted. */
  run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const refused = this.refusal();
    if (refused) return Promise.reject(refused);
    return new Promise<T>((resolve, reject) => this.enqueue({ kind: 'run', fn, signal, resolve: resolve as (v: unknown) => void, reject }));
  }

  /**
   * Adds the jobs of one request to the FIFO together (all, or none when the queue is full or closed); each promise
   * settles with its job's result, finish reason `aborted` when its signal fired while it ran.
   */
  decode(jobs: readonly DecodeJob[]): Promise<GenerationResult>[] {
    if (!this.batch) throw new LlamaProError('NO_BATCH', 'this queue was made without a model to decode with');
    const refused = this.refusal();
    if (refused) return jobs.map(() => Promise.reject(refused));
    return jobs.map((job) => {
      if (job.row.done) return Promise.resolve(job.row.finish());
      return new Promise<GenerationResult>((resolve, reject) => this.enqueue({ kind: 'decode', job, signal: job.signal, resolve, reject }));
    });
  }

  /** Resolves when nothing waits or runs. */
  idle(): Promise<void> {
    if (this.size === 0) return Promise.resolve();
    return new Promise((r) => this.idleResolvers.push(r));
  }

  private refusal(): LlamaProError | null {
    if (this.closed) return new ShuttingDownError();
    if (this.full) return new QueueFullError(this.maxLength);
    return null;
  }

  private enqueue(item: Item): void {
    if (item.signal) {
      // A request whose client leaves while it waits is dropped at once (it no longer holds a place in the queue).
      item.onAbort = () => {
        const i = this.waiting.indexOf(item);
        if (i < 0) return;
        this.waiting.splice(i, 1);
        this.settle(item, () => item.reject(cancelled()));
        this.maybeIdle();
      };
      item.signal.addEventListener('abort', item.onAbort, { once: true });
    }
    this.waiting.push(item);
    this.schedulePump();
  }

  /**
   * Starts the scheduling loop after the I/O callbacks now due have run (setImmediate), not at once: requests that
   * arrive together (their bodies read in the same event-loop turn) are then admitted, and their prompts prefilled,
   * in one step instead of the first running alone while the others wait for it.
   */
  private schedulePump(): void {
    if (this.pumping || this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      void this.pump();
    });
  }

  /**
   * Keeps the slot session (its preallocated cache) for the next busy period when one starts within
   * SESSION_IDLE_MS (back-to-back requests do not rebuild and regrow it), else disposes it: a native session keeps
   * the cache capacity of its longest sequence. Disposed at once when the queue is closed.
   */
  private releaseSessionWhenIdle(): void {
    if (this.sessionTimer) clearTimeout(this.sessionTimer);
    this.sessionTimer = null;
    if (!this.session) return;
    if (this.closed) return this.disposeSession();
    this.sessionTimer = setTimeout(() => {
      this.sessionTimer = null;
      if (!this.pumping) this.disposeSession();
    }, SESSION_IDLE_MS);
    this.sessionTimer.unref();
  }

  private disposeSession(): void {
    this.session?.dispose();
    this.session = null;
  }

  private settle(item: Item, how: () => void): void {
    if (item.onAbort) item.signal!.removeEventListener('abort', item.onAbort);
    how();
  }

  private maybeIdle(): void {
    if (this.size === 0) for (const r of this.idleResolvers.splice(0)) r();
  }

  private freeSlot(): number {
    for (let s = 0; s < this.batch!.slots; s++) if (!this.active.has(s)) return s;
    return -1;
  }

  private finishSlot(slot: number, how: (r: Running) => void): void {
    const r = this.active.get(slot)!;
    this.active.delete(slot);
    this.session?.release(slot);
    this.settle(r.item, () => how(r));
  }

  /** Ends the job in `slot` with its row's result (or the error that producing it raised). */
  private completeSlot(slot: number): void {
    this.finishSlot(slot, (r) => {
      try {
        r.item.resolve(r.item.job.row.finish());
      } catch (e) {
        r.item.reject(e);
      }
    });
  }

  /** The scheduling loop; one at a time, started by `enqueue`, ends when nothing waits or runs. */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    if (this.sessionTimer) clearTimeout(this.sessionTimer);
    this.sessionTimer = null;
    try {
      for (;;) {
        // Admission, in arrival order: `run` tasks execute here (between steps); decode jobs take free slots.
        while (this.waiting.length > 0) {
          const head = this.waiting[0]!;
          if (head.signal?.aborted) {
            this.waiting.shift();
            this.settle(head, () => head.reject(cancelled()));
            continue;
          }
          if (head.kind === 'run') {
            this.waiting.shift();
            this.exclusive++;
            try {
              const v = await head.fn();
              this.settle(head, () => head.resolve(v));
            } catch (e) {
              this.settle(head, () => head.reject(e));
            } finally {
              this.exclusive--;
            }
            continue;
          }
          const slot = this.freeSlot();
          if (slot < 0) break;
          this.waiting.shift();
          this.active.set(slot, { item: head, pending: Int32Array.from(head.job.prompt) });
        }
        for (const [slot, r] of [...this.active]) {
          if (!r.item.job.signal?.aborted && !this.closed) continue;
          r.item.job.row.abort();
          this.completeSlot(slot);
        }
        if (this.active.size === 0) {
          if (this.waiting.length === 0) break;
          continue;
        }
        await this.step();
      }
    } catch (e) {
      // Not expected (step settles its own failures); no job may be left unanswered.
      for (const slot of [...this.active.keys()]) this.finishSlot(slot, (r) => r.item.reject(e));
      for (const item of this.waiting.splice(0)) this.settle(item, () => item.reject(e));
    } finally {
      this.pumping = false;
      this.releaseSessionWhenIdle();
      this.maybeIdle();
    }
  }

  /** One decode step over every running job. */
  private async step(): Promise<void> {
    const { model } = this.batch!;
    const V = model.config.vocabSize;
    const slots = [...this.active.keys()];
    const entries: SlotFeed[] = slots.map((slot) => ({ slot, ids: this.active.get(slot)!.pending }));
    let logits: Float32Array;
    try {
      this.session ??= startSlotSession(model, this.batch!.slots, { maxLength: this.batch!.maxLength });
      logits = await this.session.feed(entries);
    } catch (e) {
      for (const slot of slots) this.finishSlot(slot, (r) => r.item.reject(e));
      return;
    }
    slots.forEach((slot, i) => {
      const r = this.active.get(slot)!;
      const { row, signal } = r.item.job;
      let tok: number | null;
      try {
        if (signal?.aborted || this.closed) row.abort();
        tok = row.next(logits.subarray(i * V, (i + 1) * V));
      } catch (e) {
        this.finishSlot(slot, () => r.item.reject(e));
        return;
      }
      if (tok === null) this.completeSlot(slot);
      else r.pending = Int32Array.of(tok);
    });
  }
}
