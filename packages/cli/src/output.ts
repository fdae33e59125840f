/** Small helpers for CLI output: aligned tables, human sizes, and the progress reporter choice. */
import * as fs from 'node:fs';
import { JsonLinesProgress, UsageError, type ProgressReporter } from '@llama-pro/core';
import { SingleBar, Presets } from 'cli-progress';

export function humanBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(2)} ${units[i]}`;
}

export function humanCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(n);
}

export function table(rows: readonly (readonly (string | number)[])[]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, String(c).length)));
  return rows.map((r) => r.map((c, i) => String(c).padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

/**
 * Where progress goes, from LLAMA_PRO_PROGRESS:
 *   auto (default)  a bar on stderr when it is a terminal, else JSON lines on stderr
 *   bar | json      force one of them (on stderr)
 *   fd:N            JSON lines on file descriptor N (e.g. `3>progress.jsonl`): stderr keeps only human lines
 *   none            no progress
 * Off a terminal, progress lines are exactly the stderr lines that start with `{"task":`; every other line
 * is for people.
 */
export type ProgressMode = { kind: 'auto' | 'bar' | 'json' | 'none' } | { kind: 'fd'; fd: number };

export function progressMode(env: NodeJS.ProcessEnv = process.env): ProgressMode {
  const v = (env['LLAMA_PRO_PROGRESS'] ?? 'auto').trim().toLowerCase();
  if (v === '' || v === 'auto' || v === 'bar' || v === 'json' || v === 'none') return { kind: (v || 'auto') as 'auto' };
  const m = /^fd:(\d+)$/.exec(v);
  if (m && Number(m[1]) > 2) return { kind: 'fd', fd: Number(m[1]) };
  throw new UsageError(`LLAMA_PRO_PROGRESS must be auto, bar, json, none or fd:N with N >= 3, got "${env['LLAMA_PRO_PROGRESS']}"`);
}

const CLEAR_LINE = '\r\x1b[2K';

/**
 * A cli-progress bar that log lines pass through: while it is shown, every other write to `stream`
 * first clears the bar's line, then the bar is drawn again below the text, so messages from anywhere
 * (backends log to stderr directly) never land inside the bar.
 */
export class TerminalProgress implements ProgressReporter {
  private bar: SingleBar | undefined;
  private restore: (() => void) | undefined;
  private partial = false;

  constructor(private readonly stream: NodeJS.WriteStream) {}

  start(total: number, label: string): void {
    this.stop();
    const stream = this.stream;
    const original = stream.write;
    const raw = original.bind(stream) as (chunk: string | Uint8Array, ...rest: unknown[]) => boolean;
    // The bar writes through a view of the stream that bypasses the interception below.
    const direct = Object.create(stream, { write: { value: raw } }) as NodeJS.WriteStream;
    this.bar = new SingleBar({ format: `${label} [{bar}] {percentage}% | {value}/{total} | ETA {eta_formatted} {extra}`, stream: direct, hideCursor: true, clearOnComplete: false }, Presets.shades_classic);
    const intercept = (chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
      const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
      if (!this.partial) raw(CLEAR_LINE);
      const ok = raw(chunk, ...rest);
      this.partial = !text.endsWith('\n');
      if (!this.partial && this.bar) {
        // cli-progress redraws only when its text changed: forget the last drawing so the bar comes back now.
        (this.bar as unknown as { lastDrawnString: string | null }).lastDrawnString = null;
        this.bar.render();
      }
      return ok;
    };
    stream.write = intercept as typeof stream.write;
    this.restore = () => {
      stream.write = original;
    };
    this.bar.start(total, 0, { extra: '' });
  }

  update(done: number, fields: Record<string, unknown> = {}): void {
    const extra = Object.entries(fields)
      .map(([k, v]) => `${k}=${typeof v === 'number' ? Number(v.toPrecision(4)) : String(v)}`)
      .join(' ');
    this.bar?.update(done, { extra });
  }

  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
    this.restore?.();
    this.restore = undefined;
    this.partial = false;
  }
}

/** The reporter LLAMA_PRO_PROGRESS asks for (see progressMode): a bar on a terminal, JSON lines elsewhere. */
export function progressReporter(stream: NodeJS.WriteStream = process.stderr, env: NodeJS.ProcessEnv = process.env): ProgressReporter {
  const mode = progressMode(env);
  if (mode.kind === 'none') return { start() {}, update() {}, stop() {} };
  if (mode.kind === 'fd') return new JsonLinesProgress(new FdLines(mode.fd) as unknown as NodeJS.WritableStream);
  if (mode.kind === 'bar' || (mode.kind === 'auto' && stream.isTTY)) return new TerminalProgress(stream);
  return new JsonLinesProgress(stream);
}

/** Whole lines to a file descriptor the caller opened (`3>file`), written synchronously so they are never split. */
class FdLines {
  constructor(private readonly fd: number) {}
  write(s: string): boolean {
    try {
      fs.writeSync(this.fd, s);
    } catch (e) {
      throw new UsageError(`LLAMA_PRO_PROGRESS=fd:${this.fd} but file descriptor ${this.fd} is not open for writing (${(e as NodeJS.ErrnoException).code}); open it, e.g. ${this.fd}>progress.jsonl`);
    }
    return true;
  }
}
