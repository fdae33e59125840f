/**
 * Taking a run back from an external engine: the returned checkpoint must keep every frozen tensor
 * byte-identical to the expanded base (same dtype: same bytes; different dtype: same values). Drift is
 * reported per tensor; a clean run is recorded in the output's manifest.
 */
import * as path from 'node:path';
import { CheckpointError, HfCheckpoint, decodeToFloat32, isFloatDType, writeJsonAtomic } from '@llama-pro/core';
import { MANIFEST_FILE, readExpansionManifest } from '@llama-pro/expand';

export interface TensorDrift {
  name: string;
  reason: 'changed' | 'missing' | 'shape';
  maxAbsDiff?: number;
}

export interface ImportReport {
  ok: boolean;
  base: string;
  run: string;
  frozenChecked: number;
  drift: TensorDrift[];
  trainableChanged: string[];
  trainableUnchanged: string[];
  /** Tensors in the run that the base does not have. */
  unexpected: string[];
}

async function sameBytes(a: HfCheckpoint, b: HfCheckpoint, name: string): Promise<boolean> {
  const ia = a.info(name);
  const ib = b.info(name);
  if (ia.dtype !== ib.dtype) {
    if (!isFloatDType(ia.dtype) || !isFloatDType(ib.dtype)) return false;
    const [x, y] = [await a.readFloat32(name), await b.readFloat32(name)];
    return x.every((v, i) => Object.is(v, y[i]));
  }
  const chunk = 1 << 22;
  for (let off = 0; off < ia.byteLength; off += chunk) {
    const n = Math.min(chunk, ia.byteLength - off);
    const [x, y] = await Promise.all([a.shardOf(name).readRange(name, off, n), b.shardOf(name).readRange(name, off, n)]);
    if (!x.equals(y)) return false;
  }
  return true;
}

async function maxAbsDiff(a: HfCheckpoint, b: HfCheckpoint, name: string): Promise<number | undefined> {
  const [ia, ib] = [a.info(name), b.info(name)];
  if (!isFloatDType(ia.dtype) || !isFloatDType(ib.dtype)) return undefined;
  const x = decodeToFloat32(await a.read(name), ia.dtype);
  const y = decodeToFloat32(await b.read(name), ib.dtype);
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  return m;
}

/** Compares `runDir` against the expanded `baseDir`; with `record`, writes the manifest into `runDir` when clean. */
export async function importRun(runDir: string, baseDir: string, options: { engine?: string; record?: boolean } = {}): Promise<ImportReport> {
  const manifest = await readExpansionManifest(baseDir);
  const trainable = new Set(manifest.trainableTensors);
  const base = await HfCheckpoint.open(baseDir);
  let run: HfCheckpoint;
  try {
    run = await HfCheckpoint.open(runDir);
  } catch (e) {
    await base.close();
    throw e;
  }
  try {
    if (run.config.numHiddenLayers !== base.config.numHiddenLayers) {
      throw new CheckpointError(`${runDir} has ${run.config.numHiddenLayers} layers but the expanded base ${baseDir} has ${base.config.numHiddenLayers}; is this the right run?`, 'IMPORT_MISMATCH');
    }
    const report: ImportReport = { ok: true, base: baseDir, run: runDir, frozenChecked: 0, drift: [], trainableChanged: [], trainableUnchanged: [], unexpected: [] };
    const baseNames = new Set(base.parameterNames());
    report.unexpected = run.parameterNames().filter((n) => !baseNames.has(n) && !(n === 'lm_head.weight' && base.config.tieWordEmbeddings));
    for (const name of baseNames) {
      if (!run.has(name)) {
        if (!trainable.has(name)) report.drift.push({ name, reason: 'missing' });
        continue;
      }
      const [sa, sb] = [base.info(name).shape, run.info(name).shape];
      if (sa.length !== sb.length || sa.some((d, i) => d !== sb[i])) {
        report.drift.push({ name, reason: 'shape' });
        continue;
      }
      const same = await sameBytes(base, run, name);
      if (trainable.has(name)) (same ? report.trainableUnchanged : report.trainableChanged).push(name);
      else {
        report.frozenChecked++;
        if (!same) report.drift.push({ name, reason: 'changed', maxAbsDiff: await maxAbsDiff(base, run, name) });
      }
    }
    report.ok = report.drift.length === 0;
    if (report.ok && options.record !== false) {
      await writeJsonAtomic(path.join(runDir, MANIFEST_FILE), {
        ...manifest,
        training: {
          engine: options.engine ?? 'external',
          importedAt: new Date().toISOString(),
          expandedBase: path.resolve(baseDir),
          frozenTensorsVerified: report.frozenChecked,
          trainableChanged: report.trainableChanged.length,
          trainableUnchanged: report.trainableUnchanged.length,
        },
      });
    }
    return report;
  } finally {
    await Promise.all([base.close(), run.close()]);
  }
}
