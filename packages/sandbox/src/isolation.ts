/**
 * Kernel isolation for untrusted Python: bubblewrap (`bwrap`, Debian package `bubblewrap`) with fresh user,
 * mount, pid, net, ipc, uts (and cgroup where possible) namespaces; no nested user namespaces; a read-only
 * view of /usr (plus the interpreter's own prefix and sys.path dirs when they live elsewhere), bwrap's own
 * /proc and minimal /dev, a private tmpfs /tmp as the working directory; a fixed environment; uid/gid 65534
 * inside; no capabilities; `--die-with-parent` so the whole pid namespace dies with its bwrap process. When
 * this process is root, bwrap itself runs as uid/gid 65534 (setpriv), so root and non-root users get the same
 * unprivileged sandbox. Where the kernel or the system refuses namespaces, untrusted code is refused unless
 * the caller passes `unsafeNoSandbox` (the CLIs' `--unsafe-no-sandbox`).
 */
import { spawnSync } from 'node:child_process';
import { lstatSync, readlinkSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { LlamaProError } from '@llama-pro/core';

/** The sandbox cannot run, or untrusted code was refused. */
export class SandboxError extends LlamaProError {
  constructor(message: string, code = 'SANDBOX_UNAVAILABLE') {
    super(code, message);
  }
}

/** The only environment a sandboxed program sees. */
export const SANDBOX_ENV: Readonly<Record<string, string>> = {
  PATH: '/usr/local/bin:/usr/bin:/bin',
  HOME: '/tmp',
  TMPDIR: '/tmp',
  LANG: 'C.UTF-8',
  LC_ALL: 'C.UTF-8',
  PYTHONIOENCODING: 'utf-8',
  PYTHONDONTWRITEBYTECODE: '1',
  OMP_NUM_THREADS: '1',
  OPENBLAS_NUM_THREADS: '1',
  MKL_NUM_THREADS: '1',
  MPLBACKEND: 'Agg',
};

/** Size of the sandbox's private /tmp (tmpfs) and /dev/shm, bytes. */
export const TMP_BYTES = 256 * 1024 * 1024;
const SHM_BYTES = 64 * 1024 * 1024;

/** The uid/gid sandboxed code runs as (inside the namespace, and outside too when started as root). */
export const SANDBOX_UID = 65534;

export interface IsolationOptions {
  /** Interpreter (default `python3` from PATH; as root, falls back to /usr/bin/python3 when that one is unusable). */
  python?: string;
  /** Run untrusted code without isolation when the sandbox is unavailable (`--unsafe-no-sandbox`). */
  unsafeNoSandbox?: boolean;
}

export interface Isolation {
  /** `bwrap`: kernel namespaces; `none`: no isolation (only with unsafeNoSandbox). */
  readonly mode: 'bwrap' | 'none';
  /** The interpreter path as given to the sandbox. */
  readonly python: string;
  readonly pythonVersion: string;
  /** Arguments before the interpreter (empty in mode `none`). */
  readonly prefix: readonly string[];
  /** Why the sandbox is unavailable (mode `none`). */
  readonly reason?: string;
}

const isRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0;

function run(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv = SANDBOX_ENV): { ok: boolean; out: string; err: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 20_000, stdio: ['ignore', 'pipe', 'pipe'], env, cwd: '/' });
  return { ok: r.status === 0, out: (r.stdout ?? '').trim(), err: (r.error?.message ?? r.stderr ?? '').trim() };
}

function which(name: string): string | null {
  for (const dir of (process.env['PATH'] ?? '/usr/local/bin:/usr/bin:/bin').split(':')) {
    if (!dir) continue;
    const p = path.join(dir, name);
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      /* not here */
    }
  }
  return null;
}

const under = (p: string, dir: string): boolean => p === dir || p.startsWith(dir + '/');

/** Filesystem arguments: /usr read-only, the top-level links into it, and the interpreter's own dirs. */
function filesystemArgs(pythonDirs: readonly string[], sized: boolean): string[] {
  const a = ['--ro-bind', '/usr', '/usr'];
  for (const top of ['/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32']) {
    try {
      const st = lstatSync(top);
      if (st.isSymbolicLink()) a.push('--symlink', readlinkSync(top), top);
      else if (st.isDirectory()) a.push('--ro-bind', top, top);
    } catch {
      /* absent */
    }
  }
  const extra = [...new Set(pythonDirs)].filter((d) => d !== '/' && !['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32'].some((t) => under(d, t))).sort();
  // Bind the outermost dirs only (a venv prefix covers its site-packages).
  const outer = extra.filter((d, i) => !extra.some((o, j) => j !== i && under(d, o) && o !== d));
  for (const d of outer) a.push('--ro-bind', d, d);
  // /dev is bwrap's minimal one, read-only except a small /dev/shm; /tmp is a size-capped tmpfs (RAM-backed:
  // RLIMIT_FSIZE bounds one file, the size cap all of them).
  const size = (n: number): string[] => (sized ? ['--size', String(n)] : []);
  a.push('--proc', '/proc', '--dev', '/dev', ...size(SHM_BYTES), '--tmpfs', '/dev/shm', '--remount-ro', '/dev', ...size(TMP_BYTES), '--tmpfs', '/tmp', '--chdir', '/tmp');
  return a;
}

