import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import { HfCheckpoint, OutputError } from '@llama-pro/core';
import { tinyRawConfig, writeRandomCheckpoint } from '@llama-pro/core/testing';
import { OnnxBackend, exportLlamaOnnx, exportLlamaOnnxBytes, exportWeightBytes } from '../src';
import { relL2 } from './reference';

describe('ONNX export', () => {
  let tmp: string;
  let tied: HfCheckpoint;
  let untied: HfCheckpoint;

  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'onnx-export-'));
    await writeRandomCheckpoint(path.join(tmp, 'tied'), tinyRawConfig({ tie: true, heads: 4, kvHeads: 2, layers: 3 }), { seed: 11 });
    await writeRandomCheckpoint(path.join(tmp, 'untied'), tinyRawConfig({ tie: false, heads: 4, kvHeads: 1, attentionBias: true }), { seed: 12 });
    tied = await HfCheckpoint.open(path.join(tmp, 'tied'));
    untied = await HfCheckpoint.open(path.join(tmp, 'untied'));
  });
  afterAll(async () => {
    await tied?.close();
    await untied?.close();
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  it('declares opset 17 (+ com.microsoft fused ops), the in-place cache interface, and shares the embedding with a tied head', async () => {
    const m = onnx.ModelProto.decode(await exportLlamaOnnxBytes(tied));
    expect(m.opsetImport.map((o) => [o.domain, Number(o.version)])).toEqual([
      ['', 17],
      ['com.microsoft', 1],
    ]);
    const g = m.graph as onnx.GraphProto;
    const inputs = g.input.map((i) => i.name);
    expect(inputs.slice(0, 3)).toEqual(['input_ids', 'attention_mask', 'position_ids']);
    expect(inputs).toContain('past_key_values.2.value');
    expect(inputs).toContain('past_length');
    // only the new tokens' keys and values come out (the caller writes them into its cache)
    expect(g.output.map((o) => o.name)).toEqual(['logits', 'new_keys', 'new_values']);
    const past = g.input.find((i) => i.name === 'past_key_values.0.key')!;
    expect(past.type!.tensorType!.shape!.dim!.map((d) => d.dimParam || Number(d.dimValue))).toEqual(['batch_size', 2, 'cache_capacity', 8]);
    // one If on an empty cache picks the decoder: the prefill branch (then) or the cache branch (else)
    const ifs = g.node.filter((n) => n.opType === 'If');
    expect(ifs).toHaveLength(1);
    expect(ifs[0]!.output).toEqual(['logits', 'new_keys', 'new_values']);
    const branch = (name: string) => ifs[0]!.attribute!.find((a) => a.name === name)!.g!.node as onnx.INodeProto[];
    const prefill = branch('then_branch');
    const cached = branch('else_branch');
    const pastNames = new Set(inputs.filter((n) => n.startsWith('past_key_values.')));
    const readsPast = (n: onnx.INodeProto) => n.input!.some((i) => pastNames.has(i));
    // the prefill branch never touches the cache; in the cache branch no Concat reads a cache input
    // (attention multiplies the cache in place), and every layer's keys and values are read
    expect(prefill.filter(readsPast)).toHaveLength(0);
    expect(cached.filter((n) => n.opType === 'Concat' && readsPast(n))).toHaveLength(0);
    expect(new Set(cached.flatMap((n) => n.input!.filter((i) => pastNames.has(i)))).size).toBe(pastNames.size);
    // prefill attention: one product with the new keys, no concatenation or split of the scores
    expect(prefill.filter((n) => n.opType === 'Split')).toHaveLength(2 * 3); // q/k/v and gate/up of 3 layers
    expect(cached.filter((n) => n.opType === 'Split')).toHaveLength(3 * 3); // and the probabilities
    for (const nodes of [prefill, cached]) {
      // fused kernels: rotary embedding for q and k of every layer; every RMSNorm (2 per layer + the final
      // one) as residual add + RMSNorm in one kernel, the first with a zero skip so that all norms round alike
      const count = (op: string) => nodes.filter((n) => n.opType === op && n.domain === 'com.microsoft').length;
      expect(count('RotaryEmbedding')).toBe(2 * 3);
      expect(count('SkipSimplifiedLayerNormalization')).toBe(2 * 3 + 1);
      expect(nodes.filter((n) => n.opType === 'ReduceMean')).toHaveLength(0);
      // grouped-query attention multiplies with un-repeated K/V: no Tile
      expect(nodes.filter((n) => n.opType === 'Tile')).toHaveLength(0);
    }
    const inits = new Set(g.initializer.map((t) => t.name));
    expect(inits.has('lm_head.weight')).toBe(false);
    expect(inits.has('model.embed_tokens.weight')).toBe(true);
    // the only Expand is on the mask (shared by both branches)
    expect([...g.node, ...prefill, ...cached].filter((n) => n.opType === 'Expand')).toHaveLength(1);
    expect(g.node.filter((n) => n.opType === 'Expand')).toHaveLength(1);
    const um = onnx.ModelProto.decode(await exportLlamaOnnxBytes(untied));
    expect((um.graph as onnx.GraphProto).initializer.some((t) => t.name === 'lm_head.weight')).toBe(true);
    expect((um.graph as onnx.GraphProto).initializer.some((t) => t.name === 'layers.0.qkv.bias')).toBe(true);
  });

  it('a file export, embedded or with external data, gives the same logits as the in-memory load', async () => {
    const backend = new OnnxBackend();
    const ids = Int32Array.from({ length: 2 * 7 }, (_, i) => (i * 5 + 1) % 64);
    const ref = await backend.load(untied, { threads: 1 });
    const want = (await ref.forward({ ids, batchSize: 2, seqLen: 7 })).data;
    await ref.dispose();
    const embedded = await exportLlamaOnnx(untied, path.join(tmp, 'out', 'embedded.onnx'));
    expect(embedded.dataFile).toBeUndefined();
    const external = await exportLlamaOnnx(untied, path.join(tmp, 'out', 'external.onnx'), { externalData: true });
    expect(external.dataFile).toBe(path.join(tmp, 'out', 'external.onnx.data'));
    expect(external.dataBytes).toBeGreaterThanOrEqual(exportWeightBytes(untied.config));
    expect(external.modelBytes).toBeLessThan(20_000); // graph only: the weights live in the data file
    expect((await fsp.readdir(path.join(tmp, 'out'))).sort()).toEqual(['embedded.onnx', 'external.onnx', 'external.onnx.data']);
    for (const file of [embedded.file, external.file]) {
      const m = await backend.load(untied, { threads: 1, onnxFile: file });
      const got = (await m.forward({ ids, batchSize: 2, seqLen: 7 })).data;
      expect(relL2(got, want)).toBe(0);
      await m.dispose();
    }
  });

  it('refuses an .onnx file of an older export format (no past_length input) with a re-export hint', async () => {
    // an export-format-2 interface: past_key_values.{i} in, present.{i} out, no past_length
    const m = onnx.ModelProto.decode(await exportLlamaOnnxBytes(tied));
    const g = m.graph as onnx.GraphProto;
    const keep = g.input.filter((i) => i.name !== 'past_length');
    g.input.splice(0, g.input.length, ...keep);
    g.initializer.push(onnx.TensorProto.create({ name: 'past_length', dataType: onnx.TensorProto.DataType.INT64, dims: [1], int64Data: [0] }));
    const file = path.join(tmp, 'old-format.onnx');
    await fsp.writeFile(file, onnx.ModelProto.encode(m).finish());
    await expect(new OnnxBackend().load(tied, { threads: 1, onnxFile: file })).rejects.toMatchObject({ code: 'ONNX_LOAD', message: expect.stringMatching(/older llama-pro \(it has no "past_length" input\); export it again/) });
  });

  it('refuses to overwrite without force and leaves no temporary files on failure', async () => {
    const out = path.join(tmp, 'again.onnx');
    await exportLlamaOnnx(tied, out);
    await expect(exportLlamaOnnx(tied, out)).rejects.toBeInstanceOf(OutputError);
    await exportLlamaOnnx(tied, out, { force: true });
    const failing = { ...tied, config: tied.config, tensorNames: () => tied.tensorNames(), info: (n: string) => tied.info(n), readFloat32: async (n: string) => (n.includes('layers.1.') ? Promise.reject(new Error('disk gone')) : tied.readFloat32(n)) };
    await expect(exportLlamaOnnx(failing, path.join(tmp, 'broken.onnx'), { externalData: true })).rejects.toThrow('disk gone');
    const left = (await fsp.readdir(tmp)).filter((n) => n.includes('broken'));
    expect(left).toEqual([]);
  });

  it('caches a disk export keyed by the checkpoint files and reuses it', async () => {
    const cacheDir = path.join(tmp, 'cache');
    const logs: string[] = [];
    const m1 = await new OnnxBackend().load(tied, { threads: 1, cacheDir, log: (s) => logs.push(s) });
    await m1.dispose();
    const m2 = await new OnnxBackend().load(tied, { threads: 1, cacheDir, log: (s) => logs.push(s) });
    await m2.dispose();
    expect(logs.filter((l) => l.startsWith('onnx: exporting'))).toHaveLength(1);
    expect(logs.filter((l) => l.startsWith('onnx: using cached export'))).toHaveLength(1);
    const entries = await fsp.readdir(cacheDir);
    expect(entries).toHaveLength(1);
    // weights as external data, which ONNX Runtime reads without a second copy in the model bytes
    expect((await fsp.readdir(path.join(cacheDir, entries[0]!))).sort()).toEqual(['model.onnx', 'model.onnx.data']);
    // a changed checkpoint file (here: a newer mtime on the weights) gets a fresh export
    const later = new Date(Date.now() + 60_000);
    await fsp.utimes(path.join(tmp, 'tied', 'model.safetensors'), later, later);
    const m3 = await new OnnxBackend().load(tied, { threads: 1, cacheDir, log: (s) => logs.push(s) });
    await m3.dispose();
    expect(logs.filter((l) => l.startsWith('onnx: exporting'))).toHaveLength(2);
    expect(await fsp.readdir(cacheDir)).toHaveLength(2);
  });
});
