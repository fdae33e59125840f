/**
 * Progress output (issue 18 item 9): on a terminal, log lines pass through the bar instead of landing
 * inside it; off a terminal, progress is JSON lines, on stderr (the lines starting with `{"task":`) or on
 * a file descriptor of its own with LLAMA_PRO_PROGRESS=fd:N, so stderr keeps only human lines.
 */
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { tinyRawConfig, writeRandomCheckpoint } from '@llama-pro/core/testing';
import { Presets, SingleBar } from 'cli-progress';
import { TerminalProgress, progressMode, progressReporter } from '../src/output';

const BIN = path.resolve(__dirname, '..', 'dist', 'bin.js');

/** What a VT100-style terminal shows for `out`: \r, \n, CSI n G (column), CSI K / 2K (erase), cursor show/hide ignored. */
function screen(out: string): string[] {
  const lines: string[][] = [[]];
  let row = 0;
  let col = 0;
  for (let i = 0; i < out.length; i++) {
    const c = out[i]!;
    if (c === '\x1b') {
      // eslint-disable-next-line no-control-regex -- parsing terminal escape sequences is the point
      const m = /^\x1b(?:\[(\??)(\d*)([A-Za-z])|[78])/.exec(out.slice(i));
      if (!m) throw new Error(`unknown escape at ${i}: ${JSON.stringify(out.slice(i, i + 8))}`);
      i += m[0].length - 1;
      const [, q, n, cmd] = m;
      if (q) continue; // ?25l / ?25h
      if (cmd === 'G') col = Math.max(0, Number(n || '1') - 1);
      else if (cmd === 'K') lines[row] = n === '2' ? [] : n === '1' ? lines[row]!.map((ch, k) => (k <= col ? ' ' : ch)) : lines[row]!.slice(0, col);
      continue;
    }
    if (c === '\r') col = 0;
    else if (c === '\n') {
      row++;
      col = 0;
      lines[row] ??= [];
    } else {
      lines[row]![col++] = c;
    }
  }
  return lines.map((l) => Array.from(l, (ch) => ch ?? ' ').join('').trimEnd()).filter((l, k, all) => l !== '' || k < all.length - 1);
}

function fakeTty(): { stream: NodeJS.WriteStream; out: () => string } {
  let out = '';
  const w = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out += chunk.toString();
      cb();
    },
  }) as unknown as NodeJS.WriteStream;
  Object.assign(w, { isTTY: true, columns: 100 });
  return { stream: w, out: () => out };
}

describe('progress on a terminal', () => {
  it('log lines written while the bar is shown appear on their own lines, the bar below them', () => {
    const { stream, out } = fakeTty();
    const original = stream.write;
    const p = new TerminalProgress(stream);
    p.start(10, 'verify');
    p.update(3);
    stream.write('tfjs: using the wasm engine (best available of wasm, cpu)\n');
    p.update(5);
    stream.write('onnx: session ready\n');
    p.update(10);
    p.stop();
    expect(stream.write).toBe(original);
    const shown = screen(out());
    expect(shown.slice(0, 2)).toEqual(['tfjs: using the wasm engine (best available of wasm, cpu)', 'onnx: session ready']);
    expect(shown).toHaveLength(3);
    expect(shown[2]).toMatch(/^verify \[[^\]]+\] 100% \| 10\/10 \| ETA 0s$/);
  });

  it('a bare cli-progress bar (the old reporter) with the same writes garbles the bar line, as issue 18 saw', () => {
    const { stream, out } = fakeTty();
    const bar = new SingleBar({ format: 'verify [{bar}] {percentage}% | {value}/{total} | ETA {eta_formatted}', stream, hideCursor: true }, Presets.shades_classic);
    bar.start(10, 0);
    bar.update(3);
    stream.write('tfjs: using the wasm engine\n');
    bar.stop();
    expect(screen(out()).some((l) => l.startsWith('verify [') && l.includes('tfjs:'))).toBe(true);
  });
});

describe('LLAMA_PRO_PROGRESS', () => {
  it('parses the modes and rejects anything else with the fix', () => {
    expect(progressMode({})).toEqual({ kind: 'auto' });
    expect(progressMode({ LLAMA_PRO_PROGRESS: 'fd:3' })).toEqual({ kind: 'fd', fd: 3 });
    expect(progressMode({ LLAMA_PRO_PROGRESS: 'none' })).toEqual({ kind: 'none' });
    expect(() => progressMode({ LLAMA_PRO_PROGRESS: 'fd:2' })).toThrow(/must be auto, bar, json, none or fd:N with N >= 3, got "fd:2"/);
    const { stream } = fakeTty();
    expect(progressReporter(stream, {})).toBeInstanceOf(TerminalProgress);
    expect(progressReporter(stream, { LLAMA_PRO_PROGRESS: 'json' })).not.toBeInstanceOf(TerminalProgress);
  });

  describe('off a terminal (a real expand --verify, spawned)', () => {
    let dir: string;
    beforeAll(async () => {
      await fsp.access(BIN);
      dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-progress-'));
      await writeRandomCheckpoint(path.join(dir, 'base'), tinyRawConfig({ layers: 2 }), { seed: 2 });
    });
    afterAll(async () => {
      await fsp.rm(dir, { recursive: true, force: true });
    });

    async function run(out: string, env: Record<string, string>): Promise<{ code: number | null; stderr: string; fd3: string }> {
      const child = spawn(process.execPath, [BIN, 'expand', path.join(dir, 'base'), path.join(dir, out), '--strategy', 'top', '--blocks', '1', '--verify', '--backend', 'tfjs'], { stdio: ['ignore', 'ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
      let stderr = '';
      let fd3 = '';
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      (child.stdio[3] as NodeJS.ReadableStream).on('data', (d: Buffer) => (fd3 += d.toString()));
      const code = await new Promise<number | null>((r) => child.on('close', (c) => r(c)));
      return { code, stderr, fd3 };
    }

    it('default: progress lines are exactly the stderr lines starting with {"task":, whole JSON objects', async () => {
      const r = await run('a', {});
      expect(r.code).toBe(0);
      const lines = r.stderr.split('\n').filter(Boolean);
      const json = lines.filter((l) => l.startsWith('{"task":'));
      expect(json.map((l) => (JSON.parse(l) as { task: string }).task)).toEqual(expect.arrayContaining(['expand', 'verify']));
      expect(lines.filter((l) => !l.startsWith('{"task":')).every((l) => !l.includes('{"task":'))).toBe(true);
      expect(lines.some((l) => !l.startsWith('{'))).toBe(true); // the backend's human lines are there too
    }, 60_000);

    it('fd:3: JSON progress on fd 3 only, stderr only human lines', async () => {
      const r = await run('b', { LLAMA_PRO_PROGRESS: 'fd:3' });
      expect(r.code).toBe(0);
      expect(r.stderr).not.toContain('{');
      expect(r.stderr).toMatch(/tfjs: using the/);
      const events = r.fd3.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { task: string; event: string });
      expect(events[0]).toMatchObject({ task: 'expand', event: 'start' });
      expect(events.filter((e) => e.event === 'end').map((e) => e.task)).toEqual(['expand', 'verify']);
    }, 60_000);
  });
});
