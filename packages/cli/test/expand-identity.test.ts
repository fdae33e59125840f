/**
 * Expansion + a real backend: stories260K (converted from llama2.c) grown by every strategy computes
 * exactly the base function on tfjs (max |Δlogit| = 0 on the golden tokens), and the base matches the
 * llama2.c golden logits.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HfCheckpoint, convertLlama2c, parseLayerTensorName, type TokenBatch } from '@llama-pro/core';
import { STORIES260K_BIN, STORIES260K_GOLDEN, describeWithFixtures, fixturePath, tinyRawConfig, writeRandomCheckpoint } from '@llama-pro/core/testing';
import { maxAbsDiff, readExpansionManifest, verifyIdentity } from '@llama-pro/expand';
import { tfjsBackend } from '@llama-pro/backend-tfjs';
import { runCli } from './run-cli';

const FIXTURES = [STORIES260K_BIN, [...STORIES260K_GOLDEN, 'tokens.txt'], [...STORIES260K_GOLDEN, 'logits.f32']];
const T = 64;
const V = 512;

describeWithFixtures('expand stories260K: identity on tfjs', FIXTURES, () => {
  let dir: string;
  let base: string;
  let golden: Float32Array;
  let batch: TokenBatch;

  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-expand-id-'));
    base = path.join(dir, 'base');
    await convertLlama2c(fixturePath(...STORIES260K_BIN), base);
    const tokens = (await fsp.readFile(fixturePath(...STORIES260K_GOLDEN, 'tokens.txt'), 'utf8')).split(/\s+/).filter(Boolean).map(Number);
    expect(tokens).toHaveLength(T);
    batch = { ids: Int32Array.from(tokens), batchSize: 1, seqLen: T };
    const buf = await fsp.readFile(fixturePath(...STORIES260K_GOLDEN, 'logits.f32'));
    golden = new Float32Array(T * V);
    for (let i = 0; i < golden.length; i++) golden[i] = buf.readFloatLE(i * 4);
  });
  afterAll(async () => {
    if (dir) await fsp.rm(dir, { recursive: true, force: true });
  });

  it.each([
    ['interleaved', ['--groups', '5'], [1, 3, 5, 7, 9]],
    ['top', ['--blocks', '2'], [5, 6]],
    ['bottom', ['--blocks', '2'], [0, 1]],
    ['positions', ['--at', '1,4,7', '--from', '0,4,2'], [1, 4, 7]],
  ])('%s %j: logits identical to the base, manifest lists exactly the new blocks', async (strategy, flags, newLayers) => {
    const out = path.join(dir, `x-${strategy}`);
    const backend = strategy === 'positions' ? 'tfjs:wasm' : 'tfjs';
    const r = await runCli(['expand', base, out, '--strategy', strategy, ...flags, '--verify', '--backend', backend, '--json']);
    expect(r.stderr).not.toMatch(/llama-pro:/);
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout);
    expect(summary.newLayers).toEqual(newLayers);
    expect(summary.layers).toBe(5 + newLayers.length);
    expect(summary.verification).toMatchObject({ backend: 'tfjs', maxAbsDiff: 0, identical: true });
    if (backend === 'tfjs:wasm') expect(summary.verification.device).toBe('tfjs:wasm');

    const m = await readExpansionManifest(out);
    expect(m.verification?.maxAbsDiff).toBe(0);
    const ck = await HfCheckpoint.open(out);
    const expected = ck.tensorNames().filter((n) => newLayers.includes(parseLayerTensorName(n)?.layer ?? -1)).sort();
    await ck.close();
    expect(expected).toHaveLength(9 * newLayers.length);
    expect([...m.trainableTensors].sort()).toEqual(expected);

    // Independently of the CLI's own batch: the golden tokens, base vs expanded, and base vs golden.
    const v = await verifyIdentity(base, out, tfjsBackend, batch);
    expect(v.maxAbsDiff).toBe(0);
    expect(v.baseLogits.data.length).toBe(T * V);
    let num = 0;
    let den = 0;
    for (let i = 0; i < golden.length; i++) {
      num += (v.baseLogits.data[i]! - golden[i]!) ** 2;
      den += golden[i]! ** 2;
    }
    expect(Math.sqrt(num / den)).toBeLessThanOrEqual(1e-4);
  });

  it('copy initializer fails --verify (nothing published, exit 1, the Δ named); --verify-mode report only measures it', async () => {
    const out = path.join(dir, 'x-copy');
    const refused = await runCli(['expand', base, out, '--strategy', 'top', '--blocks', '1', '--init', 'copy', '--verify', '--backend', 'tfjs', '--json']);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toMatch(/^llama-pro: identity check failed: max \|Δlogit\| = \d+(\.\d+)?(e[-+]\d+)? on tfjs .*nothing was written \(initializer "copy" zeroes no output projection, so it is not identity-preserving: .*\)\n$/m);
    expect(Number(/= (\S+) on/.exec(refused.stderr)![1])).toBeGreaterThan(0);
    expect(await fsp.readdir(dir)).not.toContain('x-copy');
    expect((await fsp.readdir(dir)).filter((e) => e.startsWith('.x-copy'))).toEqual([]);

    const text = await runCli(['expand', base, out, '--strategy', 'top', '--blocks', '1', '--init', 'copy', '--verify-mode', 'report', '--backend', 'tfjs']);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/\ndifference measured on tfjs .*: max \|Δlogit\| = \S+ — not an identity check \(--verify-mode report\)\n$/);
    const r = await runCli(['expand', base, out, '--strategy', 'top', '--blocks', '1', '--init', 'copy', '--verify-mode', 'report', '--backend', 'tfjs', '--json', '--force']);
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.verification.identical).toBe(false);
    expect(s.verification.mode).toBe('report');
    expect(s.verification.maxAbsDiff).toBeGreaterThan(0);
    expect((await readExpansionManifest(out)).verification).toMatchObject({ mode: 'report', identical: false });
    const a = await verifyIdentity(base, out, tfjsBackend, batch);
    expect(a.maxAbsDiff).toBeGreaterThan(0);
    expect(maxAbsDiff(a.baseLogits, a.baseLogits)).toBe(0);
  });
});

describe('expand CLI (no backend)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-expand-cli-'));
  });
  afterAll(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('--dry-run prints the plan (table and JSON) and writes nothing; errors are one line', async () => {
    const base = path.join(dir, 'base');
    await writeRandomCheckpoint(base, tinyRawConfig({ layers: 32, hiddenSize: 16, intermediateSize: 16, heads: 2, kvHeads: 1, vocab: 32 }));
    const out = path.join(dir, 'out');
    const t = await runCli(['expand', base, out, '--groups', '8', '--dry-run']);
    expect(t.code).toBe(0);
    expect(t.stdout).toMatch(/^strategy interleaved \{"groups":8,"copies":1\}: 32 -> 40 layers, new blocks at 4, 9, 14, 19, 24, 29, 34, 39\n/);
    expect(t.stdout).toMatch(/\n4 +3 +NEW copy \(trainable\)\n/);
    expect(t.stdout).toMatch(/initializer zero-output: 16 tensor\(s\) zeroed, 72 trainable tensor\(s\)/);
    const j = await runCli(['expand', base, out, '--strategy', 'positions', '--at', '4,9,14', '--dry-run', '--json']);
    const plan = JSON.parse(j.stdout);
    expect(plan).toMatchObject({ dryRun: true, strategy: 'positions', newLayerCount: 35, newLayers: [4, 9, 14] });
    expect(plan.layers.filter((l: { isNew: boolean }) => l.isNew).map((l: { source: number }) => l.source)).toEqual([3, 7, 11]);
    expect(await fsp.stat(out).catch(() => null)).toBeNull();

    const bad = await runCli(['expand', base, out, '--strategy', 'middle']);
    expect(bad.code).toBe(2); // usage class, like --groups below
    expect(bad.stderr).toBe('llama-pro: unknown expansion strategy "middle"; known: bottom, interleaved, positions, top\n');
    const g = await runCli(['expand', base, out, '--groups', '5']);
    expect(g.code).toBe(2);
    expect(g.stderr).toMatch(/valid --groups for 32 layers: 1, 2, 4, 8, 16, 32/);
    const inside = await runCli(['expand', base, path.join(base, 'x'), '--groups', '8']);
    expect(inside.stderr).toMatch(/is inside the input model/);
    expect(await fsp.readdir(dir)).toEqual(['base']);

    const w = await runCli(['expand', base, out, '--strategy', 'top', '--blocks', '2', '--shard-size', '20KB', '--json']);
    expect(w.code).toBe(0);
    expect(JSON.parse(w.stdout)).toMatchObject({ layers: 34, newLayers: [32, 33], verification: null });
    expect(JSON.parse(w.stdout).shards.length).toBeGreaterThan(1);
  });
});
