/**
 * Verdicts for untrusted code (HumanEval / MBPP completions) that the code cannot forge.
 *
 * A job is untrusted `code` (prompt + completion) plus trusted `setup` and `test` (the dataset's check code).
 * The code runs in a bubblewrap sandbox (see isolation.ts) that only answers calls; the test runs in a separate
 * checker interpreter outside the sandbox, with the candidate's functions as proxies that pass plain values
 * (see python-sources.ts). The checker's verdict line is the only result, so `sys._getframe`, `sys.settrace`,
 * forged result lines, exits and kills inside the sample cannot produce a pass; the dataset file and other
 * problems' tests never enter the sandbox. Timing follows openai/human-eval: the time limit (default 3 s)
 * covers running the code and the test; at the limit the whole sandbox (its pid namespace) is killed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as os from 'node:os';
import type { ProgressReporter } from '@llama-pro/core';
import { resolveIsolation, SANDBOX_ENV, SandboxError, sandboxedCommand, type Isolation, type IsolationOptions } from './isolation';
import { CANDIDATE_SOURCE, CHECKER_SOURCE } from './python-sources';

export type ExecutionStatus = 'passed' | 'failed' | 'timed out';

export interface ExecutionResult {
  /** `passed`, `failed` or `timed out`, as openai/human-eval. */
  readonly status: ExecutionStatus;
  readonly passed: boolean;
  /** The reference harness's result string: "passed", "timed out" or "failed: <exception>". */
  readonly result: string;
  /** Wall time of the job, milliseconds. */
  readonly wallMs: number;
}

/** One program to judge: untrusted code, and trusted code that checks it. */
export interface CheckJob {
  /** Untrusted: runs in the sandbox (HumanEval: prompt + completion). */
  readonly code: string;
  /**
   * Trusted: runs in the checker before the candidate's names are installed (HumanEval: the prompt, for helpers
   * such as `poly`; its stub of the entry point is then replaced by the sandboxed one).
   */
  readonly setup?: string;
  /** Trusted: the checking code, after the candidate's names: `test + "\ncheck(entry_point)"`, MBPP's setup + asserts. */
  readonly test: string;
  /**
   * Names of the candidate's functions the test calls (HumanEval: [entry_point]). Omitted: every function, plain
   * value and side-effect-free stdlib module the code defines is made available (MBPP), except names of builtins.
   */
  readonly expose?: readonly string[];
  /** With `expose` omitted: function names the test calls that may shadow a builtin (MBPP: the reference code's defs). */
  readonly calls?: readonly string[];
}

export interface SandboxLimits {
  /** Seconds for running the code and the test, as the reference's 3.0 s. */
  timeoutS?: number;
  /** Wall-clock allowance for starting the sandboxed interpreter (not counted in timeoutS). */
  startupGraceS?: number;
  /** RLIMIT_AS in bytes. */
  memoryBytes?: number;
  /** RLIMIT_NPROC (counted inside the sandbox's user namespace). */
  maxProcesses?: number;
  /** RLIMIT_FSIZE in bytes. */
  fileSizeBytes?: number;
  maxOpenFiles?: number;
}

export interface RunAllOptions extends SandboxLimits {
  /** Parallel workers (default: min(4, CPU count)). */
  workers?: number;
  progress?: ProgressReporter;
  label?: string;
}

export interface SandboxInfo {
  readonly python: string;
  readonly pythonVersion: string;
  /** `bwrap` (namespaces) or `none` (--unsafe-no-sandbox on a system without namespaces). */
  readonly isolation: 'bwrap' | 'none';
  readonly namespaces: readonly string[];
  /** Where the verdict comes from. */
  readonly verdict: 'checker process outside the sandbox';
  readonly limits: Required<SandboxLimits>;
}

export interface CodeSandbox {
  readonly name: string;
  /** Judges one job; never throws for anything the code does. */
  run(job: CheckJob, limits?: SandboxLimits): Promise<ExecutionResult>;
  /** Judges many jobs with a bounded pool of workers; results in input order. */
  runAll(jobs: readonly CheckJob[], options?: RunAllOptions): Promise<ExecutionResult[]>;
  /** Which isolation is active (recorded in results). */
  describe(): Promise<SandboxInfo>;
}

export const DEFAULT_SANDBOX_LIMITS: Required<SandboxLimits> = {
  timeoutS: 3.0,
  startupGraceS: 10,
  memoryBytes: 1024 * 1024 * 1024,
  maxProcesses: 16,
  fileSizeBytes: 16 * 1024 * 1024,
  maxOpenFiles: 256,
};

export interface PythonSandboxOptions extends IsolationOptions {
  limits?: SandboxLimits;
}

/** Sandboxes each checker keeps started ahead of the jobs still to come. */
const PRESTART = 2;

/** Extra seconds the Node side waits for a checker beyond startup + timeout before killing it. */
const CHECKER_SLACK_S = 10;

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function statusOf(result: string): ExecutionStatus {
  return result === 'passed' ? 'passed' : result === 'timed out' ? 'timed out' : 'failed';
}

/** One checker interpreter (outside the sandbox) that judges jobs one at a time. */
class Checker {
  private readonly child: ChildProcess;
  private buf = '';
  private waiting: ((line: string | null) => void) | null = null;
  dead = false;

