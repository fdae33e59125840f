/**
 * The streaming verifier on onnxruntime's matmul kernel (backend-onnx createOnnxMatmulKernel), as
 * `expand --verify` runs it: the kernel's products match float64 sums, a streamed forward pass of
 * stories260K on it matches the llama2.c golden logits (golden/stories260K, from run.c), a correct
 * expansion is proven identical (and its logits are bit for bit a real base pass's on the same kernel),
 * and the copy initializer / a one-ulp change are measured and located by the comparison.
 */
import * as fs from 'node:fs';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HfCheckpoint, Rng, convertLlama2c, type TokenBatch } from '@llama-pro/core';
import { STORIES260K_BIN, STORIES260K_GOLDEN, describeWithFixtures, fixturePath, relL2 } from '@llama-pro/core/testing';
import { copyInitializer, expandModel, interleavedStrategy, maxAbsDiff, streamForwardWith, topStrategy, verifyStreaming, zeroOutputInitializer } from '@llama-pro/expand';
import { createOnnxMatmulKernel, type OnnxMatmulKernel } from '@llama-pro/backend-onnx';

const FIXTURES = [STORIES260K_BIN, [...STORIES260K_GOLDEN, 'tokens.txt'], [...STORIES260K_GOLDEN, 'logits.f32']];

let kernel: OnnxMatmulKernel;
beforeAll(async () => {
  kernel = await createOnnxMatmulKernel();
});
afterAll(async () => {
  await kernel.dispose();
});

it('matmulT: y = x · wᵀ (float32 products against float64 sums), odd sizes', async () => {
  const rng = new Rng(7);
  const [n, k, m] = [3, 37, 5];
  const x = Float32Array.from({ length: n * k }, () => rng.normal());
  const w = Float32Array.from({ length: m * k }, () => rng.normal());
  const y = await kernel.matmulT(x, w, n, k, m);
  expect(y).toHaveLength(n * m);
  for (let i = 0; i < n; i++) {
    for (let o = 0; o < m; o++) {
      let s = 0;
      for (let j = 0; j < k; j++) s += x[i * k + j]! * w[o * k + j]!;
      expect(Math.abs(y[i * m + o]! - s)).toBeLessThanOrEqual(1e-4 * (1 + Math.abs(s)));
    }
  }
  await expect(kernel.matmulT(x, w, n, k + 1, m)).rejects.toThrow(/matmulT: x has 111 values for \[3, 38\]/);
  // views into larger reused buffers (as the verifier passes them): only the view's elements count
  const big = new Float32Array(m * k + 999).fill(1e30);
  big.set(w);
  const bigX = new Float32Array(n * k + 77).fill(-1e30);
  bigX.set(x);
  expect(await kernel.matmulT(bigX.subarray(0, n * k), big.subarray(0, m * k), n, k, m)).toEqual(y);
});

describeWithFixtures('streaming verify on the onnxruntime kernel, stories260K', FIXTURES, () => {
  let dir: string;
  let base: string;
  let batch: TokenBatch;
  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-verify-onnx-'));
    base = path.join(dir, 'base');
    await convertLlama2c(fixturePath(...STORIES260K_BIN), base);
    const tokens = fs.readFileSync(fixturePath(...STORIES260K_GOLDEN, 'tokens.txt'), 'utf8').split(/\s+/).filter(Boolean).map(Number);
    batch = { ids: Int32Array.from(tokens), batchSize: 1, seqLen: tokens.length };
  });
  afterAll(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  const forward = async (d: string, b: TokenBatch) => {
    const ck = await HfCheckpoint.open(d);
    try {
      return await streamForwardWith(ck, b, kernel);
    } finally {
      await ck.close();
    }
  };

  it('the base forward pass matches the llama2.c golden logits', async () => {
    const golden = fs.readFileSync(fixturePath(...STORIES260K_GOLDEN, 'logits.f32'));
    const want = new Float32Array(golden.length / 4).map((_, i) => golden.readFloatLE(i * 4));
    const got = await forward(base, batch);
    expect(got.hidden).toHaveLength(6); // embeddings + 5 layers
    expect(relL2(got.logits.data, want)).toBeLessThanOrEqual(1e-4);
  });

  it('a correct expansion is proven (one pass) and its logits equal a real base pass bit for bit', async () => {
    const ck = await HfCheckpoint.open(base);
    const plan = interleavedStrategy.plan(ck.config, { groups: 5 });
    await ck.close();
    const out = path.join(dir, 'x');
    const r = await expandModel({ input: base, output: out, plan, initializer: zeroOutputInitializer, verify: { kernel } });
    expect(r.verification).toMatchObject({ backend: 'stream', maxAbsDiff: 0, method: 'proof', kernel: 'onnxruntime' });
    const v = await verifyStreaming(base, out, plan, batch, undefined, { kernel });
    expect(v.method).toBe('proof');
    expect(maxAbsDiff(v.baseLogits, (await forward(base, batch)).logits)).toBe(0);
    // and a real pass of the expanded model on the kernel gives the same logits
    expect(maxAbsDiff((await forward(out, batch)).logits, (await forward(base, batch)).logits)).toBe(0);
  });

  it('copy initializer: measured by the comparison (Δ > 0), located at the new block', async () => {
    const ck = await HfCheckpoint.open(base);
    const plan = topStrategy.plan(ck.config, { blocks: 1 });
    await ck.close();
    const out = path.join(dir, 'c');
    const r = await expandModel({ input: base, output: out, plan, initializer: copyInitializer, verify: { mode: 'report', kernel } });
    expect(r.verification!.maxAbsDiff).toBeGreaterThan(0);
    const v = await verifyStreaming(base, out, plan, batch, undefined, { kernel });
    expect(v.method).toBe('comparison');
    expect(v.precheck.nonZero).toEqual(['model.layers.5.self_attn.o_proj.weight', 'model.layers.5.mlp.down_proj.weight']);
    expect(v.layerMaxAbsDiff.slice(0, 5)).toEqual([0, 0, 0, 0, 0]);
    expect(v.firstDifferingLayer).toBe(5);
    expect(v.maxAbsDiff).toBeGreaterThan(0);
  });
});
