import { existsSync, readdirSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PythonSession } from '../src';

jest.setTimeout(60_000);

describe('PythonSession: persistent interpreter', () => {
  const s = new PythonSession({ timeoutMs: 3000, maxOutputChars: 200 });
  afterAll(() => s.dispose());

  test('variables, imports and functions survive between calls; a trailing expression is shown', async () => {
    expect((await s.run('x = 20\nimport math\ndef f(n):\n    return n + 1')).output).toBe('');
    const r = await s.run('print("x is", x)\nf(x) * 2');
    expect(r).toMatchObject({ output: 'x is 20\n42\n', error: false, timedOut: false, restarted: false });
    expect((await s.run('math.sqrt(x + 5)')).output).toBe('5.0\n');
    expect(s.starts).toBe(1);
  });

  test('exceptions come back as a traceback of the cell only; the session goes on', async () => {
    const r = await s.run('y = 1\n1 / 0');
    expect(r.error).toBe(true);
    expect(r.output).toMatch(/^Traceback[\s\S]*File "<cell>", line 2[\s\S]*ZeroDivisionError: division by zero\n$/);
    expect(r.output).not.toMatch(/_run|llama-pro|exec\(/);
    expect((await s.run('y + x')).output).toBe('21\n');
    const syn = await s.run('def (');
    expect(syn.error).toBe(true);
    expect(syn.output).toMatch(/SyntaxError/);
    expect((await s.run('import sys\nsys.exit(3)')).output).toMatch(/SystemExit: 3/);
    expect((await s.run('x')).output).toBe('20\n');
  });

  test('stdout and stderr are captured in order and cut to the limit', async () => {
    const r = await s.run('import sys\nprint("a")\nprint("b", file=sys.stderr)\nprint("c")');
    expect(r.output).toBe('a\nb\nc\n');
    const big = await s.run('print("z" * 1000)');
    expect(big.output.startsWith('z'.repeat(200))).toBe(true);
    expect(big.output).toMatch(/\[\.\.\. \d+ more characters truncated\]$/);
    expect(big.truncatedChars).toBe(801);
  });

  test('input() sees a closed stdin instead of hanging', async () => {
    expect((await s.run('input()')).output).toMatch(/EOFError/);
  });
});

describe('PythonSession: timeout kills the process group and restarts fresh', () => {
  test('an infinite loop times out; the next call runs in a new interpreter without old variables and says so', async () => {
    const s = new PythonSession({ timeoutMs: 1500 });
    try {
      await s.run('keep = 7');
      const firstPid = s.pid!;
      const r = await s.run('while True:\n    pass');
      expect(r).toMatchObject({ timedOut: true, error: true, sessionLost: true });
      expect(r.output).toMatch(/ran longer than 1.5 s[\s\S]*restarted/);
      expect(() => process.kill(firstPid, 0)).toThrow();
      const after = await s.run('print(globals().get("keep"))');
      expect(after).toMatchObject({ output: 'None\n', restarted: true, error: false });
      expect(s.starts).toBe(2);
    } finally {
      s.dispose();
    }
  });

  test('an aborted call stops the interpreter', async () => {
    const s = new PythonSession({ timeoutMs: 20_000 });
    try {
      const ctl = new AbortController();
      setTimeout(() => ctl.abort(), 300);
      const r = await s.run('import time\ntime.sleep(30)', { signal: ctl.signal });
      expect(r).toMatchObject({ sessionLost: true, timedOut: false });
      expect(r.output).toMatch(/Aborted/);
    } finally {
      s.dispose();
    }
  });
});

describe('PythonSession: hostile code is contained by the kernel sandbox (@llama-pro/sandbox)', () => {
  const s = new PythonSession({ timeoutMs: 4000, maxMemoryBytes: 512 * 1024 * 1024, maxProcesses: 16 });
  afterAll(() => s.dispose());

  test('a fork bomb is bounded by RLIMIT_NPROC and the session survives', async () => {
    const r = await s.run('import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n            time.sleep(30)\n            os._exit(0)\n        n += 1\nexcept OSError as e:\n    print(type(e).__name__, n < 16)');
    expect(r.output).toBe('BlockingIOError True\n');
  });

  test('allocating beyond the memory limit fails with MemoryError and the session survives', async () => {
    await s.run('alive = True');
    const r = await s.run('block = bytearray(2 * 1024 ** 3)');
    expect(r.output).toMatch(/MemoryError/);
    expect((await s.run('alive')).output).toBe('True\n');
  });

  test('the filesystem is read-only except a private /tmp, which is the working directory', async () => {
    const outside = path.join(os.tmpdir(), `agent-escape-${process.pid}.txt`);
    expect((await s.run('open("/usr/escape.txt", "w")')).output).toMatch(/Read-only file system/);
    await s.run(`open(${JSON.stringify(outside)}, "w").write("x")`);
    expect(existsSync(outside)).toBe(false);
    expect((await s.run('import os\nos.path.exists("/work"), os.path.exists("/root"), os.path.exists("/home")')).output).toBe('(False, False, False)\n');
    const inside = await s.run('open("notes.txt", "w").write("hello")\nopen("/tmp/notes.txt").read(), os.getcwd()');
    expect(inside.output).toBe("('hello', '/tmp')\n");
    const fresh = new PythonSession();
    try {
      expect((await fresh.run('import os\nos.path.exists("/tmp/notes.txt")')).output).toBe('False\n');
    } finally {
      fresh.dispose();
    }
  });

  test('the environment is the fixed allowlist, also through /proc', async () => {
    process.env['AGENT_TEST_SECRET'] = 'hunter2';
    const fresh = new PythonSession();
    try {
      const r = await fresh.run('import os\nenvs = [open(f"/proc/{p}/environ", "rb").read() for p in os.listdir("/proc") if p.isdigit()]\nprint(sorted(os.environ), envs)');
      expect(r.output).not.toMatch(/AGENT_TEST_SECRET|hunter2/);
      expect(r.output).toMatch(/'PATH'/);
    } finally {
      fresh.dispose();
      delete process.env['AGENT_TEST_SECRET'];
    }
  });

  test('code runs as uid 65534 whether or not the agent is root', async () => {
    expect((await s.run('import os\n(os.getuid(), os.getgid())')).output).toBe('(65534, 65534)\n');
    expect(s.isolation.mode).toBe('bwrap');
  });

  test('processes it starts, even setsid ones, die with the session', async () => {
    const t = new PythonSession({ timeoutMs: 5000 });
    const marker = `agentsleeper${process.pid}`;
    const count = (): number =>
      readdirSync('/proc').filter((e) => {
        try {
          return /^\d+$/.test(e) && readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(marker) && !/^State:\s+Z/m.test(readFileSync(`/proc/${e}/status`, 'utf8'));
        } catch {
          return false;
        }
      }).length;
    try {
      await t.run(`import subprocess\nfor i in range(3):\n    subprocess.Popen(["/usr/bin/python3", "-c", "import time; time.sleep(120) # ${marker}"], start_new_session=True)`);
      expect(count()).toBe(3);
    } finally {
      t.dispose();
    }
    for (let i = 0; i < 30 && count() > 0; i++) await new Promise((res) => setTimeout(res, 100));
    expect(count()).toBe(0);
  });

  test('network connections fail (own network namespace)', async () => {
    const r = await s.run('import socket\nsocket.create_connection(("127.0.0.1", 9), timeout=1)');
    expect(r.error).toBe(true);
    expect(r.output).toMatch(/OSError|ConnectionRefused|Network is unreachable/);
  });
});
