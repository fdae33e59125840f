jest.setTimeout(180_000);
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { PythonSandbox } from '../src/sandbox/python-sandbox';

const sandbox = new PythonSandbox();
const ok = 'def f():\n    return 1\nassert f() == 1\n';

describe('python sandbox', () => {
  it('passes a program whose asserts hold and fails one whose asserts do not', async () => {
    const [a, b] = await sandbox.runAll([ok, 'assert 1 == 2, "nope"\n']);
    expect(a).toMatchObject({ status: 'passed', passed: true, result: 'passed' });
    expect(b).toMatchObject({ status: 'failed', passed: false, result: 'failed: nope' });
  });

  it('counts exit(0), sys.exit(0), os._exit(0) and quit() as failures', async () => {
    const progs = ['exit(0)\n', 'import sys\nsys.exit(0)\n', 'import os\nos._exit(0)\n', 'quit()\n', 'raise SystemExit(0)\n'];
    const res = await sandbox.runAll(progs);
    for (const r of res) expect(r.passed).toBe(false);
    expect(res[0]!.result).toBe("failed: 'NoneType' object is not callable");
    expect(res[1]!.result).toBe('failed: 0');
    expect(res[2]!.result).toMatch(/^failed: exited with code 0/);
  });

  it('times out an infinite loop without hanging, billing the 3 s to execution', async () => {
    const t0 = Date.now();
    const [r, s] = await sandbox.runAll(['while True:\n    pass\n', 'import time\ntime.sleep(100)\n'], { timeoutS: 1 });
    expect(r).toMatchObject({ status: 'timed out', result: 'timed out' });
    expect(s).toMatchObject({ status: 'timed out' });
    expect(Date.now() - t0).toBeLessThan(60_000);
  });

  it('kills a program that ignores the timer (catches the timeout) with the process group', async () => {
    const prog = 'import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass\n';
    const r = await sandbox.run(prog, { timeoutS: 0.5, startupGraceS: 1.5 });
    expect(r.status).toBe('timed out');
  });

  it('closes stdin: input() fails', async () => {
    const r = await sandbox.run("x = input('name?')\n");
    expect(r.status).toBe('failed');
  });

  describe('hostile code is contained and other samples are unaffected', () => {
    const outside = path.join(os.tmpdir(), `llama-pro-sandbox-escape-${process.pid}.txt`);
    let server: net.Server;
    let port = 0;
    let connections = 0;
    beforeAll(async () => {
      fs.rmSync(outside, { force: true });
      server = net.createServer((s) => {
        connections++;
        s.destroy();
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      port = (server.address() as net.AddressInfo).port;
      process.env['LLAMA_PRO_SANDBOX_SECRET'] = 'hunter2-parent-secret';
    });
    afterAll(async () => {
      delete process.env['LLAMA_PRO_SANDBOX_SECRET'];
      fs.rmSync(outside, { force: true });
      await new Promise<void>((r) => server.close(() => r()));
    });

    it('write outside temp dir, network, fork bomb, memory exhaustion, parent env, infinite loop', async () => {
      const hostile = {
        writeOutside: `open(${JSON.stringify(outside)}, 'w').write('escaped')\n`,
        writeOutsideOsOpen: `import os\nfd = os.open(${JSON.stringify(outside)}, os.O_WRONLY | os.O_CREAT)\nos.write(fd, b'escaped')\n`,
        network: `import socket\ns = socket.create_connection(('127.0.0.1', ${port}), timeout=2)\ns.sendall(b'hi')\n`,
        forkBomb: 'import os\nwhile True:\n    os.fork()\n',
        forkBombMultiprocessing: 'import multiprocessing\nps = [multiprocessing.Process(target=lambda: None) for _ in range(50)]\nfor p in ps: p.start()\n',
        subprocess: "import subprocess\nsubprocess.run(['sh', '-c', 'echo escaped > /tmp/x'])\n",
        memory: 'x = []\nwhile True:\n    x.append(bytearray(64 * 1024 * 1024))\n',
        memoryOnce: 'x = bytearray(8 * 1024 * 1024 * 1024)\n',
        parentEnv: "import os\nassert os.environ.get('LLAMA_PRO_SANDBOX_SECRET') == 'hunter2-parent-secret'\n",
        parentProcEnviron: `import os\ndata = open('/proc/%d/environ' % os.getppid(), 'rb').read()\nassert b'hunter2' in data\n`,
        ctypes: 'import ctypes\nctypes.CDLL(None).fork()\n',
        infinite: 'while True:\n    pass\n',
      };
      const names = Object.keys(hostile) as (keyof typeof hostile)[];
      const progs: string[] = [];
      // Interleave good programs with hostile ones so that they run concurrently in the pool.
      for (const n of names) progs.push(hostile[n], ok);
      const res = await sandbox.runAll(progs, { workers: 4, timeoutS: 2 });
      names.forEach((n, i) => {
        expect([n, res[2 * i]!.passed]).toEqual([n, false]);
        expect([n, res[2 * i + 1]!.result]).toEqual([n, 'passed']);
      });
      expect(fs.existsSync(outside)).toBe(false);
      expect(connections).toBe(0);
      // The sandbox keeps working afterwards.
      expect((await sandbox.run(ok)).passed).toBe(true);
    });

    it('writes inside the temp dir are allowed', async () => {
      const r = await sandbox.run("open('scratch.txt', 'w').write('x')\nassert open('scratch.txt').read() == 'x'\n");
      expect(r.result).toBe('passed');
    });
  });

  it('reports its isolation features', async () => {
    const info = await sandbox.describe();
    expect(info.pythonVersion).toMatch(/^3\./);
    expect(info.auditHook).toBe(true);
    if (process.getuid?.() === 0) expect(info.uidSwitch).toBe(true);
  });
});
