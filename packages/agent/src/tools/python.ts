/**
 * The Python tool: one persistent, sandboxed `python3` per agent session. Variables survive between
 * calls; each call has a wall-clock timeout that kills the interpreter's whole process group (the next
 * call starts a fresh interpreter and says so); output is cut to a limit.
 *
 * Isolation (the same layers as the eval sandbox, implemented here independently): network + PID
 * namespaces via `unshare` where the platform allows, own process group (detached), a throw-away uid
 * when running as root, rlimits set by the driver (address space, CPU, file size, processes, open files,
 * no core), a fresh temporary working directory removed afterwards, a scrubbed environment, stdin
 * closed, and an audit-hook policy that refuses writes outside the working directory, process creation,
 * sockets, ctypes and reads of other processes' environments.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { promises as fsp, readdirSync, readFileSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { z } from 'zod';
import { PYTHON_DEFAULTS } from '../constants';
import { AgentError } from '../errors';
import { PYTHON_DRIVER } from './python-driver';
import { defineTool, type AgentTool, type ToolOutput } from './tool';

export interface PythonSessionOptions {
  executable?: string;
  timeoutMs?: number;
  maxOutputChars?: number;
  maxMemoryBytes?: number;
  maxCpuSeconds?: number;
  maxFileBytes?: number;
  maxOpenFiles?: number;
  /** Extra processes allowed beyond the user's current count (RLIMIT_NPROC); process creation is also refused by policy. */
  extraProcesses?: number;
  /** Run in a fresh network namespace when `unshare` allows it (default true). */
  isolateNetwork?: boolean;
  /**
   * When this process is root: run each interpreter under its own throw-away uid/gid (unused ids from
   * 100000 up), so that file permissions and RLIMIT_NPROC bind and every process it starts, even one
   * that leaves the process group, is found and killed by uid (default true). Uses a system python3
   * that any uid can read.
   */
  dropPrivileges?: boolean;
  startTimeoutMs?: number;
}

export interface PythonRunResult {
  /** Captured output (stdout, stderr, traceback, trailing expression), cut to the limit. */
  readonly output: string;
  /** The cell raised (the traceback is in `output`). */
  readonly error: boolean;
  readonly timedOut: boolean;
  /** Characters cut from the output. */
  readonly truncatedChars: number;
  /** The interpreter was lost (timeout, crash, limit) and the next call starts fresh. */
  readonly sessionLost: boolean;
  /** Set when this call ran in a fresh interpreter after an earlier one was lost. */
  readonly restarted: boolean;
}

const NOBODY = 65534;
/** Throw-away uids for interpreters (started as root) come from [UID_BASE, UID_BASE + UID_SPAN). */
const UID_BASE = 100_000;
const UID_SPAN = 60_000;
const isRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0;

let nsArgs: string[] | null | undefined;
/**
 * `unshare` arguments, probed once: a network namespace plus a PID namespace whose init is the
 * interpreter (when it dies the kernel kills everything it started, even processes that left its
 * process group), else a network namespace only, else null. Non-root needs a user namespace too.
 */
export function namespaceArgs(): string[] | null {
  if (nsArgs === undefined) {
    nsArgs = null;
    const user = isRoot() ? [] : ['--map-root-user'];
    for (const a of [['--net', '--pid', '--fork', '--kill-child', ...user], ['--net', ...user]]) {
      try {
        if (spawnSync('unshare', [...a, 'true'], { stdio: 'ignore', timeout: 5000 }).status === 0) {
          nsArgs = a;
          break;
        }
      } catch {
        /* no unshare */
      }
    }
  }
  return nsArgs;
}

/** Whether interpreters get their own network namespace here. */
export function canIsolateNetwork(): boolean {
  return namespaceArgs() !== null;
}

/** Direct children of a process (from /proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const e of safeReaddir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const m = /^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${e}/status`, 'utf8'));
      if (m && Number(m[1]) === pid) out.push(Number(e));
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

const unprivilegedPython = new Map<string, string | null>();
/**
 * An interpreter that works under an unprivileged uid (the given one, else the system python3: a pyenv
 * build under /root is unreadable to other uids), or null when none does.
 */
