/**
 * Sandboxed execution of untrusted Python programs (generated code for HumanEval / MBPP).
 *
 * One `python3` child per program, in its own process group (detached), killed as a group on timeout and
 * after it exits; a fresh temporary working directory; a scrubbed environment; stdin on /dev/null; rlimits
 * (CPU, address space, processes, file size, open files); when started as root, a private network namespace
 * (`unshare -n`) and a throw-away uid; always an audit hook that refuses writes outside the working
 * directory, sockets and process creation. A program passes only when the runner prints the random nonce
 * after the program returned, so exits, crashes and kills are failures.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ProgressReporter } from '@llama-pro/core';
import { EvalError } from '../errors';
import { RUNNER_SOURCE } from './runner-source';

export type ExecutionStatus = 'passed' | 'failed' | 'timed out';

export interface ExecutionResult {
  /** `passed`, `failed` or `timed out`, as openai/human-eval. */
  readonly status: ExecutionStatus;
  readonly passed: boolean;
  /** The reference harness's result string: "passed", "timed out" or "failed: <exception>". */
  readonly result: string;
  /** Wall time of the child process, milliseconds. */
  readonly wallMs: number;
}

export interface SandboxLimits {
  /** Seconds of program execution (interpreter start-up excluded), as the reference's 3.0 s. */
  timeoutS?: number;
  /** Extra wall-clock allowance for interpreter start-up before the group is killed. */
  startupGraceS?: number;
  /** RLIMIT_AS / RLIMIT_DATA in bytes. */
  memoryBytes?: number;
  /** RLIMIT_NPROC. Enforced for the throw-away uid; a no-op for root without a uid switch. */
  maxProcesses?: number;
  /** RLIMIT_FSIZE in bytes. */
  fileSizeBytes?: number;
  maxOpenFiles?: number;
}

export interface CodeSandbox {
  readonly name: string;
  /** Runs one program; never throws for anything the program does. */
  run(program: string, limits?: SandboxLimits): Promise<ExecutionResult>;
  /** Runs many programs with a bounded pool of parallel workers; results in input order. */
  runAll(programs: readonly string[], options?: RunAllOptions): Promise<ExecutionResult[]>;
  /** Which isolation features are active (recorded in results). */
  describe(): Promise<SandboxInfo>;
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
  readonly networkNamespace: boolean;
  readonly uidSwitch: boolean;
  readonly auditHook: true;
  readonly limits: Required<SandboxLimits>;
}

export const DEFAULT_SANDBOX_LIMITS: Required<SandboxLimits> = {
  timeoutS: 3.0,
  startupGraceS: 10,
  memoryBytes: 1024 * 1024 * 1024,
  maxProcesses: 16,
  fileSizeBytes: 16 * 1024 * 1024,
  maxOpenFiles: 256,
};

export interface PythonSandboxOptions {
  /** Interpreter (default: `python3` from PATH, resolved to a real executable). */
  python?: string;
  /** Use `unshare -n` when running as root (default true). */
  networkNamespace?: boolean;
  /** Switch to a random unprivileged uid when running as root (default true). */
  uidSwitch?: boolean;
  limits?: SandboxLimits;
  /** Parent directory of the per-program temp directories (default: the OS temp dir). */
  tmpRoot?: string;
}

const SAFE_PATH = '/usr/local/bin:/usr/bin:/bin';
const MAX_CAPTURE = 64 * 1024;

interface Resolved {
  python: string;
  pythonVersion: string;
  netns: boolean;
  uidSwitch: boolean;
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

function probe(cmd: string, args: string[]): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 20000, stdio: ['ignore', 'pipe', 'pipe'] });
  return { ok: r.status === 0, out: (r.stdout ?? '').trim() };
}

export class PythonSandbox implements CodeSandbox {
  readonly name = 'python';
  private resolved: Promise<Resolved> | undefined;
  private readonly limits: Required<SandboxLimits>;

  constructor(private readonly options: PythonSandboxOptions = {}) {
    this.limits = { ...DEFAULT_SANDBOX_LIMITS, ...stripUndefined(options.limits ?? {}) };
  }

  private resolve(): Promise<Resolved> {
    this.resolved ??= this.doResolve();
    return this.resolved;
  }

  private async doResolve(): Promise<Resolved> {
    const requested = this.options.python ?? 'python3';
    const candidates = [requested];
    const root = isRoot();
    // A pyenv shim or an interpreter under /root is unusable after the uid switch; the system one usually is.
    if (root && this.options.python === undefined) candidates.push('/usr/bin/python3', '/usr/local/bin/python3');
    const wantNetns = root && (this.options.networkNamespace ?? true) && probe('unshare', ['-n', '--', 'true']).ok;
    const wantUid = root && (this.options.uidSwitch ?? true);
    let fallback: Resolved | undefined;
    for (const c of candidates) {
      const exe = probe(c, ['-c', 'import sys; print(sys.executable); print(sys.version.split()[0])']);
      if (!exe.ok) continue;
      const [python, version] = exe.out.split('\n');
      const r: Resolved = { python: python!, pythonVersion: version!, netns: wantNetns, uidSwitch: wantUid };
      fallback ??= { ...r, uidSwitch: false };
      if (!wantUid) return r;
      // Check that the interpreter and its standard library work under the throw-away uid.
      const res = await this.runWith(r, 'import hashlib, math, re, typing, collections, itertools, heapq\n', this.limits);
      if (res.passed) return r;
    }
    if (fallback) return fallback;
    throw new EvalError(`cannot run ${requested}: code execution needs Python 3 on PATH (install python3 or pass the interpreter path)`, 'SANDBOX_NO_PYTHON');
  }

