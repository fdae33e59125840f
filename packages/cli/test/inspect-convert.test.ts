import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { STORIES260K_BIN, describeWithFixtures, fixturePath, tinyRawConfig, writeRandomCheckpoint } from '@llama-pro/core/testing';
import { runCli } from './run-cli';

let dir: string;
beforeAll(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-cli-'));
});

describeWithFixtures('convert + inspect on stories260K', [STORIES260K_BIN], () => {
  it('converts, and inspect reports the model facts', async () => {
    const out = path.join(dir, 's260');
    const conv = await runCli(['convert', fixturePath(...STORIES260K_BIN), out, '--json']);
    expect(conv.code).toBe(0);
    expect(JSON.parse(conv.stdout)).toMatchObject({ layers: 5, heads: 8, kvHeads: 4, vocabSize: 512, tied: true, shards: ['model.safetensors'] });
    const r = await runCli(['inspect', out, '--json']);
    expect(r.code).toBe(0);
    const info = JSON.parse(r.stdout);
    // Facts from the llama2.c header (../shared/models/stories260K/README.md) and the file size:
    // 264,128 floats after the header, of which 4,096 are rotary tables -> 260,032 parameters.
    expect(info).toMatchObject({ layers: 5, heads: 8, kvHeads: 4, headDim: 8, vocabSize: 512, hiddenSize: 64, intermediateSize: 172, tieWordEmbeddings: true, dtypes: { F32: 47 } });
    expect(info.parameters).toEqual({ embedding: 512 * 64, perLayer: 4 * 64 * 64 - 2 * 64 * 32 + 3 * 64 * 172 + 128, layers: 5 * 45440, finalNorm: 64, lmHead: 0, total: 260032 });
    const text = await runCli(['inspect', out]);
    expect(text.stdout).toMatch(/heads \/ kv heads \/ head dim\s+8 \/ 4 \/ 8/);
    // An independent reader (Python) parses the safetensors file the CLI wrote.
    const names = execFileSync('python3', ['-c', 'import json,struct,sys;f=open(sys.argv[1],"rb");n=struct.unpack("<Q",f.read(8))[0];h=json.loads(f.read(n));h.pop("__metadata__");print(len(h))', path.join(out, 'model.safetensors')], { encoding: 'utf8' });
    expect(Number(names)).toBe(47);
  });

  it('refuses to overwrite without --force, and inspects the llama2.c file itself', async () => {
    const out = path.join(dir, 's260b');
    expect((await runCli(['convert', fixturePath(...STORIES260K_BIN), out])).code).toBe(0);
    const again = await runCli(['convert', fixturePath(...STORIES260K_BIN), out]);
    expect(again.code).toBe(2); // usage class: the fix is a flag (--force) or another path
    expect(again.stderr).toMatch(/^llama-pro: output .* already exists; choose another path or pass --force/);
    expect((await runCli(['convert', fixturePath(...STORIES260K_BIN), out, '--force'])).code).toBe(0);
    const r = await runCli(['inspect', fixturePath(...STORIES260K_BIN), '--json']);
    expect(JSON.parse(r.stdout)).toMatchObject({ format: 'llama2.c v0', layers: 5, kvHeads: 4 });
  });
});

describe('inspect on a seeded sharded bf16 checkpoint', () => {
  it('reports layers, heads, params per group, dtypes and shards', async () => {
    const out = path.join(dir, 'bf16');
    await writeRandomCheckpoint(out, tinyRawConfig({ layers: 3, hiddenSize: 48, intermediateSize: 96, heads: 6, kvHeads: 2, vocab: 100, tie: false, dtype: 'BF16' }), {
      dtype: 'BF16',
      maxShardBytes: 30_000,
      seed: 11,
    });
    const r = await runCli(['inspect', out, '--json']);
    expect(r.code).toBe(0);
    const info = JSON.parse(r.stdout);
    // head dim 8: q 48x48, k/v 16x48 each, o 48x48, 3 MLP matrices 96x48, two norms of 48.
    const perLayer = 48 * 48 * 2 + 2 * 16 * 48 + 3 * 96 * 48 + 2 * 48;
    expect(info.parameters).toEqual({ embedding: 4800, perLayer, layers: 3 * perLayer, finalNorm: 48, lmHead: 4800, total: 4800 * 2 + 3 * perLayer + 48 });
    expect(info).toMatchObject({ layers: 3, heads: 6, kvHeads: 2, headDim: 8, torchDtype: 'BF16', dtypes: { BF16: 1 + 3 * 9 + 2 } });
    expect(info.shards.length).toBeGreaterThan(1);
    expect(info.shards.reduce((a: number, s: { tensors: number }) => a + s.tensors, 0)).toBe(30);
    expect(info.bytes).toBe(2 * info.parameters.total);
  });
});

describe('errors', () => {
  it.each([
    [['inspect', '/definitely/not/here'], /^llama-pro: model directory \/definitely\/not\/here does not exist\n$/],
    [['convert', '/nope.bin', '/tmp/x'], /^llama-pro: \/nope\.bin: file not found\n$/],
    [['convert', __filename, '/tmp/lp-never', '--dtype', 'int3'], /unknown dtype "int3"/],
  ])('%j exits non-zero with one line', async (args, msg) => {
    const r = await runCli(args);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(msg);
  });

  it('unknown commands exit non-zero', async () => {
    const r = await runCli(['frobnicate']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/unknown command 'frobnicate'/);
  });
});
