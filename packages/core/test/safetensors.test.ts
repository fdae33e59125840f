import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { SafetensorsError, SafetensorsFile, SafetensorsWriter, encodeFromFloat32, writeSafetensors } from '@llama-pro/core';
import { craftSafetensors, tmpDir } from './helpers';

const f32 = (...v: number[]) => encodeFromFloat32(new Float32Array(v), 'F32');

describe('safetensors writer and reader', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tmpDir();
  });

  it('writes an 8-byte aligned header with format metadata, readable by an independent parser', async () => {
    const file = path.join(dir, 'a.safetensors');
    await writeSafetensors(file, [
      { name: 'w', dtype: 'F32', shape: [2, 3], data: f32(1, 2, 3, 4, 5, 6) },
      { name: 'b', dtype: 'F16', shape: [3], data: encodeFromFloat32(new Float32Array([1, 2, 3]), 'F16') },
      { name: 'empty', dtype: 'F32', shape: [0, 4], data: new Uint8Array(0) },
    ]);
    const bytes = await fsp.readFile(file);
    const n = Number(bytes.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    // Independent parser: Python's struct + json, not our code.
    const py = `
import json, struct, sys
f = open(sys.argv[1], 'rb'); n = struct.unpack('<Q', f.read(8))[0]; h = json.loads(f.read(n)); data = f.read()
meta = h.pop('__metadata__')
w = h['w']; a, b = w['data_offsets']
print(json.dumps({'meta': meta, 'names': sorted(h), 'w': list(struct.unpack('<6f', data[a:b])), 'shape': w['shape']}))`;
    const out = JSON.parse(execFileSync('python3', ['-c', py, file], { encoding: 'utf8' }));
    expect(out).toEqual({ meta: { format: 'pt' }, names: ['b', 'empty', 'w'], w: [1, 2, 3, 4, 5, 6], shape: [2, 3] });
  });

  it('reads lazily by byte range and streams in chunks', async () => {
    const file = path.join(dir, 'b.safetensors');
    await writeSafetensors(file, [{ name: 'x', dtype: 'F32', shape: [4], data: f32(1, 2, 3, 4) }]);
    const st = await SafetensorsFile.open(file);
    expect(new Float32Array((await st.readRange('x', 4, 8)).buffer.slice(0))).toEqual(new Float32Array([2, 3]));
    const chunks: Buffer[] = [];
    for await (const c of st.stream('x', 4)) chunks.push(c);
    expect(chunks.length).toBe(4);
    expect(Buffer.concat(chunks)).toEqual(f32(1, 2, 3, 4));
    await expect(st.readRange('x', 12, 8)).rejects.toThrow(/outside tensor "x"/);
    await expect(st.read('nope')).rejects.toThrow(/no tensor named "nope"/);
    await st.close();
  });

  it('rewrites what it reads byte for byte', async () => {
    const src = path.join(dir, 'c.safetensors');
    await writeSafetensors(src, [
      { name: 'z', dtype: 'BF16', shape: [2], data: encodeFromFloat32(new Float32Array([1, -2]), 'BF16') },
      { name: 'a', dtype: 'I64', shape: [1], data: Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]) },
      { name: 'm', dtype: 'U8', shape: [3], data: Buffer.from([7, 8, 9]) },
    ], { note: 'kept' });
    const st = await SafetensorsFile.open(src);
    const copy = path.join(dir, 'c2.safetensors');
    const w = await SafetensorsWriter.create(copy, st.tensors, { ...st.metadata });
    for (const t of st.tensors) for await (const ch of st.stream(t.name)) await w.write(t.name, ch);
    await w.finish();
    await st.close();
    expect(await fsp.readFile(copy)).toEqual(await fsp.readFile(src));
  });

  it('writes zeros without being given data, and refuses incomplete or out-of-order tensors', async () => {
    const file = path.join(dir, 'z.safetensors');
    const w = await SafetensorsWriter.create(file, [
      { name: 'a', dtype: 'F32', shape: [3] },
      { name: 'b', dtype: 'F32', shape: [2] },
    ]);
    await expect(w.write('b', f32(1, 2))).rejects.toThrow(/out of order; expected "a"/);
    await w.writeZeros('a');
    await w.write('b', f32(1));
    await expect(w.finish()).rejects.toThrow(/"b" is incomplete \(4 of 8 bytes\)/);
    await expect(fsp.access(file)).rejects.toThrow(); // nothing at the final path
    expect((await fsp.readdir(dir)).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('leaves zero tensors as holes (also at the end) and writes back in the background, byte-identical to dense zeros', async () => {
    const big = 1 << 20; // 4 MiB of F32 zeros
    const specs = [
      { name: 'a', dtype: 'F32' as const, shape: [3] },
      { name: 'z1', dtype: 'F32' as const, shape: [big] },
      { name: 'b', dtype: 'F32' as const, shape: [2] },
      { name: 'z2', dtype: 'F32' as const, shape: [big] },
    ];
    const sparse = path.join(dir, 'sparse.safetensors');
    // A writeback after every few bytes: datasyncs run concurrently with the writes that follow.
    const w = await SafetensorsWriter.create(sparse, specs, undefined, { writebackBytes: 8 });
    await w.write('a', f32(1, 2, 3));
    await w.writeZeros('z1');
    await w.write('b', f32(4));
    await w.write('b', f32(5));
    await w.writeZeros('z2');
    await w.finish();
    const dense = path.join(dir, 'dense.safetensors');
    const zeros = new Uint8Array(big * 4);
    await writeSafetensors(dense, [
      { ...specs[0]!, data: f32(1, 2, 3) },
      { ...specs[1]!, data: zeros },
      { ...specs[2]!, data: f32(4, 5) },
      { ...specs[3]!, data: zeros },
    ]);
    expect((await fsp.readFile(sparse)).equals(await fsp.readFile(dense))).toBe(true);
    const st = await fsp.stat(sparse);
    expect(st.size).toBe((await fsp.stat(dense)).size);
    expect(st.blocks * 512).toBeLessThan(big * 4); // 8 MiB of zeros, well under 4 MiB on disk
  });

  it('refuses duplicate names', async () => {
    await expect(
      SafetensorsWriter.create(path.join(dir, 'd.safetensors'), [
        { name: 'a', dtype: 'F32', shape: [1] },
        { name: 'a', dtype: 'F32', shape: [1] },
      ]),
    ).rejects.toThrow(/duplicate or reserved tensor name "a"/);
  });
});

describe('safetensors malformed input', () => {
  let dir: string;
  let i = 0;
  beforeAll(async () => {
    dir = await tmpDir();
  });
  const file = () => path.join(dir, `bad${i++}.safetensors`);
  const ok = { __metadata__: { format: 'pt' }, a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };

  async function expectError(p: string, code: string, message: RegExp) {
    const err = await SafetensorsFile.open(p).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SafetensorsError);
    expect((err as SafetensorsError).code).toBe(code);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).toContain(p);
  }

  it('missing file', async () => expectError(path.join(dir, 'nope.safetensors'), 'SAFETENSORS_MISSING', /file not found/));

  it('file shorter than the length prefix', async () => {
    const p = file();
    await fsp.writeFile(p, Buffer.from([1, 2, 3]));
    await expectError(p, 'SAFETENSORS_TRUNCATED', /shorter than the 8-byte header length/);
  });

  it('empty file', async () => {
    const p = file();
    await fsp.writeFile(p, Buffer.alloc(0));
    await expectError(p, 'SAFETENSORS_TRUNCATED', /0 bytes/);
  });

  it('header length near 2^64 is rejected without allocating', async () => {
    const p = await craftSafetensors(file(), ok, f32(1, 2), 0xffffffffffffff00n);
    const before = process.memoryUsage().arrayBuffers;
    await expectError(p, 'SAFETENSORS_HEADER_TOO_LARGE', /exceeds the 100000000-byte limit/);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(50_000_000);
  });

  it('header longer than the file', async () => expectError(await craftSafetensors(file(), ok, f32(1, 2), 5000n), 'SAFETENSORS_TRUNCATED', /runs past the end/));

  it('non-JSON header', async () => expectError(await craftSafetensors(file(), '{"a": [1, 2', f32(1, 2)), 'SAFETENSORS_HEADER', /not well-formed JSON/));

  it('header that is not an object', async () => expectError(await craftSafetensors(file(), '[1,2,3]', new Uint8Array()), 'SAFETENSORS_HEADER', /does not start with "\{"/));

  it('header with invalid UTF-8', async () => {
    const p = file();
    const h = Buffer.from([0x7b, 0xff, 0xfe, 0x7d]);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(4n);
    await fsp.writeFile(p, Buffer.concat([len, h]));
    await expectError(p, 'SAFETENSORS_HEADER', /not valid UTF-8/);
  });

  it('unknown dtype', async () =>
    expectError(await craftSafetensors(file(), { a: { dtype: 'F128', shape: [1], data_offsets: [0, 16] } }, new Uint8Array(16)), 'SAFETENSORS_DTYPE', /unknown dtype "F128"/));

  it('negative or fractional shape', async () =>
    expectError(await craftSafetensors(file(), { a: { dtype: 'F32', shape: [-1, 2], data_offsets: [0, 8] } }, f32(1, 2)), 'SAFETENSORS_SHAPE', /non-negative integers/));

  it('dtype x shape does not match the byte span', async () =>
    expectError(
      await craftSafetensors(file(), { a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, f32(1, 2)),
      'SAFETENSORS_SIZE_MISMATCH',
      /F32 \[3\] needs 12 bytes but data_offsets span 8/,
    ));

  it('F16 shape vs byte span mismatch', async () =>
    expectError(await craftSafetensors(file(), { a: { dtype: 'F16', shape: [2], data_offsets: [0, 8] } }, f32(1, 2)), 'SAFETENSORS_SIZE_MISMATCH', /needs 4 bytes/));

  it('offsets out of range (truncated data)', async () =>
    expectError(await craftSafetensors(file(), { a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, f32(1, 2)), 'SAFETENSORS_OFFSETS', /outside the data section/));

  it('end before begin', async () =>
    expectError(await craftSafetensors(file(), { a: { dtype: 'F32', shape: [0], data_offsets: [8, 4] } }, f32(1, 2)), 'SAFETENSORS_OFFSETS', /end 4 < begin 8/));

  it('malformed data_offsets', async () =>
    expectError(await craftSafetensors(file(), { a: { dtype: 'F32', shape: [2], data_offsets: [0] } }, f32(1, 2)), 'SAFETENSORS_OFFSETS', /must be \[begin, end\]/));

  it('overlapping tensors', async () =>
    expectError(
      await craftSafetensors(
        file(),
        { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } },
        f32(1, 2, 3),
      ),
      'SAFETENSORS_OVERLAP',
      /"b" overlaps/,
    ));

  it('gap between tensors', async () =>
    expectError(
      await craftSafetensors(
        file(),
        { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } },
        f32(1, 2, 3),
      ),
      'SAFETENSORS_GAP',
      /gap in the data section before tensor "b"/,
    ));

  it('data not starting at offset 0', async () =>
    expectError(await craftSafetensors(file(), { a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, f32(1, 2)), 'SAFETENSORS_GAP', /bytes 0\.\.4/));

  it('trailing bytes after the last tensor', async () =>
    expectError(await craftSafetensors(file(), ok, f32(1, 2, 3)), 'SAFETENSORS_GAP', /trailing bytes/));

  it('file truncated in the middle of the data', async () => {
    const p = path.join(dir, 'good.safetensors');
    await writeSafetensors(p, [{ name: 'a', dtype: 'F32', shape: [100], data: new Uint8Array(400) }]);
    const bytes = await fsp.readFile(p);
    const cut = file();
    await fsp.writeFile(cut, bytes.subarray(0, bytes.length - 10));
    await expectError(cut, 'SAFETENSORS_OFFSETS', /truncated/);
  });

  it('metadata with non-string values', async () =>
    expectError(await craftSafetensors(file(), { __metadata__: { n: 1 }, a: ok.a }, f32(1, 2)), 'SAFETENSORS_HEADER', /must be a string/));

  it('tensor entry that is not an object', async () => expectError(await craftSafetensors(file(), { a: 5 }, new Uint8Array()), 'SAFETENSORS_HEADER', /entry is not an object/));
});
