/**
 * The onnx backend's native decoding over its in-place KV cache: the slot session's batching paths that
 * the shared contract test (cli/test/slot-session.test.ts) does not reach — prompts of similar lengths
 * left-padded into one run, single-token feeds over a span of rows with unfed and free slots in it, a
 * one-token prompt, multi-token extensions, cache growth past its first capacity — and a padded
 * DecodeSession across cache growth. Every result must equal the logits of the whole sequence run alone
 * through `forward` (batch 1, no padding), which tiny-models.test.ts checks against a float64 reference.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HfCheckpoint, startSlotSession, type SlotFeed } from '@llama-pro/core';
import { SlotSequences, lastLogitsAlone, tinyRawConfig, writeRandomCheckpoint } from '@llama-pro/core/testing';
import { OnnxBackend, OnnxSlotSession, type OnnxCausalLM } from '../src';
import { relL2 } from './reference';

const V = 53;
const tok = (seqId: number, i: number) => 3 + ((seqId * 13 + i * 5 + ((i * i) % 7)) % (V - 3));

describe('onnx native slot session and decode session over the in-place cache', () => {
  let tmp: string;
  let ckpt: HfCheckpoint;
  let model: OnnxCausalLM;

  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'onnx-slots-'));
    // GQA 3:1 (head_dim 6), a sliding window shorter than the sequences, llama3 rope scaling
    const raw = tinyRawConfig({
      architecture: 'MistralForCausalLM',
      vocab: V,
      layers: 2,
      hiddenSize: 36,
      heads: 6,
      kvHeads: 2,
      maxPositions: 96,
      extra: { sliding_window: 4, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 32 } },
    });
    await writeRandomCheckpoint(path.join(tmp, 'm'), raw, { seed: 31, std: 0.2 });
    ckpt = await HfCheckpoint.open(path.join(tmp, 'm'));
    model = await new OnnxBackend().load(ckpt, { threads: 1 });
  });
  afterAll(async () => {
    await model?.dispose();
    await ckpt?.close();
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  const alone = (seq: readonly number[]) => lastLogitsAlone(model, seq);

  it('batches prompts, sparse decode rows, one-token prompts and extensions; grows the cache', async () => {
    const s = startSlotSession(model, 5, { maxLength: 60 });
    expect(s).toBeInstanceOf(OnnxSlotSession); // the native session, not core's per-slot fallback
    const seqs = new SlotSequences(tok);
    const admit = (slot: number, n: number) => seqs.admit(slot, n);
    const extend = (slot: number, n = 1) => seqs.extend(slot, n);
    const check = async (entries: SlotFeed[]) => {
      const out = await s.feed(entries);
      expect(out.length).toBe(entries.length * V);
      for (let i = 0; i < entries.length; i++) {
        const tokens = seqs.tokens(entries[i]!.slot);
        expect(relL2(out.subarray(i * V, (i + 1) * V), await alone(tokens))).toBeLessThan(1e-4);
        expect(s.length(entries[i]!.slot)).toBe(tokens.length);
      }
    };
    await check([admit(1, 8), admit(3, 7), admit(4, 9)]); // lengths within a quarter: one left-padded run
    await check([extend(4), extend(1)]); // rows 1..4 with slot 2 free and slot 3 occupied but not fed
    await check([extend(3, 3), extend(1), admit(0, 5), admit(2, 1)]); // extension, decode, prompt, one-token prompt
    for (let k = 0; k < 6; k++) await check([0, 1, 2, 3, 4].map((slot) => extend(slot)));
    s.release(1);
    expect(s.length(1)).toBe(0);
    await check([admit(1, 12), extend(3, 2)]);
    // slot 4 goes from 16 to 40 tokens: past the cache's first capacities (32 positions per step)
    for (let k = 0; k < 24; k++) await check(k % 3 === 0 ? [extend(4), extend(1)] : [extend(4)]);
    s.dispose();
  });

  it('a left-padded DecodeSession matches each row run alone, across cache growth', async () => {
    const B = 2;
    const rows = [Array.from({ length: 27 }, (_, i) => tok(7, i)), Array.from({ length: 30 }, (_, i) => tok(8, i))];
    const T = 30;
    const ids = new Int32Array(B * T);
    const mask = new Uint8Array(B * T);
    rows.forEach((r, b) => {
      ids.set(r, b * T + T - r.length);
      mask.fill(1, b * T + T - r.length, (b + 1) * T);
    });
    const s = model.startSession(B);
    let out = await s.step({ ids, batchSize: B, seqLen: T, attentionMask: mask });
    for (let step = 0; step < 12; step++) {
      for (let b = 0; b < B; b++) expect(relL2(out.subarray(b * V, (b + 1) * V), await alone(rows[b]!))).toBeLessThan(1e-4);
      const next = rows.map((r, b) => tok(9 + b, step + r.length));
      rows.forEach((r, b) => r.push(next[b]!));
      out = await s.step({ ids: Int32Array.from(next), batchSize: B, seqLen: 1 });
    }
    expect(s.length).toBe(T + 12);
    s.dispose();
  });
});