export function sandboxPython(requested: string | undefined): string | null {
  const key = requested ?? '';
  if (!unprivilegedPython.has(key)) {
    let found: string | null = null;
    for (const exe of requested ? [requested] : ['/usr/bin/python3', '/usr/local/bin/python3', PYTHON_DEFAULTS.executable]) {
      try {
        const r = spawnSync(exe, ['-I', '-c', 'import json, ast, math, resource, traceback'], { stdio: 'ignore', timeout: 10_000, uid: NOBODY, gid: NOBODY, cwd: '/' });
        if (r.status === 0) {
          found = exe;
          break;
        }
      } catch {
        /* try the next */
      }
    }
    unprivilegedPython.set(key, found);
  }
  return unprivilegedPython.get(key)!;
}

/** Process ids owned by `uid` (from /proc). */
function processesOfUid(uid: number): number[] {
  const out: number[] = [];
  for (const e of safeReaddir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const m = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${e}/status`, 'utf8'));
      if (m && Number(m[1]) === uid) out.push(Number(e));
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

/** SIGKILLs every process of a throw-away uid (repeated while new ones appear). */
function killUid(uid: number): void {
  if (uid < UID_BASE) return;
  for (let round = 0; round < 5; round++) {
    const pids = processesOfUid(uid);
    if (pids.length === 0) return;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
}

interface Live {
  uid: number | null;
  /** The interpreter is the init of its own PID namespace (a child of `unshare`). */
  pidNamespace: boolean;
  child: ChildProcess;
  dir: string;
  pending: ((msg: Record<string, unknown> | Error) => void) | null;
  stray: string;
  dead: string | null;
}

/** Cuts text to `limit` characters, saying how much was cut. */
export function truncateOutput(text: string, limit: number): { text: string; cut: number } {
  if (text.length <= limit) return { text, cut: 0 };
  const cut = text.length - limit;
  return { text: `${text.slice(0, limit)}\n[... ${cut} more characters truncated]`, cut };
}

export class PythonSession {
  private readonly opts: Required<Omit<PythonSessionOptions, 'executable'>> & { executable: string | undefined };
  private live: Live | null = null;
  private lostBefore = false;
  private chain: Promise<unknown> = Promise.resolve();
  private disposed = false;
  /** Interpreters started so far. */
  starts = 0;

  constructor(options: PythonSessionOptions = {}) {
    this.opts = {
      executable: options.executable,
      timeoutMs: options.timeoutMs ?? PYTHON_DEFAULTS.timeoutMs,
      maxOutputChars: options.maxOutputChars ?? PYTHON_DEFAULTS.maxOutputChars,
      maxMemoryBytes: options.maxMemoryBytes ?? PYTHON_DEFAULTS.maxMemoryBytes,
      maxCpuSeconds: options.maxCpuSeconds ?? PYTHON_DEFAULTS.maxCpuSeconds,
      maxFileBytes: options.maxFileBytes ?? PYTHON_DEFAULTS.maxFileBytes,
      maxOpenFiles: options.maxOpenFiles ?? PYTHON_DEFAULTS.maxOpenFiles,
      extraProcesses: options.extraProcesses ?? 8,
      isolateNetwork: options.isolateNetwork ?? true,
      dropPrivileges: options.dropPrivileges ?? true,
      startTimeoutMs: options.startTimeoutMs ?? PYTHON_DEFAULTS.startTimeoutMs,
    };
    if (!(this.opts.timeoutMs > 0)) throw new AgentError(`python timeout must be > 0 ms, got ${this.opts.timeoutMs}`, 'USAGE');
  }

  /** The working directory of the current interpreter (null when none runs). */
  get workdir(): string | null {
    return this.live?.dir ?? null;
  }

  /** Process id of the current interpreter (its process group id too). */
  get pid(): number | null {
    return this.live?.child.pid ?? null;
  }

  /** Runs one cell; calls are serialized. */
  run(code: string, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<PythonRunResult> {
    const next = this.chain.then(() => this.runNow(code, options));
    this.chain = next.catch(() => undefined);
    return next;
  }

  /** How interpreters run: the executable, whether they get a throw-away uid, a network namespace. */
  get isolation(): { executable: string; uidSwitch: boolean; networkNamespace: boolean; pidNamespace: boolean } {
    const unprivileged = this.opts.dropPrivileges && isRoot() ? sandboxPython(this.opts.executable) : null;
    return {
      executable: unprivileged ?? this.opts.executable ?? PYTHON_DEFAULTS.executable,
      uidSwitch: unprivileged !== null,
      networkNamespace: this.opts.isolateNetwork && canIsolateNetwork(),
      pidNamespace: this.opts.isolateNetwork && (namespaceArgs()?.includes('--pid') ?? false),
    };
  }

  /** The uid of the current interpreter (null when none runs or no uid switch). */
  get uid(): number | null {
    return this.live?.uid ?? null;
  }

  private async start(): Promise<Live> {
    const iso = this.isolation;
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'llama-pro-py-'));
    let uid: number | null = null;
    if (iso.uidSwitch) {
      do uid = UID_BASE + Math.floor(Math.random() * UID_SPAN);
      while (processesOfUid(uid).length > 0);
      await fsp.chown(dir, uid, uid);
    }
    const cfg = JSON.stringify({
      uid,
      gid: uid,
      memory: this.opts.maxMemoryBytes,
      cpu: this.opts.maxCpuSeconds,
      fsize: this.opts.maxFileBytes,
      nofile: this.opts.maxOpenFiles,
      extraProcs: this.opts.extraProcesses,
      captureChars: this.opts.maxOutputChars * 2,
      allowNetwork: false,
    });
    const pyArgs = ['-I', '-u', '-c', PYTHON_DRIVER, cfg];
    const [cmd, args] = iso.networkNamespace ? ['unshare', [...namespaceArgs()!, iso.executable, ...pyArgs]] : [iso.executable, pyArgs];
    const env = { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: dir, TMPDIR: dir, LANG: 'C.UTF-8', PYTHONDONTWRITEBYTECODE: '1', PYTHONIOENCODING: 'utf-8', MPLBACKEND: 'Agg' };
    const child = spawn(cmd, args as string[], { cwd: dir, env, detached: true, stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'] });
    this.starts += 1;
    const live: Live = { uid, pidNamespace: iso.pidNamespace, child, dir, pending: null, stray: '', dead: null };
    let buf = '';
    const replies = child.stdio[4] as NodeJS.ReadableStream;
    replies.setEncoding('utf8');
    replies.on('data', (d: string) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        let msg: Record<string, unknown>;
        try {
          msg = JSON.parse(line) as Record<string, unknown>;
        } catch {
          continue;
        }
        const p = live.pending;
        live.pending = null;
        p?.(msg);
      }
    });
    const collect = (d: Buffer): void => {
      if (live.stray.length < this.opts.maxOutputChars * 2) live.stray += d.toString('utf8');
    };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    (child.stdio[3] as NodeJS.WritableStream).on('error', () => undefined);
    const onGone = (why: string): void => {
      if (live.dead) return;
      live.dead = why;
      const p = live.pending;
      live.pending = null;
      p?.(new Error(why));
      if (live.uid !== null) killUid(live.uid);
      rmSync(live.dir, { recursive: true, force: true });
    };
    child.on('error', (e) => onGone(`python could not start: ${e.message}`));
    child.on('exit', (code, signal) => onGone(signal ? `the Python process was killed by ${signal}` : `the Python process exited with code ${code}`));
    const ready = await this.await(live, this.opts.startTimeoutMs);
    if (ready instanceof Error || ready === 'timeout' || ready === 'aborted') {
      await this.kill(live);
      const detail = ready === 'timeout' || ready === 'aborted' ? 'it did not start in time' : ready.message;
      throw new AgentError(`cannot start the Python sandbox (${iso.executable}): ${detail}${live.stray ? `\n${live.stray.slice(0, 500)}` : ''}`, 'PYTHON_START');
    }
    return live;
  }

  private await(live: Live, ms: number, signal?: AbortSignal): Promise<Record<string, unknown> | Error | 'timeout' | 'aborted'> {
    return new Promise((resolve) => {
      if (live.dead) return resolve(new Error(live.dead));
      const done = (v: Record<string, unknown> | Error | 'timeout' | 'aborted'): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        live.pending = null;
        resolve(v);
      };
      const onAbort = (): void => done('aborted');
      const timer = setTimeout(() => done('timeout'), ms);
      if (signal?.aborted) return done('aborted');
      signal?.addEventListener('abort', onAbort, { once: true });
      live.pending = done;
    });
  }

  /**
   * Kills the interpreter and everything it started; resolves once it has exited. With a PID namespace
   * the namespace's init (the interpreter) is killed first, so the kernel kills the rest and `unshare`
   * reaps it; then the process group and, for a throw-away uid, every process of that uid.
   */
  private async kill(live: Live): Promise<void> {
    if (this.live === live) this.live = null;
    const c = live.child;
    const exited = c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise<void>((r) => c.once('exit', () => r()));
    const wait = (ms: number): Promise<void> => Promise.race([exited, new Promise<void>((r) => setTimeout(r, ms).unref())]);
    const pid = c.pid;
    if (pid !== undefined && live.pidNamespace && !live.dead) {
      for (const init of childrenOf(pid)) {
        try {
          process.kill(init, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      await wait(1000);
    }
    if (pid !== undefined && c.exitCode === null && c.signalCode === null) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    // Processes that left the group (setsid) still carry the throw-away uid.
    if (live.uid !== null) killUid(live.uid);
    await wait(2000);
  }

  private async runNow(code: string, options: { timeoutMs?: number; signal?: AbortSignal }): Promise<PythonRunResult> {
    if (this.disposed) throw new AgentError('this Python session was disposed', 'PYTHON_DISPOSED');
    let restarted = false;
    if (!this.live || this.live.dead) {
      restarted = this.lostBefore;
      this.live = await this.start();
    }
    const live = this.live;
    live.stray = '';
    const timeoutMs = options.timeoutMs ?? this.opts.timeoutMs;
    const reply = this.await(live, timeoutMs, options.signal);
    (live.child.stdio[3] as NodeJS.WritableStream).write(`${JSON.stringify({ code })}\n`);
    const msg = await reply;
    const lost = async (text: string, timedOut: boolean): Promise<PythonRunResult> => {
      await this.kill(live);
      this.lostBefore = true;
      const t = truncateOutput(text, this.opts.maxOutputChars);
      return { output: t.text, error: true, timedOut, truncatedChars: t.cut, sessionLost: true, restarted };
    };
    if (msg === 'timeout') return lost(`${live.stray}TimeoutError: the code ran longer than ${timeoutMs / 1000} s and was stopped. The Python session was restarted: all variables are lost.`, true);
    if (msg === 'aborted') return lost(`${live.stray}Aborted: the run was cancelled. The Python session was restarted: all variables are lost.`, false);
    if (msg instanceof Error) return lost(`${live.stray}${msg.message} (a resource limit may have been hit). The Python session was restarted: all variables are lost.`, false);
    // Let output written straight to the process's stdout/stderr arrive.
    await new Promise((r) => setImmediate(r));
    const body = String(msg['output'] ?? '') + live.stray;
    const dropped = Number(msg['dropped'] ?? 0);
    const t = truncateOutput(body, this.opts.maxOutputChars);
    const cut = t.cut + dropped;
    const text = t.cut === 0 && dropped > 0 ? `${body}\n[... ${dropped} more characters truncated]` : t.text;
    return { output: text, error: msg['error'] === true, timedOut: false, truncatedChars: cut, sessionLost: false, restarted };
  }

  /** Kills the interpreter (whole process group) and removes its working directory. */
  dispose(): void {
    this.disposed = true;
    if (this.live) {
      const live = this.live;
      void this.kill(live);
      rmSync(live.dir, { recursive: true, force: true });
    }
  }
}

export interface PythonToolOptions extends PythonSessionOptions {
  name?: string;
}

/** Formats a run as the observation the model sees. */
export function pythonObservation(r: PythonRunResult): string {
  const note = r.restarted ? '[The previous Python session was lost; this code ran in a fresh session without earlier variables.]\n' : '';
  const out = r.output.length > 0 ? r.output.replace(/\n$/, '') : '[Executed successfully with no output]';
  return note + out;
}

/** The `python` tool: runs code in the session's persistent sandboxed interpreter. */
export function createPythonTool(options: PythonToolOptions = {}): AgentTool<{ code: string }> {
  const name = options.name ?? 'python';
  const timeoutMs = options.timeoutMs ?? PYTHON_DEFAULTS.timeoutMs;
  return defineTool({
    name,
    description: 'Runs Python 3 code in a persistent interpreter (variables survive between calls) and returns what it prints and the value of a trailing expression.',
    parameters: z.object({ code: z.string().describe('Python source to run') }),
    // The session kills the interpreter at `timeoutMs`; the loop's own guard fires only if that fails.
    timeoutMs: timeoutMs + 5000,
    async execute({ code }, ctx): Promise<ToolOutput> {
      const session = ctx.session.resource(`python:${name}`, () => new PythonSession(options));
      const r = await session.run(code, { signal: ctx.signal });
      return { output: pythonObservation(r), isError: r.error, timedOut: r.timedOut };
    },
  });
}
