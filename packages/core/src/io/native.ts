/**
 * In-kernel copies, when available. `@llama-pro/native-io` (an N-API addon, Linux) is an optional
 * dependency of core, loaded lazily here and nowhere else: core installs, builds and works without it
 * (DESIGN: no required native dependencies in core), and only gets faster with it.
 */
import * as fs from 'node:fs';

export interface RangeCopier {
  /**
   * Copies `length` bytes between two open files at the given offsets, in the kernel. Rejects with an
   * error whose `fallback` is true when the same copy will work through user space.
   */
  copyFileRange(fdIn: number, offsetIn: number, fdOut: number, offsetOut: number, length: number): Promise<void>;
}

export interface NativeIoStatus {
  readonly available: boolean;
  /** Why in-kernel copies are unavailable, or where the addon was loaded from. */
  readonly detail: string;
}

interface NativeIoModule {
  nativeIo():
    | (RangeCopier & {
        tuneMalloc?(mmapThreshold: number, trimThreshold: number): boolean;
        glibcVersion?(): string | undefined;
        execve?(file: string, args: readonly string[], env: Readonly<Record<string, string>>, keepFds?: readonly number[]): never;
        adamwUpdate?: AdamWKernel;
      })
    | undefined;
  nativeIoStatus(): NativeIoStatus;
}

let loaded: NativeIoModule | null | undefined;

function nativeModule(): NativeIoModule | null {
  if (loaded === undefined) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      loaded = require('@llama-pro/native-io') as NativeIoModule;
    } catch {
      loaded = null;
    }
  }
  return loaded;
}

/** The in-kernel copier, or undefined (see `nativeIoStatus` for why). */
export function rangeCopier(): RangeCopier | undefined {
  return nativeModule()?.nativeIo();
}

/** Whether tensor copies can happen in the kernel, and if not, why. */
export function nativeIoStatus(): NativeIoStatus {
  return nativeModule()?.nativeIoStatus() ?? { available: false, detail: '@llama-pro/native-io is not installed (an optional dependency of @llama-pro/core)' };
}

/**
 * One fused AdamW step in place (p, m, v updated; g read; one length, no shared memory), computing per
 * element in float64 exactly what train's AdamW.update does in JavaScript, rounded to float32 where it
 * stores: gi = gradScale == 1 ? g : f32(g·gradScale); m = β1·m + (1−β1)·gi; v = β2·v + (1−β2)·gi·gi;
 * p = p·decay − (stepSize·m) / (√v / bc2Sqrt + ε) (m and v unrounded in the last line).
 */
export type AdamWKernel = (p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, beta1: number, beta2: number, eps: number, stepSize: number, bc2Sqrt: number, decay: number, gradScale: number) => void;

/**
 * The vectorized AdamW step of @llama-pro/native-io (bit-identical to the JavaScript loop, ~6x faster), or
 * undefined without the addon (or with one built before it): the optimizer then runs its own loop.
 */
export function nativeAdamW(): AdamWKernel | undefined {
  return nativeModule()?.nativeIo()?.adamwUpdate;
}

let tuned: boolean | undefined;

/**
 * Makes glibc keep freed large blocks for reuse (mmap threshold 32 MiB, trim threshold
 * 1 GiB) instead of returning them to the system, so that each inference step reuses the previous step's
 * memory rather than faulting in fresh pages: decode ran about 2x faster on the benchmark machine. Backends
 * call it when they load a model; it applies once per process, needs @llama-pro/native-io on glibc, and
 * `LLAMA_PRO_MALLOC_TUNE=0` turns it off. The cost is that up to ~1 GiB freed memory stays with the process.
 * Returns whether it is in effect.
 */
export function tuneAllocatorForInference(): boolean {
  if (tuned === undefined) {
    const io = process.env['LLAMA_PRO_MALLOC_TUNE'] === '0' ? undefined : nativeModule()?.nativeIo();
    tuned = io?.tuneMalloc ? io.tuneMalloc(32 << 20, 1 << 30) : false;
  }
  return tuned;
}

