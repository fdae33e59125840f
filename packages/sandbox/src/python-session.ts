/**
 * A persistent, sandboxed Python interpreter (the agent's python tool runs on it). Variables survive between
 * calls; each call has a wall-clock timeout that kills the whole sandbox (its pid namespace: every process the
 * code started, setsid or not) and the next call starts a fresh interpreter and says so; output is cut to a
 * limit. Isolation is isolation.ts (bubblewrap namespaces, read-only filesystem, private tmpfs /tmp as the
 * working directory, fixed environment, no network, uid 65534) plus rlimits set by the driver.
 *
 * The reply channel (fd 4) belongs to the interpreter that also runs the cells, so a cell can always decide
 * what its own call returns (as it can by printing); it cannot touch other calls: every request carries a
 * fresh random id and only the first reply with that id is taken, anything else on the channel is dropped, so
 * replies written ahead (for calls not yet made) never match.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { resolveIsolation, SANDBOX_ENV, SandboxError, sandboxedCommand, type Isolation } from './isolation';
import { PYTHON_DRIVER } from './python-driver';

/** Defaults of PythonSession (the agent's python tool spreads these: agent/src/constants.ts). */
export const PYTHON_SESSION_DEFAULTS = {
  /** Wall-clock limit per call; on expiry the whole process group is killed and the session restarts. */
  timeoutMs: 10_000,
  /** Characters of output (stdout + stderr + result) kept per call. */
  maxOutputChars: 4000,
  /** Address-space limit of the interpreter (bytes). */
  maxMemoryBytes: 1024 * 1024 * 1024,
  /** CPU seconds for the whole session (RLIMIT_CPU); exceeding it ends the session, which restarts. */
  maxCpuSeconds: 120,
  /** Largest file the code may write (bytes, RLIMIT_FSIZE). */
  maxFileBytes: 16 * 1024 * 1024,
  /** Open file descriptors (RLIMIT_NOFILE). */
  maxOpenFiles: 64,
  /** Processes (RLIMIT_NPROC, counted inside the sandbox's user namespace). */
  maxProcesses: 32,
  /** Time to wait for the interpreter to start (ms). */
  startTimeoutMs: 15_000,
} as const;

export interface PythonSessionOptions {
  /** Interpreter (default python3 from PATH). */
  executable?: string;
  timeoutMs?: number;
  maxOutputChars?: number;
  maxMemoryBytes?: number;
  /** CPU seconds for the whole session (RLIMIT_CPU); exceeding it ends the session, which restarts. */
  maxCpuSeconds?: number;
  maxFileBytes?: number;
  maxOpenFiles?: number;
  /** RLIMIT_NPROC, counted inside the sandbox's user namespace. */
  maxProcesses?: number;
  startTimeoutMs?: number;
  /** Run without isolation where the sandbox is unavailable (`--unsafe-no-sandbox`). */
  unsafeNoSandbox?: boolean;
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

interface Live {
  child: ChildProcess;
  /** Host directory used as the working directory without a sandbox (null inside bwrap: /tmp is a tmpfs). */
  dir: string | null;
  /** The id the reply in flight must carry: 'ready' at start, then a fresh random id per call. */
  expect: string;
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
  private iso: Isolation | undefined;
  private live: Live | null = null;
  private lostBefore = false;
  private chain: Promise<unknown> = Promise.resolve();
  private disposed = false;
  /** Interpreters started so far. */
  starts = 0;

  constructor(options: PythonSessionOptions = {}) {
    const d = PYTHON_SESSION_DEFAULTS;
    this.opts = {
      executable: options.executable,
      timeoutMs: options.timeoutMs ?? d.timeoutMs,
      maxOutputChars: options.maxOutputChars ?? d.maxOutputChars,
      maxMemoryBytes: options.maxMemoryBytes ?? d.maxMemoryBytes,
      maxCpuSeconds: options.maxCpuSeconds ?? d.maxCpuSeconds,
      maxFileBytes: options.maxFileBytes ?? d.maxFileBytes,
      maxOpenFiles: options.maxOpenFiles ?? d.maxOpenFiles,
      maxProcesses: options.maxProcesses ?? d.maxProcesses,
      startTimeoutMs: options.startTimeoutMs ?? d.startTimeoutMs,
      unsafeNoSandbox: options.unsafeNoSandbox ?? false,
    };
    if (!(this.opts.timeoutMs > 0)) throw new SandboxError(`python timeout must be > 0 ms, got ${this.opts.timeoutMs}`, 'USAGE');
  }

