import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HfCheckpoint, convertLlama2c, generate } from '@llama-pro/core';
import { STORIES260K_BIN, STORIES260K_GOLDEN, describeWithFixtures, fixturePath } from '@llama-pro/core/testing';
import { OnnxBackend, type OnnxCausalLM } from '../src';
import { argmax, relL2 } from './reference';

describeWithFixtures('onnx backend on stories260K (llama2.c golden logits)', [STORIES260K_BIN, [...STORIES260K_GOLDEN, 'logits.f32'], [...STORIES260K_GOLDEN, 'tokens.txt']], () => {
  let tmp: string;
  let ckpt: HfCheckpoint;
  let model: OnnxCausalLM;
  let tokens: number[];
  let golden: Float32Array;
  const V = 512;
  const T = 64;

  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'onnx-stories-'));
    await convertLlama2c(fixturePath(...STORIES260K_BIN), path.join(tmp, 'hf'));
    ckpt = await HfCheckpoint.open(path.join(tmp, 'hf'));
    model = await new OnnxBackend().load(ckpt, { threads: 1 });
    tokens = (await fsp.readFile(fixturePath(...STORIES260K_GOLDEN, 'tokens.txt'), 'utf8')).trim().split(/\s+/).map(Number);
    const buf = await fsp.readFile(fixturePath(...STORIES260K_GOLDEN, 'logits.f32'));
    golden = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  });

  afterAll(async () => {
    await model?.dispose();
    await ckpt?.close();
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  it('full forward matches the golden logits (rel L2 <= 1e-4, same argmax at every position)', async () => {
    expect(tokens).toHaveLength(T);
    expect(model.device).toBe('onnx:cpu');
    const out = await model.forward({ ids: Int32Array.from(tokens), batchSize: 1, seqLen: T });
    expect(out.data.length).toBe(T * V);
    expect(relL2(out.data, golden)).toBeLessThanOrEqual(1e-4);
    for (let t = 0; t < T; t++) expect(argmax(out.data, t * V, V)).toBe(argmax(golden, t * V, V));
  });

  it('KV-cache decode (prefill 10, then one token at a time) equals the full forward', async () => {
    const full = await model.forward({ ids: Int32Array.from(tokens), batchSize: 1, seqLen: T });
    const s = model.startSession(1);
    const got = new Float32Array(T * V);
    got.set(await s.step({ ids: Int32Array.from(tokens.slice(0, 10)), batchSize: 1, seqLen: 10 }), 9 * V);
    expect(s.length).toBe(10);
    for (let t = 10; t < T; t++) got.set(await s.step({ ids: Int32Array.of(tokens[t]!), batchSize: 1, seqLen: 1 }), t * V);
    expect(s.length).toBe(T);
    s.dispose();
    const rows = Array.from({ length: T - 9 }, (_, i) => i + 9);
    expect(relL2(got, full.data, V, rows)).toBeLessThanOrEqual(1e-5);
    expect(relL2(got, golden, V, rows)).toBeLessThanOrEqual(1e-4);
  });

  it("greedy generation from BOS reproduces the model's own greedy path (tokens.txt[1..])", async () => {
    const [r] = await generate(model, [[tokens[0]!]], { maxNewTokens: T - 1 });
    expect(r!.tokens).toEqual(tokens.slice(1));
    expect(r!.finishReason).toBe('length');
  });

  it('padded batches: left-padded rows of different lengths match their unpadded forwards', async () => {
    const lens = [64, 40, 17];
    const B = lens.length;
    const ids = new Int32Array(B * T);
    const mask = new Uint8Array(B * T);
    lens.forEach((n, b) => {
      for (let t = 0; t < n; t++) {
        ids[b * T + T - n + t] = tokens[t]!;
        mask[b * T + T - n + t] = 1;
      }
    });
    const out = await model.forward({ ids, batchSize: B, seqLen: T, attentionMask: mask });
    lens.forEach((n, b) => {
      const row = out.data.subarray(b * T * V + (T - n) * V, (b + 1) * T * V);
      expect(relL2(row, golden.subarray(0, n * V))).toBeLessThanOrEqual(1e-4);
    });
    // right padding in a plain forward
    const right = new Int32Array(2 * T);
    const rmask = new Uint8Array(2 * T);
    right.set(tokens, 0);
    rmask.fill(1, 0, T);
    right.set(tokens.slice(0, 30), T);
    rmask.fill(1, T, T + 30);
    const rout = await model.forward({ ids: right, batchSize: 2, seqLen: T, attentionMask: rmask });
    expect(relL2(rout.data.subarray(T * V, T * V + 30 * V), golden.subarray(0, 30 * V))).toBeLessThanOrEqual(1e-4);
  });

  it('batched greedy generation with left padding gives each row its unbatched continuation', async () => {
    const prompts = [tokens.slice(0, 5), tokens.slice(0, 12), [tokens[0]!]];
    const res = await generate(model, prompts, { maxNewTokens: 20 });
    prompts.forEach((p, b) => expect(res[b]!.tokens).toEqual(tokens.slice(p.length, p.length + 20)));
  });

  it('seeded sampling is reproducible and stop sequences / EOS end rows independently', async () => {
    const opts = { maxNewTokens: 30, temperature: 0.9, topK: 40, topP: 0.95, seed: 7 };
    const a = await generate(model, [[1], [1, 461]], opts);
    const b = await generate(model, [[1], [1, 461]], opts);
    expect(a.map((r) => r.tokens)).toEqual(b.map((r) => r.tokens));
    expect(a[0]!.tokens).not.toEqual(tokens.slice(1, 31)); // sampling departs from the greedy path
    // greedy, stop at the first occurrence of [401, 401] (tokens 3..4 of the greedy path), EOS = 13 for the second row
    const [s1, s2] = await generate(model, [[1], tokens.slice(0, 15)], { maxNewTokens: 30, stopTokenSequences: [[401, 401]], eosTokenIds: [13] });
    expect(s1!.finishReason).toBe('stop');
    expect(s1!.tokens).toEqual(tokens.slice(1, 3));
    expect(s2!.finishReason).toBe('eos');
    expect(s2!.tokens).toEqual(tokens.slice(15, 20));
  });

  it('tokenLogprobs are the log-softmax of the golden logits at the targets', async () => {
    const n = 20;
    const targets = Int32Array.from(tokens.slice(1, n + 1));
    targets[3] = -100;
    const lp = await model.tokenLogprobs({ ids: Int32Array.from(tokens.slice(0, n)), batchSize: 1, seqLen: n, targets });
    for (let t = 0; t < n; t++) {
      if (t === 3) {
        expect(lp[t]).toBe(0);
        continue;
      }
      const row = Array.from(golden.subarray(t * V, (t + 1) * V));
      const m = Math.max(...row);
      const lse = m + Math.log(row.reduce((a, x) => a + Math.exp(x - m), 0));
      expect(lp[t]).toBeCloseTo(row[targets[t]!]! - lse, 3);
    }
  });
});
