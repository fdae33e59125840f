/**
 * config.json keys that transformers reads differently from what their names suggest, checked on the
 * transformers-saved checkpoints of ../shared/hf-conformance: each case copies a folder, edits config.json in
 * a way transformers 5.18 computes exactly as before, and both backends must still match the folder's own
 * reference (logits to relative L2 <= 1e-4, the 88 greedy tokens exactly).
 * - Bias keys per architecture (modeling_mistral / modeling_qwen2 build their projections with fixed `bias=`):
 *   Mistral has no biases and Qwen2 only q/k/v biases, whatever `attention_bias` / `mlp_bias` say.
 * - `original_max_position_embeddings` at the top level of config.json overrides the one inside the RoPE
 *   dict for llama3 / yarn / longrope (`standardize_rope_params`, which every `_compute_*_parameters`
 *   runs: "give priority to self.original_max_position_embeddings").
 * The expected numbers come only from the reference files (written by transformers for the unedited folder).
 */
import { useMainRealmTypedArrays } from '@llama-pro/backend-onnx/testing';
useMainRealmTypedArrays(); // onnxruntime-node under jest: see the helper's doc

import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HfCheckpoint, normalizeConfig, type ModelBackend } from '@llama-pro/core';
import { describeWithFixtures, fixturePath, relL2 } from '@llama-pro/core/testing';
import { tfjsBackend } from '@llama-pro/backend-tfjs';
import { onnxBackend } from '@llama-pro/backend-onnx';
import { greedy, readReference } from './hf-reference';

type Raw = Record<string, unknown>;

const CASES: [string, string, (c: Raw) => void][] = [
  ['mistral-sliding-bf16', 'Mistral with "attention_bias" and "mlp_bias" true (transformers builds no biases)', (c) => Object.assign(c, { attention_bias: true, mlp_bias: true })],
  ['qwen2-bias-tied-bf16', 'Qwen2 with "attention_bias" and "mlp_bias" true (q/k/v biases only)', (c) => Object.assign(c, { attention_bias: true, mlp_bias: true })],
  [
    'llama-yarn-bf16',
    'yarn: top-level original_max_position_embeddings 32 over the dict\'s 128',
    (c) => {
      (c['rope_parameters'] as Raw)['original_max_position_embeddings'] = 128;
      c['original_max_position_embeddings'] = 32;
    },
  ],
  [
    'llama3-scaling-v4config-fp16',
    'llama3 (4.x keys): top-level original_max_position_embeddings 32 over rope_scaling\'s 512',
    (c) => {
      (c['rope_scaling'] as Raw)['original_max_position_embeddings'] = 512;
      c['original_max_position_embeddings'] = 32;
    },
  ],
];

const BACKENDS: [string, ModelBackend, Record<string, unknown>][] = [
  ['tfjs', tfjsBackend, { variant: 'cpu' }],
  ['onnx', onnxBackend, {}],
];

describeWithFixtures('config.json keys read as transformers reads them, on edited hf-conformance folders', [['hf-conformance', 'README.md']], () => {
  let tmp: string;
  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-hf-keys-'));
  });
  afterAll(async () => {
    if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
  });

  /** A copy of the case folder (without reference/) whose config.json went through `edit`. */
  async function edited(name: string, edit: (c: Raw) => void): Promise<string> {
    const src = fixturePath('hf-conformance', name);
    const dir = path.join(tmp, name);
    await fsp.mkdir(dir, { recursive: true });
    for (const f of await fsp.readdir(src)) if (f !== 'reference') await fsp.copyFile(path.join(src, f), path.join(dir, f));
    const config = JSON.parse(await fsp.readFile(path.join(src, 'config.json'), 'utf8')) as Raw;
    edit(config);
    await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
    return dir;
  }

  it('the edits reach the parsed config: no Mistral / extra Qwen2 biases, original length 32', async () => {
    const parsed = async (i: number) => normalizeConfig(JSON.parse(await fsp.readFile(path.join(await edited(CASES[i]![0], CASES[i]![2]), 'config.json'), 'utf8')));
    expect(await parsed(0)).toMatchObject({ qkvBias: false, oBias: false, mlpBias: false });
    expect(await parsed(1)).toMatchObject({ qkvBias: true, oBias: false, mlpBias: false });
    expect((await parsed(2)).ropeScaling).toMatchObject({ type: 'yarn', originalMaxPositionEmbeddings: 32 });
    expect((await parsed(3)).ropeScaling).toMatchObject({ type: 'llama3', originalMaxPositionEmbeddings: 32 });
  });

  describe.each(CASES)('%s (%s)', (name, _label, edit) => {
    it.each(BACKENDS)('%s: logits (rel L2 <= 1e-4) and 88 greedy tokens of the unedited reference', async (_b, backend, options) => {
      const ref = await readReference(fixturePath('hf-conformance', name));
      const ck = await HfCheckpoint.open(await edited(name, edit));
      try {
        const model = await backend.load(ck, options);
        try {
          const { data } = await model.forward({ ids: Int32Array.from(ref.ids), batchSize: 1, seqLen: ref.ids.length });
          expect(relL2(data, ref.logits)).toBeLessThanOrEqual(1e-4);
          expect(await greedy(model, ref.prompt, ref.tokens.length)).toEqual(ref.tokens);
        } finally {
          await model.dispose();
        }
      } finally {
        await ck.close();
      }
    });
  });
});
