/**
 * bench:expand — streaming expansion of a synthetic LLaMA-2-7B-shaped bf16 checkpoint against `cp -r`
 * on the same disk, measured in the same run.
 *
 *   npm run bench:expand -- [--dir /tmp] [--size 5.4GB] [--rounds 3] [--base DIR] [--keep]
 *
 * Baselines (each followed by `sync` of the copied files, since the expander fsyncs every shard):
 *   - `cp` of the same bytes: `cp -r` of a dense copy of the expanded model, i.e. the very bytes the
 *     expansion produces, all of them real data (the target: expansion wall <= 1.1x this). The expanded
 *     model itself is not copied directly: its zeroed tensors are holes, and GNU cp copies sparse files
 *     through user space, which would make the baseline slow;
 *   - `cp` of the input checkpoint, which has fewer bytes (the expansion writes about 1.25x as much),
 *     reported for context.
 * Every timed run starts with its source in the page cache (read once beforehand), so that neither
 * side pays for reading from disk. The expander runs in a child process, with the base sha256 (the default), without it
 * (`--no-base-hash`), and with tensor bytes forced through user space (what it does without the
 * native addon). Rounds alternate all of them so that background load and writeback affect each
 * alike; the report gives the minimum and the median. Peak RSS is the child's (`/usr/bin/time -v`
 * when present, else its own maxRSS). Targets: peak RSS <= 256 MB, wall <= 1.1x cp of the same bytes.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { nativeIoStatus, normalizeConfig, parseByteSize, readConfigJson } from '@llama-pro/core';
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

const min = (xs: number[]) => Math.min(...xs);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

interface Run {
  wall: number;
  rssKiB: number;
  cpu: number;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const opt = (k: string) => {
    const i = args.indexOf(k);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const parent = path.resolve(opt('--dir') ?? os.tmpdir());
  const root = await fsp.mkdtemp(path.join(parent, 'lp-bench-expand-'));
  const out = path.join(root, 'expanded');
  const copy = path.join(root, 'copy');
  const dense = path.join(root, 'expanded-dense');
  try {
    let base = opt('--base');
    let layers: number;
    if (base) {
      base = path.resolve(base);
      layers = normalizeConfig(await readConfigJson(base)).numHiddenLayers;
    } else {
      base = path.join(root, 'base');
      const size = opt('--size');
      const bytes = chooseSize(parent, size ? parseByteSize(size) : undefined);
      process.stderr.write(`writing a ${(bytes / 1e9).toFixed(2)} GB synthetic checkpoint to ${base} ...\n`);
      layers = (await makeSynthetic(base, { bytes })).layers;
    }
    // Grow by about a quarter, as the paper's 32 -> 40: the divisor of the layer count closest to L/4 groups.
    const divisors = Array.from({ length: layers }, (_, i) => i + 1).filter((d) => layers % d === 0);
    const groups = divisors.reduce((best, d) => (Math.abs(d - layers / 4) < Math.abs(best - layers / 4) ? d : best), divisors[0]!);
    const inBytes = await dirBytes(base);
    execFileSync('sync');

    const timeBin = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;
    const cpuOf = (stderr: string): number => {
      const u = /User time \(seconds\): ([\d.]+)/.exec(stderr);
      const k = /System time \(seconds\): ([\d.]+)/.exec(stderr);
      return u && k ? Number(u[1]) + Number(k[1]) : NaN;
    };
    const dropAndSync = (...dirs: string[]) => {
      for (const d of dirs) execFileSync('rm', ['-rf', d]);
      execFileSync('sync');
    };
    /** Reads every file of `d` once, so that each timed run starts with its source in the page cache. */
    const warm = (d: string) => {
      const files = execFileSync('ls', [d], { encoding: 'utf8' }).trim().split('\n').map((f) => path.join(d, f));
      execFileSync('cat', files, { stdio: ['ignore', 'ignore', 'inherit'] });
    };
    /** `cp -r from copy` + sync of the copied files; returns seconds. */
    const cp = (from: string): number => {
      warm(from);
      const s = secondsOf(() => {
        execFileSync('cp', ['-r', from, copy]);
        const files = execFileSync('ls', [copy], { encoding: 'utf8' }).trim().split('\n').map((f) => path.join(copy, f));
        execFileSync('sync', files);
      });
      dropAndSync(copy);
      return s;
    };
    const child = path.join(__dirname, 'expand-run.js');
    let outBytes = 0;
    let layersOut = 0;
    let copyPath = '';
    const expand = (mode: 'hash' | 'no-hash' | 'user'): Run => {
      let rssKiB = 0;
      let cpu = NaN;
      let childOut = '';
      const argv = [child, base!, out, String(groups), mode];
      warm(base!);
      const wall = secondsOf(() => {
        const r = timeBin ? spawnSync(timeBin, ['-v', process.execPath, ...argv], { encoding: 'utf8' }) : spawnSync(process.execPath, argv, { encoding: 'utf8' });
        if (r.status !== 0) throw new Error(`expander failed: ${r.stderr}`);
        childOut = r.stdout;
        const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr);
        if (m) rssKiB = Number(m[1]);
        cpu = cpuOf(r.stderr);
      });
      const self = JSON.parse(childOut.trim().split('\n').pop()!) as { maxRssKiB: number; layers: number; copy: { kernelBytes: number; userBytes: number } };
      layersOut = self.layers;
      if (mode === 'hash') copyPath = `${(self.copy.kernelBytes / 1e9).toFixed(2)} GB in the kernel, ${(self.copy.userBytes / 1e9).toFixed(2)} GB through user space`;
      if (!rssKiB) rssKiB = self.maxRssKiB;
      return { wall, rssKiB, cpu };
    };

    const rounds = Number(opt('--rounds') ?? 3);
    const cpSame: number[] = [];
    const cpInput: number[] = [];
    const hash: Run[] = [];
    const noHash: Run[] = [];
    const user: Run[] = [];
    for (let r = 0; r < rounds; r++) {
      cpInput.push(cp(base));
      hash.push(expand('hash'));
      if (r === 0) {
        outBytes = await dirBytes(out);
        execFileSync('cp', ['-r', '--sparse=never', out, dense]);
        execFileSync('sync');
      }
      dropAndSync(out);
      cpSame.push(cp(dense));
      noHash.push(expand('no-hash'));
      dropAndSync(out);
      user.push(expand('user'));
      dropAndSync(out);
      process.stderr.write(
        `round ${r + 1}/${rounds}: expand ${hash[r]!.wall.toFixed(2)} s, no hash ${noHash[r]!.wall.toFixed(2)} s, user-space copy ${user[r]!.wall.toFixed(2)} s; cp same bytes ${cpSame[r]!.toFixed(2)} s, cp input ${cpInput[r]!.toFixed(2)} s\n`,
      );
    }
    const walls = (xs: Run[]) => xs.map((x) => x.wall);
    const ratio = (xs: number[], base: number[]) => ({ min: min(xs) / min(base), median: median(xs) / median(base) });
    const rssKiB = Math.max(...[...hash, ...noHash, ...user].map((e) => e.rssKiB));
    const rssMB = (rssKiB * 1024) / 1e6;
    const vsSame = ratio(walls(hash), cpSame);
    const report = {
      checkpoint: { layers, bytes: inBytes, dtype: 'BF16', shape: 'LLaMA-2-7B (4096/11008/32 heads/32000 vocab)' },
      expansion: { strategy: `interleaved --groups ${groups}`, layers: layersOut, bytesWritten: outBytes, copyPath },
      nativeIo: nativeIoStatus(),
      rounds,
      seconds: {
        expand: walls(hash),
        expandNoBaseHash: walls(noHash),
        expandUserSpaceCopy: walls(user),
        cpSameBytes: cpSame,
        cpInput,
      },
      ratio: {
        vsCpSameBytes: vsSame,
        noBaseHashVsCpSameBytes: ratio(walls(noHash), cpSame),
        userSpaceCopyVsCpSameBytes: ratio(walls(user), cpSame),
        vsCpInput: ratio(walls(hash), cpInput),
      },
      cpuSeconds: { expand: min(hash.map((e) => e.cpu)), expandNoBaseHash: min(noHash.map((e) => e.cpu)), expandUserSpaceCopy: min(user.map((e) => e.cpu)) },
      peakRssMB: rssMB,
      rssSource: timeBin ? '/usr/bin/time -v (child)' : 'child process.resourceUsage().maxRSS',
      loadAverage: os.loadavg(),
      targets: { peakRss256MB: rssMB <= 256, wallWithin1_1xCpSameBytes: vsSame.median <= 1.1 },
    };
    const f = (x: number) => x.toFixed(2);
    process.stdout.write(
      [
        `checkpoint:        ${layers} layers, ${f(inBytes / 1e9)} GB bf16 -> ${layersOut} layers, ${f(outBytes / 1e9)} GB written (${copyPath})`,
        `cp same bytes:     ${f(min(cpSame))} s min, ${f(median(cpSame))} s median   (cp -r of a dense copy of the expanded model + sync)`,
        `cp input:          ${f(min(cpInput))} s min, ${f(median(cpInput))} s median   (cp -r of the ${f(inBytes / 1e9)} GB input + sync)`,
        `expand:            ${f(min(walls(hash)))} s min, ${f(median(walls(hash)))} s median   (fsync of every shard, sha256 of the base shards)`,
        `  ratio:           ${f(vsSame.median)}x cp of the same bytes (median; min ${f(vsSame.min)}x), ${f(report.ratio.vsCpInput.median)}x cp of the input`,
        `no base hash:      ${f(min(walls(noHash)))} s min = ${f(report.ratio.noBaseHashVsCpSameBytes.median)}x cp of the same bytes (median)`,
        `user-space copy:   ${f(min(walls(user)))} s min = ${f(report.ratio.userSpaceCopyVsCpSameBytes.median)}x cp of the same bytes (median; without the native addon)`,
        `CPU (user+sys):    expand ${f(report.cpuSeconds.expand)} s, no hash ${f(report.cpuSeconds.expandNoBaseHash)} s, user-space copy ${f(report.cpuSeconds.expandUserSpaceCopy)} s`,
        `peak RSS:          ${rssMB.toFixed(0)} MB (${report.rssSource})`,
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
