/** A deterministic pure-JS causal LM for tests: logits depend on the current and previous real token only. */
import { ByteTokenizer, normalizeConfig, type CausalLM, type DecodeSession, type Logits, type TokenBatch, type TrainingBatch } from '@llama-pro/core';
import { tinyRawConfig } from '@llama-pro/core/testing';

export const VOCAB = 300;

export function fakeLogits(prev: number, cur: number, out: Float32Array, off: number): void {
  for (let v = 0; v < VOCAB; v++) out[off + v] = 3 * Math.sin(cur * 0.37 + v * 0.11 + prev * 0.05) + (v === ((cur * 7 + 3) % VOCAB) ? 2.5 : 0);
}

export function fakeModel(maxPositions = 4096): CausalLM {
  const config = normalizeConfig(tinyRawConfig({ vocab: VOCAB, maxPositions }));
  const rowLogits = (ids: Int32Array, mask: Uint8Array | undefined, b: number, T: number, out: Float32Array, outBase: number): void => {
    let prev = 0;
    for (let t = 0; t < T; t++) {
      if (mask && !mask[b * T + t]) continue;
      const cur = ids[b * T + t]!;
      fakeLogits(prev, cur, out, outBase + t * VOCAB);
      prev = cur;
    }
  };
  return {
    config,
    device: 'fake:js',
    async forward(batch: TokenBatch): Promise<Logits> {
      const { batchSize: B, seqLen: T } = batch;
      const data = new Float32Array(B * T * VOCAB);
      for (let b = 0; b < B; b++) rowLogits(batch.ids, batch.attentionMask, b, T, data, b * T * VOCAB);
      return { data, batchSize: B, seqLen: T, vocabSize: VOCAB };
    },
    async tokenLogprobs(_batch: TrainingBatch): Promise<Float32Array> {
      throw new Error('not used');
    },
    startSession(B: number): DecodeSession {
      const seqs: number[][] = Array.from({ length: B }, () => []);
      let length = 0;
      return {
        get length() {
          return length;
        },
        async step(batch: TokenBatch): Promise<Float32Array> {
          const T = batch.seqLen;
          for (let b = 0; b < B; b++) {
            for (let t = 0; t < T; t++) if (!batch.attentionMask || batch.attentionMask[b * T + t]) seqs[b]!.push(batch.ids[b * T + t]!);
          }
          length += T;
          const out = new Float32Array(B * VOCAB);
          for (let b = 0; b < B; b++) {
            const s = seqs[b]!;
            fakeLogits(s.length >= 2 ? s[s.length - 2]! : 0, s.length ? s[s.length - 1]! : 0, out, b * VOCAB);
          }
          return out;
        },
        dispose() {},
      };
    },
    async dispose() {},
  };
}

export const byteTokenizer = (): ByteTokenizer => new ByteTokenizer(VOCAB);
