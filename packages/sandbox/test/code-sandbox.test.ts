/**
 * The code sandbox's verdicts on benign code follow openai/human-eval's human_eval/execution.py
 * (unsafe_execute / check_correctness / reliability_guard / swallow_io / time_limit), read from the reference:
 * - a failing assert gives "failed: " + str(AssertionError()) = "failed: ";
 * - `exit` is set to None, so exit(0) gives "failed: 'NoneType' object is not callable"; sys.exit(0) "failed: 0";
 * - os._exit ends the process before a result is appended, and an empty result list is reported as "timed out";
 * - stdin is a WriteOnlyStringIO whose read/readline raise IOError: input() and sys.stdin.read() give "failed: ";
 * - a MemoryError gives "failed: " (str(MemoryError()) is empty);
 * - the SIGALRM TimeoutException gives "timed out", and a program that swallows it is killed at timeout + 1 s
 *   (p.join(timeout + 1); p.kill()), again "timed out";
 * - tempfile works (the reference runs in a TemporaryDirectory).
 */
import { readdirSync, readFileSync, readlinkSync, mkdtempSync, symlinkSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fixturePath } from '@llama-pro/core/testing';
import { PythonSandbox, PythonSession, resolveIsolation, SANDBOX_ENV, SandboxError, TMP_BYTES, type CheckJob } from '../src';

jest.setTimeout(120_000);

const sandbox = new PythonSandbox();
const PROMPT = 'def f(x):\n    """Return x + 1."""\n';
const TEST = 'def check(candidate):\n    assert candidate(1) == 2\n';
const he = (body: string): CheckJob => ({ code: PROMPT + body, setup: PROMPT, test: TEST + '\ncheck(f)', expose: ['f'] });

