/**
 * The streaming verifier (stream-verify): its base forward pass matches reference logits (llama2.c's
 * golden logits for stories260K; transformers' logits for the hf-conformance Qwen2 case with sliding
 * windows, q/k/v biases and a tied head), so it is a real forward check; it reports exactly 0 on correct
 * expansions and finds the difference when an inserted block's o_proj is not zero (copy initializer)
 * or an original tensor differs from the base by one ulp.
 */
import * as fs from 'node:fs';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HfCheckpoint, convertLlama2c, type TokenBatch } from '@llama-pro/core';
import { STORIES260K_BIN, STORIES260K_GOLDEN, describeWithFixtures, fixturePath, relL2, tinyRawConfig, writeRandomCheckpoint } from '@llama-pro/core/testing';
import { IdentityError, copyInitializer, expandModel, maxAbsDiff, precheckExpansion, streamForwardWith, type ExpansionPlan, type MatmulKernel, type StreamVerifyResult, interleavedStrategy, positionsStrategy, readExpansionManifest, streamForward, topStrategy, verifyStreaming, zeroOutputInitializer } from '../src';

const QWEN = ['hf-conformance', 'qwen2-sliding-mixed-bf16'];
const STORIES_FIXTURES = [STORIES260K_BIN, [...STORIES260K_GOLDEN, 'tokens.txt'], [...STORIES260K_GOLDEN, 'logits.f32']];

function readF32(file: string): Float32Array {
  const b = fs.readFileSync(file);
  const out = new Float32Array(b.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = b.readFloatLE(i * 4);
  return out;
}

async function forwardOf(dir: string, batch: TokenBatch): Promise<Float32Array> {
  const ck = await HfCheckpoint.open(dir);
  try {
    return streamForward(ck, batch).logits.data;
  } finally {
    await ck.close();
  }
}

/** Adds one to the bit pattern of element 0 of `name` in `dir` (one ulp away from zero for a finite F32/F16/BF16 value). */
async function bumpOneUlp(dir: string, name: string): Promise<void> {
  const ck = await HfCheckpoint.open(dir);
  const t = ck.info(name);
  const file = ck.shardOf(name).path;
  const offset = ck.shardOf(name).byteRange(name).offset;
  await ck.close();
  const fh = await fsp.open(file, 'r+');
  try {
    const size = t.dtype === 'F32' ? 4 : 2;
    const b = Buffer.alloc(size);
    await fh.read(b, 0, size, offset);
    if (size === 4) b.writeUInt32LE(b.readUInt32LE(0) + 1, 0);
    else b.writeUInt16LE(b.readUInt16LE(0) + 1, 0);
    await fh.write(b, 0, size, offset);
  } finally {
    await fh.close();
  }
}

/** Sets element 0 of the F32 tensor `name` in `dir` to `value`. */
async function setF32(dir: string, name: string, value: number): Promise<void> {
  const ck = await HfCheckpoint.open(dir);
  const t = ck.info(name);
  const file = ck.shardOf(name).path;
  const offset = ck.shardOf(name).byteRange(name).offset;
  await ck.close();
  if (t.dtype !== 'F32') throw new Error(`${name} is ${t.dtype}, not F32`);
  const fh = await fsp.open(file, 'r+');
  try {
    const b = Buffer.alloc(4);
    b.writeFloatLE(value, 0);
    await fh.write(b, 0, 4, offset);
  } finally {
    await fh.close();
  }
}

/** The kernel contract in plain float64 sums (y = x · wᵀ); every call from number `failAt` on rejects. */
const sumKernel = (failAt = Infinity): MatmulKernel & { calls: number } => ({
  name: 'sums',
  calls: 0,
  async matmulT(x, w, n, k, m) {
    if (++this.calls >= failAt) throw new Error(`kernel call ${this.calls} failed`);
    const y = new Float32Array(n * m);
    for (let i = 0; i < n; i++) for (let o = 0; o < m; o++) {
      let s = 0;
      for (let j = 0; j < k; j++) s += x[i * k + j]! * w[o * k + j]!;
      y[i * m + o] = s;
    }
    return y;
  },
});

let dir: string;
beforeAll(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-stream-verify-'));
});
afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

