/**
 * Conformance against Hugging Face transformers on real checkpoint formats: every case folder of
 * ../shared/hf-conformance (tiny checkpoints saved by transformers 5.18 / 4.x-style config.json, with
 * transformers' own float32 eager outputs in reference/, see its README) is run on both backends, before
 * and after `expand --strategy interleaved` (LLaMA Pro identity blocks, so the expected outputs stay
 * transformers' own):
 * - logits for reference/input_ids.json match reference/logits.f32 ([96, 320]) to relative L2 <= 1e-4;
 * - greedy decoding (KV cache) from reference/greedy.json's prompt reproduces its 88 tokens exactly.
 * The expected numbers come only from those reference files (written by transformers).
 */
import { useMainRealmTypedArrays } from '@llama-pro/backend-onnx/testing';
useMainRealmTypedArrays(); // onnxruntime-node under jest: see the helper's doc

import { existsSync, readdirSync, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HfCheckpoint, type ModelBackend } from '@llama-pro/core';
import { describeWithFixtures, fixturePath, relL2 } from '@llama-pro/core/testing';
import { expandModel, interleavedStrategy, zeroOutputInitializer } from '@llama-pro/expand';
import { tfjsBackend } from '@llama-pro/backend-tfjs';
import { onnxBackend } from '@llama-pro/backend-onnx';
import { greedy, readReference } from './hf-reference';

const ROOT = ['hf-conformance'];
const TOLERANCE = 1e-4;

function caseNames(): string[] {
  const dir = fixturePath(...ROOT);
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(path.join(dir, d.name, 'reference', 'logits.f32')))
    .map((d) => d.name)
    .sort();
}

const BACKENDS: [string, ModelBackend, Record<string, unknown>][] = [
  ['tfjs', tfjsBackend, { variant: 'cpu' }],
  ['onnx', onnxBackend, {}],
];

const CASES = caseNames();

describeWithFixtures('hf-conformance: both backends match transformers, before and after expansion', [[...ROOT, 'README.md']], () => {
  let tmp: string;
  const expanded = new Map<string, string>();
  const baseLayers = new Map<string, number>();

  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-hf-conf-'));
  });
  afterAll(async () => {
    if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
  });

  it('finds the case folders', () => {
    expect(CASES.length).toBeGreaterThanOrEqual(11);
  });

  /** The case expanded by interleaved (groups = half the layers: one identity block after every 2). */
  async function expandedDir(name: string): Promise<string> {
    const have = expanded.get(name);
    if (have) return have;
    const input = fixturePath(...ROOT, name);
    const ck = await HfCheckpoint.open(input);
    baseLayers.set(name, ck.config.numHiddenLayers);
    const plan = interleavedStrategy.plan(ck.config, { groups: ck.config.numHiddenLayers / 2 });
    await ck.close();
    const output = path.join(tmp, name);
    await expandModel({ input, output, plan, initializer: zeroOutputInitializer, hashBase: false });
    expanded.set(name, output);
    return output;
  }

  describe.each(CASES)('%s', (name) => {
    describe.each(['base', 'interleaved'])('%s', (variant) => {
      it.each(BACKENDS)('%s: logits (rel L2 <= 1e-4) and 88 greedy tokens', async (_label, backend, options) => {
        const ref = await readReference(fixturePath(...ROOT, name));
        const dir = variant === 'base' ? fixturePath(...ROOT, name) : await expandedDir(name);
        const ck = await HfCheckpoint.open(dir);
        const model = await backend.load(ck, options);
        try {
          // interleaved with groups = L/2: one identity block after every two layers.
          if (variant === 'interleaved') expect(model.config.numHiddenLayers).toBe((baseLayers.get(name)! * 3) / 2);
          const { data } = await model.forward({ ids: Int32Array.from(ref.ids), batchSize: 1, seqLen: ref.ids.length });
          expect(data.length).toBe(ref.logits.length);
          expect(relL2(data, ref.logits)).toBeLessThanOrEqual(TOLERANCE);
          expect(await greedy(model, ref.prompt, ref.tokens.length)).toEqual(ref.tokens);
        } finally {
          await model.dispose();
          await ck.close();
        }
      });
    });
  });
});
