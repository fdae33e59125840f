/** `expand --config expand.yaml`: the file holds what the flags hold (plugins included); flags override it. */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PLUGIN_API_VERSION } from '@llama-pro/core';
import { tinyRawConfig, writeRandomCheckpoint } from '@llama-pro/core/testing';
import { readExpansionManifest } from '@llama-pro/expand';
import { runCli } from './run-cli';

describe('expand --config', () => {
  let dir: string;
  let base: string;
  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-expand-cfg-'));
    base = path.join(dir, 'base');
    await writeRandomCheckpoint(base, tinyRawConfig({ layers: 4 }), { seed: 5 });
    await fsp.mkdir(path.join(dir, 'cfg', 'plugins'), { recursive: true });
    // A plugin strategy: one copy of the last block appended on top (registered under the shared Symbol.for token).
    await fsp.writeFile(
      path.join(dir, 'cfg', 'plugins', 'append.js'),
      `module.exports = { meta: { name: 'append', version: '1.0.0', apiVersion: ${PLUGIN_API_VERSION} }, register(c) {
        c.register(Symbol.for('llama-pro.ExpansionStrategy'), { useValue: { name: 'append-last', description: 'copy the last block on top', params: [],
          plan(config, params) { const L = config.numHiddenLayers; const layers = [];
            for (let i = 0; i < L; i++) layers.push({ index: i, source: i, isNew: false });
            layers.push({ index: L, source: L - 1, isNew: true });
            return { strategy: 'append-last', params: { ...params }, originalLayers: L, newLayerCount: L + 1, originalToNew: [...Array(L).keys()], layers, newLayers: [L] }; } } });
      } };`,
    );
  });
  afterAll(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('everything from the file, a plugin strategy resolved relative to it', async () => {
    const f = path.join(dir, 'cfg', 'expand.yaml');
    await fsp.writeFile(f, `input: ${base}\noutput: ${path.join(dir, 'by-plugin')}\nstrategy: { name: append-last }\nplugins: [./plugins/append.js]\nshardSize: 20000\nbaseHash: false\n`);
    const r = await runCli(['expand', '--config', f, '--json']);
    expect(r.stderr).not.toMatch(/llama-pro:/);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ strategy: { name: 'append-last' }, originalLayers: 4, layers: 5, newLayers: [4] });
    const m = await readExpansionManifest(path.join(dir, 'by-plugin'));
    expect(m.base.shards.every((s) => s.sha256 === null)).toBe(true);
    expect(m.output.shards.length).toBeGreaterThan(1);
  });

  it('the file and the same flags make byte-identical models; flags override the file', async () => {
    const flags = await runCli(['expand', base, path.join(dir, 'flags'), '--strategy', 'top', '--blocks', '2', '--shard-size', '20000', '--no-base-hash']);
    expect(flags.code).toBe(0);
    const f = path.join(dir, 'top.yaml');
    await fsp.writeFile(f, `strategy: { name: top, blocks: 2 }\nshardSize: 20000\nbaseHash: false\n`);
    const file = await runCli(['expand', base, path.join(dir, 'file'), '--config', f]);
    expect(file.code).toBe(0);
    const names = (await fsp.readdir(path.join(dir, 'flags'))).filter((n) => n.endsWith('.safetensors')).sort();
    expect((await fsp.readdir(path.join(dir, 'file'))).filter((n) => n.endsWith('.safetensors')).sort()).toEqual(names);
    for (const n of names) expect(Buffer.compare(await fsp.readFile(path.join(dir, 'flags', n)), await fsp.readFile(path.join(dir, 'file', n)))).toBe(0);

    const over = await runCli(['expand', base, path.join(dir, 'over'), '--config', f, '--blocks', '1', '--json']);
    expect(over.code).toBe(0);
    expect(JSON.parse(over.stdout)).toMatchObject({ layers: 5, newLayers: [4] });
  });

  it('no model and no config: a usage error (exit 2) naming both ways', async () => {
    const r = await runCli(['expand']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('llama-pro: give the base model and the output: llama-pro expand <in-dir> <out-dir> (or --config expand.yaml with input: and output:)\n');
    const bad = path.join(dir, 'bad.yaml');
    await fsp.writeFile(bad, 'strategy: top\n');
    const b = await runCli(['expand', base, path.join(dir, 'x'), '--config', bad]);
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/^llama-pro: .*bad\.yaml: strategy: /);
  });
});
