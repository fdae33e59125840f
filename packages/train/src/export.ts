/**
 * Final export: a complete Hugging Face directory. Trained tensors (LoRA merged) are encoded in the
 * source dtype; every other tensor is copied byte for byte from the input checkpoint (in the kernel where possible), so frozen
 * tensors are identical by construction. A training manifest records the run.
 */
import type { HfCheckpoint, OutputTensor } from '@llama-pro/core';
import * as path from 'node:path';
import { encodeFromFloat32, isFloatDType, pathExists, saveModelDir } from '@llama-pro/core';
import { RunError } from './errors';

export const TRAIN_MANIFEST_FILE = 'llama_pro_train.json';

export type ExportSource = Pick<HfCheckpoint, 'dir' | 'rawConfig' | 'tensorNames' | 'info' | 'fileSource'>;

export interface ExportOptions {
  source: ExportSource;
  outDir: string;
  /** Updated float32 values of trained tensors (model names, LoRA already merged). */
  updated: ReadonlyMap<string, Float32Array>;
  manifest: Record<string, unknown>;
  extraFiles?: Record<string, string | Uint8Array>;
  force?: boolean;
  onProgress?: (done: number, total: number) => void;
}

export async function exportModel(o: ExportOptions): Promise<{ totalBytes: number; files: string[] }> {
  const names = new Set(o.source.tensorNames());
  for (const n of o.updated.keys()) if (!names.has(n)) throw new RunError(`trained tensor "${n}" is not in ${o.source.dir}; cannot export`, 'RUN_EXPORT');
  const tensors: OutputTensor[] = o.source.tensorNames().map((name) => {
    const info = o.source.info(name);
    const v = o.updated.get(name);
    if (!v) return { name, dtype: info.dtype, shape: info.shape, source: o.source.fileSource(name) };
    if (!isFloatDType(info.dtype)) throw new RunError(`trained tensor "${name}" has non-float dtype ${info.dtype}`, 'RUN_EXPORT');
    return { name, dtype: info.dtype, shape: info.shape, source: encodeFromFloat32(v, info.dtype) };
  });
  const r = await saveModelDir(
    o.outDir,
    {
      config: o.source.rawConfig,
      tensors,
      copyAuxFrom: o.source.dir,
      extraFiles: { ...o.extraFiles, [TRAIN_MANIFEST_FILE]: JSON.stringify(o.manifest, null, 2) + '\n' },
      onProgress: o.onProgress,
    },
    // Replaces only an earlier export of a run (it holds the run manifest), never the model it came from.
    { force: o.force, owner: 'train', marker: false, inputs: [o.source.dir], isPreviousOutput: (d) => pathExists(path.join(d, TRAIN_MANIFEST_FILE)) },
  );
  return { totalBytes: r.totalBytes, files: r.shards.map((s) => s.file) };
}
