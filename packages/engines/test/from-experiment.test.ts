import { parseExperiment } from '@llama-pro/train';
import { engineCorpusFromExperiment, engineSettingsFromExperiment, hfSchedulerName } from '@llama-pro/engines';

describe('experiment -> engine settings', () => {
  it('maps optimizer, schedule, batch and accumulation from the experiment file', () => {
    const exp = parseExperiment({ steps: 200, batchSize: 4, gradAccum: 16, seqLen: 2048, seed: 3, optimizer: { lr: 1e-4, clip: 0.5 }, schedule: { name: 'cosine', warmupSteps: 20, minLr: 1e-5 }, checkpoint: { interval: 50 } });
    const s = engineSettingsFromExperiment(exp, 'fp16');
    expect(s).toMatchObject({ learningRate: 1e-4, maxGradNorm: 0.5, warmupRatio: 0.1, batchSize: 4, gradientAccumulation: 16, maxSteps: 200, seqLen: 2048, seed: 3, precision: 'fp16', saveSteps: 50, weightDecay: 0.1, beta2: 0.95 });
    expect(s.minLrRatio).toBeCloseTo(0.1, 12);
    expect(hfSchedulerName(s)).toBe('cosine_with_min_lr');
    expect(hfSchedulerName(engineSettingsFromExperiment(parseExperiment({ schedule: { name: 'constant', warmupRatio: 0 } })))).toBe('constant');
  });

  it('refuses what the engines cannot run', () => {
    expect(() => engineSettingsFromExperiment(parseExperiment({ policy: { name: 'lora' } }))).toThrow(/policy "lora" stays on llama-pro's own trainer/);
    expect(() => engineSettingsFromExperiment(parseExperiment({ schedule: { name: 'wsd' } }))).toThrow(/schedule "wsd" has no equivalent/);
    expect(() => engineCorpusFromExperiment(parseExperiment({ data: { format: 'ids' } }), 'x.bin')).toThrow(/not pre-tokenized ids/);
  });

  it('detects JSONL corpora by extension and keeps the field', () => {
    expect(engineCorpusFromExperiment(parseExperiment({ data: { field: 'body' } }), '/data/c.jsonl')).toEqual({ path: '/data/c.jsonl', format: 'jsonl', field: 'body' });
    expect(engineCorpusFromExperiment(parseExperiment({}), '/data/txt')).toEqual({ path: '/data/txt', format: 'text', field: undefined });
  });
});
