/**
 * @llama-pro/native-io: the few things Node cannot do that llama-pro needs. An in-kernel copy of a byte
 * range from one open file to another (Linux copy_file_range(2)): tensor bytes then move from an input
 * shard to an output shard without a round trip through user space, which is what makes the expander as
 * fast as `cp`. And glibc allocator thresholds (mallopt), so that inference steps reuse the memory of the
 * step before instead of faulting in fresh pages (2x decode speed on the benchmark machine). And an
 * in-place execve(2) (Node 20 has no process.execve), so the CLI can restart itself once with an
 * environment only the C library reads at startup (GLIBC_TUNABLES: huge pages for malloc). And one fused
 * AdamW step over float32 arrays, vectorized (train's optimizer; bit-identical to its JavaScript loop).
 *
 * The addon is compiled at install time (node-gyp) and is optional: `nativeIo()` returns undefined when
 * it is missing (another OS, no compiler) or disabled with `LLAMA_PRO_NATIVE_IO=0`, and callers copy
 * through user space instead.
 */
import * as path from 'node:path';

export interface NativeIo {
  /**
   * Copies `length` bytes from `fdIn` at `offsetIn` to `fdOut` at `offsetOut` (neither file position
   * moves). Rejects with an Error whose `code` is the errno name (EXDEV, ENOSYS, EOPNOTSUPP, EINVAL,
   * ENOSPC, ...) or ESHORT when the input ends first, and whose `fallback` is true when a read/write
   * copy will still work (the filesystems cannot copy in the kernel), false for real failures (ENOSPC,
   * EIO, EBADF, ...).
   */
  copyFileRange(fdIn: number, offsetIn: number, fdOut: number, offsetOut: number, length: number): Promise<void>;
  /**
   * Raises glibc's mmap and trim thresholds (mallopt) so that large blocks freed by one inference step
   * are reused by the next instead of being unmapped and faulted in again. True when applied; false
   * where it does not apply (not glibc) or glibc refused a value.
   */
  tuneMalloc(mmapThreshold: number, trimThreshold: number): boolean;
  /** The running glibc's version ("2.36"), or undefined when the C library is not glibc. (Absent from addons built before it.) */
  glibcVersion?(): string | undefined;
  /**
   * Replaces this process with `file` run with `args` (args[0] included) and exactly the environment
   * `env`: same pid, descriptors 0-2 and `keepFds` kept open (Node marks inherited descriptors
   * close-on-exec at startup; the addon clears that on these). Returns only by throwing (an Error whose `code` is the
   * errno name) when the exec fails; the process then continues unchanged. (Absent from addons built
   * before it.)
   */
  execve?(file: string, args: readonly string[], env: Readonly<Record<string, string>>, keepFds?: readonly number[]): never;
  /**
   * One fused AdamW step in place over float32 arrays of one length that do not overlap: `p`, `m`, `v`
   * are updated, `g` is read. Computes exactly what train's AdamW.update computes in JavaScript (float64
   * operations in the same order, rounded to float32 where it stores), vectorized: bit-identical results,
   * ~6x faster. Throws a TypeError (code EINVAL) on bad arguments. (Absent from addons built before it.)
   */
  adamwUpdate?(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, beta1: number, beta2: number, eps: number, stepSize: number, bc2Sqrt: number, decay: number, gradScale: number): void;
}

/** An error from `copyFileRange`. */
export interface CopyRangeError extends Error {
  readonly code: string;
  readonly fallback: boolean;
}

export interface NativeIoStatus {
  readonly available: boolean;
  /** Why it is unavailable, or where it was loaded from. */
  readonly detail: string;
}

/** Error codes after which a read/write copy will still work. */
export const FALLBACK_CODES: ReadonlySet<string> = new Set(['EXDEV', 'ENOSYS', 'EOPNOTSUPP', 'EINVAL', 'ESHORT', 'EPERM', 'ETXTBSY']);

export const ADDON_PATH = path.join(__dirname, '..', 'build', 'Release', 'llama_pro_native_io.node');

let loaded: { io: NativeIo | undefined; status: NativeIoStatus } | undefined;

function load(): { io: NativeIo | undefined; status: NativeIoStatus } {
  if (process.env.LLAMA_PRO_NATIVE_IO === '0') return { io: undefined, status: { available: false, detail: 'disabled by LLAMA_PRO_NATIVE_IO=0' } };
  if (process.platform !== 'linux') return { io: undefined, status: { available: false, detail: `copy_file_range is Linux-only (this is ${process.platform})` } };
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const addon = require(ADDON_PATH) as Omit<NativeIo, 'execve'> & { supported: boolean; execve?(file: string, args: readonly string[], env: string[], keepFds: readonly number[]): never };
    if (!addon.supported) return { io: undefined, status: { available: false, detail: 'the addon was built without copy_file_range' } };
    const io: NativeIo = {
      tuneMalloc: (mmapThreshold, trimThreshold) => addon.tuneMalloc(mmapThreshold, trimThreshold),
      ...(addon.glibcVersion ? { glibcVersion: addon.glibcVersion } : {}),
      ...(addon.adamwUpdate ? { adamwUpdate: addon.adamwUpdate } : {}),
      ...(addon.execve ? { execve: (file: string, args: readonly string[], env: Readonly<Record<string, string>>, keepFds: readonly number[] = []) => addon.execve!(file, args, Object.entries(env).map(([k, v]) => `${k}=${v}`), keepFds) } : {}),
      copyFileRange: (fdIn, offsetIn, fdOut, offsetOut, length) =>
        addon.copyFileRange(fdIn, offsetIn, fdOut, offsetOut, length).catch((e: Error & { code?: string; fallback?: boolean }) => {
          e.fallback = FALLBACK_CODES.has(e.code ?? '');
          throw e;
        }),
    };
    return { io, status: { available: true, detail: ADDON_PATH } };
  } catch (e) {
    return {
      io: undefined,
      status: { available: false, detail: `the addon is not built (${(e as Error).message.split('\n')[0]}); run \`npm rebuild @llama-pro/native-io\` with python3, make and a C compiler installed` },
    };
  }
}

/** The native functions, or undefined when unavailable (see `nativeIoStatus`). */
export function nativeIo(): NativeIo | undefined {
  loaded ??= load();
  return loaded.io;
}

export function nativeIoStatus(): NativeIoStatus {
  loaded ??= load();
  return loaded.status;
}
