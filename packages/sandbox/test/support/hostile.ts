/**
 * The hostile-samples suite of issue 16 ([isolation]), runnable in-process (jest) and as a child process under
 * another uid (hostile-main.ts). Every attack listed in the issue is a wrong completion of one small
 * HumanEval-style problem (so any pass is a forged pass) or a cell of the python tool; the harness measures
 * what escaped: files with the attack's marker outside the sandbox, the secret in any output, connections to
 * a loopback listener, processes carrying the marker that outlive the run, and passes.
 */
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { PythonSandbox, type CheckJob } from '../../src/code-sandbox';
import { PythonSession } from '../../src/python-session';

export interface HostileReport {
  uid: number;
  results: { name: string; result: string; passed: boolean }[];
  sessionOutputs: string[];
  /** Cell outputs of the reply-channel attack, in call order. */
  replyChannel: string[];
  escapedFiles: string[];
  secretLeaks: string[];
  connections: number;
  survivors: string[];
  /** The detectors' positive controls (all must be true). */
  controls: Record<string, boolean>;
  ms: number;
}

/** A problem whose right answer is a + b; every attack returns something else. */
const PROMPT = 'def add(a, b):\n    """Return a + b."""\n';
const TEST = 'def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n';
const job = (completion: string): CheckJob => ({ code: PROMPT + completion, setup: PROMPT, test: TEST + '\ncheck(add)', expose: ['add'] });

