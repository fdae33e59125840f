/**
 * `expand --verify` without --backend runs the streaming verifier; here through the built CLI
 * (packages/cli/dist/bin.js) so the passes run on worker threads as they do for a user: a correct
 * expansion of stories260K publishes with max |Δlogit| = 0, the copy initializer is refused (exit 1,
 * nothing written) with the first differing layer and the non-zero output projections named.
 */
import { execFile } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { convertLlama2c } from '@llama-pro/core';
import { STORIES260K_BIN, describeWithFixtures, fixturePath } from '@llama-pro/core/testing';

const BIN = path.resolve(__dirname, '..', 'dist', 'bin.js');
const run = async (args: string[], cwd?: string): Promise<{ code: number; stdout: string; stderr: string }> => {
  try {
    const r = await promisify(execFile)(process.execPath, [BIN, ...args], { encoding: 'utf8', ...(cwd ? { cwd } : {}) });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
};

describeWithFixtures('expand --verify (streaming, built CLI)', [STORIES260K_BIN], () => {
  let dir: string;
  let base: string;
  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-expand-stream-'));
    base = path.join(dir, 'base');
    await convertLlama2c(fixturePath(...STORIES260K_BIN), base);
  });
  afterAll(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('zero-output expansion: identical (Δ = 0) on the stream verifier', async () => {
    const r = await run(['expand', base, path.join(dir, 'x'), '--groups', '5', '--verify', '--json']);
    expect(r.stderr).not.toMatch(/llama-pro: /); // off a TTY stderr carries only progress JSON
    expect(r.code).toBe(0);
    // proven: byte-identical copies, zero new-block outputs, each new block the identity on the probe (stream-verify)
    expect(JSON.parse(r.stdout).verification).toEqual({ backend: 'stream', device: 'cpu', maxAbsDiff: 0, identical: true, mode: 'identity', method: 'proof' });
  });

  it('from a directory outside the repository (worker threads resolve the packages from the CLI, not the cwd)', async () => {
    const r = await run(['expand', base, path.join(dir, 'x-cwd'), '--groups', '5', '--verify', '--json'], os.tmpdir());
    expect(r.stderr).not.toMatch(/llama-pro: /);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).verification).toMatchObject({ maxAbsDiff: 0, identical: true, method: 'proof' });
  });

  it('copy initializer: refused, the differing layer and tensors named, nothing written', async () => {
    const out = path.join(dir, 'c');
    const r = await run(['expand', base, out, '--strategy', 'top', '--blocks', '1', '--init', 'copy', '--verify']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/identity check failed: max \|Δlogit\| = \S+ on stream \(cpu\); hidden states first differ after layer 5; inserted-block output projections not zero: model\.layers\.5\.self_attn\.o_proj\.weight, model\.layers\.5\.mlp\.down_proj\.weight;/);
    expect(Number(/= (\S+) on/.exec(r.stderr)![1])).toBeGreaterThan(0);
    expect(existsSync(out)).toBe(false);
  });
});
