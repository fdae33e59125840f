import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CheckpointError, ConfigError, HfCheckpoint, nativeIoStatus, expectedShape, expectedTensorNames, saveModelDir, OutputError, normalizeConfig, parseLayerTensorName, readConfigJson } from '@llama-pro/core';
import { tinyRawConfig, writeRandomCheckpoint } from '@llama-pro/core/testing';
import {
  MANIFEST_FILE,
  copyInitializer,
  expandModel,
  interleavedStrategy,
  positionsStrategy,
  readExpansionManifest,
  topStrategy,
  zeroOutputInitializer,
} from '../src';

let dir: string;
beforeAll(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-expand-'));
});
afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** sha256 of every file under `d` (relative name -> hash), to prove an input is untouched. */
async function snapshot(d: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const f of (await fsp.readdir(d)).sort()) out[f] = sha(await fsp.readFile(path.join(d, f)));
  return out;
}

const TOKENIZER = '{"model":{"type":"BPE"},"note":"bytes must survive: \u00e9\\u00e9"}\n';
const LAYER_TYPES = Array.from({ length: 32 }, (_, i) => `type-${i}`);

async function tiny32(name: string, dtype: 'F32' | 'BF16', maxShardBytes?: number): Promise<string> {
  const d = path.join(dir, name);
  const raw = tinyRawConfig({ layers: 32, hiddenSize: 16, intermediateSize: 24, heads: 2, kvHeads: 1, vocab: 40, dtype, extra: { layer_types: LAYER_TYPES } });
  await writeRandomCheckpoint(d, raw, { seed: 7, dtype, maxShardBytes });
  await fsp.writeFile(path.join(d, 'tokenizer.json'), TOKENIZER);
  await fsp.writeFile(path.join(d, 'generation_config.json'), '{"bos_token_id": 1,\n "eos_token_id": 2}');
  return d;
}

/** Checks the paper layout on a 32-layer model: originals byte-identical at i + floor(i/4), copies at 4, 9, ..., 39. */
async function checkPaperLayout(input: string, output: string, dtype: string): Promise<void> {
  const a = await HfCheckpoint.open(input);
  const b = await HfCheckpoint.open(output);
  try {
    expect(b.config.numHiddenLayers).toBe(40);
    const outNames = b.tensorNames();
    expect(outNames.length).toBe(a.tensorNames().length + 8 * 9);
    const newLayers = [4, 9, 14, 19, 24, 29, 34, 39];
    for (const name of outNames) {
      expect(b.info(name).dtype).toBe(dtype);
      const p = parseLayerTensorName(name);
      const bytes = await b.read(name);
      if (!p) {
        expect(sha(bytes)).toBe(sha(await a.read(name)));
        continue;
      }
      const k = newLayers.indexOf(p.layer);
      if (k < 0) {
        const orig = p.layer - Math.floor(p.layer / 5);
        expect(sha(bytes)).toBe(sha(await a.read(`model.layers.${orig}.${p.suffix}`)));
      } else if (p.suffix === 'self_attn.o_proj.weight' || p.suffix === 'mlp.down_proj.weight') {
        expect(bytes.length).toBeGreaterThan(0);
        expect(bytes.every((x) => x === 0)).toBe(true);
      } else {
        expect(sha(bytes)).toBe(sha(await a.read(`model.layers.${4 * k + 3}.${p.suffix}`)));
      }
    }
    const m = await readExpansionManifest(output);
    expect(m.newLayers).toEqual(newLayers);
    expect(m.copies).toEqual(newLayers.map((layer, k) => ({ layer, source: 4 * k + 3 })));
    expect(m.plan.originalToNew).toEqual(Array.from({ length: 32 }, (_, i) => i + Math.floor(i / 4)));
    const expectTrainable = outNames.filter((n) => newLayers.includes(parseLayerTensorName(n)?.layer ?? -1)).sort();
    expect([...m.trainableTensors].sort()).toEqual(expectTrainable);
    expect(expectTrainable.length).toBe(8 * 9);
    expect([...m.zeroedTensors].sort()).toEqual(newLayers.flatMap((l) => [`model.layers.${l}.mlp.down_proj.weight`, `model.layers.${l}.self_attn.o_proj.weight`]).sort());
    // base shards hashed
    for (const s of m.base.shards) expect(s.sha256).toBe(sha(await fsp.readFile(path.join(input, s.file))));
    expect(m.base.path).toBe(path.resolve(input));
    expect(m.strategy).toEqual({ name: 'interleaved', params: { groups: 8, copies: 1 } });
    expect(m.verification).toBeNull();
    // config: layer count and per-layer arrays remapped; aux files byte for byte
    const cfg = await readConfigJson(output);
    expect(cfg['num_hidden_layers']).toBe(40);
    expect(cfg['layer_types']).toEqual(m.plan.layers.map((l) => `type-${l.source}`));
    expect(await fsp.readFile(path.join(output, 'tokenizer.json'), 'utf8')).toBe(TOKENIZER);
    expect(sha(await fsp.readFile(path.join(output, 'generation_config.json')))).toBe(sha(await fsp.readFile(path.join(input, 'generation_config.json'))));
  } finally {
    await a.close();
    await b.close();
  }
}

