/**
 * bench:expand — streaming expansion of a synthetic LLaMA-2-7B-shaped bf16 checkpoint against `cp -r`
 * of the same checkpoint on the same disk, measured in the same run.
 *
 *   npm run bench:expand -- [--dir /tmp] [--size 5.4GB] [--keep]
 *
 * Reports wall time (expansion vs `cp -r`, and vs `cp -r` + `sync` of the copy, since the expander
 * fsyncs every shard), the ratio per byte written (the expansion writes more bytes than it reads), and
 * the expander's peak RSS (child process; `/usr/bin/time -v` when present, else its own maxRSS).
 * Targets: peak RSS <= 256 MB, wall <= 1.1x cp.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseByteSize } from '@llama-pro/core';
import { chooseSize, makeSynthetic } from './make-synthetic';

function secondsOf(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function dirBytes(d: string): Promise<number> {
  let n = 0;
  for (const f of await fsp.readdir(d)) n += (await fsp.stat(path.join(d, f))).size;
  return n;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const opt = (k: string) => {
    const i = args.indexOf(k);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const parent = path.resolve(opt('--dir') ?? os.tmpdir());
  const root = await fsp.mkdtemp(path.join(parent, 'lp-bench-expand-'));
  const base = path.join(root, 'base');
  const out = path.join(root, 'expanded');
  const copy = path.join(root, 'copy');
  try {
    const size = opt('--size');
    const bytes = chooseSize(parent, size ? parseByteSize(size) : undefined);
    process.stderr.write(`writing a ${(bytes / 1e9).toFixed(2)} GB synthetic checkpoint to ${base} ...\n`);
    const syn = await makeSynthetic(base, { bytes });
    // Grow by about a quarter, as the paper's 32 -> 40: the divisor of the layer count closest to L/4 groups.
    const divisors = Array.from({ length: syn.layers }, (_, i) => i + 1).filter((d) => syn.layers % d === 0);
    const groups = divisors.reduce((best, d) => (Math.abs(d - syn.layers / 4) < Math.abs(best - syn.layers / 4) ? d : best), divisors[0]!);
    const inBytes = await dirBytes(base);
    execFileSync('sync');

    const timeBin = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;
    const cpuOf = (stderr: string): number => {
      const u = /User time \(seconds\): ([\d.]+)/.exec(stderr);
      const k = /System time \(seconds\): ([\d.]+)/.exec(stderr);
      return u && k ? Number(u[1]) + Number(k[1]) : NaN;
    };
    let cpCpu = NaN;
    const cp = () => {
      const s = secondsOf(() => {
        if (timeBin) cpCpu = cpuOf(spawnSync(timeBin, ['-v', 'cp', '-r', base, copy], { encoding: 'utf8' }).stderr);
        else execFileSync('cp', ['-r', base, copy]);
      });
      const files = execFileSync('ls', [copy], { encoding: 'utf8' }).trim().split('\n').map((f) => path.join(copy, f));
      const sync = secondsOf(() => execFileSync('sync', files));
      execFileSync('rm', ['-rf', copy]);
      execFileSync('sync');
      return { cp: s, cpSync: s + sync };
    };
    const child = path.join(__dirname, 'expand-run.js');
    let outBytes = 0;
    let layersOut = 0;
    const expand = (mode = 'hash') => {
      let rssKiB = 0;
      let cpu = NaN;
      let childOut = '';
      const wall = secondsOf(() => {
        const r = timeBin
          ? spawnSync(timeBin, ['-v', process.execPath, child, base, out, String(groups), mode], { encoding: 'utf8' })
          : spawnSync(process.execPath, [child, base, out, String(groups), mode], { encoding: 'utf8' });
        if (r.status !== 0) throw new Error(`expander failed: ${r.stderr}`);
        childOut = r.stdout;
        const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr);
        if (m) rssKiB = Number(m[1]);
        cpu = cpuOf(r.stderr);
      });
      const self = JSON.parse(childOut.trim().split('\n').pop()!) as { maxRssKiB: number; bytes: number; layers: number };
      layersOut = self.layers;
      if (!rssKiB) rssKiB = self.maxRssKiB;
      return { wall, rssKiB, cpu };
    };

    // Alternate the two so that background load and writeback affect both alike; report min and median.
    const rounds = Number(opt('--rounds') ?? 3);
    const cps: { cp: number; cpSync: number }[] = [];
    const exps: { wall: number; rssKiB: number; cpu: number }[] = [];
    const cpCpus: number[] = [];
    const noHash: { wall: number; rssKiB: number; cpu: number }[] = [];
    for (let r = 0; r < rounds; r++) {
      cps.push(cp());
      cpCpus.push(cpCpu);
      exps.push(expand());
      outBytes = await dirBytes(out);
      execFileSync('rm', ['-rf', out]);
      execFileSync('sync');
      noHash.push(expand('no-hash'));
      execFileSync('rm', ['-rf', out]);
      execFileSync('sync');
    }
    const min = (xs: number[]) => Math.min(...xs);
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const cpS = min(cps.map((c) => c.cp));
    const cpSyncS = min(cps.map((c) => c.cpSync));
    const wall = min(exps.map((e) => e.wall));
    const medRatio = median(exps.map((e) => e.wall)) / median(cps.map((c) => c.cpSync));
    const perByte = wall / outBytes / (cpSyncS / inBytes);
    const rssKiB = Math.max(...exps.map((e) => e.rssKiB), ...noHash.map((e) => e.rssKiB));
    const rssMB = (rssKiB * 1024) / 1e6;
    const report = {
      checkpoint: { layers: syn.layers, bytes: inBytes, dtype: 'BF16', shape: 'LLaMA-2-7B (4096/11008/32 heads/32000 vocab)' },
      expansion: { strategy: `interleaved --groups ${groups}`, layers: layersOut, bytesWritten: outBytes },
      rounds,
      seconds: { expandMin: wall, cpMin: cpS, cpPlusSyncMin: cpSyncS, expandRuns: exps.map((e) => e.wall), cpRuns: cps },
      ratio: { vsCp: wall / cpS, vsCpPlusSync: wall / cpSyncS, medianVsCpPlusSync: medRatio, perByteVsCpPlusSync: perByte },
      withoutBaseHash: { expandMin: min(noHash.map((e) => e.wall)), vsCpPlusSync: min(noHash.map((e) => e.wall)) / cpSyncS, cpuMin: min(noHash.map((e) => e.cpu)) },
      cpuSeconds: { expandMin: min(exps.map((e) => e.cpu)), cpMin: min(cpCpus), ratio: min(exps.map((e) => e.cpu)) / min(cpCpus) },
      peakRssMB: rssMB,
      rssSource: timeBin ? '/usr/bin/time -v (child)' : 'child process.resourceUsage().maxRSS',
      loadAverage: os.loadavg(),
      targets: { peakRss256MB: rssMB <= 256, wallWithin1_1xCp: wall / cpSyncS <= 1.1 },
    };
    process.stdout.write(
      [
        `checkpoint: ${syn.layers} layers, ${(inBytes / 1e9).toFixed(2)} GB bf16 -> ${layersOut} layers, ${(outBytes / 1e9).toFixed(2)} GB written`,
        `cp -r:          ${cpS.toFixed(2)} s   (cp -r + sync: ${cpSyncS.toFixed(2)} s)   best of ${rounds}`,
        `expand:         ${wall.toFixed(2)} s   best of ${rounds} (includes fsync of every shard and sha256 of the base shards)`,
        `ratio:          ${(wall / cpSyncS).toFixed(2)}x cp+sync (median ${medRatio.toFixed(2)}x), ${(wall / cpS).toFixed(2)}x cp, ${perByte.toFixed(2)}x cp+sync per byte written`,
        `no base hash:   ${report.withoutBaseHash.expandMin.toFixed(2)} s = ${report.withoutBaseHash.vsCpPlusSync.toFixed(2)}x cp+sync (--no-base-hash), CPU ${report.withoutBaseHash.cpuMin.toFixed(2)} s`,
        `CPU (user+sys): expand ${report.cpuSeconds.expandMin.toFixed(2)} s vs cp ${report.cpuSeconds.cpMin.toFixed(2)} s (${report.cpuSeconds.ratio.toFixed(2)}x; wall on a loaded machine stretches with CPU)`,
        `peak RSS:       ${rssMB.toFixed(0)} MB (${report.rssSource})`,
        JSON.stringify(report),
      ].join('\n') + '\n',
    );
  } finally {
    if (!args.includes('--keep')) await fsp.rm(root, { recursive: true, force: true });
  }
}

main().catch((e: Error) => {
  process.stderr.write(`bench:expand: ${e.message}\n`);
  process.exit(1);
});
