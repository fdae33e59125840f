/**
 * Issue 16 item 4 (data safety) and issue 18 items 3-4, on the real CLI. Processes are spawned from the
 * TypeScript sources and interrupted or killed while they write, at the moment their temporary output
 * appears (inotify via fs.watch), so the tests see what a user's Ctrl-C or a crash leaves behind.
 */
jest.setTimeout(240_000);
import { type ChildProcess, spawn } from 'node:child_process';
import { watch, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HfCheckpoint, OUTPUT_MARKER, recoverTempSiblings } from '@llama-pro/core';
import { describeWithFixtures, fixturePath } from '@llama-pro/core/testing';
import { runCli } from './run-cli';

const REGISTER = path.join(__dirname, '../../train/test/support/ts-register.js');
const BIN = path.join(__dirname, '../src/bin.ts');

let dir: string;
beforeAll(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-safety-'));
});
afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

/**
 * A legacy (version 0) llama2.c checkpoint (karpathy/llama2.c run.c layout): 7 int32 header fields, then
 * float32 weights; positive vocab_size = shared classifier. Values are a fixed ramp (they do not matter).
 */
async function llama2cFile(file: string, h: { dim: number; hidden: number; layers: number; heads: number; kvHeads: number; vocab: number; seq: number }): Promise<string> {
  const hs = h.dim / h.heads;
  const kv = h.kvHeads * hs;
  const perLayer = h.dim + h.dim * h.dim + 2 * kv * h.dim + h.dim * h.dim + h.dim + 3 * h.hidden * h.dim;
  const floats = h.vocab * h.dim + h.layers * perLayer + h.dim + h.seq * hs;
  const head = Buffer.alloc(28);
  [h.dim, h.hidden, h.layers, h.heads, h.kvHeads, h.vocab, h.seq].forEach((v, i) => head.writeInt32LE(v, 4 * i));
  const body = new Float32Array(floats);
  for (let i = 0; i < floats; i++) body[i] = ((i % 97) - 48) / 1000;
  await fsp.writeFile(file, Buffer.concat([head, Buffer.from(body.buffer)]));
  return file;
}
const TINY = { dim: 16, hidden: 32, layers: 2, heads: 2, kvHeads: 2, vocab: 32, seq: 16 };
// ~50 MB of float32: long enough to write that a signal sent when its temporary appears lands mid-write.
const BIG = { dim: 512, hidden: 1376, layers: 4, heads: 8, kvHeads: 8, vocab: 512, seq: 64 };

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  /** Whether `act` ran (the watched temporary appeared while the process was running). */
  acted: boolean;
}

/** Spawns the CLI; the first time an entry starting with `prefix` appears in `watchDir`, calls `act`. */
function spawnCli(args: string[], watchDir: string, prefix: string, act: (child: ChildProcess) => void): Promise<Outcome> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-r', REGISTER, BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let acted = false;
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout!.resume();
    const w = watch(watchDir, (_event, name) => {
      if (!acted && name && name.toString().startsWith(prefix) && child.exitCode === null) {
        acted = true;
        act(child);
      }
    });
    child.on('exit', (code, signal) => {
      w.close();
      resolve({ code, signal, stderr, acted });
    });
  });
}

const hidden = async (d: string, base: string) => (await fsp.readdir(d)).filter((f) => f.startsWith(`.${base}.`));
const humanLines = (stderr: string) => stderr.split('\n').filter((l) => l && !l.startsWith('{'));

