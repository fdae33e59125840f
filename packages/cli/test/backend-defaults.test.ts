/**
 * Issue 15 item 4: one backend default (onnx) for every command, inference and training alike; tfjs stays
 * selectable; every `--help` and the README say the same.
 */
import { useMainRealmTypedArrays } from '@llama-pro/backend-onnx/testing';
useMainRealmTypedArrays(); // onnxruntime-node under jest: see the helper's doc

import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Command } from 'commander';
import { DEFAULT_BACKEND } from '@llama-pro/core';
import { tinyRawConfig, writeRandomCheckpoint } from '@llama-pro/core/testing';
import { parseExperiment } from '@llama-pro/train';
import { resolveStudyConfig } from '@llama-pro/study';
import { buildProgram } from '../src/main';
import { runCli } from './run-cli';

const command = (name: string): Command => buildProgram().commands.find((c) => c.name() === name)!;
const backendOption = (name: string) => command(name).options.find((o) => o.long === '--backend')!;

describe('backend defaults', () => {
  it('is onnx, in one constant', () => {
    expect(DEFAULT_BACKEND).toBe('onnx');
  });

  it.each(['generate', 'eval', 'serve', 'chat', 'agent', 'expand'])('%s defaults --backend to onnx and its help says so', (name) => {
    const o = backendOption(name);
    expect(o.defaultValue).toBe('onnx');
    expect(o.description).toMatch(/onnx \(the default for every command\)/);
    expect(command(name).helpInformation()).toMatch(/\(default: "onnx"\)/);
  });

  it.each(['train', 'study'])('%s: --backend help names onnx as the default (the experiment / study file decides otherwise)', (name) => {
    const o = backendOption(name);
    expect(o.defaultValue).toBeUndefined();
    expect(o.description).toMatch(/onnx \(the default for every command\)/);
    expect(command(name).helpInformation()).not.toMatch(/tfjs \(default/);
  });

  it('train and both study presets default to onnx; tfjs stays selectable', () => {
    expect(parseExperiment({}).backend).toBe('onnx');
    expect(parseExperiment({ backend: 'tfjs' }).backend).toBe('tfjs');
    expect(resolveStudyConfig('mini').backend).toBe('onnx');
    expect(resolveStudyConfig('micro').backend).toBe('onnx');
    expect(resolveStudyConfig('micro', [{ backend: 'tfjs' }]).backend).toBe('tfjs');
  });

  it('the README says the same and no CLI row claims a tfjs default', async () => {
    const readme = await fsp.readFile(path.join(__dirname, '../../../README.md'), 'utf8');
    const prose = readme.replace(/\s+/g, ' ');
    expect(prose).toContain('`--backend` defaults to `onnx` for every command');
    expect(prose).not.toMatch(/training defaults to `tfjs`/);
    const rows = readme.split('\n').filter((l) => l.startsWith('| `llama-pro '));
    expect(rows.length).toBeGreaterThan(5);
    for (const r of rows) expect([r.slice(0, 40), /\[--backend tfjs\]/.test(r)]).toEqual([r.slice(0, 40), false]);
  });

  it('generate picks onnx when no --backend is given (the engine it logs)', async () => {
    const dir = path.join(await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-default-backend-')), 'm');
    await writeRandomCheckpoint(dir, tinyRawConfig({ vocab: 32 }), { seed: 1 });
    const r = await runCli(['generate', '--model', dir, '--prompt-ids', '1,2', '--max-new-tokens', '2', '--json']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/onnx/);
    expect(r.stderr).not.toMatch(/tfjs/);
    await fsp.rm(path.dirname(dir), { recursive: true, force: true });
  });
});
