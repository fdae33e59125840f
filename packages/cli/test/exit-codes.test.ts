/**
 * One exit code per class (README "Exit codes"): usage 2, input/data 1, interrupted 130. The classes are
 * the README's table; the same mistake exits the same way whichever command makes it.
 */
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { EXIT } from '../src/exit-codes';
import { runCli } from './run-cli';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const BIN = path.join(ROOT, 'packages', 'cli', 'dist', 'bin.js');

describe('exit codes', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-exit-'));
  });

  it('the README documents the table the CLI uses', async () => {
    const readme = await fsp.readFile(path.join(ROOT, 'README.md'), 'utf8');
    const rows = [...readme.matchAll(/^\| (\d+) \| ([a-z /]+) \|/gm)].map((m) => [Number(m[1]), m[2]!.trim()]);
    expect(rows).toEqual([
      [EXIT.OK, 'success'],
      [EXIT.INPUT, 'input / data'],
      [EXIT.USAGE, 'usage'],
      [EXIT.INTERRUPTED, 'interrupted'],
    ]);
    // POSIX shells report death by SIGINT as 128 + 2; usage 2 is the getopt / BSD sysexits convention for bad usage.
    expect([EXIT.OK, EXIT.INPUT, EXIT.USAGE, EXIT.INTERRUPTED]).toEqual([0, 1, 2, 128 + 2]);
  });

  it('usage mistakes exit 2 whichever command makes them', async () => {
    const cases: string[][] = [
      ['no-such-command'],
      ['inspect'], // missing argument
      ['inspect', dir, '--no-such-flag'],
      ['expand', dir, path.join(dir, 'o'), '--strategy', 'middle'], // unknown name
      ['generate', '--model', dir, '--prompt-ids', '1', '--backend', 'nope'], // unknown backend
      ['generate', '--model', dir, '--prompt-ids', '1', '--backend', 'a:b:c'], // malformed flag value
      ['convert', path.join(dir, 'x.bin'), path.join(dir, 'o'), '--shard-size', 'lots'],
    ];
    for (const args of cases) {
      const r = await runCli(args);
      expect({ args, code: r.code }).toEqual({ args, code: EXIT.USAGE });
      expect(r.stderr.trim().length).toBeGreaterThan(0);
    }
  });

  it('input / data problems exit 1', async () => {
    const missing = await runCli(['inspect', path.join(dir, 'no-such-model')]);
    expect(missing.code).toBe(EXIT.INPUT);
    expect(missing.stderr).toMatch(/^llama-pro: /);
    await fsp.mkdir(path.join(dir, 'broken'));
    await fsp.writeFile(path.join(dir, 'broken', 'config.json'), '{ not json');
    const broken = await runCli(['inspect', path.join(dir, 'broken')]);
    expect(broken.code).toBe(EXIT.INPUT);
  });

  it('help and version exit 0', async () => {
    expect((await runCli(['--version'])).code).toBe(EXIT.OK);
    expect((await runCli(['expand', '--help'])).code).toBe(EXIT.OK);
  });

  it('Ctrl-C exits 130 and says so (a command without its own SIGINT handling, waiting on an endpoint)', async () => {
    await fsp.access(BIN).catch(() => {
      throw new Error(`${BIN} is missing: run npm run build before the tests (the README's order)`);
    });
    const corpus = path.join(dir, 'c.txt');
    await fsp.writeFile(corpus, 'a short corpus line.\n');
    let child: ReturnType<typeof spawn> | undefined;
    // The endpoint never answers: the first request is the moment the CLI is busy, and we interrupt it then.
    const server = http.createServer(() => child?.kill('SIGINT'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    try {
      child = spawn(process.execPath, [BIN, 'eval', '--model', `http://127.0.0.1:${port}/v1`, '--tasks', 'perplexity', '--corpus', corpus, '--out', path.join(dir, 'ev')], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      const code = await new Promise<number | null>((r) => child!.on('exit', (c) => r(c)));
      expect({ code, stderr: stderr.split('\n').filter((l) => !l.startsWith('{')).join('\n') }).toEqual({ code: EXIT.INTERRUPTED, stderr: 'llama-pro: interrupted\n' });
    } finally {
      server.closeAllConnections();
      server.close();
    }
  }, 60_000);
});