/** `LLAMA_PRO_HUGEPAGES=0` keeps the CLI from restarting itself with huge pages for malloc. */
export const HUGEPAGES_ENV = 'LLAMA_PRO_HUGEPAGES';
/** The glibc tunable (2.35+) that makes malloc advise transparent huge pages for the memory it maps. */
export const HUGETLB_TUNABLE = 'glibc.malloc.hugetlb=1';
/** Set on the restarted process only: the caller's GLIBC_TUNABLES (JSON; null when it had none). */
const RELAUNCH_MARK = 'LLAMA_PRO_RELAUNCHED_GLIBC_TUNABLES';

/** What `hugePagePlan` decides from. */
export interface HugePageFacts {
  readonly platform: string;
  /** The running glibc's version, undefined when the C library is not glibc (or unknown). */
  readonly glibcVersion: string | undefined;
  /** The kernel's transparent-huge-page mode (always, madvise, never), undefined without THP. */
  readonly thpMode: string | undefined;
  /** Whether this process can replace itself (execve through @llama-pro/native-io). */
  readonly canExec: boolean;
  readonly env: Readonly<Record<string, string | undefined>>;
}

export type HugePagePlan = { readonly relaunch: true; readonly env: Record<string, string> } | { readonly relaunch: false; readonly detail: string };

function olderThan(version: string, major: number, minor: number): boolean {
  const [a = 0, b = 0] = version.split('.').map((x) => Number.parseInt(x, 10));
  return a < major || (a === major && b < minor);
}

/**
 * Whether to restart with malloc on transparent huge pages, and with which environment. Pure (the
 * facts are gathered by `relaunchWithHugePages`). A restart happens only where it changes something:
 * Linux, glibc >= 2.35, THP in `madvise` mode (with `always` the kernel already does it; with `never` it
 * cannot), not already chosen in GLIBC_TUNABLES, not opted out, not a child holding a Node IPC channel
 * (its descriptor would not survive the exec).
 */
export function hugePagePlan(f: HugePageFacts): HugePagePlan {
  const no = (detail: string): HugePagePlan => ({ relaunch: false, detail });
  const prior = f.env['GLIBC_TUNABLES'];
  if (f.env[HUGEPAGES_ENV] === '0') return no(`off (${HUGEPAGES_ENV}=0)`);
  if (f.platform !== 'linux') return no(`not used on ${f.platform}`);
  if (prior !== undefined && /(^|:)glibc\.malloc\.hugetlb=/.test(prior)) return no(`as GLIBC_TUNABLES sets it (${prior})`);
  if (f.glibcVersion === undefined) return no('not used: the C library is not glibc');
  if (olderThan(f.glibcVersion, 2, 35)) return no(`not used: glibc ${f.glibcVersion} predates glibc.malloc.hugetlb (2.35)`);
  if (f.thpMode === undefined) return no('not used: the kernel has no transparent huge pages');
  if (f.thpMode === 'always') return no('on: the kernel backs large allocations with transparent huge pages (mode always)');
  if (f.thpMode !== 'madvise') return no(`not used: transparent huge pages are "${f.thpMode}" in this kernel`);
  if (f.env['NODE_CHANNEL_FD'] !== undefined) return no('not used: started with a Node IPC channel');
  if (!f.canExec) return no('not used: restarting with GLIBC_TUNABLES needs @llama-pro/native-io (its execve)');
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(f.env)) if (v !== undefined) env[k] = v;
  env['GLIBC_TUNABLES'] = prior ? `${prior}:${HUGETLB_TUNABLE}` : HUGETLB_TUNABLE;
  env[RELAUNCH_MARK] = JSON.stringify(prior ?? null);
  return { relaunch: true, env };
}

let hugePages: string | undefined;

