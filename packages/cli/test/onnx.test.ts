/**
 * The onnx backend together with the rest of the toolkit: `export-onnx`, `generate --backend onnx`,
 * parity with the tfjs backend (greedy tokens on stories260K; logits on seeded models with biases,
 * untied heads and several GQA ratios), and expansion identity on ONNX.
 */
import { useMainRealmTypedArrays } from '@llama-pro/backend-onnx/testing';
useMainRealmTypedArrays(); // onnxruntime-node under jest: see the helper's doc

import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HfCheckpoint, convertLlama2c, generate, type TokenBatch } from '@llama-pro/core';
import { STORIES260K_BIN, STORIES260K_GOLDEN, describeWithFixtures, fixturePath, tinyRawConfig, writeRandomCheckpoint, type TinyConfigOptions } from '@llama-pro/core/testing';
import { onnxBackend } from '@llama-pro/backend-onnx';
import { tfjsBackend } from '@llama-pro/backend-tfjs';
import { verifyIdentity } from '@llama-pro/expand';
import { relL2 } from '@llama-pro/core/testing';
import { runCli } from './run-cli';

const FIXTURES = [STORIES260K_BIN, [...STORIES260K_GOLDEN, 'tokens.txt'], [...STORIES260K_GOLDEN, 'logits.f32']];


describeWithFixtures('onnx backend with the CLI, tfjs and expand (stories260K)', FIXTURES, () => {
  let dir: string;
  let base: string;
  let tokens: number[];

  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-onnx-cli-'));
    base = path.join(dir, 'base');
    await convertLlama2c(fixturePath(...STORIES260K_BIN), base);
    tokens = (await fsp.readFile(fixturePath(...STORIES260K_GOLDEN, 'tokens.txt'), 'utf8')).split(/\s+/).filter(Boolean).map(Number);
  });
  afterAll(async () => {
    if (dir) await fsp.rm(dir, { recursive: true, force: true });
  });

  it('export-onnx writes a loadable model atomically and refuses to overwrite it', async () => {
    const out = path.join(dir, 'onnx', 'model.onnx');
    const r = await runCli(['export-onnx', base, out, '--json']);
    expect(r.stderr).not.toMatch(/llama-pro:/);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ out, dataFile: null, opset: 17, layers: 5 });
    const ck = await HfCheckpoint.open(base);
    const fromFile = await onnxBackend.load(ck, { onnxFile: out });
    const fromMemory = await onnxBackend.load(ck);
    const batch: TokenBatch = { ids: Int32Array.from(tokens.slice(0, 9)), batchSize: 1, seqLen: 9 };
    expect((await fromFile.forward(batch)).data).toEqual((await fromMemory.forward(batch)).data);
    await Promise.all([fromFile.dispose(), fromMemory.dispose(), ck.close()]);
    expect(await fsp.readdir(path.dirname(out))).toEqual(['model.onnx']);
    const again = await runCli(['export-onnx', base, out]);
    expect(again.code).toBe(2); // usage class: the fix is --force or another path
    expect(again.stderr).toMatch(/already exists; choose another path or pass --force/);
    const ext = await runCli(['export-onnx', base, path.join(dir, 'onnx', 'ext.onnx'), '--external-data', 'always', '--json']);
    expect(JSON.parse(ext.stdout).dataFile).toBe(path.join(dir, 'onnx', 'ext.onnx.data'));
    const bad = await runCli(['export-onnx', base, path.join(dir, 'x.onnx'), '--external-data', 'maybe']);
    expect(bad.code).toBe(2);
  });

  it.each(['onnx', 'onnx:cpu'])('generate --backend %s: greedy from BOS reproduces tokens.txt', async (backend) => {
    const r = await runCli(['generate', '--model', base, '--prompt-ids', '1', '--max-new-tokens', '63', '--temperature', '0', '--backend', backend, '--json']);
    expect(r.stderr).not.toMatch(/llama-pro:/);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).tokens).toEqual(tokens.slice(1));
  });

  it('generate --backend onnx:gpu names the known variants', async () => {
    const r = await runCli(['generate', '--model', base, '--prompt-ids', '1', '--backend', 'onnx:gpu']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/unknown onnx backend variant "gpu"; known: cpu/);
  });

  it("greedy generation (batched, padded prompts, sampling off) equals tfjs's token for token", async () => {
    const ck = await HfCheckpoint.open(base);
    const [o, t] = [await onnxBackend.load(ck), await tfjsBackend.load(ck)];
    try {
      const prompts = [tokens.slice(0, 1), tokens.slice(0, 7), [1, 300, 301, 302]];
      const a = await generate(o, prompts, { maxNewTokens: 40 });
      const b = await generate(t, prompts, { maxNewTokens: 40 });
      expect(a.map((r) => r.tokens)).toEqual(b.map((r) => r.tokens));
      expect(a[0]!.tokens).toEqual(tokens.slice(1, 41));
      const batch: TokenBatch = { ids: Int32Array.from(tokens), batchSize: 1, seqLen: tokens.length };
      expect(relL2((await o.forward(batch)).data, (await t.forward(batch)).data)).toBeLessThanOrEqual(1e-5);
    } finally {
      await o.dispose();
      await t.dispose();
      await ck.close();
    }
  });

  it.each([
    ['interleaved', ['--groups', '5']],
    ['top', ['--blocks', '2']],
  ])('an expanded model (%s) exported to ONNX gives the same logits as its base', async (strategy, flags) => {
    const out = path.join(dir, `x-${strategy}`);
    const r = await runCli(['expand', base, out, '--strategy', strategy, ...flags, '--json']);
    expect(r.stderr).not.toMatch(/llama-pro:/);
    expect(r.code).toBe(0);
    const v = await verifyIdentity(base, out, onnxBackend, { ids: Int32Array.from(tokens), batchSize: 1, seqLen: tokens.length });
    expect(v.device).toBe('onnx:cpu');
    expect(v.maxAbsDiff).toBe(0);
    const buf = await fsp.readFile(fixturePath(...STORIES260K_GOLDEN, 'logits.f32'));
    const golden = new Float32Array(buf.length / 4).map((_, i) => buf.readFloatLE(i * 4));
    expect(relL2(v.baseLogits.data, golden)).toBeLessThanOrEqual(1e-4);
  });

  it('the identity check can fail: a copy-initialized block changes the ONNX logits', async () => {
    const out = path.join(dir, 'x-copy');
    const r = await runCli(['expand', base, out, '--strategy', 'top', '--blocks', '1', '--init', 'copy', '--json']);
    expect(r.code).toBe(0);
    const v = await verifyIdentity(base, out, onnxBackend, { ids: Int32Array.from(tokens.slice(0, 16)), batchSize: 1, seqLen: 16 });
    expect(v.maxAbsDiff).toBeGreaterThan(1e-3);
  });
});

