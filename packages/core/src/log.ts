/**
 * Progress and log output: bars on a TTY (provided by the CLI), JSON lines otherwise. Core only defines
 * the contract and the JSON-lines implementation, so libraries stay free of terminal dependencies.
 */
export interface ProgressReporter {
  start(total: number, label: string): void;
  update(done: number, fields?: Record<string, unknown>): void;
  stop(): void;
}

/** One JSON object per update on a stream (stderr by default), throttled. */
export class JsonLinesProgress implements ProgressReporter {
  private total = 0;
  private label = '';
  private last = 0;
  private startedAt = 0;
  constructor(
    private readonly out: NodeJS.WritableStream = process.stderr,
    private readonly minIntervalMs = 1000,
  ) {}

  start(total: number, label: string): void {
    this.total = total;
    this.label = label;
    this.startedAt = Date.now();
    this.emit({ event: 'start', done: 0 });
  }

  update(done: number, fields: Record<string, unknown> = {}): void {
    const now = Date.now();
    if (now - this.last < this.minIntervalMs && done < this.total) return;
    this.last = now;
    this.emit({ event: 'progress', done, ...fields });
  }

  stop(): void {
    this.emit({ event: 'end', elapsed_s: (Date.now() - this.startedAt) / 1000 });
  }

  private emit(o: Record<string, unknown>): void {
    this.out.write(JSON.stringify({ task: this.label, total: this.total, ...o }) + '\n');
  }
}

export const silentProgress: ProgressReporter = { start() {}, update() {}, stop() {} };
