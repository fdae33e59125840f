/** A FIFO queue in front of one model: requests run one at a time, in arrival order. */
import { LlamaProError } from '@llama-pro/core';

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

export class RequestQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private waiting = 0;
  private runningCount = 0;
  private idleResolvers: (() => void)[] = [];
  private closed = false;
  private readonly shutdown = new AbortController();

  constructor(readonly maxLength: number) {}

  /** Aborts when the queue is closed: running work should stop and answer 503. */
  get shutdownSignal(): AbortSignal {
    return this.shutdown.signal;
  }

  /** Refuses new work and every request still waiting (ShuttingDownError), and aborts the running one. */
  close(): void {
    this.closed = true;
    this.shutdown.abort();
  }

  /** Whether a new request would be refused. */
  get full(): boolean {
    return this.waiting >= this.maxLength;
  }

  /** Requests running now (0 or 1). */
  get running(): number {
    return this.runningCount;
  }

  /** Requests waiting or running. */
  get size(): number {
    return this.waiting + this.runningCount;
  }

  /** Runs `fn` after every earlier request; a request aborted while it waits never runs. */
  run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.closed) return Promise.reject(new ShuttingDownError());
    if (this.waiting >= this.maxLength) return Promise.reject(new QueueFullError(this.maxLength));
    this.waiting++;
    const result = this.tail.then(async () => {
      this.waiting--;
      try {
        if (this.closed) throw new ShuttingDownError();
        if (signal?.aborted) throw new LlamaProError('ABORTED', 'the request was cancelled while it waited');
        this.runningCount++;
        try {
          return await fn();
        } finally {
          this.runningCount--;
        }
      } finally {
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