function thpMode(): string | undefined {
  try {
    return /\[(\w+)\]/.exec(fs.readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}

/** This process's facts for `hugePagePlan`, with `env` as its environment (the addon is loaded only where it could matter). */
export function hugePageFacts(env: Readonly<Record<string, string | undefined>> = process.env): HugePageFacts {
  const linux = process.platform === 'linux';
  const io = linux && env[HUGEPAGES_ENV] !== '0' ? nativeModule()?.nativeIo() : undefined;
  return { platform: process.platform, glibcVersion: io?.glibcVersion?.(), thpMode: linux ? thpMode() : undefined, canExec: io?.execve !== undefined, env };
}

/**
 * Restarts this process in place (execve: same pid, arguments and descriptors) with glibc's malloc
 * advising transparent huge pages (GLIBC_TUNABLES=glibc.malloc.hugetlb=1), where `hugePagePlan` says it
 * applies; call it first thing in an entry point, before any work. Training and inference touch
 * gigabytes of tensors that ONNX Runtime and V8 allocate through malloc; on 4 KiB pages the first pass
 * over them page-faults per 4 KiB and every product pays TLB misses: on the 2-core benchmark machine the
 * first `llama-pro train` step took 5.4-6.9 s without and 2.7-3.5 s with it (its steady state moved
 * within the run-to-run spread), bench:infer's prefill 1x256 3.1-4.1k vs 8.3-9.2k tok/s in a slow-fault hour. In the restarted process (and every later call) it only returns a line saying what is in
 * effect, after restoring the caller's GLIBC_TUNABLES so that child processes (the Python sandbox, llama.cpp)
 * see the environment they were given.
 */
export function relaunchWithHugePages(): string {
  if (hugePages !== undefined) return hugePages;
  const mark = process.env[RELAUNCH_MARK];
  if (mark !== undefined) {
    let prior: unknown = null;
    try {
      prior = JSON.parse(mark);
    } catch {
      // a foreign value: drop it
    }
    if (typeof prior === 'string') process.env['GLIBC_TUNABLES'] = prior;
    else delete process.env['GLIBC_TUNABLES'];
    delete process.env[RELAUNCH_MARK];
    return (hugePages = `on (restarted with GLIBC_TUNABLES=${HUGETLB_TUNABLE})`);
  }
  const plan = hugePagePlan(hugePageFacts());
  if (!plan.relaunch) return (hugePages = plan.detail);
  try {
    return nativeModule()!.nativeIo()!.execve!(process.execPath, [process.argv0, ...process.execArgv, ...process.argv.slice(1)], plan.env, inheritedDescriptors());
  } catch (e) {
    return (hugePages = `not used: the restart failed (${(e as Error).message})`);
  }
}

/**
 * The descriptors above 2 this process was given by its parent (e.g. `3>progress.jsonl` for
 * LLAMA_PRO_PROGRESS=fd:3), which the restart must keep: Node marks them close-on-exec at startup, among its
 * own. Node's own at that point are epoll / eventfd instances and pipes whose two ends it holds both
 * (libuv's wakeup pipes); everything else is inherited.
 */
export function inheritedDescriptors(): number[] {
  let fds: string[];
  try {
    fds = fs.readdirSync('/proc/self/fd');
  } catch {
    return [];
  }
  const targets = new Map<number, string>();
  for (const f of fds) {
    const fd = Number(f);
    if (!Number.isInteger(fd) || fd < 3) continue;
    try {
      targets.set(fd, fs.readlinkSync(`/proc/self/fd/${f}`));
    } catch {
      // the descriptor readdir itself used, closed by now
    }
  }
  const count = new Map<string, number>();
  for (const t of targets.values()) count.set(t, (count.get(t) ?? 0) + 1);
  const keep: number[] = [];
  for (const [fd, t] of targets) {
    if (t.startsWith('anon_inode:')) continue;
    if (t.startsWith('pipe:') && count.get(t)! > 1) continue;
    keep.push(fd);
  }
  return keep.sort((a, b) => a - b);
}

/** What `relaunchWithHugePages` found for this process (not checked: an embedding that never called it). */
export function hugePagesStatus(): string {
  return hugePages ?? 'not checked (the llama-pro command restarts itself with huge pages; embedders call relaunchWithHugePages)';
}