describe('onnx vs tfjs logits on seeded models', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-onnx-tfjs-'));
  });
  afterAll(async () => {
    if (dir) await fsp.rm(dir, { recursive: true, force: true });
  });

  it.each<[string, TinyConfigOptions]>([
    ['biases, untied head, GQA 2:1', { attentionBias: true, mlpBias: true, tie: false, heads: 4, kvHeads: 2 }],
    ['tied head, MQA 4:1', { tie: true, heads: 4, kvHeads: 1 }],
    ['Qwen2, MHA 4:4', { architecture: 'Qwen2ForCausalLM', heads: 4, kvHeads: 4 }],
  ])('%s: padded batch logits agree (rel L2 <= 1e-5)', async (label, opts) => {
    const m = path.join(dir, label.replace(/\W+/g, '-'));
    await writeRandomCheckpoint(m, tinyRawConfig({ layers: 2, vocab: 97, ...opts }), { seed: label.length, std: 0.15 });
    const ck = await HfCheckpoint.open(m);
    const [o, t] = [await onnxBackend.load(ck), await tfjsBackend.load(ck)];
    try {
      const B = 2;
      const T = 11;
      const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 13 + 5) % 97);
      const mask = new Uint8Array(B * T).fill(1).fill(0, T, T + 4); // row 1 left-padded by 4
      const a = (await o.forward({ ids, batchSize: B, seqLen: T, attentionMask: mask })).data;
      const b = (await t.forward({ ids, batchSize: B, seqLen: T, attentionMask: mask })).data;
      const V = 97;
      const real = (x: Float32Array) => x.filter((_, i) => mask[Math.floor(i / V)] === 1);
      expect(relL2(real(a), real(b))).toBeLessThanOrEqual(1e-5);
    } finally {
      await o.dispose();
      await t.dispose();
      await ck.close();
    }
  });
});
