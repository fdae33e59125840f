/**
 * Training checkpoints: `<run>/checkpoints/step-<8 digits>/` holding `trainable.safetensors` (the
 * trainable tensors or adapters, float32), `optimizer.safetensors` (AdamW moments) and `state.json`
 * (step, optimizer step, RNG, data position). Each directory is built atomically; only the last
 * `keep` survive. Frozen tensors are never written: they come from the model directory on resume.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { type RngState, SafetensorsFile, buildDirAtomic, decodeToFloat32, readJsonFile, recoverTempSiblings, writeJsonAtomic, writeSafetensors } from '@llama-pro/core';
import type { AdamWState } from './optim/adamw';
import type { DataPosition } from './data/loader';
import { RunError } from './errors';

export const CHECKPOINTS_DIR = 'checkpoints';
const STEP_RE = /^step-(\d{8})$/;

export interface CheckpointState {
  format: 'llama-pro.train-checkpoint';
  version: 1;
  step: number;
  optimizerStep: number;
  rng: RngState;
  data: DataPosition;
  tokensSeen: number;
  /** Fingerprints that must match on resume. */
  policy: string;
  dataFingerprint: string;
  slots: string[];
}

export interface CheckpointData {
  dir: string;
  state: CheckpointState;
  values: Map<string, Float32Array>;
  optimizer: AdamWState;
}

function f32Bytes(v: Float32Array): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

export function checkpointDir(runDir: string, step: number): string {
  return path.join(runDir, CHECKPOINTS_DIR, `step-${String(step).padStart(8, '0')}`);
}

export async function saveCheckpoint(
  runDir: string,
  state: CheckpointState,
  values: ReadonlyMap<string, Float32Array>,
  shapes: ReadonlyMap<string, readonly number[]>,
  opt: AdamWState,
  keep: number,
): Promise<string> {
  const dir = checkpointDir(runDir, state.step);
  await fsp.mkdir(path.dirname(dir), { recursive: true });
  await buildDirAtomic(
    dir,
    async (tmp) => {
      const names = state.slots;
      await writeSafetensors(path.join(tmp, 'trainable.safetensors'), names.map((n) => ({ name: n, dtype: 'F32' as const, shape: shapes.get(n)!, data: f32Bytes(values.get(n)!) })));
      const optTensors = names.flatMap((n) => [
        { name: `exp_avg.${n}`, dtype: 'F32' as const, shape: shapes.get(n)!, data: f32Bytes(opt.expAvg.get(n)!) },
        { name: `exp_avg_sq.${n}`, dtype: 'F32' as const, shape: shapes.get(n)!, data: f32Bytes(opt.expAvgSq.get(n)!) },
      ]);
      await writeSafetensors(path.join(tmp, 'optimizer.safetensors'), optTensors);
      await writeJsonAtomic(path.join(tmp, 'state.json'), state);
    },
    // Only an earlier checkpoint of this run is replaced (a resume re-saving a step it had saved).
    { force: true, owner: 'train', marker: false, isPreviousOutput: isCheckpointDir },
  );
  const all = await listCheckpoints(runDir);
  for (const old of all.slice(0, Math.max(0, all.length - keep))) await fsp.rm(old.dir, { recursive: true, force: true });
  return dir;
}

/** Complete checkpoints, oldest first. */
export async function listCheckpoints(runDir: string): Promise<{ step: number; dir: string }[]> {
  const root = path.join(runDir, CHECKPOINTS_DIR);
  let names: string[];
  try {
    names = await fsp.readdir(root);
  } catch {
    return [];
  }
  const out: { step: number; dir: string }[] = [];
  for (const n of names) {
    const m = STEP_RE.exec(n);
    if (m) out.push({ step: Number(m[1]), dir: path.join(root, n) });
  }
  return out.sort((a, b) => a.step - b.step);
}

async function readAll(file: string): Promise<Map<string, Float32Array>> {
  const st = await SafetensorsFile.open(file);
  try {
    const out = new Map<string, Float32Array>();
    for (const n of st.names()) out.set(n, decodeToFloat32(await st.read(n), 'F32'));
    return out;
  } finally {
    await st.close();
  }
}

export async function loadCheckpoint(dir: string): Promise<CheckpointData> {
  let state: CheckpointState;
  try {
    state = JSON.parse(await fsp.readFile(path.join(dir, 'state.json'), 'utf8')) as CheckpointState;
  } catch (e) {
    throw new RunError(`checkpoint ${dir} has no readable state.json (${(e as Error).message}); delete it to resume from an earlier one`, 'RUN_CHECKPOINT');
  }
  if (state.format !== 'llama-pro.train-checkpoint' || state.version !== 1) throw new RunError(`${dir}/state.json is not a llama-pro training checkpoint`, 'RUN_CHECKPOINT');
  const values = await readAll(path.join(dir, 'trainable.safetensors'));
  const moments = await readAll(path.join(dir, 'optimizer.safetensors'));
  const expAvg = new Map<string, Float32Array>();
  const expAvgSq = new Map<string, Float32Array>();
  for (const n of state.slots) {
    const m = moments.get(`exp_avg.${n}`);
    const v = moments.get(`exp_avg_sq.${n}`);
    if (!m || !v) throw new RunError(`${dir}/optimizer.safetensors lacks the moments of "${n}"`, 'RUN_CHECKPOINT');
    expAvg.set(n, m);
    expAvgSq.set(n, v);
  }
  return { dir, state, values, optimizer: { step: state.optimizerStep, expAvg, expAvgSq } };
}

async function isCheckpointDir(dir: string): Promise<boolean> {
  try {
    const s = (await readJsonFile(path.join(dir, 'state.json'), (d, c) => new RunError(d, c))) as { format?: unknown } | null;
    return s?.format === 'llama-pro.train-checkpoint';
  } catch {
    return false;
  }
}

/**
 * The newest checkpoint of a run, or null when there is none. Temporaries of killed runs
 * (`.step-*.tmp-<pid>-*`) are cleaned up first, so a resumed run does not carry them along.
 */
export async function latestCheckpoint(runDir: string): Promise<CheckpointData | null> {
  await recoverTempSiblings(path.join(runDir, CHECKPOINTS_DIR));
  const all = await listCheckpoints(runDir);
  const last = all[all.length - 1];
  return last ? loadCheckpoint(last.dir) : null;
}
