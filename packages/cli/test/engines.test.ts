import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { parse } from 'yaml';
import { HfCheckpoint, encodeFromFloat32, passthroughTensors, saveModelDir } from '@llama-pro/core';
import { tinyRawConfig, writeRandomCheckpoint } from '@llama-pro/core/testing';
import { readExpansionManifest } from '@llama-pro/expand';
import { runCli } from './run-cli';

describe('scale-out through the CLI: train --engine ... --emit, import-run', () => {
  let dir: string;
  let expanded: string;
  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-cli-engines-'));
    const base = path.join(dir, 'base');
    await writeRandomCheckpoint(base, tinyRawConfig({ layers: 8, hiddenSize: 16, intermediateSize: 32, heads: 2, kvHeads: 1, vocab: 40 }), { seed: 9 });
    expanded = path.join(dir, 'expanded');
    expect((await runCli(['expand', base, expanded, '--groups', '4'])).code).toBe(0);
    await fsp.writeFile(path.join(dir, 'corpus.txt'), 'some domain text\n');
  });
  afterAll(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('emits a LLaMA-Factory job selecting the new layers, with the experiment settings', async () => {
    const emit = path.join(dir, 'lf');
    const r = await runCli(['train', '--model', expanded, '--data', path.join(dir, 'corpus.txt'), '--engine', 'llamafactory', '--emit', emit, '--steps', '300', '--lr', '1e-4', '--json']);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toMatchObject({ engine: 'llamafactory', newLayers: [2, 5, 8, 11] });
    const cfg = parse(await fsp.readFile(path.join(emit, 'llamafactory.yaml'), 'utf8'));
    expect(cfg).toMatchObject({ use_llama_pro: true, freeze_trainable_layers: 4, max_steps: 300, learning_rate: 1e-4, warmup_ratio: 0.06, lr_scheduler_type: 'cosine', bf16: true });
  });

  it('emits an Accelerate job whose dry run lists the manifest names, then imports a run', async () => {
    const emit = path.join(dir, 'acc');
    const r = await runCli(['train', '--model', expanded, '--data', path.join(dir, 'corpus.txt'), '--engine', 'accelerate', '--emit', emit]);
    expect(r.code).toBe(0);
    const names = execFileSync('python3', [path.join(emit, 'train_accelerate.py'), '--dry-run'], { encoding: 'utf8' }).trim().split('\n');
    const m = await readExpansionManifest(expanded);
    expect(names.sort()).toEqual([...m.trainableTensors].sort());

    // A "run" that changed one trainable tensor imports cleanly; one that changed a frozen tensor is refused.
    const make = async (name: string, target: string) => {
      const ck = await HfCheckpoint.open(expanded);
      const tensors = await Promise.all(
        passthroughTensors(ck).map(async (t) => {
          if (t.name !== target) return t;
          const v = await ck.readFloat32(t.name);
          v[0] = v[0]! + 0.25;
          return { ...t, source: encodeFromFloat32(v, 'F32') };
        }),
      );
      const out = path.join(dir, name);
      await saveModelDir(out, { config: ck.rawConfig, tensors });
      await ck.close();
      return out;
    };
    const good = await make('run-good', m.trainableTensors[0]!);
    const ok = await runCli(['import-run', good, '--base', expanded, '--engine', 'accelerate', '--json']);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ ok: true, trainableChanged: [m.trainableTensors[0]] });
    const bad = await make('run-bad', 'model.embed_tokens.weight');
    const no = await runCli(['import-run', bad, '--base', expanded]);
    expect(no.code).toBe(1);
    expect(no.stdout).toMatch(/^DRIFT: .* 1 drifted/);
    expect(no.stdout).toMatch(/changed: model\.embed_tokens\.weight \(max \|diff\| 0\.25/);
    expect(no.stderr).toMatch(/changed 1 frozen tensor\(s\); the run is not recorded/);
  });

  it('refuses unknown engines, a missing --emit and layouts LLaMA-Factory cannot express', async () => {
    const data = path.join(dir, 'corpus.txt');
    expect((await runCli(['train', '--model', expanded, '--data', data, '--engine', 'megatron', '--emit', 'x'])).stderr).toMatch(/unknown engine "megatron"; known: llama-pro, llamafactory, accelerate/);
    expect((await runCli(['train', '--model', expanded, '--data', data, '--engine', 'accelerate'])).stderr).toMatch(/needs --emit <dir>/);
    const pos = path.join(dir, 'pos');
    expect((await runCli(['expand', path.join(dir, 'base'), pos, '--strategy', 'positions', '--at', '1,6'])).code).toBe(0);
    const r = await runCli(['train', '--model', pos, '--data', data, '--engine', 'llamafactory', '--emit', path.join(dir, 'lf-pos')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Use --engine accelerate/);
  });
});