  async describe(): Promise<SandboxInfo> {
    const r = await this.resolve();
    return { python: r.python, pythonVersion: r.pythonVersion, networkNamespace: r.netns, uidSwitch: r.uidSwitch, auditHook: true, limits: this.limits };
  }

  async run(program: string, limits: SandboxLimits = {}): Promise<ExecutionResult> {
    const r = await this.resolve();
    return this.runWith(r, program, { ...this.limits, ...stripUndefined(limits) });
  }

  async runAll(programs: readonly string[], options: RunAllOptions = {}): Promise<ExecutionResult[]> {
    const workers = Math.max(1, Math.min(options.workers ?? Math.min(4, os.cpus().length || 1), programs.length || 1));
    const out = new Array<ExecutionResult>(programs.length);
    let next = 0;
    let done = 0;
    let passed = 0;
    options.progress?.start(programs.length, options.label ?? 'execute');
    const limits = { ...this.limits, ...stripUndefined(options) };
    await this.resolve();
    const worker = async (): Promise<void> => {
      while (next < programs.length) {
        const i = next++;
        out[i] = await this.run(programs[i]!, limits);
        done++;
        if (out[i]!.passed) passed++;
        options.progress?.update(done, { passed });
      }
    };
    try {
      await Promise.all(Array.from({ length: workers }, worker));
    } finally {
      options.progress?.stop();
    }
    return out;
  }

  private async runWith(r: Resolved, program: string, limits: Required<SandboxLimits>): Promise<ExecutionResult> {
    const started = Date.now();
    const tmp = await fsp.mkdtemp(path.join(this.options.tmpRoot ?? os.tmpdir(), 'llama-pro-sandbox-'));
    try {
      const nonce = randomBytes(16).toString('hex');
      const uid = r.uidSwitch ? randomInt(200_000, 2_000_000) : null;
      const runnerPath = path.join(tmp, '.runner.py');
      const cfgPath = path.join(tmp, '.config.json');
      const cfg = {
        nonce,
        program,
        timeout: limits.timeoutS,
        memoryBytes: limits.memoryBytes,
        cpuSeconds: Math.ceil(limits.timeoutS) + 1,
        fileSizeBytes: limits.fileSizeBytes,
        maxProcesses: limits.maxProcesses,
        maxOpenFiles: limits.maxOpenFiles,
        uid,
      };
      await fsp.writeFile(runnerPath, RUNNER_SOURCE, { mode: 0o444 });
      await fsp.writeFile(cfgPath, JSON.stringify(cfg), { mode: 0o600 });
      if (uid !== null) {
        await fsp.chown(tmp, uid, uid);
        await fsp.chmod(tmp, 0o700);
      }
      const pyArgs = ['-I', '-B', runnerPath, cfgPath];
      const [cmd, args] = r.netns ? ['unshare', ['-n', '--', r.python, ...pyArgs]] : [r.python, pyArgs];
      const env = { PATH: SAFE_PATH, HOME: tmp, TMPDIR: tmp, LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8', PYTHONIOENCODING: 'utf-8', OMP_NUM_THREADS: '1' };
      const { stdout, code, signal, killedByUs } = await spawnGroup(cmd, args as string[], { cwd: tmp, env }, (limits.timeoutS + limits.startupGraceS) * 1000);
      const wallMs = Date.now() - started;
      const line = stdout.split('\n').find((l) => l.startsWith(nonce + ' '));
      if (line) {
        let status: string;
        try {
          status = JSON.parse(line.slice(nonce.length + 1)) as string;
        } catch {
          status = 'failed: unreadable result';
        }
        if (status === 'passed' && code === 0) return { status: 'passed', passed: true, result: 'passed', wallMs };
        if (status === 'timed out') return { status: 'timed out', passed: false, result: 'timed out', wallMs };
        return { status: 'failed', passed: false, result: status === 'passed' ? `failed: exit code ${code}` : status, wallMs };
      }
      if (killedByUs || signal === 'SIGXCPU') return { status: 'timed out', passed: false, result: 'timed out', wallMs };
      const why = signal ? `killed by ${signal}` : `exited with code ${code} before the tests completed`;
      return { status: 'failed', passed: false, result: `failed: ${why}`, wallMs };
    } finally {
      await fsp.rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    }
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Spawns `cmd` as the leader of a new process group; kills the whole group on timeout and after exit. */
function spawnGroup(
  cmd: string,
  args: string[],
  opts: { cwd: string; env: NodeJS.ProcessEnv },
  wallLimitMs: number,
): Promise<{ stdout: string; code: number | null; signal: NodeJS.Signals | null; killedByUs: boolean }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'ignore'], detached: true });
    let stdout = '';
    let killedByUs = false;
    let settled = false;
    const timer = setTimeout(() => {
      killedByUs = true;
      killGroup(child.pid);
    }, wallLimitMs);
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      if (stdout.length < MAX_CAPTURE) stdout += d;
    });
    const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ stdout, code, signal, killedByUs });
    };
    child.on('error', () => finish(127, null));
    child.on('exit', () => {
      // Stragglers (anything the program managed to start) die with the group.
      killGroup(child.pid);
    });
    child.on('close', (code, signal) => finish(code, signal));
  });
}
