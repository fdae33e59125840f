/**
 * In-kernel copies, when available. `@llama-pro/native-io` (an N-API addon, Linux) is an optional
 * dependency of core, loaded lazily here and nowhere else: core installs, builds and works without it
 * (DESIGN: no required native dependencies in core), and only gets faster with it.
 */
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
  nativeIo(): (RangeCopier & { tuneMalloc?(mmapThreshold: number, trimThreshold: number): boolean }) | undefined;
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