describe('expandModel', () => {
  it('seeded 32-layer fp32 model, --groups 8: 40 layers, originals byte-identical, copies zeroed', async () => {
    const input = await tiny32('f32', 'F32');
    const output = path.join(dir, 'f32-x');
    const events: string[] = [];
    const before = await snapshot(input);
    const plan = interleavedStrategy.plan(normalizeConfig(await readConfigJson(input)), { groups: 8 });
    const r = await expandModel({ input, output, plan, initializer: zeroOutputInitializer, onProgress: (p) => events.push(p.phase) });
    expect(events.length).toBeGreaterThan(0);
    expect(r.manifest.output.shards.map((s) => s.file)).toEqual(['model.safetensors']);
    await checkPaperLayout(input, output, 'F32');
    expect(await snapshot(input)).toEqual(before);
    expect((await fsp.readdir(dir)).filter((f) => f.startsWith('.'))).toEqual([]);
  });

  it('sharded bf16 in, sharded bf16 out (dtype preserved, index written)', async () => {
    const input = await tiny32('bf16', 'BF16', 20_000);
    const output = path.join(dir, 'bf16-x');
    const plan = interleavedStrategy.plan(normalizeConfig(await readConfigJson(input)), { groups: '8' });
    const r = await expandModel({ input, output, plan, initializer: zeroOutputInitializer, maxShardBytes: 30_000 });
    expect(r.manifest.base.shards.length).toBeGreaterThan(1);
    expect(r.manifest.output.shards.length).toBeGreaterThan(1);
    const index = JSON.parse(await fsp.readFile(path.join(output, 'model.safetensors.index.json'), 'utf8'));
    expect(Object.keys(index.weight_map).length).toBe(32 * 9 + 3 + 8 * 9);
    for (const s of r.manifest.output.shards) expect(s.bytes).toBeLessThanOrEqual(30_000);
    await checkPaperLayout(input, output, 'BF16');
    // Tensor bytes moved in the kernel when the addon is at hand (CI requires it), else through buffers.
    const copied = r.manifest.output.totalBytes - (8 * 2 * 16 * 16 + 8 * 2 * 24 * 16); // minus the zeroed o_proj/down_proj holes
    expect(r.copy).toEqual(nativeIoStatus().available ? { kernelBytes: copied, userBytes: 0 } : { kernelBytes: 0, userBytes: copied });
    // Forced through user space: the same files byte for byte.
    const viaBuffers = path.join(dir, 'bf16-x-user');
    const u = await expandModel({ input, output: viaBuffers, plan, initializer: zeroOutputInitializer, maxShardBytes: 30_000, writer: { nativeCopy: false } });
    expect(u.copy).toEqual({ kernelBytes: 0, userBytes: copied });
    const weights = (s: Record<string, string>) => Object.fromEntries(Object.entries(s).filter(([f]) => f.endsWith('.safetensors') || f.endsWith('.index.json')));
    expect(weights(await snapshot(viaBuffers))).toEqual(weights(await snapshot(output)));
  });

  it('copy initializer writes plain copies; top strategy appends', async () => {
    const input = path.join(dir, 'small');
    await writeRandomCheckpoint(input, tinyRawConfig({ layers: 3, attentionBias: true, mlpBias: true }), { seed: 3 });
    const cfg = normalizeConfig(await readConfigJson(input));
    const out1 = path.join(dir, 'small-copy');
    const r = await expandModel({ input, output: out1, plan: topStrategy.plan(cfg, { blocks: 1 }), initializer: copyInitializer, hashBase: false });
    expect(r.manifest.zeroedTensors).toEqual([]);
    expect(r.manifest.base.shards).toEqual([{ file: 'model.safetensors', bytes: (await fsp.stat(path.join(input, 'model.safetensors'))).size, sha256: null }]);
    expect(r.manifest.trainableTensors.every((n) => n.startsWith('model.layers.3.'))).toBe(true);
    const b = await HfCheckpoint.open(out1);
    expect(sha(await b.read('model.layers.3.mlp.down_proj.weight'))).toBe(sha(await b.read('model.layers.2.mlp.down_proj.weight')));
    await b.close();
    // biases are zeroed too with zero-output
    const out2 = path.join(dir, 'small-zero');
    const r2 = await expandModel({ input, output: out2, plan: positionsStrategy.plan(cfg, { at: '0' }), initializer: zeroOutputInitializer });
    expect([...r2.manifest.zeroedTensors].sort()).toEqual(['mlp.down_proj.bias', 'mlp.down_proj.weight', 'self_attn.o_proj.bias', 'self_attn.o_proj.weight'].map((s) => `model.layers.0.${s}`));
    const c = await HfCheckpoint.open(out2);
    expect((await c.read('model.layers.0.self_attn.o_proj.bias')).every((x) => x === 0)).toBe(true);
    expect(sha(await c.read('model.layers.0.self_attn.q_proj.bias'))).toBe(sha(await c.read('model.layers.1.self_attn.q_proj.bias')));
    await c.close();
  });
});

