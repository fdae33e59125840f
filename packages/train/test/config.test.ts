import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { experimentJsonSchema, loadExperimentFile, overrideExperiment, parseExperiment } from '../src';

const SCHEMA_FILE = path.join(__dirname, '..', 'schema', 'experiment.schema.json');

describe('experiment config', () => {
  it('the committed JSON schema is up to date (regenerate: UPDATE_SCHEMA=1 npx jest packages/train/test/config.test.ts)', async () => {
    const current = JSON.stringify(experimentJsonSchema(), null, 2) + '\n';
    if (process.env['UPDATE_SCHEMA'] === '1') await fsp.writeFile(SCHEMA_FILE, current);
    expect(await fsp.readFile(SCHEMA_FILE, 'utf8')).toBe(current);
  });

  it('defaults follow the paper recipe', () => {
    const e = parseExperiment({});
    expect(e.policy.name).toBe('new-blocks');
    // Training defaults to onnx like every other command (issue 15 item 4); tfjs stays selectable.
    expect(e.backend).toBe('onnx');
    expect(parseExperiment({ backend: 'tfjs' }).backend).toBe('tfjs');
    expect(e.optimizer).toEqual({ lr: 2e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clip: 1.0 });
    expect(e.schedule).toEqual({ name: 'cosine', warmupRatio: 0.06, minLr: 0 });
  });

  it('loads YAML, rejects unknown keys, and lets flags override', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'exp-'));
    const f = path.join(dir, 'exp.yaml');
    await fsp.writeFile(f, 'steps: 40\npolicy:\n  name: lora\n  lora:\n    rank: 4\noptimizer:\n  lr: 0.001\n');
    const e = await loadExperimentFile(f);
    expect(e.steps).toBe(40);
    expect(e.policy.lora).toEqual({ rank: 4, alpha: 16, targets: ['self_attn.q_proj', 'self_attn.v_proj'] });
    const o = overrideExperiment(e, { steps: 7, policy: { name: 'full' }, optimizer: { lr: undefined } });
    expect(o.steps).toBe(7);
    expect(o.policy.name).toBe('full');
    expect(o.optimizer.lr).toBe(0.001);
    await fsp.writeFile(f, 'stepz: 3\n');
    await expect(loadExperimentFile(f)).rejects.toThrow(/stepz/);
    await fsp.writeFile(f, 'steps: -1\n');
    await expect(loadExperimentFile(f)).rejects.toThrow(/steps/);
    await fsp.writeFile(f, 'steps: [\n');
    await expect(loadExperimentFile(f)).rejects.toThrow(/not valid YAML/);
    await fsp.rm(dir, { recursive: true, force: true });
  });
});