describe('code sandbox verdicts match openai/human-eval on benign code', () => {
  it('passes a right answer and gives the reference result strings for the rest', async () => {
    const bodies: [string, string][] = [
      ['    return x + 1\n', 'passed'],
      ['    return x\n', 'failed: '],
      ['    exit(0)\n', "failed: 'NoneType' object is not callable"],
      ['    import sys\n    sys.exit(0)\n', 'failed: 0'],
      ['    import os\n    os._exit(0)\n', 'timed out'],
      ['    return int(input())\n', 'failed: '],
      ['    import sys\n    return int(sys.stdin.read())\n', 'failed: '],
      ['    return len(bytearray(8 * 1024 ** 3))\n', 'failed: '],
      ['    raise KeyError("k")\n', "failed: 'k'"],
      ['    import tempfile, os\n    fd, p = tempfile.mkstemp()\n    os.write(fd, b"2")\n    t = tempfile.TemporaryFile()\n    t.write(b"x")\n    return int(open(p).read())\n', 'passed'],
    ];
    const res = await sandbox.runAll(bodies.map(([b]) => he(b)), { workers: 2 });
    expect(res.map((r) => r.result)).toEqual(bodies.map(([, want]) => want));
    expect(res[0]!.passed).toBe(true);
    expect(res.slice(1, 9).every((r) => !r.passed)).toBe(true);
  });

  it('times out a program that swallows the timer and kills everything it started', async () => {
    const marker = `sbxswallow${process.pid}`;
    const body =
      `    import subprocess, time\n    try:\n        subprocess.Popen\n    except Exception:\n        pass\n` +
      `    import _posixsubprocess, os\n    r, w = os.pipe()\n    _posixsubprocess.fork_exec([b"/usr/bin/python3", b"-c", b"import time; time.sleep(60) # ${marker}"], [b"/usr/bin/python3"], True, (), None, None, -1, -1, -1, -1, -1, -1, r, w, True, True, -1, None, None, None, -1, None, False)\n` +
      '    while True:\n        try:\n            time.sleep(10)\n        except BaseException:\n            pass\n';
    const [r] = await sandbox.runAll([he(body)], { timeoutS: 1 });
    expect(r).toMatchObject({ status: 'timed out', result: 'timed out', passed: false });
    // SIGKILL of the pid namespace is asynchronous: allow the kernel a moment to finish it.
    const alive = (): string[] => readdirSync('/proc').filter((e) => {
      try {
        return /^\d+$/.test(e) && readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(marker) && !/^State:\s+Z/m.test(readFileSync(`/proc/${e}/status`, 'utf8'));
      } catch {
        return false;
      }
    });
    for (let i = 0; i < 20 && alive().length > 0; i++) await new Promise((res) => setTimeout(res, 100));
    expect(alive()).toEqual([]);
  });

  it('gives the test the prompt helpers, and MBPP-style jobs the modules and values the code defines', async () => {
    const helper = 'def poly(xs, x):\n    return sum(c * x ** i for i, c in enumerate(xs))\ndef g(xs):\n    """root"""\n';
    const [a, b] = await sandbox.runAll([
      { code: helper + '    return -xs[0] / xs[1]\n', setup: helper, test: 'assert abs(poly([2, 4], g([2, 4]))) < 1e-9', expose: ['g'] },
      { code: 'import math\nK = (1, 2)\ndef area(r):\n    return math.pi * r * r\n', test: 'assert math.isclose(area(1), math.pi)\nassert K == (1, 2)\nassert area(2) == 4 * math.pi' },
    ]);
    expect(a!.result).toBe('passed');
    expect(b!.result).toBe('passed');
  });

  it('keeps the test\'s builtins and the checker\'s modules out of the candidate\'s reach (MBPP-style jobs)', async () => {
    const [shadow, mod, main] = await sandbox.runAll([
      // A wrong answer that also defines abs() and isinstance(): the test's abs must stay the builtin.
      { code: 'def abs(x):\n    return 0\ndef isinstance(*a):\n    return True\n__builtins__ = {}\ndef f(x):\n    return 99\n', test: 'assert abs(f(1) - 2) < 1e-9' },
      // Modules outside a side-effect-free list, or under another name, are not imported into the checker.
      { code: 'import __phello__ as hello\nimport fractions as math\ndef f():\n    return 1\n', test: 'import sys\nassert "__phello__" not in sys.modules and "hello" not in globals() and "math" not in globals()\nassert f() == 1' },
      // The names list itself comes from the sandbox and can be forged (here by patching the runtime's _send).
      {
        code: 'import sys\nrt = sys.modules["__main__"]\norig = rt._send\nrt._send = lambda o: orig({"names": {"m": ["m", "unittest.__main__"], "abs": ["f"], "f": ["f"]}} if "names" in o else o)\ndef f():\n    return 1\n',
        test: 'import sys\nassert "unittest.__main__" not in sys.modules and "m" not in globals()\nassert abs(-1) == 1\nassert f() == 1',
      },
    ]);
    expect(shadow!.result).toBe('failed: ');
    expect(mod!.result).toBe('passed');
    expect(main!.result).toBe('passed');
  });

  it('shows the code neither the dataset, the repository, the host /tmp nor the host /proc', async () => {
    const dataset = fixturePath('datasets', 'humaneval', 'HumanEval.jsonl.gz');
    const probe = `import os\nSEEN = [os.path.exists(p) for p in [${JSON.stringify(dataset)}, ${JSON.stringify(process.cwd())}, ${JSON.stringify(os.tmpdir() + '/' + path.basename(__filename))}, "/proc/${process.pid}"]] + [sorted(os.listdir("/"))]\ndef seen():\n    return SEEN\n`;
    const [r] = await sandbox.runAll([{ code: probe, test: 'assert seen()[:4] == [False] * 4, seen()\nassert set(seen()[4]) <= {"bin", "dev", "lib", "lib32", "lib64", "libx32", "proc", "sbin", "tmp", "usr"}, seen()' }]);
    expect(r!.result).toBe('passed');
  });

  it('runs the code in its own user, pid, net, uts and ipc namespaces as uid 65534 with the fixed environment', async () => {
    const code =
      'import os, socket\nHOST = socket.gethostname()\nIFACES = sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:])\n' +
      'IDS = (os.getuid(), os.getgid(), os.getpid() < 10)\nENV = sorted(os.environ)\nNS = {n: os.readlink("/proc/self/ns/" + n) for n in ("user", "pid", "net", "uts", "ipc", "mnt")}\ndef info():\n    return [HOST, IFACES, IDS, ENV, NS]\n';
    const host = Object.fromEntries(['user', 'pid', 'net', 'uts', 'ipc', 'mnt'].map((n) => [n, readlinkSync(`/proc/self/ns/${n}`)]));
    const env = JSON.stringify(Object.keys(SANDBOX_ENV).concat(['PWD']).sort());
    const test = `i = info()\nassert i[0] == "sandbox", i\nassert i[1] == ["lo"], i\nassert i[2] == (65534, 65534, True), i\nassert i[3] == ${env}, i\nassert all(i[4][n] != h for n, h in ${JSON.stringify(host)}.items()), i`;
    const [r] = await sandbox.runAll([{ code, test }]);
    expect(r!.result).toBe('passed');
  });

  it('passes values of every builtin type across and keeps their types', async () => {
    const code = 'def v():\n    return [1, 2.5, "s", b"b", (1,), {1: [2]}, {3}, frozenset({4}), None, True, 10 ** 30, complex(1, 2), float("inf")]\n';
    const [r, t] = await sandbox.runAll([
      { code, test: 'assert v() == [1, 2.5, "s", b"b", (1,), {1: [2]}, {3}, frozenset({4}), None, True, 10 ** 30, complex(1, 2), float("inf")]\nassert type(v()[4]) is tuple' },
      { code, test: 'assert type(v()[4]) is list' },
    ]);
    expect(r!.result).toBe('passed');
    expect(t!.result).toBe('failed: ');
  });

  it('--python selects the interpreter', async () => {
    const s = new PythonSandbox({ python: '/usr/bin/python3.11' });
    expect((await s.describe()).python).toBe('/usr/bin/python3.11');
    const [r] = await s.runAll([{ code: 'import sys\ndef exe():\n    return sys.executable\n', test: 'assert exe() == "/usr/bin/python3.11", exe()' }]);
    expect(r!.result).toBe('passed');
    expect((await sandbox.describe()).isolation).toBe('bwrap');
  });
});