describeWithFixtures('streaming verify on stories260K', STORIES_FIXTURES, () => {
  let base: string;
  let batch: TokenBatch;
  beforeAll(async () => {
    base = path.join(dir, 'stories');
    await convertLlama2c(fixturePath(...STORIES260K_BIN), base);
    const tokens = fs.readFileSync(fixturePath(...STORIES260K_GOLDEN, 'tokens.txt'), 'utf8').split(/\s+/).filter(Boolean).map(Number);
    batch = { ids: Int32Array.from(tokens), batchSize: 1, seqLen: tokens.length };
  });

  it('the base forward pass matches the llama2.c golden logits', async () => {
    // golden: logits.f32 from llama2.c run.c on tokens.txt (see /work/shared/golden/stories260K)
    expect(relL2(await forwardOf(base, batch), readF32(fixturePath(...STORIES260K_GOLDEN, 'logits.f32')))).toBeLessThanOrEqual(1e-4);
  });

  it('a correct zero-output expansion: pre-check clean, every hidden state and logit identical (Δ = 0)', async () => {
    const ck = await HfCheckpoint.open(base);
    const plan = interleavedStrategy.plan(ck.config, { groups: 5 });
    await ck.close();
    const out = path.join(dir, 'stories-x');
    const r = await expandModel({ input: base, output: out, plan, initializer: zeroOutputInitializer, verify: {} });
    expect((await readExpansionManifest(out)).verification).toMatchObject({ backend: 'stream', maxAbsDiff: 0, identical: true, mode: 'identity' });
    expect(r.verification?.maxAbsDiff).toBe(0);
    const v = await verifyStreaming(base, out, plan, batch);
    expect(v.precheck).toEqual({ copiesIdentical: true, newOutputsZero: true, differing: [], nonZero: [] });
    expect(v.maxAbsDiff).toBe(0);
    expect(v.layerMaxAbsDiff).toEqual(new Array(plan.newLayerCount).fill(0));
    expect(v.firstDifferingLayer).toBeNull();
    // one pass of the expanded model proved it; its logits are, bit for bit, those of a real base pass
    expect(v.method).toBe('proof');
    expect(v.configDiffers).toBeNull();
    expect(maxAbsDiff(v.baseLogits, { data: await forwardOf(base, batch), batchSize: 1, seqLen: batch.seqLen, vocabSize: v.baseLogits.vocabSize })).toBe(0);
  });

  it('an inserted block with zero outputs but an infinite q_proj weight is not the identity: no proof, the comparison finds it (Δ = ∞)', async () => {
    const ck = await HfCheckpoint.open(base);
    const plan = interleavedStrategy.plan(ck.config, { groups: 5 });
    await ck.close();
    const out = path.join(dir, 'stories-inf');
    await expandModel({ input: base, output: out, plan, initializer: zeroOutputInitializer });
    const j = plan.newLayers[2]!;
    await setF32(out, `model.layers.${j}.self_attn.q_proj.weight`, Infinity);
    const v = await verifyStreaming(base, out, plan, batch);
    // the byte pre-check passes (new blocks are not compared, their outputs are zero) ...
    expect(v.precheck).toEqual({ copiesIdentical: true, newOutputsZero: true, differing: [], nonZero: [] });
    // ... but 0 · NaN is NaN: the block's output is not its input, so the models are compared
    expect(v.method).toBe('comparison');
    expect(v.firstDifferingLayer).toBe(j);
    expect(v.maxAbsDiff).toBe(Infinity);
    // the default probe batch too (an identity-mode --verify refuses any Δ ≠ 0)
    expect((await verifyStreaming(base, out, plan)).maxAbsDiff).toBe(Infinity);
  });

  it('a config that differs beyond the layer count (rms_norm_eps) is named and no proof is claimed', async () => {
    const ck = await HfCheckpoint.open(base);
    const plan = interleavedStrategy.plan(ck.config, { groups: 5 });
    await ck.close();
    const out = path.join(dir, 'stories-eps');
    await expandModel({ input: base, output: out, plan, initializer: zeroOutputInitializer });
    const cfgFile = path.join(out, 'config.json');
    const cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8')) as Record<string, unknown>;
    fs.writeFileSync(cfgFile, JSON.stringify({ ...cfg, rms_norm_eps: 0.5 }));
    const v = await verifyStreaming(base, out, plan, batch);
    expect(v.precheck.copiesIdentical).toBe(true);
    expect(v.configDiffers).toBe('rmsNormEps');
    expect(v.method).toBe('comparison');
    expect(v.maxAbsDiff).toBeGreaterThan(0);
    expect(v.firstDifferingLayer).toBe(0);
  });

  it('copy initializer: non-zero o_proj in the new block is found (pre-check, hidden state at that block, Δlogit > 0) and identity mode refuses', async () => {
    const ck = await HfCheckpoint.open(base);
    const plan = topStrategy.plan(ck.config, { blocks: 1 });
    await ck.close();
    const out = path.join(dir, 'stories-copy');
    const err = await expandModel({ input: base, output: out, plan, initializer: copyInitializer, verify: {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IdentityError);
    expect((err as Error).message).toMatch(/^identity check failed: max \|Δlogit\| = \S+ on stream \(cpu\); hidden states first differ after layer 5; inserted-block output projections not zero: model\.layers\.5\.self_attn\.o_proj\.weight, model\.layers\.5\.mlp\.down_proj\.weight; .*nothing was written/);
    expect(fs.existsSync(out)).toBe(false);
    const r = await expandModel({ input: base, output: out, plan, initializer: copyInitializer, verify: { mode: 'report' } });
    expect(r.verification!.maxAbsDiff).toBeGreaterThan(0);
    const v = await verifyStreaming(base, out, plan, batch);
    expect(v.maxAbsDiff).toBeGreaterThan(0);
    expect(v.precheck.copiesIdentical).toBe(true);
    expect(v.precheck.newOutputsZero).toBe(false);
    expect(v.firstDifferingLayer).toBe(5);
    expect(v.method).toBe('comparison');
  });

  it('an original tensor one ulp off is found by the pre-check and by the forward pass', async () => {
    const ck = await HfCheckpoint.open(base);
    const plan = interleavedStrategy.plan(ck.config, { groups: 5 });
    await ck.close();
    const out = path.join(dir, 'stories-ulp');
    await expandModel({ input: base, output: out, plan, initializer: zeroOutputInitializer });
    // original block 2 sits at expanded index plan.originalToNew[2]; its attention norm weight, element 0
    const j = plan.originalToNew[2]!;
    const name = `model.layers.${j}.input_layernorm.weight`;
    await bumpOneUlp(out, name);
    const v = await verifyStreaming(base, out, plan, batch);
    expect(v.precheck.copiesIdentical).toBe(false);
    expect(v.precheck.differing).toEqual([name]);
    expect(v.firstDifferingLayer).toBe(j);
    expect(v.maxAbsDiff).toBeGreaterThan(0);
  });
});

describeWithFixtures('streaming verify through a MatmulKernel', STORIES_FIXTURES, () => {
  let base: string;
  beforeAll(async () => {
    base = path.join(dir, 'stories-kernel');
    await convertLlama2c(fixturePath(...STORIES260K_BIN), base);
  });

  it('a pass on a kernel gives the same logits as the plain pass (same float64 sums, in order) and the llama2.c golden logits', async () => {
    const tokens = fs.readFileSync(fixturePath(...STORIES260K_GOLDEN, 'tokens.txt'), 'utf8').split(/\s+/).filter(Boolean).map(Number);
    const batch = { ids: Int32Array.from(tokens), batchSize: 1, seqLen: tokens.length };
    const ck = await HfCheckpoint.open(base);
    try {
      const k = sumKernel();
      const r = await streamForwardWith(ck, batch, k);
      // 5 layers x 7 projections + the head, one chunk each at this size
      expect(k.calls).toBe(5 * 7 + 1);
      expect(r.hidden).toHaveLength(6);
      expect(maxAbsDiff(r.logits, streamForward(ck, batch).logits)).toBe(0);
      expect(relL2(r.logits.data, readF32(fixturePath(...STORIES260K_GOLDEN, 'logits.f32')))).toBeLessThanOrEqual(1e-4);
    } finally {
      await ck.close();
    }
  });

  it('weights larger than a kernel chunk (a 4.4 MB head: 2 chunks, the last partial; q/k/v biases) give the plain pass\'s logits bit for bit', async () => {
    const big = path.join(dir, 'big-head');
    // 17000 x 64 float32 = 4.4 MB head: chunks of 4 MB raw (16384 rows), the last one partial
    await writeRandomCheckpoint(big, tinyRawConfig({ layers: 2, vocab: 17000, hiddenSize: 64, attentionBias: true, architecture: 'Qwen2ForCausalLM' }), { seed: 5 });
    const ck = await HfCheckpoint.open(big);
    try {
      const b = { ids: Int32Array.from([5, 16999, 17, 16384, 3]), batchSize: 1, seqLen: 5 };
      const k = sumKernel();
      const r = await streamForwardWith(ck, b, k);
      expect(k.calls).toBe(2 * 7 + 2);
      expect(maxAbsDiff(r.logits, streamForward(ck, b).logits)).toBe(0);
    } finally {
      await ck.close();
    }
  });

  it('a kernel failure rejects the pass with that error (later calls fail too: every branch is handled)', async () => {
    const ck = await HfCheckpoint.open(base);
    try {
      const b = { ids: Int32Array.from([1, 2, 3]), batchSize: 1, seqLen: 3 };
      const seen: unknown[] = [];
      const onUnhandled = (e: unknown) => seen.push(e);
      process.on('unhandledRejection', onUnhandled);
      try {
        // call 8 is layer 1's q projection; its k and v (calls 9, 10) fail as well
        await expect(streamForwardWith(ck, b, sumKernel(8))).rejects.toThrow(/^kernel call (8|9|10) failed$/);
        await new Promise((r) => setTimeout(r, 50));
      } finally {
        process.off('unhandledRejection', onUnhandled);
      }
      expect(seen).toEqual([]);
    } finally {
      await ck.close();
    }
  });

  it('on a kernel the pre-check rides on the pass (bytes compared as read): same findings as the separate pre-check, for weights the pass reads and for the embedding it reads only rows of', async () => {
    const ck = await HfCheckpoint.open(base);
    const plan = interleavedStrategy.plan(ck.config, { groups: 5 });
    const top = topStrategy.plan(ck.config, { blocks: 1 });
    await ck.close();
    const cases: [string, ExpansionPlan, (out: string) => Promise<void>, Partial<StreamVerifyResult['precheck']>][] = [
      ['norm weight one ulp off', plan, (out) => bumpOneUlp(out, `model.layers.${plan.originalToNew[3]}.post_attention_layernorm.weight`), { copiesIdentical: false, differing: [`model.layers.${plan.originalToNew[3]}.post_attention_layernorm.weight`] }],
      ['down_proj one ulp off', plan, (out) => bumpOneUlp(out, `model.layers.${plan.originalToNew[0]}.mlp.down_proj.weight`), { copiesIdentical: false, differing: [`model.layers.${plan.originalToNew[0]}.mlp.down_proj.weight`] }],
      ['embedding one ulp off', plan, (out) => bumpOneUlp(out, 'model.embed_tokens.weight'), { copiesIdentical: false, differing: ['model.embed_tokens.weight'] }],
      ['new block o_proj not zero', plan, (out) => setF32(out, `model.layers.${plan.newLayers[1]}.self_attn.o_proj.weight`, 0.5), { newOutputsZero: false, nonZero: [`model.layers.${plan.newLayers[1]}.self_attn.o_proj.weight`] }],
      ['copy initializer', top, async () => undefined, { copiesIdentical: true, newOutputsZero: false, nonZero: ['model.layers.5.self_attn.o_proj.weight', 'model.layers.5.mlp.down_proj.weight'] }],
    ];
    for (const [what, p, corrupt, want] of cases) {
      const out = path.join(dir, `stories-fused-${what.replace(/\W+/g, '-')}`);
      await expandModel({ input: base, output: out, plan: p, initializer: what === 'copy initializer' ? copyInitializer : zeroOutputInitializer });
      await corrupt(out);
      const v = await verifyStreaming(base, out, p, undefined, undefined, { kernel: sumKernel() });
      const b = await HfCheckpoint.open(base);
      const x = await HfCheckpoint.open(out);
      const separate = precheckExpansion(b, x, p);
      await x.close();
      await b.close();
      expect([what, v.precheck]).toEqual([what, separate]);
      expect([what, v.precheck]).toEqual([what, expect.objectContaining(want)]);
      // no proof; the comparison measures (a one-ulp down_proj change may not reach the float32 logits at all:
      // the byte check is what refuses it)
      expect([what, v.method]).toEqual([what, 'comparison']);
    }
  });

  it('verifyStreaming on a kernel: proof for a correct expansion, the kernel named in the result', async () => {
    const ck = await HfCheckpoint.open(base);
    const plan = interleavedStrategy.plan(ck.config, { groups: 5 });
    await ck.close();
    const out = path.join(dir, 'stories-kernel-x');
    await expandModel({ input: base, output: out, plan, initializer: zeroOutputInitializer });
    const v = await verifyStreaming(base, out, plan, undefined, undefined, { kernel: sumKernel() });
    expect(v).toMatchObject({ method: 'proof', kernel: 'sums', maxAbsDiff: 0, firstDifferingLayer: null });
  });
});

describeWithFixtures('streaming verify on hf-conformance qwen2-sliding-mixed-bf16 (windows, biases, tied head)', [[...QWEN, 'config.json']], () => {
  const base = fixturePath(...QWEN);
  let batch: TokenBatch;
  beforeAll(() => {
    const ids = JSON.parse(fs.readFileSync(path.join(base, 'reference', 'input_ids.json'), 'utf8')) as number[];
    batch = { ids: Int32Array.from(ids), batchSize: 1, seqLen: ids.length };
  });

  it('the base forward pass matches transformers (reference/logits.f32)', async () => {
    expect(relL2(await forwardOf(base, batch), readF32(path.join(base, 'reference', 'logits.f32')))).toBeLessThanOrEqual(1e-4);
  });

  it('a correct expansion across full and sliding layers verifies with Δ = 0', async () => {
    const ck = await HfCheckpoint.open(base);
    const plan = positionsStrategy.plan(ck.config, { at: '1,4', from: '0,2' });
    await ck.close();
    const out = path.join(dir, 'qwen-x');
    await expandModel({ input: base, output: out, plan, initializer: zeroOutputInitializer, verify: { tokens: batch } });
    const v = await verifyStreaming(base, out, plan, batch);
    expect(v.precheck).toEqual({ copiesIdentical: true, newOutputsZero: true, differing: [], nonZero: [] });
    expect(v.maxAbsDiff).toBe(0);
    expect(v.firstDifferingLayer).toBeNull();
    expect(v.method).toBe('proof');
    expect(maxAbsDiff(v.baseLogits, { data: await forwardOf(base, batch), batchSize: 1, seqLen: batch.seqLen, vocabSize: v.baseLogits.vocabSize })).toBe(0);
    // on a kernel (pre-check riding on the pass; the tied head reads the embedding whole): the same
    const k = await verifyStreaming(base, out, plan, batch, undefined, { kernel: sumKernel() });
    expect(k).toMatchObject({ method: 'proof', maxAbsDiff: 0, precheck: v.precheck });
    expect(maxAbsDiff(k.baseLogits, v.baseLogits)).toBe(0);
  });
});
