/**
 * relaunchWithHugePages: the decision (hugePagePlan, every branch) and, in a real child process, the
 * restart itself: same pid, same arguments and exit code, malloc on huge pages in the restarted image, the
 * caller's GLIBC_TUNABLES given back to the process and to its children.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HUGEPAGES_ENV, HUGETLB_TUNABLE, hugePagePlan, type HugePageFacts } from '../src';
import { hugePageFacts } from '../src/io/native';

const linux: HugePageFacts = { platform: 'linux', glibcVersion: '2.36', thpMode: 'madvise', canExec: true, env: { PATH: '/usr/bin', HOME: '/root' } };

describe('hugePagePlan', () => {
  it('restarts on Linux, glibc >= 2.35, THP madvise, adding the tunable to the caller\'s and remembering them', () => {
    const p = hugePagePlan(linux);
    expect(p.relaunch).toBe(true);
    if (!p.relaunch) return;
    expect(p.env).toEqual({ PATH: '/usr/bin', HOME: '/root', GLIBC_TUNABLES: HUGETLB_TUNABLE, LLAMA_PRO_RELAUNCHED_GLIBC_TUNABLES: 'null' });
    const q = hugePagePlan({ ...linux, glibcVersion: '2.40', env: { GLIBC_TUNABLES: 'glibc.malloc.check=0' } });
    expect(q.relaunch && q.env).toEqual({ GLIBC_TUNABLES: `glibc.malloc.check=0:${HUGETLB_TUNABLE}`, LLAMA_PRO_RELAUNCHED_GLIBC_TUNABLES: '"glibc.malloc.check=0"' });
  });

  it.each<[string, Partial<HugePageFacts>, RegExp]>([
    ['opted out', { env: { [HUGEPAGES_ENV]: '0' } }, /^off \(LLAMA_PRO_HUGEPAGES=0\)$/],
    ['another OS', { platform: 'darwin' }, /^not used on darwin$/],
    ['the tunable already chosen', { env: { GLIBC_TUNABLES: 'glibc.malloc.hugetlb=0' } }, /^as GLIBC_TUNABLES sets it \(glibc\.malloc\.hugetlb=0\)$/],
    ['not glibc (musl)', { glibcVersion: undefined }, /not glibc/],
    ['glibc 2.34', { glibcVersion: '2.34' }, /glibc 2\.34 predates glibc\.malloc\.hugetlb \(2\.35\)/],
    ['glibc 1.99', { glibcVersion: '1.99' }, /predates/],
    ['no THP', { thpMode: undefined }, /no transparent huge pages/],
    ['THP always', { thpMode: 'always' }, /^on: the kernel backs large allocations/],
    ['THP never', { thpMode: 'never' }, /"never"/],
    ['a Node IPC child', { env: { NODE_CHANNEL_FD: '3' } }, /IPC channel/],
    ['no way to exec', { canExec: false }, /needs @llama-pro\/native-io \(its execve\)/],
  ])('does not restart: %s', (_what, change, detail) => {
    const p = hugePagePlan({ ...linux, ...change });
    expect(p.relaunch).toBe(false);
    expect(!p.relaunch && p.detail).toMatch(detail);
  });
});

// The restart needs the built module (a child process runs it as bin.js does); CI builds before testing.
const BUILT = path.resolve(__dirname, '..', 'dist', 'io', 'native.js');
const CHILD = `
const n = require(${JSON.stringify(BUILT)});
const status = n.relaunchWithHugePages();
const environ = require('fs').readFileSync('/proc/self/environ', 'utf8');
const big = new Float32Array(64 << 20); big.fill(1); // 256 MiB from malloc (mmap: huge-page advised when on)
const huge = Number(/AnonHugePages:\\s+(\\d+)/.exec(require('fs').readFileSync('/proc/self/smaps_rollup', 'utf8'))[1]);
const grandchild = require('child_process').execFileSync('/bin/sh', ['-c', 'echo "[$GLIBC_TUNABLES]"'], { encoding: 'utf8' }).trim();
if (process.env.WRITE_FD) require('fs').writeSync(Number(process.env.WRITE_FD), 'through fd ' + process.env.WRITE_FD);
console.log(JSON.stringify({ pid: process.pid, argv: process.argv.slice(1), status, env: process.env.GLIBC_TUNABLES ?? null, execTunable: environ.includes('${HUGETLB_TUNABLE}'), huge, grandchild }));
process.exitCode = 7;
`;

const here = hugePagePlan(hugePageFacts({ ...process.env, GLIBC_TUNABLES: undefined }));
const onThisMachine = process.platform === 'linux' && fs.existsSync(BUILT) ? describe : describe.skip;

onThisMachine('relaunchWithHugePages in a child process', () => {
  interface Report {
    pid: number;
    argv: string[];
    status: string;
    env: string | null;
    execTunable: boolean;
    huge: number;
    grandchild: string;
  }
  /** Runs CHILD with fd 3 a pipe to us (as LLAMA_PRO_PROGRESS=fd:3 users pass one); returns what it wrote there too. */
  async function child(env: Record<string, string | undefined>): Promise<{ pid: number; code: number; report: Report; fd3: string }> {
    const clean: Record<string, string> = {};
    for (const [k, v] of Object.entries({ ...process.env, GLIBC_TUNABLES: undefined, WRITE_FD: '3', ...env })) if (v !== undefined) clean[k] = v;
    const p = spawn(process.execPath, ['-e', CHILD, 'x', 'a', 'b c'], { env: clean, stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let fd3 = '';
    p.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    (p.stdio[3] as NodeJS.ReadableStream).on('data', (d: Buffer) => (fd3 += d.toString()));
    const code = await new Promise<number | null>((r) => p.on('close', (c) => r(c)));
    if (code !== 7) throw new Error(`child exited ${String(code)}: ${stderr}`);
    return { pid: p.pid!, code, report: JSON.parse(stdout) as Report, fd3 };
  }

  (here.relaunch ? it : it.skip)('restarts in place: same pid, arguments, exit code and inherited descriptors; huge pages in use; the caller\'s GLIBC_TUNABLES given back', async () => {
    for (const prior of [undefined, 'glibc.malloc.check=0']) {
      const { pid, report, fd3 } = await child({ GLIBC_TUNABLES: prior });
      expect(report.pid).toBe(pid);
      expect(fd3).toBe('through fd 3'); // an inherited descriptor survives the restart
      expect(report.argv).toEqual(['x', 'a', 'b c']);
      expect(report.status).toBe(`on (restarted with GLIBC_TUNABLES=${HUGETLB_TUNABLE})`);
      expect(report.execTunable).toBe(true); // the image was started with it
      expect(report.env).toBe(prior ?? null); // and the process's environment is the caller's again
      expect(report.grandchild).toBe(`[${prior ?? ''}]`);
      expect(report.huge).toBeGreaterThan(0);
    }
  });

  it('LLAMA_PRO_HUGEPAGES=0 runs on as started (no restart, no tunable)', async () => {
    const { pid, report } = await child({ [HUGEPAGES_ENV]: '0' });
    expect(report).toMatchObject({ pid, status: 'off (LLAMA_PRO_HUGEPAGES=0)', env: null, execTunable: false, grandchild: '[]' });
  });

  (here.relaunch ? it.skip : it)('where the plan says no restart, the process says why and runs on', async () => {
    const { pid, report } = await child({});
    expect(report).toMatchObject({ pid, status: !here.relaunch ? here.detail : '', execTunable: false });
  });
});
