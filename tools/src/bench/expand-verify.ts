/**
 * bench:expand-verify — cost of `expand --verify` (the streaming verifier) against expand alone, on a
 * synthetic 271M-parameter bf16 LLaMA checkpoint (LLAMA_271M: 16 layers -> 20 with interleaved
 * --groups 4). Each run is a child process (expand-run.js, mode `hash` vs `verify`); rounds alternate the
 * two, the report gives the median wall time and peak RSS of each and their ratios.
 *
 *   npm run bench:expand-verify -- [--dir /tmp] [--rounds 3] [--keep]
 */
import { spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LLAMA_271M, makeSynthetic } from './make-synthetic';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const opt = (k: string) => {
    const i = args.indexOf(k);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const rounds = Number(opt('--rounds') ?? 3);
  const root = await fsp.mkdtemp(path.join(path.resolve(opt('--dir') ?? os.tmpdir()), 'lp-bench-verify-'));
  try {
    const base = path.join(root, 'base');
    const made = await makeSynthetic(base, { layers: 16, config: LLAMA_271M });
    const runner = path.join(__dirname, 'expand-run.js');
    const runs: Record<'hash' | 'verify', { wall: number; rssMB: number }[]> = { hash: [], verify: [] };
    let maxAbsDiff: number | undefined;
    for (let r = 0; r < rounds; r++) {
      for (const mode of ['hash', 'verify'] as const) {
        const out = path.join(root, `out-${mode}`);
        await fsp.rm(out, { recursive: true, force: true });
        const t0 = process.hrtime.bigint();
        const p = spawnSync(process.execPath, [runner, base, out, '4', mode], { encoding: 'utf8' });
        const wall = Number(process.hrtime.bigint() - t0) / 1e9;
        if (p.status !== 0) throw new Error(`expand-run ${mode} failed: ${p.stderr}`);
        const self = JSON.parse(p.stdout.trim().split('\n').pop()!) as { maxRssKiB: number; maxAbsDiff?: number };
        if (mode === 'verify') maxAbsDiff = self.maxAbsDiff;
        runs[mode].push({ wall, rssMB: (self.maxRssKiB * 1024) / 1e6 });
      }
    }
    const w = (m: 'hash' | 'verify') => median(runs[m].map((x) => x.wall));
    const m = (m: 'hash' | 'verify') => median(runs[m].map((x) => x.rssMB));
    const f = (x: number) => x.toFixed(2);
    process.stdout.write(
      [
        `checkpoint:      271M parameters, 16 layers, ${f(made.bytes / 1e9)} GB bf16 -> 20 layers (interleaved --groups 4), ${rounds} round(s), medians`,
        `expand:          ${f(w('hash'))} s, peak RSS ${m('hash').toFixed(0)} MB`,
        `expand --verify: ${f(w('verify'))} s, peak RSS ${m('verify').toFixed(0)} MB (max |Δlogit| = ${maxAbsDiff})`,
        `ratio:           wall ${f(w('verify') / w('hash'))}x, peak RSS ${f(m('verify') / m('hash'))}x`,
        '',
      ].join('\n'),
    );
  } finally {
    if (!args.includes('--keep')) await fsp.rm(root, { recursive: true, force: true });
  }
}

main().catch((e: Error) => {
  process.stderr.write(`bench:expand-verify: ${e.message}\n`);
  process.exit(1);
});
