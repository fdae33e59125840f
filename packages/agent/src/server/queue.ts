/** A FIFO queue in front of one model: requests run one at a time, in arrival order. */
import { LlamaProError } from '@llama-pro/core';

export class QueueFullError extends LlamaProError {
  constructor(limit: number) {
    super('QUEUE_FULL', `the server is busy: ${limit} requests are already waiting; retry later`);
  }
}

export class RequestQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private waiting = 0;
  private running = 0;
  private idleResolvers: (() => void)[] = [];

  constructor(readonly maxLength: number) {}

  /** Whether a new request would be refused. */
  get full(): boolean {
    return this.waiting >= this.maxLength;
  }

  /** Requests waiting or running. */
  get size(): number {
    return this.waiting + this.running;
  }

  /** Runs `fn` after every earlier request; a request aborted while it waits never runs. */
  run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.waiting >= this.maxLength) return Promise.reject(new QueueFullError(this.maxLength));
    this.waiting++;
    const result = this.tail.then(async () => {
      this.waiting--;
      if (signal?.aborted) throw new LlamaProError('ABORTED', 'the request was cancelled while it waited');
      this.running++;
      try {
        return await fn();
      } finally {
        this.running--;
        if (this.size === 0) for (const r of this.idleResolvers.splice(0)) r();
      }
    });
    this.tail = result.catch(() => undefined);
    return result;
  }

  /** Resolves when nothing waits or runs. */
  idle(): Promise<void> {
    if (this.size === 0) return Promise.resolve();
    return new Promise((r) => this.idleResolvers.push(r));
  }
}