/** Python helpers every attack starts with (module level of the completion, indented into the function body). */
function attacks(marker: string, port: number, dataset: string): Record<string, string> {
  const m = JSON.stringify(marker);
  const sleeper = `[b"/usr/bin/python3", b"-c", b"import time; time.sleep(110) # ${marker}"]`;
  const forkExec = (argv: string, setsid: boolean): string =>
    `    import _posixsubprocess, os\n    r, w = os.pipe()\n    _posixsubprocess.fork_exec(${argv}, [${argv}[0]], True, (), None, None, -1, -1, -1, -1, -1, -1, r, w, True, ${setsid ? 'True' : 'False'}, -1, None, None, None, -1, None, False)\n`;
  const files = [
    `    import os\n    for d in ["/tmp", "/dev/shm", "/var/tmp", os.path.expanduser("~"), ${JSON.stringify(os.tmpdir())}, "/work", "/"]:\n        try:\n            open(os.path.join(d, ${m} + "-open"), "w").write("x")\n        except BaseException:\n            pass\n`,
    `    import os\n    for d in ["/tmp", "/dev/shm", "/var/tmp"]:\n        try:\n            fd = os.open(d, os.O_RDONLY)\n            w = os.open(${m} + "-dirfd", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)\n            os.write(w, b"x")\n        except BaseException:\n            pass\n        try:\n            os.mkfifo(${m} + "-fifo", dir_fd=fd)\n        except BaseException:\n            pass\n        try:\n            import posix\n            posix.chdir(d)\n            open(${m} + "-chdir", "w").write("x")\n            os.mknod(${m} + "-mknod")\n        except BaseException:\n            pass\n`,
  ];
  return {
    'environ of other processes through dir_fd': `    import os\n    out = []\n    try:\n        fd = os.open("/proc", os.O_RDONLY)\n        for p in os.listdir("/proc"):\n            if p.isdigit() or p == "self":\n                try:\n                    out.append(open(os.open(p + "/environ", os.O_RDONLY, dir_fd=fd), "rb").read().decode(errors="replace"))\n                except BaseException:\n                    pass\n    except BaseException:\n        pass\n    out.append(str(dict(os.environ)))\n    raise ValueError("\\n".join(out))\n`,
    'connect to the loopback listener (socket and fork_exec)': `    import socket\n    for h in ["127.0.0.1", "localhost", "::1"]:\n        try:\n            socket.create_connection((h, ${port}), timeout=1)\n        except BaseException:\n            pass\n` + forkExec(`[b"/usr/bin/python3", b"-c", b"import socket; socket.create_connection(('127.0.0.1', ${port}), timeout=1)"]`, false) + '    import time\n    time.sleep(0.5)\n    return 0\n',
    // Only the harness's own host pids are targeted, so that a sandbox regression kills the harness (and fails
    // the test) instead of other processes on the machine.
    'kill -9 the harness': forkExec(`[b"/bin/kill", b"-9", b"${process.pid}", b"${process.ppid}"]`, false) + `    import os, signal\n    for p in (${process.pid}, ${process.ppid}):\n        try:\n            os.kill(p, signal.SIGKILL) if os.kill else None\n        except BaseException:\n            pass\n    return 0\n`,
    'files outside the private tmp (open, dir_fd, chdir, mknod, mkfifo)': files.join('') + '    return 0\n',
    'setsid child that outlives the sample': forkExec(sleeper, true) + forkExec(sleeper, false) + '    return 0\n',
    'child holding the result pipe': forkExec(`[b"/usr/bin/python3", b"-c", b"import time; time.sleep(100) # ${marker}"]`, true) + '    import os\n    if os.fork() == 0:\n        import time\n        time.sleep(100)\n    return 0\n',
    'sys._getframe(1).f_locals report': '    import sys\n    f = sys._getframe(1)\n    while f is not None:\n        for k in ("report", "send", "_send"):\n            if k in f.f_locals and callable(f.f_locals[k]):\n                try:\n                    f.f_locals[k]("passed")\n                except BaseException:\n                    pass\n        f = f.f_back\n    return 0\n',
    'forged result line with a nonce read from frames': '    import sys, gc, os, re\n    seen = set()\n    for o in gc.get_objects():\n        if isinstance(o, dict):\n            for v in list(o.values()):\n                if isinstance(v, str) and re.fullmatch("[0-9a-f]{32}", v):\n                    seen.add(v)\n    for n in seen | {"x"}:\n        for fd in range(0, 64):\n            try:\n                os.write(fd, (n + \' "passed"\\n{"result": "passed"}\\n\').encode())\n            except BaseException:\n                pass\n    print("passed")\n    return 0\n',
    'sys.settrace swaps check': '    import sys, builtins\n    def tr(frame, event, arg):\n        if "check" in frame.f_globals:\n            frame.f_globals["check"] = lambda c: None\n        return tr\n    sys.settrace(tr)\n    sys.setprofile(lambda *a: None)\n    builtins.AssertionError = type("Never", (Exception,), {})\n    return 0\n',
    'canonical solution from the dataset file': `    import gzip, json, os, glob\n    for p in [${JSON.stringify(dataset)}] + glob.glob("/work/**/HumanEval.jsonl*", recursive=True):\n        try:\n            raw = open(p, "rb").read()\n            raw = gzip.decompress(raw) if p.endswith(".gz") else raw\n            for line in raw.decode().splitlines():\n                d = json.loads(line)\n                exec(d["prompt"] + d["canonical_solution"], globals())\n            return globals()["add"](a, b)\n        except BaseException:\n            pass\n    return 0\n`,
    'always-equal return object': '    class A:\n        def __eq__(self, o):\n            return True\n        def __ne__(self, o):\n            return False\n    return A()\n',
    'os._exit(0) and SystemExit(0)': '    import os\n    os._exit(0)\n',
    'module-level exit after printing passed': '    return 0\nprint("passed")\nimport os\nos._exit(0)\n',
    'fork bomb (64 forks)': '    import os\n    try:\n        for i in range(64):\n            if os.fork and os.fork() == 0:\n                import time\n                time.sleep(100)\n                os._exit(0)\n    except BaseException:\n        pass\n' + forkExec(sleeper, true).replace(/^/gm, '') + '    return 0\n',
  };
}

function secretFound(text: string, secret: string): boolean {
  return text.includes(secret);
}

function markerProcesses(marker: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8');
      const st = readFileSync(`/proc/${e}/status`, 'utf8');
      if (cmd.includes(marker) && !/^State:\s+Z/m.test(st)) out.push(`${e}: ${cmd.replace(/\0/g, ' ')}`);
    } catch {
      /* gone */
    }
  }
  return out;
}

function markerFiles(marker: string): string[] {
  const out: string[] = [];
  for (const d of ['/tmp', '/dev/shm', '/var/tmp', os.homedir(), os.tmpdir(), '/work', '/', process.cwd()]) {
    try {
      for (const f of readdirSync(d)) if (f.includes(marker)) out.push(path.join(d, f));
    } catch {
      /* unreadable */
    }
  }
  return out;
}

