import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigError, UsageError } from '@llama-pro/core';
import { STUDY_PRESETS, defaultBlockCounts, defaultVariants, readStudyYaml, resolveStudyConfig } from '../src/config';

describe('study config', () => {
  it('mini has interleaved / top / bottom at two block counts, the three baselines, and 3 seeds', () => {
    const c = resolveStudyConfig('mini');
    expect(c.seeds).toBe(3);
    const names = c.variants.map((v) => v.name);
    for (const s of ['interleaved', 'top', 'bottom']) expect(names.filter((n) => n.startsWith(`${s}-`))).toHaveLength(2);
    expect(c.variants.filter((v) => !v.strategy).map((v) => v.policy).sort()).toEqual(['full', 'layers', 'lora']);
    // The layers baseline trains existing layers of the 4-layer base, as many as the 2-block expansions add.
    expect(c.variants.find((v) => v.policy === 'layers')!.layers).toEqual({ every: 2, offset: 1 });
    expect(c.base.model.vocabSize).toBeGreaterThanOrEqual(259);
  });

  it('threads: one per model in mini, the backend default on a given base (paper-shape); must be a positive integer', () => {
    expect(resolveStudyConfig('mini').threads).toBe(1);
    expect(STUDY_PRESETS['paper-shape']!.threads).toBeUndefined();
    expect(resolveStudyConfig('mini', [{ threads: 2 }]).threads).toBe(2);
    expect(() => resolveStudyConfig('mini', [{ threads: 0 }], 's.yaml')).toThrow(/s\.yaml: threads: /);
  });

  it('default block counts keep interleaved groups equal', () => {
    expect(defaultBlockCounts(4)).toEqual([2, 4]);
    expect(defaultBlockCounts(32)).toEqual([2, 4]);
    expect(defaultBlockCounts(6)).toEqual([2, 3]);
    expect(defaultBlockCounts(5)).toEqual([2, 5]);
    const v5 = defaultVariants(5).map((v) => v.name);
    // 2 does not divide 5: no interleaved-2, but top/bottom still compare 2 blocks.
    expect(v5).toEqual(['top-2', 'bottom-2', 'interleaved-5', 'top-5', 'bottom-5', 'full', 'lora', 'layers-2']);
  });

  it('YAML overrides are deep-merged and validated', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'study-config-'));
    try {
      const file = path.join(dir, 's.yaml');
      await fsp.writeFile(file, 'seeds: 5\ntrain:\n  steps: 7\nvariants:\n  - { name: top-1, strategy: top, params: { blocks: 1 } }\n');
      const c = resolveStudyConfig('mini', [await readStudyYaml(file)], file);
      expect(c.seeds).toBe(5);
      expect(c.train.steps).toBe(7);
      expect(c.train.lr).toBe(STUDY_PRESETS['mini']!.train.lr);
      expect(c.variants).toEqual([{ name: 'top-1', strategy: 'top', params: { blocks: 1 } }]);
      await fsp.writeFile(file, 'train:\n  stepz: 7\n');
      expect(() => resolveStudyConfig('mini', [])).not.toThrow();
      await expect(readStudyYaml(file).then((y) => resolveStudyConfig('mini', [y], file))).rejects.toThrow(/s\.yaml: train: .*stepz/);
      await fsp.writeFile(file, '- 1\n- 2\n');
      await expect(readStudyYaml(file)).rejects.toThrow(ConfigError);
      await expect(readStudyYaml(path.join(dir, 'missing.yaml'))).rejects.toThrow(/cannot read study config/);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });

  it('rejects duplicate variant names, too many test problems and unknown presets', () => {
    expect(() => resolveStudyConfig('micro', [{ variants: [{ name: 'a', policy: 'full' }, { name: 'a', policy: 'lora' }] }])).toThrow(/used twice/);
    expect(() => resolveStudyConfig('micro', [{ eval: { testProblems: 1000 } }])).toThrow(/exceeds corpus.domainTest/);
    expect(() => resolveStudyConfig('nope')).toThrow(UsageError);
  });
});
