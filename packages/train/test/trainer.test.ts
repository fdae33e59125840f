jest.setTimeout(120_000);
import { spawn } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HfCheckpoint, Rng, SafetensorsFile } from '@llama-pro/core';
import { AdamW, BatchStream, ParameterSet, SequenceFile, Trainer, constantSchedule, checkpointDir, listCheckpoints, readMetrics, prepareData, TRAIN_TOKENS } from '../src';
import { ByteTokenizer } from '@llama-pro/core';
import { ToyLM, toyValues } from '../src/testing';
import { NEW_TENSORS, RESUME_EXP, TOY, makeToyInputs, toyRun } from './support/toy-run';

let tmp: string;
let modelDir: string;
let dataDir: string;
beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'train-loop-'));
  ({ modelDir, dataDir } = await makeToyInputs(tmp));
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

async function tensorBytes(dir: string): Promise<Map<string, Buffer>> {
  const st = await SafetensorsFile.open(path.join(dir, 'model.safetensors'));
  try {
    const out = new Map<string, Buffer>();
    for (const n of st.names()) out.set(n, await st.read(n));
    return out;
  } finally {
    await st.close();
  }
}

const lossLog = (m: { step: number; loss?: number; val_loss?: number; lr?: number; grad_norm?: number }[]) => m.map((r) => [r.step, r.loss, r.val_loss, r.lr, r.grad_norm]);