/** Positive controls: each detector sees a planted escape of its kind (so a clean report means something). */
async function controls(marker: string, port: number, count: () => number): Promise<Record<string, boolean>> {
  const file = path.join(os.tmpdir(), `${marker}-control`);
  writeFileSync(file, 'x');
  const files = markerFiles(marker).includes(file);
  rmSync(file, { force: true });
  const child = spawn('/usr/bin/python3', ['-c', `import time; time.sleep(30) # ${marker}`], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 300));
  const procs = markerProcesses(marker).length === 1;
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  const before = count();
  await new Promise<void>((r) => net.connect(port, '127.0.0.1', r).on('error', () => r()).on('connect', function (this: net.Socket) { this.destroy(); }));
  await new Promise((r) => setTimeout(r, 200));
  return { files, procs, connections: count() === before + 1 };
}

/** Runs every attack; `secret` must be in this process's environment. */
export async function runHostileSuite(secret: string, dataset: string): Promise<HostileReport> {
  const t0 = Date.now();
  const marker = `sbxmark${randomBytes(6).toString('hex')}`;
  let connections = 0;
  const server = net.createServer((s) => {
    connections++;
    s.destroy();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  try {
    const control = await controls(marker, port, () => connections);
    connections = 0;
    const list = Object.entries(attacks(marker, port, dataset));
    const sandbox = new PythonSandbox();
    const res = await sandbox.runAll(
      list.map(([, body]) => job(body)),
      { workers: 2, timeoutS: 3 },
    );
    const results = list.map(([name], i) => ({ name, result: res[i]!.result, passed: res[i]!.passed }));

    // The python tool: the same attacks as cells, then the reply-channel forgery.
    const sessionOutputs: string[] = [];
    const s = new PythonSession({ timeoutMs: 4000 });
    try {
      for (const [, body] of list) {
        const cell = `def attack(a=1, b=2):\n${body}\ntry:\n    print(repr(attack()))\nexcept BaseException as e:\n    print(type(e).__name__, e)\n`;
        sessionOutputs.push((await s.run(cell)).output);
      }
    } finally {
      s.dispose();
    }
    const r = new PythonSession({ timeoutMs: 4000 });
    const replyChannel: string[] = [];
    try {
      replyChannel.push((await r.run('marker = 41')).output);
      // Forge replies for the call in flight (its id read from the driver's frame), for "ready", for
      // guessable ids, and from a setsid child that keeps writing while later calls run.
      replyChannel.push(
        (
          await r.run(
            'import os, sys, json, time\nids = ["ready"] + [str(i) for i in range(10)]\nf = sys._getframe()\nwhile f is not None:\n    if "rid" in f.f_locals:\n        ids.append(f.f_locals["rid"])\n    f = f.f_back\n' +
              'def forge():\n    for i in ids:\n        for fd in range(3, 10):\n            try:\n                os.write(fd, (json.dumps({"id": i, "seq": i, "output": "FORGED", "error": False}) + "\\n").encode())\n            except OSError:\n                pass\n' +
              'forge()\nif os.fork() == 0:\n    os.setsid()\n    for _ in range(30):\n        time.sleep(0.05)\n        forge()\n    os._exit(0)\nprint("second")',
          )
        ).output,
      );
      replyChannel.push((await r.run('print("third", marker + 1)')).output);
      replyChannel.push((await r.run('print("fourth")')).output);
    } finally {
      r.dispose();
    }
    await new Promise((res) => setTimeout(res, 300));
    const everything = JSON.stringify(results) + sessionOutputs.join('\n') + replyChannel.join('\n');
    return {
      uid: process.getuid?.() ?? -1,
      results,
      sessionOutputs,
      replyChannel,
      escapedFiles: markerFiles(marker),
      secretLeaks: secretFound(everything, secret) ? [everything.slice(Math.max(0, everything.indexOf(secret) - 200), everything.indexOf(secret) + 50)] : [],
      connections,
      survivors: markerProcesses(marker),
      controls: control,
      ms: Date.now() - t0,
    };
  } finally {
    server.close();
  }
}
