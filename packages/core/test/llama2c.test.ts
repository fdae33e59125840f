import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import {
  HfCheckpoint,
  LLAMA2C_MAGIC,
  Llama2cError,
  convertLlama2c,
  permuteRotaryRows,
  readLlama2cLayout,
} from '@llama-pro/core';
import { STORIES260K_BIN, describeWithFixtures, fixturePath } from '@llama-pro/core/testing';
import { tmpDir } from './helpers';

describe('rotary row permutation', () => {
  it('maps Meta interleaved rows (h, 2i+j) to HF rotate-half rows (h, j*D/2+i)', () => {
    // 2 heads, head dim 4, 1 column: row r holds value r.
    const w = new Float32Array([0, 1, 2, 3, 4, 5, 6, 7]);
    expect([...permuteRotaryRows(w, 2, 8, 1)]).toEqual([0, 2, 1, 3, 4, 6, 5, 7]);
  });
});

describeWithFixtures('llama2.c formats', [STORIES260K_BIN], () => {
  let dir: string;
  let legacy: Buffer;
  const h = { dim: 64, hidden: 172, L: 5, H: 8, KV: 4, V: 512, seq: 512 };
  const hs = h.dim / h.H;
  const kvDim = h.KV * hs;
  // Legacy section sizes (floats), in file order.
  const sizes = {
    emb: h.V * h.dim,
    rmsAtt: h.L * h.dim,
    wq: h.L * h.dim * h.dim,
    wk: h.L * h.dim * kvDim,
    wv: h.L * h.dim * kvDim,
    wo: h.L * h.dim * h.dim,
    rmsFfn: h.L * h.dim,
    w1: h.L * h.dim * h.hidden,
    w2: h.L * h.hidden * h.dim,
    w3: h.L * h.dim * h.hidden,
    rmsFinal: h.dim,
  };
  function sections(): Record<keyof typeof sizes, Float32Array> {
    const f = new Float32Array(legacy.buffer.slice(legacy.byteOffset + 28, legacy.byteOffset + legacy.length));
    const out = {} as Record<keyof typeof sizes, Float32Array>;
    let off = 0;
    for (const [k, n] of Object.entries(sizes)) {
      out[k as keyof typeof sizes] = f.subarray(off, off + n);
      off += n;
    }
    return out;
  }
  function v1Header(version: number, groupSize = 0): Buffer {
    const b = Buffer.alloc(256);
    b.writeUInt32LE(LLAMA2C_MAGIC, 0);
    b.writeInt32LE(version, 4);
    [h.dim, h.hidden, h.L, h.H, h.KV, h.V, h.seq].forEach((v, i) => b.writeInt32LE(v, 8 + 4 * i));
    b.writeUInt8(1, 36);
    if (version === 2) b.writeInt32LE(groupSize, 37);
    return b;
  }

  beforeAll(async () => {
    dir = await tmpDir('lp-l2c-');
    legacy = await fsp.readFile(fixturePath(...STORIES260K_BIN));
  });

  it('reads the legacy header of stories260K', async () => {
    const { header } = await readLlama2cLayout(fixturePath(...STORIES260K_BIN));
    expect(header).toMatchObject({ version: 0, dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 512, seqLen: 512, sharedClassifier: true });
  });

  it('version 1 (written here following export.py version1_export) converts to the same tensors as legacy', async () => {
    const s = sections();
    const body = [s.rmsAtt, s.rmsFfn, s.rmsFinal, s.emb, s.wq, s.wk, s.wv, s.wo, s.w1, s.w2, s.w3].map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength));
    const v1 = path.join(dir, 'v1.bin');
    await fsp.writeFile(v1, Buffer.concat([v1Header(1), ...body]));
    const a = path.join(dir, 'legacy-out');
    const b = path.join(dir, 'v1-out');
    await convertLlama2c(fixturePath(...STORIES260K_BIN), a);
    await convertLlama2c(v1, b);
    expect(await fsp.readFile(path.join(b, 'model.safetensors'))).toEqual(await fsp.readFile(path.join(a, 'model.safetensors')));
  });

  it('version 2 (Q8_0) dequantizes int8 values times per-group scales', async () => {
    const s = sections();
    const G = 64;
    const quant = (w: Float32Array) => {
      const q = new Int8Array(w.length);
      const sc = new Float32Array(w.length / G);
      for (let g = 0; g < sc.length; g++) {
        let m = 0;
        for (let i = 0; i < G; i++) m = Math.max(m, Math.abs(w[g * G + i]!));
        sc[g] = m / 127;
        for (let i = 0; i < G; i++) q[g * G + i] = Math.round(w[g * G + i]! / (sc[g] || 1));
      }
      return [Buffer.from(q.buffer), Buffer.from(sc.buffer)];
    };
    const norms = [s.rmsAtt, s.rmsFfn, s.rmsFinal].map((a) => Buffer.from(a.slice().buffer));
    // Per-layer matrices are quantized one tensor at a time, as export.py does.
    const per = (all: Float32Array) => Array.from({ length: h.L }, (_, l) => all.subarray((l * all.length) / h.L, ((l + 1) * all.length) / h.L));
    const mats = [[s.emb], per(s.wq), per(s.wk), per(s.wv), per(s.wo), per(s.w1), per(s.w2), per(s.w3)].flat();
    const v2 = path.join(dir, 'v2.bin');
    await fsp.writeFile(v2, Buffer.concat([v1Header(2, G), ...norms, ...mats.flatMap((m) => quant(m.slice()))]));
    const out = path.join(dir, 'v2-out');
    await convertLlama2c(v2, out);
    const ck = await HfCheckpoint.open(out);
    const emb = await ck.readFloat32('model.embed_tokens.weight');
    const [q, sc] = quant(s.emb.slice());
    const qi = new Int8Array(q!.buffer, q!.byteOffset, q!.length);
    const scales = new Float32Array(sc!.buffer, sc!.byteOffset, sc!.length / 4);
    for (const i of [0, 1, 63, 64, 1000, emb.length - 1]) expect(emb[i]).toBe(Math.fround(qi[i]! * scales[Math.floor(i / G)]!));
    expect(await ck.readFloat32('model.norm.weight')).toEqual(s.rmsFinal);
    await ck.close();
  });

  it('a directory instead of the .bin file: names the checkpoint files inside it', async () => {
    const d = path.join(dir, 'a-model-dir');
    await fsp.mkdir(d);
    await expect(readLlama2cLayout(d)).rejects.toThrow(`${d}: is a directory; pass the llama2.c checkpoint file itself (a .bin file written by llama2.c export.py)`);
    await fsp.writeFile(path.join(d, 'model.bin'), legacy);
    await expect(convertLlama2c(d, path.join(dir, 'from-dir'))).rejects.toThrow(`${d}: is a directory; pass the llama2.c checkpoint file itself (here: ${path.join(d, 'model.bin')})`);
  });

  it.each([
    ['truncated in the weights', (b: Buffer) => b.subarray(0, b.length - 100), /needs 1056540; it is truncated/],
    ['truncated in the header', (b: Buffer) => b.subarray(0, 20), /shorter than a llama2\.c header/],
    ['trailing garbage', (b: Buffer) => Buffer.concat([b, Buffer.alloc(4)]), /trailing data or a wrong header/],
    ['implausible header', (b: Buffer) => Buffer.concat([Buffer.from(new Int32Array([64, 172, -5, 8, 4, 512, 512]).buffer), b.subarray(28)]), /n_layers = -5 is not a plausible size/],
    ['heads not dividing dim', (b: Buffer) => Buffer.concat([Buffer.from(new Int32Array([64, 172, 5, 7, 7, 512, 512]).buffer), b.subarray(28)]), /not divisible by n_heads 7/],
    ['unknown version', (b: Buffer) => Buffer.concat([Buffer.from(new Uint32Array([LLAMA2C_MAGIC, 9]).buffer), b.subarray(8)]), /format version 9 is not supported/],
  ])('rejects a file %s', async (_name, mutate, msg) => {
    const p = path.join(dir, `bad-${Math.random().toString(36).slice(2)}.bin`);
    await fsp.writeFile(p, mutate(legacy));
    const e = await readLlama2cLayout(p).then(
      () => null,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(Llama2cError);
    expect((e as Error).message).toMatch(msg);
    const out = path.join(dir, 'never');
    await expect(convertLlama2c(p, out)).rejects.toThrow(Llama2cError);
    await expect(fsp.access(out)).rejects.toThrow();
  });
});
