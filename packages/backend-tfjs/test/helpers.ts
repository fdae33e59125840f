import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HfCheckpoint, convertLlama2c } from '@llama-pro/core';
import { STORIES260K_BIN, STORIES260K_GOLDEN, fixturePath } from '@llama-pro/core/testing';

export const STORIES_FIXTURES = [STORIES260K_BIN, [...STORIES260K_GOLDEN, 'tokens.txt'], [...STORIES260K_GOLDEN, 'logits.f32']];

export async function tmpDir(prefix: string): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), prefix));
}

/** Converts stories260K (llama2.c) into a fresh HF directory and opens it. */
export async function convertedStories(): Promise<{ dir: string; ck: HfCheckpoint }> {
  const dir = path.join(await tmpDir('lp-tfjs-'), 'stories260K');
  await convertLlama2c(fixturePath(...STORIES260K_BIN), dir);
  return { dir, ck: await HfCheckpoint.open(dir) };
}

export async function goldenTokens(): Promise<number[]> {
  const text = await fsp.readFile(fixturePath(...STORIES260K_GOLDEN, 'tokens.txt'), 'utf8');
  return text.split(/\s+/).filter(Boolean).map(Number);
}

export async function goldenLogits(): Promise<Float32Array> {
  const buf = await fsp.readFile(fixturePath(...STORIES260K_GOLDEN, 'logits.f32'));
  const out = new Float32Array(buf.byteLength / 4);
  for (let i = 0; i < out.length; i++) out[i] = buf.readFloatLE(i * 4);
  return out;
}

/** ||a - b|| / ||b|| in float64. */
export { relL2 } from '@llama-pro/core/testing';

export function argmaxRows(x: ArrayLike<number>, rows: number, cols: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let i = 1; i < cols; i++) if (x[r * cols + i]! > x[r * cols + best]!) best = i;
    out.push(best);
  }
  return out;
}
