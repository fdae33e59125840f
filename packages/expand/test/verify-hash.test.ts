import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { normalizeConfig, readConfigJson, sha256File, type CausalLM, type ModelBackend, type WeightSource } from '@llama-pro/core';
import { tinyRawConfig, writeRandomCheckpoint } from '@llama-pro/core/testing';
import { IdentityError, copyInitializer, defaultVerificationBatch, expandModel, interleavedStrategy, readExpansionManifest, zeroOutputInitializer } from '../src';
import { FileHasher } from '../src/hash';

let dir: string;
let input: string;
beforeAll(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-expand-v-'));
  input = path.join(dir, 'in');
  await writeRandomCheckpoint(input, tinyRawConfig({ layers: 4 }), { seed: 1, maxShardBytes: 20_000 });
});
afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

/** A fake backend whose logits are sum of the first bytes of each layer's o_proj (so zeroed copies change nothing) or the layer count. */
function fakeBackend(kind: 'layers' | 'weights'): ModelBackend {
  return {
    name: `fake-${kind}`,
    description: 'test backend',
    supportsTraining: false,
    async load(source: WeightSource): Promise<CausalLM> {
      let value = source.config.numHiddenLayers;
      if (kind === 'weights') {
        value = 0;
        for (let l = 0; l < source.config.numHiddenLayers; l++) value += (await source.readFloat32(`model.layers.${l}.self_attn.o_proj.weight`))[0]!;
      }
      return {
        config: source.config,
        device: 'fake:cpu',
        async forward(b) {
          return { data: new Float32Array(b.batchSize * b.seqLen * 3).fill(value), batchSize: b.batchSize, seqLen: b.seqLen, vocabSize: 3 };
        },
        tokenLogprobs: () => Promise.reject(new Error('unused')),
        startSession: () => {
          throw new Error('unused');
        },
        dispose: async () => undefined,
      };
    },
  };
}

describe('verification inside expandModel', () => {
  it('records the report in the manifest when identical', async () => {
    const output = path.join(dir, 'ok');
    const plan = interleavedStrategy.plan(normalizeConfig(await readConfigJson(input)), { groups: 2 });
    const r = await expandModel({ input, output, plan, initializer: zeroOutputInitializer, verify: { backend: fakeBackend('weights') } });
    expect(r.verification?.maxAbsDiff).toBe(0);
    const m = await readExpansionManifest(output);
    expect(m.verification).toMatchObject({ backend: 'fake-weights', device: 'fake:cpu', batchSize: 2, seqLen: 16, maxAbsDiff: 0, identical: true });
    expect(m.verification!.tokens).toEqual([...defaultVerificationBatch(64, 128).ids]);
  });

  it('a mismatch is an IdentityError and nothing is written', async () => {
    const output = path.join(dir, 'bad');
    const plan = interleavedStrategy.plan(normalizeConfig(await readConfigJson(input)), { groups: 2 });
    const err = await expandModel({ input, output, plan, initializer: zeroOutputInitializer, verify: { backend: fakeBackend('layers') } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IdentityError);
    expect((err as Error).message).toBe('identity check failed: max |Δlogit| = 2 on fake-layers (fake:cpu); the expanded model does not compute the base function, nothing was written');
    expect((await fsp.readdir(dir)).sort()).toEqual(['in', 'ok']);
  });

  it('a non-identity initializer (copy) is refused by the identity check too; mode report publishes and says so', async () => {
    const plan = interleavedStrategy.plan(normalizeConfig(await readConfigJson(input)), { groups: 2 });
    // fake-layers answers the layer count, so base (4) and expanded (6) differ by 2 whatever the initializer.
    const err = await expandModel({ input, output: path.join(dir, 'copy'), plan, initializer: copyInitializer, verify: { backend: fakeBackend('layers') } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IdentityError);
    expect((err as Error).message).toBe(
      'identity check failed: max |Δlogit| = 2 on fake-layers (fake:cpu); the expanded model does not compute the base function, nothing was written (initializer "copy" zeroes no output projection, so it is not identity-preserving: use the zero-output initializer, or verify mode "report" to only measure the difference)',
    );
    expect((await fsp.readdir(dir)).sort()).toEqual(['in', 'ok']);
    const r = await expandModel({ input, output: path.join(dir, 'copy'), plan, initializer: copyInitializer, verify: { backend: fakeBackend('layers'), mode: 'report' } });
    expect(r.manifest.verification).toMatchObject({ maxAbsDiff: 2, identical: false, mode: 'report' });
    expect((await readExpansionManifest(path.join(dir, 'copy'))).verification?.mode).toBe('report');
    await fsp.rm(path.join(dir, 'copy'), { recursive: true });
  });
});

describe('FileHasher', () => {
  it('hashes every file on a worker thread, in order, as sha256File and an independent hash do', async () => {
    const files = (await fsp.readdir(input)).filter((f) => f.endsWith('.safetensors')).sort().map((f) => path.join(input, f));
    expect(files.length).toBeGreaterThan(2);
    const h = new FileHasher(files);
    try {
      const want = await Promise.all(files.map(async (f) => createHash('sha256').update(await fsp.readFile(f)).digest('hex')));
      expect(await h.digests()).toEqual(want);
      expect(await Promise.all(files.map((f) => sha256File(f)))).toEqual(want);
    } finally {
      await h.close();
    }
  });

  it('a missing file rejects the digests with the worker error', async () => {
    const h = new FileHasher([path.join(dir, 'no-such-shard.safetensors')]);
    try {
      await expect(h.digests()).rejects.toThrow(/ENOENT.*no-such-shard/);
    } finally {
      await h.close();
    }
  });
});
