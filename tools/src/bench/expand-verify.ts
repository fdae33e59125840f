/**
 * bench:expand-verify — cost of `llama-pro expand --verify` against `llama-pro expand` alone, both run
 * as the CLI (packages/cli/dist/bin.js, the user's code path: streaming verifier, onnxruntime matmul
 * kernel), on a synthetic 271M-parameter bf16 LLaMA checkpoint (LLAMA_271M: 16 layers -> 20 with
 * interleaved --groups 4). Rounds alternate the two; the report gives the median wall time and peak RSS
 * and CPU time (of the CLI process, all threads, via rss-on-exit) of each, their ratios, and the load
 * average (on a busy machine the CPU-time ratio is the steadier one).
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
    const cli = path.resolve(__dirname, '../../../packages/cli/dist/bin.js');
    const preload = path.join(__dirname, 'rss-on-exit.js');
    const rssFile = path.join(root, 'rss.json');
    const runs: Record<'expand' | 'verify', { wall: number; rssMB: number; cpu: number }[]> = { expand: [], verify: [] };
    let verification: { maxAbsDiff?: number; identical?: boolean } | undefined;
    const load0 = os.loadavg()[0]!;
    for (let r = 0; r < rounds; r++) {
      for (const mode of ['expand', 'verify'] as const) {
        const out = path.join(root, `out-${mode}`);
        await fsp.rm(out, { recursive: true, force: true });
        const argv = ['--require', preload, cli, 'expand', base, out, '--groups', '4', '--json', ...(mode === 'verify' ? ['--verify'] : [])];
        const t0 = process.hrtime.bigint();
        const p = spawnSync(process.execPath, argv, { encoding: 'utf8', env: { ...process.env, LLAMA_PRO_BENCH_RSS_FILE: rssFile, LLAMA_PRO_PROGRESS: 'none' } });
        const wall = Number(process.hrtime.bigint() - t0) / 1e9;
        if (p.status !== 0) throw new Error(`llama-pro expand${mode === 'verify' ? ' --verify' : ''} failed (exit ${p.status}): ${p.stderr}`);
        const self = JSON.parse(await fsp.readFile(rssFile, 'utf8')) as { maxRssKiB: number; cpuMicros: number };
        if (mode === 'verify') verification = (JSON.parse(p.stdout.trim().split('\n').pop()!) as { verification?: typeof verification }).verification;
        runs[mode].push({ wall, rssMB: (self.maxRssKiB * 1024) / 1e6, cpu: self.cpuMicros / 1e6 });
      }
    }
    const load1 = os.loadavg()[0]!;
    const w = (m: 'expand' | 'verify') => median(runs[m].map((x) => x.wall));
    const m = (m: 'expand' | 'verify') => median(runs[m].map((x) => x.rssMB));
    const c = (m: 'expand' | 'verify') => median(runs[m].map((x) => x.cpu));
    const f = (x: number) => x.toFixed(2);
    process.stdout.write(
      [
        `checkpoint:      271M parameters, 16 layers, ${f(made.bytes / 1e9)} GB bf16 -> 20 layers (interleaved --groups 4), ${rounds} round(s), medians; CLI process each`,
        `expand:          ${f(w('expand'))} s, peak RSS ${m('expand').toFixed(0)} MB, CPU ${f(c('expand'))} s`,
        `expand --verify: ${f(w('verify'))} s, peak RSS ${m('verify').toFixed(0)} MB, CPU ${f(c('verify'))} s (${JSON.stringify(verification)})`,
        `ratio:           wall ${f(w('verify') / w('expand'))}x, peak RSS ${f(m('verify') / m('expand'))}x, CPU ${f(c('verify') / c('expand'))}x`,
        `per round:       ${runs.verify.map((v, i) => `${f(v.wall / runs.expand[i]!.wall)}x`).join(' ')} (wall, verify / expand of the same round)`,
        `load average:    ${f(load0)} -> ${f(load1)} (1 min, ${os.cpus().length} CPUs)`,
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
