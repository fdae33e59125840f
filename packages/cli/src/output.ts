/** Small helpers for CLI output: aligned tables, human sizes, and the progress reporter choice. */
import { JsonLinesProgress, type ProgressReporter } from '@llama-pro/core';
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

/** A progress bar on a TTY, JSON lines on stderr otherwise. */
export function progressReporter(stream: NodeJS.WriteStream = process.stderr): ProgressReporter {
  if (!stream.isTTY) return new JsonLinesProgress(stream);
  let bar: SingleBar | undefined;
  return {
    start(total, label) {
      bar = new SingleBar({ format: `${label} [{bar}] {percentage}% | {value}/{total} | ETA {eta_formatted} {extra}`, stream, hideCursor: true }, Presets.shades_classic);
      bar.start(total, 0, { extra: '' });
    },
    update(done, fields = {}) {
      const extra = Object.entries(fields)
        .map(([k, v]) => `${k}=${typeof v === 'number' ? Number(v.toPrecision(4)) : String(v)}`)
        .join(' ');
      bar?.update(done, { extra });
    },
    stop() {
      bar?.stop();
    },
  };
}
