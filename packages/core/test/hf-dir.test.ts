import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import {
  CheckpointError,
  HfCheckpoint,
  INDEX_FILE,
  SafetensorsFile,
  SafetensorsWriter,
  buildDirAtomic,
  nativeIoStatus,
  expectedTensorNames,
  normalizeConfig,
  parseByteSize,
  passthroughTensors,
  saveModelDir,
  writeSafetensors,
} from '@llama-pro/core';
import { tinyRawConfig, writeRandomCheckpoint } from '@llama-pro/core/testing';
import { tmpDir } from './helpers';

describe('HF model directories', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tmpDir('lp-hf-');
  });

  it('writes and reads a sharded bf16 checkpoint with an index', async () => {
    const out = path.join(dir, 'sharded');
    const raw = tinyRawConfig({ layers: 3, dtype: 'BF16' });
    const config = await writeRandomCheckpoint(out, raw, { dtype: 'BF16', maxShardBytes: 20_000, seed: 7 });
    const files = (await fsp.readdir(out)).sort();
    expect(files).toContain(INDEX_FILE);
    const shards = files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f));
    expect(shards.length).toBeGreaterThan(1);
    const index = JSON.parse(await fsp.readFile(path.join(out, INDEX_FILE), 'utf8'));
    expect(Object.keys(index.weight_map).sort()).toEqual(expectedTensorNames(config).sort());
    const ck = await HfCheckpoint.open(out);
    expect(ck.sharded).toBe(true);
    expect(ck.dtypeCounts()).toEqual({ BF16: expectedTensorNames(config).length });
    expect(index.metadata.total_size).toBe(ck.totalBytes());
    for (const s of ck.shards) expect(s.fileSize).toBeLessThanOrEqual(20_000 + 2048);
    await ck.close();
  });

  it('rewriting a checkpoint read by the reader is byte-identical', async () => {
    const src = path.join(dir, 'src');
    await writeRandomCheckpoint(src, tinyRawConfig({ layers: 2, dtype: 'F16' }), { dtype: 'F16', maxShardBytes: 15_000, seed: 3 });
    const ck = await HfCheckpoint.open(src);
    const copy = path.join(dir, 'copy');
    await saveModelDir(copy, { config: ck.rawConfig, tensors: passthroughTensors(ck), maxShardBytes: 15_000, copyAuxFrom: src });
    await ck.close();
    const a = (await fsp.readdir(src)).sort();
    expect((await fsp.readdir(copy)).sort()).toEqual(a);
    for (const f of a) expect(await fsp.readFile(path.join(copy, f))).toEqual(await fsp.readFile(path.join(src, f)));
  });

  it.each([true, false])('writes every source kind, empty tensors included (in-kernel copies allowed: %s)', async (nativeCopy) => {
    const srcFile = path.join(dir, `kinds-src-${nativeCopy}.safetensors`);
    const a = Buffer.from(Array.from({ length: 24 }, (_, i) => i + 1));
    await writeSafetensors(srcFile, [
      { name: 'a', dtype: 'U8', shape: [24], data: a },
      { name: 'e', dtype: 'F32', shape: [0, 3], data: new Uint8Array(0) },
    ]);
    const src = await SafetensorsFile.open(srcFile);
    const out = path.join(dir, `kinds-${nativeCopy}`);
    try {
      const r = await saveModelDir(out, {
        config: { note: 'kinds' },
        tensors: [
          { name: 'empty-copy', dtype: 'F32', shape: [0, 3], source: { file: src, name: 'e' } },
          { name: 'copy', dtype: 'U8', shape: [24], source: { file: src, name: 'a' } },
          { name: 'empty-zeros', dtype: 'F32', shape: [0], source: 'zeros' },
          { name: 'zeros', dtype: 'U8', shape: [5], source: 'zeros' },
          { name: 'empty-bytes', dtype: 'U8', shape: [0], source: new Uint8Array(0) },
          {
            name: 'stream',
            dtype: 'U8',
            shape: [4],
            source: async function* () {
              yield Buffer.from([9, 8]);
              yield Buffer.from([7, 6]);
            },
          },
          { name: 'zeros-last', dtype: 'U8', shape: [3], source: 'zeros' },
        ],
        writer: { nativeCopy },
      });
      expect(r.copy).toEqual(nativeCopy && nativeIoStatus().available ? { kernelBytes: 24, userBytes: 0 } : { kernelBytes: 0, userBytes: 24 });
      const got = await SafetensorsFile.open(path.join(out, 'model.safetensors'));
      try {
        expect([...(await got.read('copy'))]).toEqual([...a]);
        expect([...(await got.read('zeros'))]).toEqual([0, 0, 0, 0, 0]);
        expect([...(await got.read('stream'))]).toEqual([9, 8, 7, 6]);
        expect([...(await got.read('zeros-last'))]).toEqual([0, 0, 0]);
        expect(got.info('empty-copy').shape).toEqual([0, 3]);
      } finally {
        await got.close();
      }
    } finally {
      await src.close();
    }
  });

  it('copyFrom refuses a source of another dtype or size, and a source truncated after opening', async () => {
    const srcFile = path.join(dir, 'cf-src.safetensors');
    await writeSafetensors(srcFile, [{ name: 'a', dtype: 'F32', shape: [1000], data: new Uint8Array(4000).fill(7) }]);
    const src = await SafetensorsFile.open(srcFile);
    try {
      const w = await SafetensorsWriter.create(path.join(dir, 'cf.safetensors'), [{ name: 'x', dtype: 'F16', shape: [2000] }]);
      await expect(w.copyFrom('x', src, 'a')).rejects.toThrow('cannot copy "a" (F32 [1000]) from ' + srcFile + ' into "x" (F16 [2000]): dtype or size differ');
      await w.abort();
      await fsp.truncate(srcFile, 2000);
      for (const nativeCopy of [true, false]) {
        const out = path.join(dir, `cf-trunc-${nativeCopy}.safetensors`);
        const t = await SafetensorsWriter.create(out, [{ name: 'x', dtype: 'F32', shape: [1000] }], undefined, { nativeCopy });
        await expect(t.copyFrom('x', src, 'a')).rejects.toThrow(/unexpected end of file .* the file is truncated/);
        await t.abort();
        await expect(fsp.access(out)).rejects.toThrow();
      }
    } finally {
      await src.close();
    }
  });

  it('copies tokenizer and generation files byte for byte', async () => {
    const src = path.join(dir, 'withtok');
    await writeRandomCheckpoint(src, tinyRawConfig(), { seed: 1 });
    const tok = Buffer.from('{"weird": "bytes \u00e9\\u0000"}\r\n');
    await fsp.writeFile(path.join(src, 'tokenizer_config.json'), tok);
    const ck = await HfCheckpoint.open(src);
    const out = path.join(dir, 'withtok-copy');
    await saveModelDir(out, { config: ck.rawConfig, tensors: passthroughTensors(ck), copyAuxFrom: src });
    await ck.close();
    expect(await fsp.readFile(path.join(out, 'tokenizer_config.json'))).toEqual(tok);
  });

  describe('malformed checkpoints', () => {
    let base: string;
    beforeAll(async () => {
      base = path.join(dir, 'base');
      await writeRandomCheckpoint(base, tinyRawConfig({ layers: 2 }), { maxShardBytes: 12_000, seed: 2 });
    });
    async function variant(name: string, mutate: (d: string) => Promise<void>): Promise<string> {
      const d = path.join(dir, name);
      await fsp.cp(base, d, { recursive: true });
      await mutate(d);
      return d;
    }
    async function expectCheckpointError(d: string, code: string, msg: RegExp) {
      const e = await HfCheckpoint.open(d).then(
        () => null,
        (x: unknown) => x,
      );
      expect(e).toBeInstanceOf(CheckpointError);
      expect((e as CheckpointError).code).toBe(code);
      expect((e as Error).message).toMatch(msg);
    }

    it('missing shard', async () => {
      const d = await variant('noshard', async (d) => fsp.rm(path.join(d, 'model-00002-of-00003.safetensors').replace('00003', String((await fsp.readdir(d)).filter((f) => f.startsWith('model-')).length).padStart(5, '0'))));
      await expectCheckpointError(d, 'CHECKPOINT_MISSING_SHARD', /lists shard model-00002-of-\d{5}\.safetensors, which is missing/);
    });

    it('index naming a tensor the shard does not have', async () => {
      const d = await variant('badindex', async (d) => {
        const p = path.join(d, INDEX_FILE);
        const idx = JSON.parse(await fsp.readFile(p, 'utf8'));
        idx.weight_map['model.layers.9.mlp.up_proj.weight'] = 'model-00001-of-' + Object.values<string>(idx.weight_map)[0]!.slice(-17);
        await fsp.writeFile(p, JSON.stringify(idx));
      });
      await expectCheckpointError(d, 'CHECKPOINT_INDEX_MISMATCH', /tensor "model\.layers\.9\.mlp\.up_proj\.weight" is in model-00001/);
    });

    it('index that is not JSON', async () => {
      const d = await variant('jsonindex', async (d) => fsp.writeFile(path.join(d, INDEX_FILE), '{not json'));
      await expectCheckpointError(d, 'CHECKPOINT_INDEX', /not valid JSON/);
    });

    it('index without weight_map', async () => {
      const d = await variant('nowm', async (d) => fsp.writeFile(path.join(d, INDEX_FILE), '{"metadata": {}}'));
      await expectCheckpointError(d, 'CHECKPOINT_INDEX', /no "weight_map"/);
    });

    it('tensor the config implies is absent', async () => {
      const d = await variant('missingtensor', async (d) => {
        const p = path.join(d, 'config.json');
        const c = JSON.parse(await fsp.readFile(p, 'utf8'));
        c.num_hidden_layers = 3;
        await fsp.writeFile(p, JSON.stringify(c));
      });
      await expectCheckpointError(d, 'CHECKPOINT_MISSING_TENSOR', /missing 9 tensor\(s\).*model\.layers\.2\./);
    });

    it('tensor shape disagreeing with the config', async () => {
      const d = await variant('badshape', async (d) => {
        const p = path.join(d, 'config.json');
        const c = JSON.parse(await fsp.readFile(p, 'utf8'));
        c.intermediate_size = 48;
        await fsp.writeFile(p, JSON.stringify(c));
      });
      await expectCheckpointError(d, 'CHECKPOINT_SHAPE', /mlp\.gate_proj\.weight" has shape \[64,32\] but config\.json implies \[48,32\]/);
    });

    it('directory without weights, and a missing directory', async () => {
      const d = await variant('noweights', async (d) => {
        for (const f of await fsp.readdir(d)) if (f.endsWith('.safetensors') || f === INDEX_FILE) await fsp.rm(path.join(d, f));
        await fsp.writeFile(path.join(d, 'pytorch_model.bin'), '');
      });
      await expectCheckpointError(d, 'CHECKPOINT_MISSING', /neither model\.safetensors nor .*pytorch_model\.bin is not supported/);
      await expectCheckpointError(path.join(dir, 'does-not-exist'), 'CHECKPOINT_MISSING', /does not exist/);
    });

    it('config.json that is not JSON', async () => {
      const d = await variant('badconfig', async (d) => fsp.writeFile(path.join(d, 'config.json'), 'nope'));
      await expect(HfCheckpoint.open(d)).rejects.toThrow(/config\.json is not valid JSON/);
    });
  });

  it('builds directories atomically: a failing build leaves nothing, an existing output needs force', async () => {
    const target = path.join(dir, 'atomic');
    await expect(
      buildDirAtomic(target, async (tmp) => {
        await fsp.writeFile(path.join(tmp, 'x'), 'partial');
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect((await fsp.readdir(dir)).filter((f) => f.includes('atomic'))).toEqual([]);
    await buildDirAtomic(target, async (tmp) => fsp.writeFile(path.join(tmp, 'x'), '1'));
    await expect(buildDirAtomic(target, async () => undefined)).rejects.toThrow(/already exists; choose another path or pass --force/);
    await buildDirAtomic(target, async (tmp) => fsp.writeFile(path.join(tmp, 'x'), '2'), { force: true });
    expect(await fsp.readFile(path.join(target, 'x'), 'utf8')).toBe('2');
  });

  it('parses shard sizes', () => {
    expect(parseByteSize('5GB')).toBe(5e9);
    expect(parseByteSize('2GiB')).toBe(2 * 2 ** 30);
    expect(parseByteSize('500mb')).toBe(5e8);
    expect(parseByteSize('1048576')).toBe(1048576);
    expect(() => parseByteSize('lots')).toThrow(/cannot parse size "lots"/);
  });

  it('normalized config of the written checkpoint matches what was asked', async () => {
    const c = normalizeConfig(tinyRawConfig({ layers: 4, heads: 8, kvHeads: 2, tie: true }));
    expect([c.numHiddenLayers, c.numAttentionHeads, c.numKeyValueHeads, c.headDim, c.tieWordEmbeddings]).toEqual([4, 8, 2, 4, true]);
    expect(expectedTensorNames(c)).not.toContain('lm_head.weight');
  });
});
