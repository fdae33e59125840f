/** Shared setup for trainer tests: a toy checkpoint, a byte corpus, and runTraining with the toy model. */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { ByteTokenizer, HfCheckpoint, NamedRegistry, layerTensorName, type TextTokenizer } from '@llama-pro/core';
import { BUILTIN_POLICIES, BUILTIN_SCHEDULES, parseExperiment, runTraining, type ExperimentInput, type RunSummary, type MetricsRecord } from '../../src';
import { loadToyLM, writeToyCheckpoint } from '../../src/testing';

export const TOY = { vocab: 300, dim: 6, layers: 4, seed: 11, zeroLayers: [1, 3] };
export const NEW_LAYERS = [1, 3];
export const NEW_TENSORS = NEW_LAYERS.flatMap((i) => [layerTensorName(i, 'input_layernorm.weight'), layerTensorName(i, 'self_attn.o_proj.weight')]);

export async function makeToyInputs(dir: string): Promise<{ modelDir: string; dataDir: string }> {
  const modelDir = path.join(dir, 'model');
  const dataDir = path.join(dir, 'corpus');
  await writeToyCheckpoint(modelDir, TOY);
  await fsp.mkdir(dataDir, { recursive: true });
  const lines: string[] = [];
  for (let i = 0; i < 120; i++) lines.push(`${i % 7} + ${i % 5} = ${(i % 7) + (i % 5)}; so the answer is ${(i % 7) + (i % 5)}.`);
  await fsp.writeFile(path.join(dataDir, 'math.txt'), lines.join('\n'));
  await fsp.writeFile(path.join(dir, 'general.txt'), 'Once upon a time there was a cat.\nThe cat liked to sleep in the sun.\nOne day it met a dog.\n');
  return { modelDir, dataDir };
}

export async function toyRun(
  modelDir: string,
  dataDir: string,
  out: string,
  exp: ExperimentInput,
  o: { resume?: boolean; signal?: AbortSignal; onStep?: (r: MetricsRecord) => void | Promise<void>; slowAfter?: number; noManifest?: boolean; tokenizer?: TextTokenizer; allowBackendChange?: boolean; resident?: boolean } = {},
): Promise<RunSummary> {
  const ckpt = await HfCheckpoint.open(modelDir, { validate: false });
  try {
    const model = await loadToyLM(ckpt);
    if (o.slowAfter !== undefined) {
      // Test hook for the kill test: slow steps after a point so the parent can kill mid-run.
      const inner = model.lossAndGradients.bind(model);
      let calls = 0;
      model.lossAndGradients = async (b, t) => {
        if (++calls > o.slowAfter!) await new Promise((r) => setTimeout(r, 300));
        return inner(b, t);
      };
    }
    if (o.resident) {
      // The zero-copy capability onnx offers, on the toy: its own arrays, changed in place, then announced.
      const arrays = new Map<string, Float32Array>();
      model.residentParameter = async (n) => {
        let a = arrays.get(n);
        if (!a) arrays.set(n, (a = await model.getParameter(n)));
        return a;
      };
      model.parametersChanged = (names) => {
        for (const n of names) void model.setParameter(n, arrays.get(n)!); // synchronous inside
      };
    }
    return await runTraining({
      experiment: parseExperiment({ ...exp, out, data: { textSplit: 'line', ...exp.data, path: dataDir } }),
      model,
      source: ckpt,
      tokenizer: o.tokenizer ?? new ByteTokenizer(TOY.vocab),
      policies: new NamedRegistry('freeze policy', BUILTIN_POLICIES),
      schedules: new NamedRegistry('schedule', BUILTIN_SCHEDULES),
      manifest: o.noManifest ? undefined : { trainable: NEW_TENSORS, newLayers: NEW_LAYERS },
      resume: o.resume,
      allowBackendChange: o.allowBackendChange,
      signal: o.signal,
      onStep: o.onStep,
    });
  } finally {
    await ckpt.close();
  }
}

export const RESUME_EXP: ExperimentInput = {
  backend: 'toy',
  steps: 20,
  batchSize: 2,
  gradAccum: 2,
  seqLen: 16,
  seed: 5,
  optimizer: { lr: 5e-2 },
  eval: { interval: 5, batches: 2 },
  checkpoint: { interval: 5, keep: 2 },
  data: { valFraction: 0.1 },
};