  constructor(python: string) {
    this.child = spawn(python, ['-I', '-B', '-c', CHECKER_SOURCE], { stdio: ['pipe', 'pipe', 'ignore'], detached: true, env: { ...SANDBOX_ENV }, cwd: os.tmpdir() });
    this.child.stdout!.setEncoding('utf8');
    this.child.stdout!.on('data', (d: string) => {
      this.buf += d;
      const i = this.buf.indexOf('\n');
      if (i >= 0 && this.waiting) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        const w = this.waiting;
        this.waiting = null;
        w(line);
      }
    });
    this.child.stdin!.on('error', () => undefined);
    this.child.on('exit', () => {
      this.dead = true;
      const w = this.waiting;
      this.waiting = null;
      w?.(null);
    });
  }

  judge(job: Record<string, unknown>, waitMs: number): Promise<string | null> {
    return new Promise((resolve) => {
      if (this.dead) return resolve(null);
      const timer = setTimeout(() => {
        this.waiting = null;
        this.kill();
        resolve(null);
      }, waitMs);
      this.waiting = (line) => {
        clearTimeout(timer);
        resolve(line);
      };
      this.child.stdin!.write(JSON.stringify(job) + '\n');
    });
  }

  kill(): void {
    this.dead = true;
    if (this.child.pid !== undefined) {
      try {
        process.kill(-this.child.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }

  close(): void {
    this.child.stdin!.end();
    const t = setTimeout(() => this.kill(), 5000);
    t.unref();
  }
}

export class PythonSandbox implements CodeSandbox {
  readonly name = 'python';
  private readonly limits: Required<SandboxLimits>;
  private iso: Isolation | undefined;

  constructor(private readonly options: PythonSandboxOptions = {}) {
    this.limits = { ...DEFAULT_SANDBOX_LIMITS, ...stripUndefined(options.limits ?? {}) };
  }

  private isolation(): Isolation {
    this.iso ??= resolveIsolation({ python: this.options.python, unsafeNoSandbox: this.options.unsafeNoSandbox });
    return this.iso;
  }

  describe(): Promise<SandboxInfo> {
    const iso = this.isolation();
    return Promise.resolve({
      python: iso.python,
      pythonVersion: iso.pythonVersion,
      isolation: iso.mode,
      namespaces: iso.mode === 'bwrap' ? ['user', 'mount', 'pid', 'net', 'ipc', 'uts'] : [],
      verdict: 'checker process outside the sandbox',
      limits: this.limits,
    });
  }

  async run(job: CheckJob, limits: SandboxLimits = {}): Promise<ExecutionResult> {
    return (await this.runAll([job], { ...limits, workers: 1 }))[0]!;
  }

  async runAll(jobs: readonly CheckJob[], options: RunAllOptions = {}): Promise<ExecutionResult[]> {
    const iso = this.isolation();
    const limits = { ...this.limits, ...stripUndefined(options) };
    const cfg = {
      memoryBytes: limits.memoryBytes,
      cpuSeconds: Math.ceil(limits.timeoutS) + 1,
      fileSizeBytes: limits.fileSizeBytes,
      maxProcesses: limits.maxProcesses,
      maxOpenFiles: limits.maxOpenFiles,
    };
    const argv = sandboxedCommand(iso, ['-I', '-B', '-c', CANDIDATE_SOURCE, JSON.stringify(cfg)]);
    const argvKey = JSON.stringify(cfg);
    const workers = Math.max(1, Math.min(options.workers ?? Math.min(4, os.cpus().length || 1), jobs.length || 1));
    const out = new Array<ExecutionResult>(jobs.length);
    let next = 0;
    let done = 0;
    let passed = 0;
    const waitMs = (limits.startupGraceS + limits.timeoutS + CHECKER_SLACK_S) * 1000;
    options.progress?.start(jobs.length, options.label ?? 'execute');
    const worker = async (): Promise<void> => {
      let checker: Checker | null = null;
      try {
        while (next < jobs.length) {
          const i = next++;
          const j = jobs[i]!;
          const started = Date.now();
          let result = 'timed out';
          // A sandbox that does not start is an error of this machine, never a verdict: one retry, then fail.
          for (let attempt = 0; ; attempt++) {
            if (!checker || checker.dead) checker = new Checker(iso.python);
            const line = await checker.judge(
              { code: j.code, setup: j.setup ?? '', test: j.test, expose: j.expose ?? null, calls: j.calls ?? [], timeout: limits.timeoutS, startup: limits.startupGraceS, argv, argvKey, isolated: iso.mode === 'bwrap', prestart: Math.min(PRESTART, jobs.length - next) },
              waitMs,
            );
            let r: { result?: unknown; error?: unknown } = {};
            try {
              r = line === null ? {} : (JSON.parse(line) as typeof r);
            } catch {
              /* the checker is ours; an unreadable line is a lost job */
            }
            if (typeof r.error === 'string') {
              checker.kill();
              if (attempt === 0) continue;
              throw new SandboxError(`code sandbox failure: ${r.error}; check that bubblewrap works here (see packages/sandbox/README.md)`, 'SANDBOX_BROKEN');
            }
            if (typeof r.result === 'string') result = r.result;
            break;
          }
          out[i] = { status: statusOf(result), passed: result === 'passed', result, wallMs: Date.now() - started };
          done++;
          if (out[i]!.passed) passed++;
          options.progress?.update(done, { passed });
        }
      } finally {
        checker?.close();
      }
    };
    try {
      await Promise.all(Array.from({ length: workers }, worker));
    } finally {
      options.progress?.stop();
    }
    return out;
  }
}
