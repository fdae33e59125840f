/**
 * Reading a ../shared/hf-conformance case's transformers outputs (reference/: input_ids.json, logits.f32
 * [96, 320] float32 little-endian, greedy.json) and greedy decoding through a model's KV-cache session, as
 * the conformance tests compare them.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { CausalLM } from '@llama-pro/core';

export interface Reference {
  ids: number[];
  logits: Float32Array;
  prompt: number[];
  tokens: number[];
}

/** The reference/ outputs of the case folder `dir`. */
export async function readReference(dir: string): Promise<Reference> {
  const ref = path.join(dir, 'reference');
  const ids = JSON.parse(await fsp.readFile(path.join(ref, 'input_ids.json'), 'utf8')) as number[];
  const buf = await fsp.readFile(path.join(ref, 'logits.f32'));
  const logits = new Float32Array(buf.byteLength / 4);
  for (let i = 0; i < logits.length; i++) logits[i] = buf.readFloatLE(i * 4);
  const greedy = JSON.parse(await fsp.readFile(path.join(ref, 'greedy.json'), 'utf8')) as { prompt: number[]; tokens: number[] };
  return { ids, logits, prompt: greedy.prompt, tokens: greedy.tokens };
}

function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

/** `n` greedy tokens after `prompt` (one prefill, then one token per step). */
export async function greedy(model: CausalLM, prompt: readonly number[], n: number): Promise<number[]> {
  const s = model.startSession(1);
  try {
    let logits = await s.step({ ids: Int32Array.from(prompt), batchSize: 1, seqLen: prompt.length });
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const next = argmax(logits);
      out.push(next);
      if (i + 1 < n) logits = await s.step({ ids: Int32Array.of(next), batchSize: 1, seqLen: 1 });
    }
    return out;
  } finally {
    s.dispose();
  }
}