describe('the private filesystem is bounded', () => {
  it('fills /tmp only up to its size cap and cannot write /dev', async () => {
    const s = new PythonSession({ timeoutMs: 20_000 });
    try {
      const r = await s.run(
        'import os\nn = 0\ntry:\n    while True:\n        with open("/tmp/f%d" % n, "wb") as f:\n            f.write(b"x" * (1 << 24))\n        n += 1\nexcept OSError as e:\n    print(e.errno, n)\n' +
          'try:\n    open("/dev/x", "w")\nexcept OSError as e:\n    print(e.errno)',
      );
      const [first, second] = r.output.trim().split('\n');
      const [errno, files] = first!.split(' ').map(Number);
      expect(errno).toBe(28); // ENOSPC
      expect(files! * (1 << 24)).toBeLessThanOrEqual(TMP_BYTES);
      expect(Number(second)).toBe(30); // EROFS
    } finally {
      s.dispose();
    }
  });
});

describe('a sandbox that does not start', () => {
  it('is an error, never a verdict', async () => {
    // 1 ms is too short for any interpreter to greet: the same path as bwrap failing on this machine.
    await expect(new PythonSandbox({ limits: { startupGraceS: 0.001 } }).run(he('    return x + 1\n'))).rejects.toThrow(/code sandbox failure: the sandboxed interpreter did not start/);
  });
});

describe('without namespaces', () => {
  it('refuses untrusted code unless --unsafe-no-sandbox, saying why', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sbx-nobwrap-'));
    symlinkSync('/usr/bin/python3', path.join(dir, 'python3'));
    const old = process.env['PATH'];
    process.env['PATH'] = dir;
    try {
      expect(() => resolveIsolation({ python: path.join(dir, 'python3') })).toThrow(SandboxError);
      expect(() => resolveIsolation({ python: path.join(dir, 'python3') })).toThrow(/refusing to run untrusted code: bubblewrap \(bwrap\) is not installed.*--unsafe-no-sandbox/);
      expect(resolveIsolation({ python: path.join(dir, 'python3'), unsafeNoSandbox: true })).toMatchObject({ mode: 'none', prefix: [] });
      // Benign code only: with --unsafe-no-sandbox it runs unisolated, in a fresh directory of its own.
      const unsafe = new PythonSandbox({ python: path.join(dir, 'python3'), unsafeNoSandbox: true });
      expect((await unsafe.describe()).isolation).toBe('none');
      const [r] = await unsafe.runAll([{ code: 'import os\nT = os.environ["TMPDIR"]\ndef where():\n    return T\n', test: 'import os\nw = where()\nassert "llama-pro-cand-" in w and os.path.isdir(w), w' }]);
      expect(r!.result).toBe('passed');
    } finally {
      process.env['PATH'] = old;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
