import { existsSync, promises as fsp, readdirSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PythonSession, canIsolateNetwork } from '../src';

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

describe('PythonSession: hostile code is contained', () => {
  const s = new PythonSession({ timeoutMs: 4000, maxMemoryBytes: 512 * 1024 * 1024 });
  afterAll(() => s.dispose());

  test('a fork bomb cannot start processes', async () => {
    const r = await s.run('import os\nwhile True:\n    os.fork()');
    expect(r.error).toBe(true);
    expect(r.output).toMatch(/PermissionError: sandbox: starting or signalling processes is not allowed/);
    const sub = await s.run('import subprocess\nsubprocess.run(["echo", "hi"])');
    expect(sub.output).toMatch(/PermissionError/);
    expect((await s.run('os.system("echo hi")')).output).toMatch(/PermissionError/);
  });

  test('allocating beyond the memory limit fails with MemoryError and the session survives', async () => {
    await s.run('alive = True');
    const r = await s.run('block = bytearray(2 * 1024 ** 3)');
    expect(r.output).toMatch(/MemoryError/);
    expect((await s.run('alive')).output).toBe('True\n');
  });

  test('writing outside the working directory is refused; inside is allowed', async () => {
    const outside = path.join(os.tmpdir(), `agent-escape-${process.pid}.txt`);
    const r = await s.run(`open(${JSON.stringify(outside)}, "w").write("x")`);
    expect(r.output).toMatch(/PermissionError: sandbox: writing outside the working directory/);
    expect(existsSync(outside)).toBe(false);
    const rel = await s.run('open("../escape.txt", "w")');
    expect(rel.output).toMatch(/PermissionError/);
    expect((await s.run('import os\nos.remove("/etc/hostname")')).output).toMatch(/PermissionError/);
    const inside = await s.run('open("notes.txt", "w").write("hello")\nopen("notes.txt").read()');
    expect(inside.output).toBe("'hello'\n");
    expect(existsSync(path.join(s.workdir!, 'notes.txt'))).toBe(true);
    expect((await s.run('import os\nos.getcwd()')).output).toBe(`'${await fsp.realpath(s.workdir!)}'\n`);
  });

  test('the environment is scrubbed', async () => {
    process.env['AGENT_TEST_SECRET'] = 'hunter2';
    try {
      const fresh = new PythonSession();
      const r = await fresh.run('import os\nsorted(os.environ)');
      fresh.dispose();
      expect(r.output).not.toMatch(/AGENT_TEST_SECRET|hunter2/);
      expect(r.output).toMatch(/'PATH'/);
    } finally {
      delete process.env['AGENT_TEST_SECRET'];
    }
  });

  test("the parent's environment cannot be read through /proc", async () => {
    process.env['AGENT_TEST_SECRET2'] = 'swordfish';
    const fresh = new PythonSession();
    try {
      const r = await fresh.run('import os\nopen(f"/proc/{os.getppid()}/environ", "rb").read()');
      expect(r.error).toBe(true);
      expect(r.output).toMatch(/PermissionError/);
      expect(r.output).not.toContain('swordfish');
    } finally {
      fresh.dispose();
      delete process.env['AGENT_TEST_SECRET2'];
    }
  });

  test('as root, code runs under a throw-away uid', async () => {
    const r = await s.run('import os\n(os.getuid(), os.getgid())');
    const root = process.getuid?.() === 0;
    expect(s.isolation.uidSwitch).toBe(root);
    if (root) expect(r.output).toBe(`(${s.uid}, ${s.uid})\n`);
    if (root) expect(s.uid).toBeGreaterThanOrEqual(100000);
  });

  // The audit hook does not see _posixsubprocess.fork_exec; the kernel limits do.
  const forkExec = (setsid: boolean): string =>
    'import _posixsubprocess, os\nn = 0\ntry:\n    for i in range(40):\n        r, w = os.pipe()\n' +
    `        _posixsubprocess.fork_exec([b"/bin/sleep", b"300"], [b"/bin/sleep"], True, (), None, None, -1, -1, -1, -1, -1, -1, r, w, True, ${setsid ? 'True' : 'False'}, -1, None, None, None, -1, None, False)\n` +
    '        n += 1\nexcept OSError as e:\n    print(type(e).__name__)\nprint("started", n)';

  (process.getuid?.() === 0 ? test : test.skip)('processes started behind the audit hook are bounded and all killed, even outside the process group', async () => {
    const t = new PythonSession({ timeoutMs: 5000, extraProcesses: 6 });
    try {
      const r = await t.run(forkExec(true));
      expect(r.output).toMatch(/^BlockingIOError\nstarted [0-6]\n$/);
      const uid = t.uid!;
      const count = (): number => {
        let n = 0;
        for (const e of readdirSync('/proc')) {
          if (!/^\d+$/.test(e)) continue;
          try {
            const st = readFileSync(`/proc/${e}/status`, 'utf8');
            // Zombies (killed, waiting for a reaper) hold nothing but their pid entry.
            if (new RegExp(`^Uid:\\s+${uid}\\b`, 'm').test(st) && !/^State:\s+Z/m.test(st)) n++;
          } catch {
            /* gone */
          }
        }
        return n;
      };
      expect(count()).toBeGreaterThan(1);
      t.dispose();
      await new Promise((res) => setTimeout(res, 200));
      expect(count()).toBe(0);
    } finally {
      t.dispose();
    }
  });

  test('network connections are refused', async () => {
    const r = await s.run('import socket\nsocket.create_connection(("127.0.0.1", 9), timeout=1)');
    expect(r.error).toBe(true);
    expect(r.output).toMatch(/PermissionError: sandbox: network access|OSError|ConnectionRefused|Network is unreachable/);
  });

  test('ctypes cannot load libraries', async () => {
    const r = await s.run('import ctypes\nctypes.CDLL("libc.so.6")');
    expect(r.output).toMatch(/PermissionError: sandbox: loading native libraries/);
  });

  test('the working directory is removed on dispose', async () => {
    const t = new PythonSession();
    await t.run('1');
    const dir = t.workdir!;
    expect(existsSync(dir)).toBe(true);
    t.dispose();
    expect(existsSync(dir)).toBe(false);
  });

  test('network namespace probe answers', () => {
    expect(typeof canIsolateNetwork()).toBe('boolean');
  });
});