describe('convert --force never deletes its input or a directory it did not write', () => {
  it('convert X.bin <dir holding X.bin> --force refuses and keeps X.bin (it used to delete it)', async () => {
    const holder = path.join(dir, 'holder');
    await fsp.mkdir(holder);
    const bin = await llama2cFile(path.join(holder, 'model.bin'), TINY);
    const before = await fsp.readFile(bin);
    const r = await runCli(['convert', bin, holder, '--force']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`llama-pro: output ${holder} contains the input ${bin}; writing there would destroy the input, choose another path\n`);
    expect(await fsp.readFile(bin)).toEqual(before);
    expect(await fsp.readdir(holder)).toEqual(['model.bin']);
  });

  it('a symlink to the input directory is seen through', async () => {
    const holder = path.join(dir, 'holder2');
    await fsp.mkdir(holder);
    const bin = await llama2cFile(path.join(holder, 'model.bin'), TINY);
    await fsp.symlink(holder, path.join(dir, 'link'));
    const r = await runCli(['convert', bin, path.join(dir, 'link'), '--force']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/contains the input/);
    expect(await fsp.readdir(holder)).toEqual(['model.bin']);
  });

  it('--force refuses a directory that is not an earlier convert output, and one written by another command', async () => {
    const bin = await llama2cFile(path.join(dir, 'tiny.bin'), TINY);
    const mine = path.join(dir, 'my-stuff');
    await fsp.mkdir(mine);
    await fsp.writeFile(path.join(mine, 'thesis.tex'), 'years of work');
    const r = await runCli(['convert', bin, mine, '--force']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^llama-pro: output .*my-stuff exists and is not a previous output of `llama-pro convert` \(it has no \.llama-pro-output\.json\); --force will not replace it/);
    expect(await fsp.readdir(mine)).toEqual(['thesis.tex']);
    const conv = path.join(dir, 'conv');
    expect((await runCli(['convert', bin, conv])).code).toBe(0);
    expect(JSON.parse(await fsp.readFile(path.join(conv, OUTPUT_MARKER), 'utf8'))).toMatchObject({ format: 'llama-pro.output', command: 'convert' });
    const grown = path.join(dir, 'conv-grown');
    expect((await runCli(['expand', conv, grown, '--groups', '1'])).code).toBe(0);
    await fsp.writeFile(path.join(grown, OUTPUT_MARKER), JSON.stringify({ format: 'llama-pro.output', command: 'expand' }));
    const other = await runCli(['convert', bin, grown, '--force']);
    expect(other.stderr).toMatch(/was written by `llama-pro expand`, not `llama-pro convert`/);
    // An earlier convert output is replaced, leaving no temporaries behind.
    expect((await runCli(['convert', bin, conv, '--force', '--dtype', 'float16'])).code).toBe(0);
    // Closed here: runCli runs the CLI in this process, so a checkpoint left open (its safetensors FileHandle) is
    // collected during a later command and Node's "Closing file descriptor N on garbage collection" warning lands in
    // that command's captured stderr (it made the export-onnx --force check below fail in about 1 run of 4).
    const ck = await HfCheckpoint.open(conv);
    try {
      expect(ck.config.torchDtype).toBe('F16');
    } finally {
      await ck.close();
    }
    expect(await hidden(dir, 'conv')).toEqual([]);
  });
});

describe('export-onnx --force', () => {
  it('replaces only an ONNX model this command wrote, with its .data, and leaves no asides', async () => {
    const bin = await llama2cFile(path.join(dir, 'onnx-src.bin'), TINY);
    const model = path.join(dir, 'onnx-src');
    expect((await runCli(['convert', bin, model])).code).toBe(0);
    const od = path.join(dir, 'onnx-out');
    await fsp.mkdir(od);
    const out = path.join(od, 'm.onnx');
    expect((await runCli(['export-onnx', model, out, '--external-data', 'always'])).code).toBe(0);
    const r = await runCli(['export-onnx', model, out, '--external-data', 'always', '--force']);
    expect(humanLines(r.stderr)).toEqual([]);
    expect(r.code).toBe(0);
    expect((await fsp.readdir(od)).sort()).toEqual(['m.onnx', 'm.onnx.data']);
    const foreign = path.join(od, 'notes.onnx');
    await fsp.writeFile(foreign, 'my own file, not a model');
    const f = await runCli(['export-onnx', model, foreign, '--force']);
    expect(f.code).toBe(2);
    expect(f.stderr).toMatch(/notes\.onnx exists and is not an ONNX model written by `llama-pro export-onnx`; --force will not replace it/);
    expect(await fsp.readFile(foreign, 'utf8')).toBe('my own file, not a model');
    await fsp.writeFile(path.join(od, 'lone.onnx.data'), 'someone else\'s data');
    const lone = await runCli(['export-onnx', model, path.join(od, 'lone.onnx'), '--external-data', 'always', '--force']);
    expect(lone.stderr).toMatch(/lone\.onnx\.data exists without its model/);
  });
});