describe('trainer (toy model)', () => {
  it('new-blocks: frozen tensors byte-identical, new-block tensors changed, validation loss falls', async () => {
    const out = path.join(tmp, 'run-nb');
    const s = await toyRun(modelDir, dataDir, out, { ...RESUME_EXP, steps: 30, checkpoint: { interval: 10, keep: 2 }, eval: { interval: 5, batches: 2, general: path.join(tmp, 'general.txt') } });
    expect(s.finishReason).toBe('completed');
    expect(s.step).toBe(30);
    expect(s.finalValLoss!).toBeLessThan(s.initialValLoss!);
    const before = await tensorBytes(modelDir);
    const after = await tensorBytes(s.exportDir!);
    expect([...after.keys()]).toEqual([...before.keys()]);
    for (const [name, bytes] of before) {
      if (NEW_TENSORS.includes(name)) expect(after.get(name)!.equals(bytes)).toBe(false);
      else expect(after.get(name)!.equals(bytes)).toBe(true);
    }
    // Checkpoints: only the last `keep` remain; they hold only trainable tensors.
    expect((await listCheckpoints(out)).map((c) => c.step)).toEqual([20, 30]);
    const ck = await SafetensorsFile.open(path.join(checkpointDir(out, 30), 'trainable.safetensors'));
    expect(ck.names().sort()).toEqual([...NEW_TENSORS].sort());
    await ck.close();
    const metrics = await readMetrics(out);
    expect(metrics[0]).toEqual({ step: 0, val_loss: s.initialValLoss, general_loss: s.initialGeneralLoss });
    expect(metrics.filter((m) => m.general_loss !== undefined).map((m) => m.step)).toEqual([0, 5, 10, 15, 20, 25, 30]);
    expect(Number.isFinite(s.initialGeneralLoss) && Number.isFinite(s.finalGeneralLoss)).toBe(true);
    expect(s.finalGeneralLoss).not.toBe(s.initialGeneralLoss);
    expect(metrics.filter((m) => m.loss !== undefined)).toHaveLength(30);
    expect(metrics.filter((m) => m.val_loss !== undefined).map((m) => m.step)).toEqual([0, 5, 10, 15, 20, 25, 30]);
    for (const m of metrics.slice(1)) for (const k of ['loss', 'lr', 'grad_norm', 'tokens_per_s'] as const) expect(Number.isFinite(m[k])).toBe(true);
    const manifest = JSON.parse(await fsp.readFile(path.join(s.exportDir!, 'llama_pro_train.json'), 'utf8'));
    expect(manifest.policy.trainable).toEqual(NEW_TENSORS);
    expect(manifest.result.step).toBe(30);
    expect(existsSync(path.join(s.exportDir!, 'config.json'))).toBe(true);
    // A second run into the same directory needs --resume.
    await expect(toyRun(modelDir, dataDir, out, RESUME_EXP)).rejects.toThrow(/--resume/);
  });

  it('lora and layers policies run through the same path; LoRA export is merged', async () => {
    const lora = await toyRun(modelDir, dataDir, path.join(tmp, 'run-lora'), {
      ...RESUME_EXP,
      steps: 6,
      policy: { name: 'lora', lora: { rank: 2, alpha: 4, targets: ['self_attn.o_proj'], layers: { indices: [0, 2] } } },
    });
    const before = await tensorBytes(modelDir);
    const after = await tensorBytes(lora.exportDir!);
    const adapted = ['model.layers.0.self_attn.o_proj.weight', 'model.layers.2.self_attn.o_proj.weight'];
    for (const [name, bytes] of before) expect(after.get(name)!.equals(bytes)).toBe(!adapted.includes(name));
    const layers = await toyRun(modelDir, dataDir, path.join(tmp, 'run-layers'), { ...RESUME_EXP, steps: 4, policy: { name: 'layers', layers: { top: 1 } } });
    const afterL = await tensorBytes(layers.exportDir!);
    for (const [name, bytes] of before) expect(afterL.get(name)!.equals(bytes)).toBe(!name.startsWith('model.layers.3.'));
  });

  it('gradient accumulation: 1 × batch 4 equals 2 × batch 2 on the same sequences', async () => {
    const d = await prepareData(path.join(tmp, 'acc-data'), { path: dataDir, format: 'auto', glob: '**/*', textSplit: 'line', field: 'text', idsDtype: 'int32', valFraction: 0, bos: true }, new ByteTokenizer(TOY.vocab), 0);
    const results: Float32Array[] = [];
    for (const [bs, acc] of [
      [4, 1],
      [2, 2],
    ] as const) {
      const sf = await SequenceFile.open(path.join(d.dir, TRAIN_TOKENS), 16);
      const model = new ToyLM(TOY, toyValues(TOY));
      const params = await ParameterSet.create(model, { trainable: NEW_TENSORS, lora: [], summary: '' }, new Rng(0));
      const optimizer = new AdamW(params.slots);
      const t = new Trainer({
        model, params, optimizer, schedule: constantSchedule, scheduleParams: { lr: 0.01, minLr: 0, warmupRatio: 0 },
        train: new BatchStream(sf, 1, false), totalSteps: 1, batchSize: bs, gradAccum: acc, clip: 0, evalInterval: 0, evalBatches: 1,
        checkpointInterval: 0, keep: 1, runDir: path.join(tmp, `acc-${bs}`), rng: new Rng(0), policyFingerprint: '', dataFingerprint: '',
      });
      const r = await t.step(0.01);
      expect(r.tokens).toBe(64);
      results.push(Float32Array.from(params.values.get(NEW_TENSORS[1]!)!));
      // Gradients were requested for exactly the trainable tensors, once per micro-batch.
      expect(model.gradientRequests).toEqual(Array.from({ length: acc }, () => NEW_TENSORS));
      await sf.close();
    }
    const [a, b] = results as [Float32Array, Float32Array];
    for (let i = 0; i < a.length; i++) expect(b[i]).toBeCloseTo(a[i]!, 6);
  });

  it('SIGINT-style abort checkpoints and stops; resume finishes the run', async () => {
    const out = path.join(tmp, 'run-abort');
    const ac = new AbortController();
    const s1 = await toyRun(modelDir, dataDir, out, { ...RESUME_EXP, checkpoint: { interval: 0, keep: 2 } }, { signal: ac.signal, onStep: (r) => void (r.step === 7 && ac.abort()) });
    expect(s1.finishReason).toBe('interrupted');
    expect(s1.step).toBe(7);
    expect(s1.exportDir).toBeNull();
    expect((await listCheckpoints(out)).map((c) => c.step)).toEqual([7]);
    const s2 = await toyRun(modelDir, dataDir, out, { ...RESUME_EXP, checkpoint: { interval: 0, keep: 2 } }, { resume: true });
    expect(s2.resumedFrom).toBe(7);
    expect(s2.initialValLoss).toBe(s1.initialValLoss);
    expect(s2.finishReason).toBe('completed');
  });

  it('20 steps straight equal 10 steps + SIGKILL + resume (bitwise tensors, identical loss log)', async () => {
    const straight = await toyRun(modelDir, dataDir, path.join(tmp, 'run-straight'), RESUME_EXP);
    const out = path.join(tmp, 'run-killed');
    const child = spawn(process.execPath, ['-r', path.join(__dirname, 'support/ts-register.js'), path.join(__dirname, 'support/train-child.ts'), tmp, out, '20'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c) => (stderr += c));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const marker = path.join(checkpointDir(out, 10), 'state.json');
    let killed = false;
    for (let i = 0; i < 1200 && !killed; i++) {
      if (existsSync(marker)) {
        child.kill('SIGKILL');
        killed = true;
      } else if (child.exitCode !== null) break;
      else await new Promise((r) => setTimeout(r, 50));
    }
    const code = await exited;
    expect(stderr).toBe('');
    expect(killed).toBe(true);
    expect(code).toBeNull(); // killed by the signal
    expect(existsSync(path.join(out, 'final'))).toBe(false);
    const resumed = await toyRun(modelDir, dataDir, out, RESUME_EXP, { resume: true });
    expect(resumed.resumedFrom).toBeGreaterThanOrEqual(10);
    expect(resumed.step).toBe(20);
    const a = await tensorBytes(straight.exportDir!);
    const b = await tensorBytes(resumed.exportDir!);
    for (const [name, bytes] of a) expect(b.get(name)!.equals(bytes)).toBe(true);
    const ca = await SafetensorsFile.open(path.join(checkpointDir(straight.runDir, 20), 'optimizer.safetensors'));
    const cb = await SafetensorsFile.open(path.join(checkpointDir(out, 20), 'optimizer.safetensors'));
    for (const n of ca.names()) expect((await cb.read(n)).equals(await ca.read(n))).toBe(true);
    await ca.close();
    await cb.close();
    expect(lossLog(await readMetrics(out))).toEqual(lossLog(await readMetrics(straight.runDir)));
    expect(resumed.finalValLoss).toBe(straight.finalValLoss);
  });

  it('stops on a non-finite loss without touching the parameters', async () => {
    const model = new ToyLM(TOY, toyValues(TOY));
    const params = await ParameterSet.create(model, { trainable: NEW_TENSORS, lora: [], summary: '' }, new Rng(0));
    const before = Float32Array.from(params.values.get(NEW_TENSORS[0]!)!);
    model.lossAndGradients = async (_b, t) => ({ loss: NaN, tokens: 1, gradients: new Map(t.map((n) => [n, new Float32Array(model.parameterShape(n).reduce((a, b) => a * b, 1))])) });
    const ids = Int32Array.from({ length: 40 }, (_, i) => 3 + i);
    await fsp.writeFile(path.join(tmp, 'nan.tokens'), Buffer.from(ids.buffer));
    const sf = await SequenceFile.open(path.join(tmp, 'nan.tokens'), 8);
    const t = new Trainer({
      model, params, optimizer: new AdamW(params.slots), schedule: constantSchedule, scheduleParams: { lr: 0.01, minLr: 0, warmupRatio: 0 },
      train: new BatchStream(sf, 1, false), totalSteps: 1, batchSize: 1, gradAccum: 1, clip: 1, evalInterval: 0, evalBatches: 1,
      checkpointInterval: 0, keep: 1, runDir: path.join(tmp, 'nan'), rng: new Rng(0), policyFingerprint: '', dataFingerprint: '',
    });
    await expect(t.step(0.01)).rejects.toThrow(/non-finite loss.*--resume/);
    expect([...params.values.get(NEW_TENSORS[0]!)!]).toEqual([...before]);
    await sf.close();
  });

  it('refuses to resume with a different experiment', async () => {
    const out = path.join(tmp, 'run-mismatch');
    await toyRun(modelDir, dataDir, out, { ...RESUME_EXP, steps: 2 });
    await expect(toyRun(modelDir, dataDir, out, { ...RESUME_EXP, steps: 2, optimizer: { lr: 1 } }, { resume: true })).rejects.toThrow(/differs/);
  });

  it('the resident-parameter path (zero-copy, as onnx offers it) gives the same bytes as the copying path, straight and interrupted + resumed', async () => {
    const copying = await toyRun(modelDir, dataDir, path.join(tmp, 'run-copying'), RESUME_EXP);
    const resident = await toyRun(modelDir, dataDir, path.join(tmp, 'run-resident'), RESUME_EXP, { resident: true });
    const out = path.join(tmp, 'run-resident-resumed');
    const ac = new AbortController();
    const s1 = await toyRun(modelDir, dataDir, out, RESUME_EXP, { resident: true, signal: ac.signal, onStep: (r) => void (r.step >= 7 && ac.abort()) });
    expect(s1).toMatchObject({ finishReason: 'interrupted', step: 7 });
    const resumed = await toyRun(modelDir, dataDir, out, RESUME_EXP, { resident: true, resume: true });
    const a = await tensorBytes(copying.exportDir!);
    for (const dir of [resident.exportDir!, resumed.exportDir!]) {
      const b = await tensorBytes(dir);
      for (const [name, bytes] of a) expect({ name, same: b.get(name)!.equals(bytes) }).toEqual({ name, same: true });
    }
    expect(lossLog(await readMetrics(resident.runDir))).toEqual(lossLog(await readMetrics(copying.runDir)));
    expect(lossLog(await readMetrics(out))).toEqual(lossLog(await readMetrics(copying.runDir)));
  });

  // Issue 18 item 7.
  it('--resume on a directory with no run is refused (not a silent fresh start)', async () => {
    const out = path.join(tmp, 'run-nothing-here');
    await expect(toyRun(modelDir, dataDir, out, { ...RESUME_EXP, steps: 2 }, { resume: true })).rejects.toMatchObject({ code: 'RUN_MISSING', message: expect.stringMatching(/holds no training run.*drop --resume/) });
    expect(existsSync(out)).toBe(false);
    // An empty directory is no run either.
    await fsp.mkdir(out);
    await expect(toyRun(modelDir, dataDir, out, { ...RESUME_EXP, steps: 2 }, { resume: true })).rejects.toMatchObject({ code: 'RUN_MISSING' });
    expect(await fsp.readdir(out)).toEqual([]);
  });

  it('resuming on another backend is refused unless allowed; run.json records every segment\'s backend', async () => {
    const out = path.join(tmp, 'run-backends');
    const exp = { ...RESUME_EXP, steps: 6, checkpoint: { interval: 0, keep: 2 } };
    const ac = new AbortController();
    const s1 = await toyRun(modelDir, dataDir, out, { ...exp, backend: 'toy' }, { signal: ac.signal, onStep: (r) => void (r.step >= 2 && ac.abort()) });
    expect(s1.finishReason).toBe('interrupted');
    // A copy without segments.json stands for a run started before segments were recorded.
    const legacy = path.join(tmp, 'run-backends-legacy');
    await fsp.cp(out, legacy, { recursive: true });
    await fsp.rm(path.join(legacy, 'segments.json'));
    await expect(toyRun(modelDir, dataDir, out, { ...exp, backend: 'other' }, { resume: true })).rejects.toMatchObject({
      code: 'RUN_BACKEND_MISMATCH',
      message: expect.stringMatching(/trained on backend "toy" but this resume would run on "other"; resume with --backend toy, or pass --allow-backend-change/),
    });
    const s2 = await toyRun(modelDir, dataDir, out, { ...exp, backend: 'other' }, { resume: true, allowBackendChange: true });
    expect(s2).toMatchObject({ finishReason: 'completed', step: 6, resumedFrom: s1.step });
    const run = JSON.parse(await fsp.readFile(path.join(out, 'run.json'), 'utf8'));
    expect(run.backends).toEqual(['toy', 'other']);
    expect(run.segments).toMatchObject([
      { fromStep: 0, toStep: s1.step, backend: 'toy', finishReason: 'interrupted' },
      { fromStep: s1.step, toStep: 6, backend: 'other', finishReason: 'completed' },
    ]);
    await toyRun(modelDir, dataDir, legacy, { ...exp, backend: 'other' }, { resume: true, allowBackendChange: true });
    const legacyRun = JSON.parse(await fsp.readFile(path.join(legacy, 'run.json'), 'utf8'));
    expect(legacyRun.backends).toEqual(['toy', 'other']);
    expect(legacyRun.segments[0]).toMatchObject({ fromStep: 0, toStep: s1.step, backend: 'toy', device: 'unknown' });
    // The same backend resumes without the flag.
    await expect(toyRun(modelDir, dataDir, path.join(tmp, 'run-backends'), { ...exp, backend: 'other' }, { resume: true })).resolves.toMatchObject({ step: 6 });
  });

  it('new-blocks without an expansion manifest fails before the corpus is tokenized', async () => {
    const out = path.join(tmp, 'run-no-manifest');
    let encoded = 0;
    const bytes = new ByteTokenizer(TOY.vocab);
    const counting = Object.assign(Object.create(bytes) as ByteTokenizer, { encode: (t: string) => (encoded++, bytes.encode(t)) });
    await expect(toyRun(modelDir, dataDir, out, { ...RESUME_EXP, steps: 2 }, { noManifest: true, tokenizer: counting })).rejects.toThrow(/needs the expansion manifest.*llama-pro expand/);
    expect(encoded).toBe(0);
    expect(existsSync(path.join(out, 'data'))).toBe(false);
    // The counting tokenizer is a working one: with the manifest, the same call tokenizes and trains.
    await expect(toyRun(modelDir, dataDir, out, { ...RESUME_EXP, steps: 1 }, { tokenizer: counting })).resolves.toMatchObject({ step: 1 });
    expect(encoded).toBeGreaterThan(0);
  });

  it('reads HF checkpoints it exports', async () => {
    const c = await HfCheckpoint.open(path.join(tmp, 'run-nb', 'final'), { validate: false });
    expect(c.tensorNames().length).toBe(2 + 2 * TOY.layers + 1);
    await c.close();
  });
});