describe('expandModel errors leave the input untouched and write nothing', () => {
  let input: string;
  let plan: ReturnType<typeof interleavedStrategy.plan>;
  beforeAll(async () => {
    input = path.join(dir, 'err-in');
    await writeRandomCheckpoint(input, tinyRawConfig({ layers: 4 }), { seed: 5 });
    plan = interleavedStrategy.plan(normalizeConfig(await readConfigJson(input)), { groups: 2 });
  });

  it('output inside input, or containing it', async () => {
    const before = await snapshot(input);
    await expect(expandModel({ input, output: path.join(input, 'grown'), plan, initializer: zeroOutputInitializer })).rejects.toThrow(
      new OutputError(`output ${path.join(input, 'grown')} is inside the input model ${input}; choose a path outside it`),
    );
    await expect(expandModel({ input, output: dir, plan, initializer: zeroOutputInitializer, force: true })).rejects.toThrow(/contains the input model/);
    expect(await snapshot(input)).toEqual(before);
  });

  it('existing output without --force; with --force only a previous expand output is replaced', async () => {
    const out = path.join(dir, 'exists');
    await fsp.mkdir(out);
    await fsp.writeFile(path.join(out, 'keep.txt'), 'x');
    await expect(expandModel({ input, output: out, plan, initializer: zeroOutputInitializer })).rejects.toThrow(/already exists; choose another path or pass --force/);
    expect(await fsp.readdir(out)).toEqual(['keep.txt']);
    // issue 16.4: --force replaced any directory, model or not; a directory that expand did not write stays.
    await expect(expandModel({ input, output: out, plan, initializer: zeroOutputInitializer, force: true })).rejects.toThrow(/is not a previous output of `llama-pro expand`.*--force will not replace it/);
    expect(await fsp.readdir(out)).toEqual(['keep.txt']);
    await fsp.rm(out, { recursive: true });
    await expandModel({ input, output: out, plan, initializer: zeroOutputInitializer });
    await fsp.writeFile(path.join(out, 'stale.txt'), 'from the previous output');
    await expandModel({ input, output: out, plan, initializer: zeroOutputInitializer, force: true });
    expect((await fsp.readdir(out)).sort()).toEqual(['config.json', MANIFEST_FILE, 'model.safetensors']);
  });

  it('non-LLaMA architecture', async () => {
    const bad = path.join(dir, 'gpt2');
    await fsp.cp(input, bad, { recursive: true });
    await fsp.writeFile(path.join(bad, 'config.json'), JSON.stringify({ ...tinyRawConfig({ layers: 4 }), architectures: ['GPT2LMHeadModel'], model_type: 'gpt2' }));
    const before = await snapshot(bad);
    const out = path.join(dir, 'gpt2-x');
    const err = await expandModel({ input: bad, output: out, plan, initializer: zeroOutputInitializer }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/unsupported architecture GPT2LMHeadModel: llama-pro handles LLaMA-family decoders/);
    expect(await snapshot(bad)).toEqual(before);
    expect(await fsp.stat(out).catch(() => null)).toBeNull();
  });

  it('missing tensors, and a plan for another layer count', async () => {
    const bad = path.join(dir, 'missing');
    await fsp.cp(input, bad, { recursive: true });
    await fsp.writeFile(path.join(bad, 'config.json'), JSON.stringify({ ...tinyRawConfig({ layers: 5 }) }));
    const out = path.join(dir, 'missing-x');
    const err = await expandModel({ input: bad, output: out, plan, initializer: zeroOutputInitializer }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CheckpointError);
    expect((err as Error).message).toMatch(/is missing 9 tensor\(s\) that config.json implies, e\.g\. model\.layers\.4\./);
    expect(await fsp.stat(out).catch(() => null)).toBeNull();
    const plan3 = interleavedStrategy.plan(normalizeConfig(tinyRawConfig({ layers: 3 })), { groups: 1 });
    await expect(expandModel({ input, output: out, plan: plan3, initializer: zeroOutputInitializer })).rejects.toThrow(/the plan is for 3 layers but .* has 4/);
    expect((await fsp.readdir(dir)).filter((f) => f.startsWith('.'))).toEqual([]);
  });
});