function bwrapArgs(bwrap: string, pythonDirs: readonly string[], disableUserns: boolean): string[] {
  // Options newer than bubblewrap 0.8 (--disable-userns, --size) go together; older versions get neither.
  const pre = isRoot() ? [which('setpriv') ?? 'setpriv', `--reuid=${SANDBOX_UID}`, `--regid=${SANDBOX_UID}`, '--clear-groups', bwrap] : [bwrap];
  const env = Object.entries(SANDBOX_ENV).flatMap(([k, v]) => ['--setenv', k, v]);
  return [
    ...pre,
    '--unshare-user',
    '--unshare-pid',
    '--unshare-net',
    '--unshare-ipc',
    '--unshare-uts',
    '--unshare-cgroup-try',
    ...(disableUserns ? ['--disable-userns'] : []),
    '--uid',
    String(SANDBOX_UID),
    '--gid',
    String(SANDBOX_UID),
    '--hostname',
    'sandbox',
    '--cap-drop',
    'ALL',
    '--die-with-parent',
    '--new-session',
    '--clearenv',
    ...env,
    ...filesystemArgs(pythonDirs, disableUserns),
  ];
}

const PROBE = 'import sys, os, json; print(json.dumps([os.path.realpath(sys.executable), sys.version.split()[0], [p for p in [sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))] + sys.path if os.path.isdir(p)]]))';

const cache = new Map<string, Isolation | SandboxError>();

/**
 * Finds the interpreter and checks that it runs inside the sandbox (cached). Throws SandboxError when python is
 * missing, or when the sandbox is unavailable and `unsafeNoSandbox` is not set.
 */
export function resolveIsolation(options: IsolationOptions = {}): Isolation {
  const key = `${options.python ?? ''}\0${options.unsafeNoSandbox === true}`;
  let r = cache.get(key);
  if (r === undefined) {
    try {
      r = doResolve(options);
    } catch (e) {
      if (!(e instanceof SandboxError)) throw e;
      r = e;
    }
    cache.set(key, r);
  }
  if (r instanceof SandboxError) throw r;
  return r;
}

function doResolve(options: IsolationOptions): Isolation {
  const requested = options.python ?? 'python3';
  const candidates = [requested];
  if (options.python === undefined) candidates.push('/usr/bin/python3');
  const bwrap = which('bwrap');
  let reason = bwrap ? '' : 'bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt-get install bubblewrap)';
  let firstHost: { python: string; version: string } | undefined;
  for (const c of candidates) {
    const host = run(c, ['-I', '-c', PROBE], { ...SANDBOX_ENV, PATH: process.env['PATH'] ?? SANDBOX_ENV.PATH });
    if (!host.ok) continue;
    let info: [string, string, string[]];
    try {
      info = JSON.parse(host.out) as [string, string, string[]];
    } catch {
      continue;
    }
    const python = path.isAbsolute(c) ? c : (which(c) ?? info[0]);
    firstHost ??= { python, version: info[1] };
    if (!bwrap) break;
    const dirs = [...info[2], path.dirname(python)];
    for (const disableUserns of [true, false]) {
      const prefix = bwrapArgs(bwrap, dirs, disableUserns);
      const p = run(prefix[0]!, [...prefix.slice(1), python, '-I', '-c', 'import json, math, re, resource; print("ok")']);
      if (p.ok && p.out === 'ok') return { mode: 'bwrap', python, pythonVersion: info[1], prefix };
      reason = `the sandbox does not start here (${p.err.split('\n')[0] || 'no output'}); unprivileged user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone=1, or kernel.apparmor_restrict_unprivileged_userns=0), or ${python} is not readable by uid ${SANDBOX_UID}`;
    }
  }
  if (!firstHost) throw new SandboxError(`cannot run ${requested}: code execution needs Python 3 (install python3 or pass --python <interpreter>)`, 'SANDBOX_NO_PYTHON');
  if (options.unsafeNoSandbox) return { mode: 'none', python: firstHost.python, pythonVersion: firstHost.version, prefix: [], reason };
  throw new SandboxError(`refusing to run untrusted code: ${reason}. Fix that, or pass --unsafe-no-sandbox to run it without isolation (it can then read your files and environment and use the network).`);
}

/** The command line for `pythonArgs` inside the sandbox: [command, ...args]. */
export function sandboxedCommand(iso: Isolation, pythonArgs: readonly string[]): string[] {
  return [...iso.prefix, iso.python, ...pythonArgs];
}
