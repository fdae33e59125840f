/**
 * The padded-targets contract (core/src/contracts/targets.ts) on both backends: a target counts iff it
 * is not IGNORE_INDEX and its position is real. tokenLogprobs is exactly 0 elsewhere — including
 * targets at padding positions that hold valid token ids — and equals, at counted positions, the
 * log-probability of the same row run alone without padding (log-softmax of that unpadded forward,
 * computed here in float64). Left, right and no padding, with a sliding window and rope scaling, so the
 * position and mask rules are exercised too. tfjs' loss() is the mean over exactly the counted targets.
 */
import { useMainRealmTypedArrays } from '@llama-pro/backend-onnx/testing';
useMainRealmTypedArrays(); // onnxruntime-node under jest: see the helper's doc

import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HfCheckpoint, IGNORE_INDEX, type CausalLM, type TrainableLM, type TrainingBatch } from '@llama-pro/core';
import { tinyRawConfig, writeRandomCheckpoint } from '@llama-pro/core/testing';
import { onnxBackend } from '@llama-pro/backend-onnx';
import { tfjsBackend } from '@llama-pro/backend-tfjs';

const V = 48;
const T = 7;
// Row 0: 3 left pads; row 1: 2 right pads; row 2: none. Padding ids are arbitrary valid tokens.
const MASK = [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1];
const IDS = [5, 5, 5, 11, 7, 30, 2, 9, 14, 3, 40, 22, 5, 5, 17, 8, 1, 44, 6, 12, 33];
// Valid ids at padding positions (must not count), IGNORE_INDEX at some real ones.
const TARGETS = [4, 4, 4, 7, 30, 2, IGNORE_INDEX, 14, 3, 40, 22, 9, 4, 4, 8, IGNORE_INDEX, 44, 6, 12, 33, 1];

function logSoftmax(row: Float32Array, t: number): number {
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v);
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  return row[t]! - max - Math.log(sum);
}

/** Expected tokenLogprobs from each row's real tokens run alone (no padding). */
async function expectedFromUnpadded(model: CausalLM): Promise<Float64Array> {
  const out = new Float64Array(3 * T);
  for (let b = 0; b < 3; b++) {
    const real = [...Array(T).keys()].filter((t) => MASK[b * T + t] === 1);
    const ids = Int32Array.from(real.map((t) => IDS[b * T + t]!));
    const { data } = await model.forward({ ids, batchSize: 1, seqLen: ids.length });
    real.forEach((t, j) => {
      const target = TARGETS[b * T + t]!;
      if (target !== IGNORE_INDEX) out[b * T + t] = logSoftmax(data.subarray(j * V, (j + 1) * V), target);
    });
  }
  return out;
}

describe('padded targets: one contract on tfjs and onnx', () => {
  let dir: string;
  const batch: TrainingBatch = { ids: Int32Array.from(IDS), batchSize: 3, seqLen: T, attentionMask: Uint8Array.from(MASK), targets: Int32Array.from(TARGETS) };
  const results = new Map<string, Float32Array>();

  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-padded-'));
    const raw = tinyRawConfig({ architecture: 'MistralForCausalLM', vocab: V, layers: 2, heads: 4, kvHeads: 2, extra: { sliding_window: 3, rope_scaling: { rope_type: 'linear', factor: 2 } } });
    dir = path.join(dir, 'm');
    await writeRandomCheckpoint(dir, raw, { seed: 11, std: 0.2 });
  });
  afterAll(async () => {
    if (dir) await fsp.rm(path.dirname(dir), { recursive: true, force: true });
  });

  it.each(['tfjs', 'onnx'])('%s: 0 at uncounted positions, the unpadded log-probability at counted ones', async (name) => {
    const ck = await HfCheckpoint.open(dir);
    const model: CausalLM = name === 'tfjs' ? await tfjsBackend.load(ck, { variant: 'cpu' }) : await onnxBackend.load(ck);
    try {
      const lp = await model.tokenLogprobs(batch);
      const want = await expectedFromUnpadded(model);
      let counted = 0;
      for (let i = 0; i < 3 * T; i++) {
        if (MASK[i] === 0 || TARGETS[i] === IGNORE_INDEX) expect(lp[i]).toBe(0);
        else {
          counted++;
          expect(Math.abs(lp[i]! - want[i]!)).toBeLessThan(1e-4);
        }
      }
      expect(counted).toBe(14);
      results.set(name, lp);
      if (name === 'tfjs') {
        const { loss, tokens } = await (model as TrainableLM).loss(batch);
        expect(tokens).toBe(14);
        let s = 0;
        for (let i = 0; i < 3 * T; i++) s -= want[i]!;
        expect(Math.abs(loss - s / 14)).toBeLessThan(1e-4);
      }
    } finally {
      await model.dispose();
      await ck.close();
    }
  });

  it.each(['tfjs', 'onnx'])('%s: batched KV-cache decode of left-padded rows gives each row its unpadded logits (window 3 < length)', async (name) => {
    const ck = await HfCheckpoint.open(dir);
    const model: CausalLM = name === 'tfjs' ? await tfjsBackend.load(ck, { variant: 'cpu' }) : await onnxBackend.load(ck);
    try {
      // Prompts of 2 and 4 tokens, left-padded to 4, then 3 decode steps of one token each.
      const prompts = [[7, 30], [9, 14, 3, 40]];
      const steps = [[11, 12], [21, 22], [31, 32]];
      const s = model.startSession(2);
      const got: Float32Array[] = [await s.step({ ids: Int32Array.of(0, 0, 7, 30, 9, 14, 3, 40), batchSize: 2, seqLen: 4, attentionMask: Uint8Array.of(0, 0, 1, 1, 1, 1, 1, 1) })];
      for (const st of steps) got.push(await s.step({ ids: Int32Array.from(st), batchSize: 2, seqLen: 1 }));
      s.dispose();
      for (let b = 0; b < 2; b++) {
        const row = [...prompts[b]!, ...steps.map((st) => st[b]!)];
        const { data } = await model.forward({ ids: Int32Array.from(row), batchSize: 1, seqLen: row.length });
        got.forEach((logits, i) => {
          const t = prompts[b]!.length - 1 + i;
          const want = data.subarray(t * V, (t + 1) * V);
          const have = logits.subarray(b * V, (b + 1) * V);
          for (let v = 0; v < V; v++) expect(Math.abs(have[v]! - want[v]!)).toBeLessThan(1e-4);
        });
      }
    } finally {
      await model.dispose();
      await ck.close();
    }
  });

  it('both backends give the same tokenLogprobs on the padded batch', () => {
    const a = results.get('tfjs');
    const b = results.get('onnx');
    expect(a && b).toBeTruthy();
    for (let i = 0; i < 3 * T; i++) expect(Math.abs(a![i]! - b![i]!)).toBeLessThan(1e-4);
  });
});