describe('SIGKILL mid-write', () => {
  it('leaves nothing at the output path; a rerun succeeds and removes the stale temp dir', async () => {
    const input = path.join(dir, 'big');
    // ~50 MB of fp32 weights (zeros: quick to write; the values do not matter here) so the child is still
    // writing when it is killed.
    const raw = tinyRawConfig({ layers: 4, hiddenSize: 512, intermediateSize: 1408, heads: 8, kvHeads: 8, vocab: 512 });
    const cfg = normalizeConfig(raw);
    const tensors = expectedTensorNames(cfg).map((name) => ({ name, dtype: 'F32' as const, shape: expectedShape(cfg, name)!, source: 'zeros' as const }));
    await saveModelDir(input, { config: raw, tensors });
    const output = path.join(dir, 'big-x');
    const child = spawn(process.execPath, [path.join(__dirname, 'child', 'ts-child.js'), path.join(__dirname, 'child', 'expand-child.ts'), input, output, String(8 << 20)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const killedMidWrite = await new Promise<boolean>((resolve) => {
      let buf = '';
      child.stdout.on('data', (d: Buffer) => {
        buf += d.toString();
        for (const line of buf.split('\n').slice(0, -1)) {
          const p = JSON.parse(line) as { phase: string; done: number; total: number };
          if (p.phase === 'write' && p.done > 0 && p.done < p.total / 2) {
            child.kill('SIGKILL');
            resolve(true);
          }
        }
        buf = buf.slice(buf.lastIndexOf('\n') + 1);
      });
      child.on('exit', () => resolve(false));
    });
    const exit = await new Promise<NodeJS.Signals | null>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve(child.signalCode) : child.on('exit', (_c, s) => resolve(s))));
    expect(stderr).toBe('');
    expect(killedMidWrite).toBe(true);
    expect(exit).toBe('SIGKILL');
    expect(await fsp.stat(output).catch(() => null)).toBeNull();
    const leftovers = (await fsp.readdir(dir)).filter((f) => f.startsWith('.big-x.tmp-'));
    expect(leftovers.length).toBe(1);
    const plan = interleavedStrategy.plan(normalizeConfig(await readConfigJson(input)), { groups: 2 });
    const r = await expandModel({ input, output, plan, initializer: zeroOutputInitializer, maxShardBytes: 8 << 20 });
    expect(r.manifest.plan.newLayerCount).toBe(6);
    expect((await fsp.readdir(dir)).filter((f) => f.startsWith('.big-x'))).toEqual([]);
    const b = await HfCheckpoint.open(output);
    expect(b.config.numHiddenLayers).toBe(6);
    await b.close();
  }, 120_000);
});
