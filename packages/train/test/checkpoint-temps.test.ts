/**
 * Issue 16 item 4: a run killed while saving a checkpoint leaves `.step-<n>.tmp-<pid>-<hex>` (up to the
 * size of the trainable tensors and moments); `train --resume` must not carry such dirs along, and a
 * checkpoint save replaces only an earlier checkpoint of the same step.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type CheckpointState, CHECKPOINTS_DIR, checkpointDir, latestCheckpoint, saveCheckpoint } from '../src/checkpoint';

const slots = ['model.layers.1.mlp.up_proj.weight'];
const shapes = new Map([[slots[0]!, [2, 3]]]);
const values = new Map([[slots[0]!, Float32Array.from([1, 2, 3, 4, 5, 6])]]);
const opt = { step: 3, expAvg: new Map([[slots[0]!, new Float32Array(6).fill(0.5)]]), expAvgSq: new Map([[slots[0]!, new Float32Array(6).fill(0.25)]]) };
const state = (step: number): CheckpointState => ({
  format: 'llama-pro.train-checkpoint',
  version: 1,
  step,
  optimizerStep: step,
  rng: [1, 2, 3, 4],
  data: { epoch: 0, cursor: step },
  tokensSeen: step * 8,
  policy: 'p',
  dataFingerprint: 'd',
  slots,
});

let run: string;
beforeAll(async () => {
  run = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-ckpt-temps-'));
});
afterAll(async () => {
  await fsp.rm(run, { recursive: true, force: true });
});

it('resume cleans up the temporaries of a run killed mid-save, and loads the last complete checkpoint', async () => {
  await saveCheckpoint(run, state(10), values, shapes, opt, 2);
  const root = path.join(run, CHECKPOINTS_DIR);
  // What a SIGKILL during the save of step 20 leaves: a half-written temporary of a process now gone
  // (pid 99999999 is above any pid_max, 2^22).
  const leftover = path.join(root, '.step-00000020.tmp-99999999-5eed5eed');
  await fsp.mkdir(leftover);
  await fsp.writeFile(path.join(leftover, 'trainable.safetensors'), Buffer.alloc(1024));
  const ck = await latestCheckpoint(run);
  expect(ck!.state.step).toBe(10);
  expect(await fsp.readdir(root)).toEqual(['step-00000010']);
});

it('re-saving a step replaces only a checkpoint, never another directory', async () => {
  await saveCheckpoint(run, state(30), values, shapes, opt, 5);
  const again = await saveCheckpoint(run, state(30), values, shapes, opt, 5);
  expect(again).toBe(checkpointDir(run, 30));
  const foreign = checkpointDir(run, 40);
  await fsp.mkdir(foreign);
  await fsp.writeFile(path.join(foreign, 'mine.txt'), 'not a checkpoint');
  await expect(saveCheckpoint(run, state(40), values, shapes, opt, 5)).rejects.toThrow(/exists and is not a previous output of `llama-pro train`/);
  expect(await fsp.readdir(foreign)).toEqual(['mine.txt']);
  expect((await fsp.readdir(path.join(run, CHECKPOINTS_DIR))).filter((f) => f.startsWith('.'))).toEqual([]);
});
