/**
 * The slot-decode contract (core/src/contracts/slots.ts) on both backends, through core's
 * `startSlotSession` (a backend's native session when it has one, else the per-slot fallback): sequences
 * join and leave while others keep decoding, and after every feed each entry's logits equal those of its
 * whole sequence run alone through `forward` (batch 1, no padding). A sliding window shorter than the
 * sequences, GQA and linear rope scaling make positions, masks and the cache layout matter.
 */
import { useMainRealmTypedArrays } from '@llama-pro/backend-onnx/testing';
useMainRealmTypedArrays(); // onnxruntime-node under jest: see the helper's doc

import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HfCheckpoint, UsageError, startSlotSession, type CausalLM, type SlotFeed } from '@llama-pro/core';
import { SlotSequences, lastLogitsAlone, tinyRawConfig, writeRandomCheckpoint } from '@llama-pro/core/testing';
import { onnxBackend } from '@llama-pro/backend-onnx';
import { tfjsBackend } from '@llama-pro/backend-tfjs';

const V = 48;

function relL2(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

/** A deterministic token stream per sequence id. */
const tok = (seqId: number, i: number) => 3 + ((seqId * 17 + i * 7 + ((i * i) % 5)) % (V - 3));

describe.each([
  ['onnx', () => onnxBackend],
  ['tfjs', () => tfjsBackend],
])('slot sessions on %s', (_name, backendOf) => {
  let tmp: string;
  let model: CausalLM;

  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-slots-'));
    const raw = tinyRawConfig({ architecture: 'MistralForCausalLM', vocab: V, layers: 2, heads: 4, kvHeads: 2, extra: { sliding_window: 5, rope_scaling: { rope_type: 'linear', factor: 2 } } });
    await writeRandomCheckpoint(path.join(tmp, 'm'), raw, { seed: 23, std: 0.2 });
    const ckpt = await HfCheckpoint.open(path.join(tmp, 'm'));
    model = await backendOf().load(ckpt);
    await ckpt.close();
  });
  afterAll(async () => {
    await model?.dispose();
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  it('sequences join and leave a running batch; every feed matches each sequence run alone', async () => {
    const s = startSlotSession(model, 3, { maxLength: 24 });
    const seqs = new SlotSequences(tok);
    const admit = (slot: number, n: number) => seqs.admit(slot, n);
    const extend = (slot: number, n = 1) => seqs.extend(slot, n);
    const check = async (entries: SlotFeed[]) => {
      const out = await s.feed(entries);
      expect(out.length).toBe(entries.length * V);
      for (let i = 0; i < entries.length; i++) {
        const { slot } = entries[i]!;
        const want = await lastLogitsAlone(model, seqs.tokens(slot));
        expect(relL2(out.subarray(i * V, (i + 1) * V), want)).toBeLessThan(1e-4);
        expect(s.length(slot)).toBe(seqs.tokens(slot).length);
      }
    };

    await check([admit(0, 6), admit(2, 2)]); // two prompts of different lengths in one feed; slot 1 stays free
    expect(s.length(1)).toBe(0);
    for (let k = 0; k < 4; k++) await check([extend(0), extend(2)]);
    await check([extend(2), admit(1, 9)]); // a prompt joins while another row decodes
    await check([extend(0), extend(1), extend(2)]);
    s.release(0);
    expect(s.length(0)).toBe(0);
    await check([extend(1), extend(2)]);
    await check([admit(0, 3), extend(1, 2)]); // the freed slot takes a new, shorter sequence; a 2-token extension
    for (let k = 0; k < 3; k++) await check([extend(0), extend(1), extend(2)]);
    s.release(2);
    s.release(2); // releasing a free slot is a no-op
    await check([extend(1)]);
    s.dispose();
  });

  it('refuses bad feeds without changing any slot', async () => {
    const s = startSlotSession(model, 2, { maxLength: 8 });
    await s.feed([{ slot: 0, ids: Int32Array.from([4, 5, 6]) }]);
    const bad: SlotFeed[][] = [
      [],
      [{ slot: 2, ids: Int32Array.from([4]) }],
      [{ slot: 1, ids: new Int32Array(0) }],
      [{ slot: 1, ids: Int32Array.from([4]) }, { slot: 1, ids: Int32Array.from([5]) }],
      [{ slot: 1, ids: Int32Array.from([V]) }],
      [{ slot: 0, ids: Int32Array.from([4, 5, 6, 7, 8, 9]) }], // 3 + 6 > maxLength 8
    ];
    for (const entries of bad) await expect(s.feed(entries)).rejects.toBeInstanceOf(UsageError);
    expect([s.length(0), s.length(1)]).toEqual([3, 0]);
    const out = await s.feed([{ slot: 0, ids: Int32Array.from([7]) }]);
    expect(relL2(out, await lastLogitsAlone(model, [4, 5, 6, 7]))).toBeLessThan(1e-4);
    s.dispose();
    expect(() => startSlotSession(model, 0)).toThrow(UsageError);
    expect(() => startSlotSession(model, 1, { maxLength: model.config.maxPositionEmbeddings + 1 })).toThrow(UsageError);
  });
});
