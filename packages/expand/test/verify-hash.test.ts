import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HfCheckpoint, normalizeConfig, readConfigJson, type CausalLM, type ModelBackend, type WeightSource } from '@llama-pro/core';
import { tinyRawConfig, writeRandomCheckpoint } from '@llama-pro/core/testing';
import { IdentityError, ShardHasher, defaultVerificationBatch, expandModel, interleavedStrategy, readExpansionManifest, sha256File, zeroOutputInitializer } from '../src';

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
});

describe('ShardHasher', () => {
  it('hashes shards streamed in storage order, and re-reads shards streamed out of order', async () => {
    const ck = await HfCheckpoint.open(input);
    const h = new ShardHasher(ck, 4096);
    try {
      await h.start();
      expect(ck.shards.length).toBeGreaterThan(2);
      const [first, second] = ck.shards;
      // shard 0 in order, in uneven chunks; shard 1 backwards (out of order); the rest not at all.
      for (const t of first!.tensors) {
        const bytes = await ck.read(t.name);
        await h.update(t.name, 0, bytes.subarray(0, 100));
        await h.update(t.name, 100, bytes.subarray(100));
      }
      for (const t of [...second!.tensors].reverse()) await h.update(t.name, 0, await ck.read(t.name));
      const want = await Promise.all(ck.shards.map(async (s) => createHash('sha256').update(await fsp.readFile(s.path)).digest('hex')));
      expect(await h.digests()).toEqual(want);
      expect(await sha256File(first!.path)).toBe(want[0]);
    } finally {
      await h.close();
      await ck.close();
    }
  });
});