  /** Process id of the sandbox (bwrap) process of the current interpreter, the leader of its process group. */
  get pid(): number | null {
    return this.live?.child.pid ?? null;
  }

  /** Runs one cell; calls are serialized. */
  run(code: string, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<PythonRunResult> {
    const next = this.chain.then(() => this.runNow(code, options));
    this.chain = next.catch(() => undefined);
    return next;
  }

  /** How interpreters run (resolves the sandbox; throws SandboxError when it is unavailable and not overridden). */
  get isolation(): Isolation {
    this.iso ??= resolveIsolation({ python: this.opts.executable, unsafeNoSandbox: this.opts.unsafeNoSandbox });
    return this.iso;
  }

  private async start(): Promise<Live> {
    const iso = this.isolation;
    const cfg = JSON.stringify({
      memory: this.opts.maxMemoryBytes,
      cpu: this.opts.maxCpuSeconds,
      fsize: this.opts.maxFileBytes,
      nofile: this.opts.maxOpenFiles,
      // Without a user namespace RLIMIT_NPROC would count all of the user's processes: not set there.
      nproc: iso.mode === 'bwrap' ? this.opts.maxProcesses : null,
      captureChars: this.opts.maxOutputChars * 2,
    });
    const [cmd, ...args] = sandboxedCommand(iso, ['-I', '-u', '-c', PYTHON_DRIVER, cfg]);
    // Without a sandbox (--unsafe-no-sandbox only) the code at least gets a fresh directory of its own.
    const dir = iso.mode === 'none' ? mkdtempSync(path.join(os.tmpdir(), 'llama-pro-py-')) : null;
    const env = dir ? { ...SANDBOX_ENV, HOME: dir, TMPDIR: dir } : { ...SANDBOX_ENV };
    const child = spawn(cmd!, args, { cwd: dir ?? '/', env, detached: true, stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'] });
    this.starts += 1;
    const live: Live = { child, dir, expect: 'ready', pending: null, stray: '', dead: null };
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
        // Only the first reply to the request in flight counts.
        if (typeof msg !== 'object' || msg === null || msg['id'] !== live.expect || !live.pending) continue;
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
      if (live.dir) rmSync(live.dir, { recursive: true, force: true });
    };
    child.on('error', (e) => onGone(`python could not start: ${e.message}`));
    child.on('exit', (code, signal) => onGone(signal ? `the Python process was killed by ${signal}` : `the Python process exited with code ${code}`));
    const ready = await this.await(live, this.opts.startTimeoutMs);
    if (ready instanceof Error || ready === 'timeout' || ready === 'aborted') {
      await this.kill(live);
      const detail = ready === 'timeout' || ready === 'aborted' ? 'it did not start in time' : ready.message;
      throw new SandboxError(`cannot start the Python sandbox (${iso.python}): ${detail}${live.stray ? `\n${live.stray.slice(0, 500)}` : ''}`, 'PYTHON_START');
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
   * Kills the sandbox and everything in it; resolves once it has exited. SIGKILL to the bwrap process group:
   * bwrap's --die-with-parent then kills the pid namespace's init, and the kernel every process inside it.
   */
  private async kill(live: Live): Promise<void> {
    if (this.live === live) this.live = null;
    const c = live.child;
    const exited = c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise<void>((r) => c.once('exit', () => r()));
    if (c.pid !== undefined) {
      try {
        process.kill(-c.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    await Promise.race([exited, new Promise<void>((r) => setTimeout(r, 2000).unref())]);
  }

  private async runNow(code: string, options: { timeoutMs?: number; signal?: AbortSignal }): Promise<PythonRunResult> {
    if (this.disposed) throw new SandboxError('this Python session was disposed', 'PYTHON_DISPOSED');
    let restarted = false;
    if (!this.live || this.live.dead) {
      restarted = this.lostBefore;
      this.live = await this.start();
    }
    const live = this.live;
    live.stray = '';
    const timeoutMs = options.timeoutMs ?? this.opts.timeoutMs;
    // A fresh unguessable id: anything written to the reply channel before this call started cannot match it.
    live.expect = randomBytes(16).toString('hex');
    const reply = this.await(live, timeoutMs, options.signal);
    (live.child.stdio[3] as NodeJS.WritableStream).write(`${JSON.stringify({ id: live.expect, code })}\n`);
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
      if (live.dir) rmSync(live.dir, { recursive: true, force: true });
    }
  }
}