describe('expand <file.bin> (issue 18 item 4)', () => {
  it('says to run llama-pro convert first', async () => {
    const bin = await llama2cFile(path.join(dir, 'stories.bin'), TINY);
    const r = await runCli(['expand', bin, path.join(dir, 'never'), '--groups', '1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`llama-pro: ${bin} is a llama2.c checkpoint file, not a Hugging Face model directory; convert it first: llama-pro convert ${bin} <out-dir>\n`);
  });
});

describe('killed and interrupted writes', () => {
  let bigBin: string;
  let bigModel: string;
  beforeAll(async () => {
    bigBin = await llama2cFile(path.join(dir, 'big.bin'), BIG);
    bigModel = path.join(dir, 'big-hf');
    expect((await runCli(['convert', bigBin, bigModel])).code).toBe(0);
  });

  it('Ctrl-C during expand prints one line, removes its temporary folder and exits 130 (issue 18 item 3)', async () => {
    const out = path.join(dir, 'grown');
    const r = await spawnCli(['expand', bigModel, out, '--groups', '2', '--no-base-hash'], dir, '.grown.tmp-', (c) => c.kill('SIGINT'));
    expect(r.acted).toBe(true);
    expect(r.code).toBe(130);
    const lines = humanLines(r.stderr);
    expect(lines.length).toBe(1);
    expect(lines[0]).toMatch(/^llama-pro: interrupted \(SIGINT\); removed the unfinished output .*\/\.grown\.tmp-\d+-[0-9a-f]{8}$/);
    expect(await hidden(dir, 'grown')).toEqual([]);
    expect(await fsp.stat(out).catch(() => null)).toBeNull();
  });

  it('SIGKILL while convert --force writes keeps the previous output; the next run cleans the temporary', async () => {
    const out = path.join(dir, 'big-conv');
    expect((await runCli(['convert', bigBin, out])).code).toBe(0);
    const r = await spawnCli(['convert', bigBin, out, '--force', '--dtype', 'float16'], dir, '.big-conv.tmp-', (c) => c.kill('SIGKILL'));
    expect(r.acted).toBe(true);
    expect(r.signal).toBe('SIGKILL');
    // The previous (float32) output is intact; the killed run's temporary is recognisable and refused.
    const ck = await HfCheckpoint.open(out);
    expect(ck.config.torchDtype).toBe('F32');
    await ck.close();
    const left = await hidden(dir, 'big-conv');
    expect(left.length).toBe(1);
    const inspectTemp = await runCli(['inspect', path.join(dir, left[0]!)]);
    expect(inspectTemp.code).toBe(1);
    expect(inspectTemp.stderr).toMatch(/is an unfinished temporary output of llama-pro \(being written by process \d+ for .*big-conv\), not a model/);
    // Any later write into the directory cleans it up.
    expect((await runCli(['convert', path.join(dir, 'tiny.bin'), path.join(dir, 'unrelated')])).code).toBe(0);
    expect(await hidden(dir, 'big-conv')).toEqual([]);
  });

  it('a replace killed between its two renames is rolled back by the next run, not deleted as stale', async () => {
    // The state a SIGKILL between "old output aside" and "new output in" leaves (the window is two
    // renames wide, too narrow to hit by timing): the output path is empty, the previous output sits
    // under its aside name, and the finished new one under its temporary name, all of a dead process.
    const out = path.join(dir, 'swap');
    expect((await runCli(['convert', path.join(dir, 'tiny.bin'), out])).code).toBe(0);
    const dead = 99999999; // above any pid_max (2^22), so no process has it
    await fsp.rename(out, path.join(dir, `.swap.old-${dead}-0a0b0c0d`));
    expect((await runCli(['convert', path.join(dir, 'tiny.bin'), path.join(dir, `swap-new`)])).code).toBe(0);
    await fsp.rename(path.join(dir, 'swap-new'), path.join(dir, `.swap.tmp-${dead}-01020304`));
    // A plain expand into the same path (which used to delete the hidden previous copy as "stale"):
    const r = await runCli(['expand', path.join(dir, 'conv'), out, '--groups', '1']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/output .*swap already exists; choose another path or pass --force/);
    expect(await hidden(dir, 'swap')).toEqual([]);
    const ck = await HfCheckpoint.open(out);
    expect(ck.config.numHiddenLayers).toBe(TINY.layers);
    await ck.close();
  });

  it('asides moved in one replace go back together (an ONNX model and its .data stay a pair)', async () => {
    const d = path.join(dir, 'pair');
    await fsp.mkdir(d);
    const dead = 99999998;
    // Killed after the new .data went in but before the new model did: model missing, both asides there.
    await fsp.writeFile(path.join(d, `.m.onnx.old-${dead}-11111111`), 'old model');
    await fsp.writeFile(path.join(d, `.m.onnx.data.old-${dead}-11111111`), 'old data');
    await fsp.writeFile(path.join(d, 'm.onnx.data'), 'new data');
    await fsp.writeFile(path.join(d, `.m.onnx.tmp-${dead}-22222222`), 'new model');
    const r = await recoverTempSiblings(d);
    expect(r.restored.sort()).toEqual([path.join(d, 'm.onnx'), path.join(d, 'm.onnx.data')]);
    expect((await fsp.readdir(d)).sort()).toEqual(['m.onnx', 'm.onnx.data']);
    expect(await fsp.readFile(path.join(d, 'm.onnx'), 'utf8')).toBe('old model');
    expect(await fsp.readFile(path.join(d, 'm.onnx.data'), 'utf8')).toBe('old data');
    // Finished replace (every output in place): the asides are deleted, the new files stay.
    await fsp.writeFile(path.join(d, `.m.onnx.old-${dead}-33333333`), 'older');
    await fsp.writeFile(path.join(d, `.m.onnx.data.old-${dead}-33333333`), 'older');
    await recoverTempSiblings(d);
    expect(await fsp.readFile(path.join(d, 'm.onnx'), 'utf8')).toBe('old model');
    expect((await fsp.readdir(d)).sort()).toEqual(['m.onnx', 'm.onnx.data']);
  });

  it("a live process's temporaries are left alone", async () => {
    const d = path.join(dir, 'live');
    await fsp.mkdir(d);
    await fsp.mkdir(path.join(d, `.x.tmp-${process.pid}-aaaaaaaa`));
    await fsp.mkdir(path.join(d, `.x.old-${process.ppid}-bbbbbbbb`));
    expect(await recoverTempSiblings(d)).toEqual({ removed: [], restored: [] });
    expect((await fsp.readdir(d)).length).toBe(2);
  });
});

describeWithFixtures('eval --name', [['datasets', 'humaneval', 'HumanEval.jsonl.gz']], () => {
  it('refuses an existing run unless --overwrite, and --overwrite replaces only an eval run', async () => {
    const DATA = fixturePath('datasets');
    const samples = path.join(dir, 'samples.jsonl');
    await fsp.writeFile(samples, JSON.stringify({ task_id: 'HumanEval/0', completion: '    return False\n' }) + '\n');
    const args = ['eval', '--task', 'humaneval', '--samples', samples, '--limit', '1', '--data-dir', DATA, '--out', dir];
    expect((await runCli([...args, '--name', 'run1'])).code).toBe(0);
    await fsp.writeFile(path.join(dir, 'run1', 'notes.txt'), 'from the first run');
    const again = await runCli([...args, '--name', 'run1']);
    expect(again.code).toBe(2);
    expect(again.stderr).toBe(`llama-pro: eval run ${path.join(dir, 'run1')} already exists; choose another --name or pass --overwrite to replace it\n`);
    expect(await fsp.readFile(path.join(dir, 'run1', 'notes.txt'), 'utf8')).toBe('from the first run');
    const over = await runCli([...args, '--name', 'run1', '--overwrite']);
    expect(over.code).toBe(0);
    expect((await fsp.readdir(path.join(dir, 'run1'))).sort()).toEqual(['results.json', 'results.md', 'samples_humaneval.jsonl']);
    expect(await hidden(dir, 'run1')).toEqual([]);
    await fsp.mkdir(path.join(dir, 'not-a-run'));
    const notRun = await runCli([...args, '--name', 'not-a-run', '--overwrite']);
    expect(notRun.stderr).toMatch(/not-a-run exists and is not an eval run .* --overwrite will not replace it/);
    expect((await runCli([...args, '--name', '../escape'])).stderr).toMatch(/--name must be a plain name/);
  });
});
