import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FALLBACK_CODES, nativeIo, nativeIoStatus } from '../src';

// CI builds the addon and sets LLAMA_PRO_REQUIRE_NATIVE_IO=1, so a broken build fails there instead of
// silently falling back; elsewhere (macOS, no compiler) these tests are skipped with the reason.
const status = nativeIoStatus();
if (process.env.LLAMA_PRO_REQUIRE_NATIVE_IO === '1' && !status.available) throw new Error(`native-io is required but unavailable: ${status.detail}`);
const maybe = status.available ? describe : describe.skip;

/** What `f` throws synchronously (undefined when it returns). */
function thrown(f: () => unknown): Error | undefined {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  return undefined;
}

maybe('copyFileRange (addon at hand)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-native-io-'));
  });
  afterAll(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('copies byte ranges between arbitrary (unaligned) offsets, leaving other bytes alone', async () => {
    const src = randomBytes(3 << 20);
    await fsp.writeFile(path.join(dir, 'src'), src);
    const out = Buffer.alloc(4 << 20, 0xab);
    await fsp.writeFile(path.join(dir, 'dst'), out);
    const fi = await fsp.open(path.join(dir, 'src'), 'r');
    const fo = await fsp.open(path.join(dir, 'dst'), 'r+');
    try {
      const io = nativeIo()!;
      await io.copyFileRange(fi.fd, 12_345, fo.fd, 7, 2_000_001);
      await io.copyFileRange(fi.fd, 0, fo.fd, 3_000_000, 1_000_000); // grows the file
      await io.copyFileRange(fi.fd, 5, fo.fd, 1, 0); // nothing
      src.copy(out, 7, 12_345, 12_345 + 2_000_001);
      const want = Buffer.concat([out.subarray(0, 3_000_000), src.subarray(0, 1_000_000), out.subarray(4_000_000)]);
      const got = await fsp.readFile(path.join(dir, 'dst'));
      expect(got.length).toBe(want.length);
      expect(got.equals(want)).toBe(true);
    } finally {
      await fi.close();
      await fo.close();
    }
  });

  it('reports a source that ends early as ESHORT, a bad descriptor as EBADF, and bad arguments as a TypeError', async () => {
    await fsp.writeFile(path.join(dir, 'small'), randomBytes(100));
    const fi = await fsp.open(path.join(dir, 'small'), 'r');
    const fo = await fsp.open(path.join(dir, 'out'), 'w');
    try {
      const io = nativeIo()!;
      const short = await io.copyFileRange(fi.fd, 50, fo.fd, 0, 51).catch((e: NodeJS.ErrnoException) => e);
      expect(short).toMatchObject({ code: 'ESHORT', fallback: true, message: 'copy_file_range: the source ended before the requested length was copied' });
      expect(FALLBACK_CODES.has('ESHORT')).toBe(true);
      // A bad descriptor is a real failure, not a reason to retry through user space.
      await expect(io.copyFileRange(fi.fd, 0, 987_654, 0, 10)).rejects.toMatchObject({ code: 'EBADF', fallback: false });
      // Thrown synchronously, from the addon's realm (so checked by name, not instanceof).
      for (const bad of [() => io.copyFileRange(fi.fd, -1, fo.fd, 0, 1), () => io.copyFileRange(fi.fd, 0.5, fo.fd, 0, 1), () => (io.copyFileRange as unknown as (...a: unknown[]) => unknown)(fi.fd, 0, fo.fd)]) {
        expect(thrown(bad)).toMatchObject({ name: 'TypeError', message: 'copyFileRange(fdIn, offsetIn, fdOut, offsetOut, length) takes five non-negative integers' });
      }
    } finally {
      await fi.close();
      await fo.close();
    }
  });
});

maybe('tuneMalloc (addon at hand)', () => {
  it('raises the glibc thresholds where glibc runs, and checks its arguments', () => {
    const io = nativeIo()!;
    const glibc = Boolean((process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime);
    // The values core uses.
    expect(io.tuneMalloc(32 << 20, 1 << 30)).toBe(glibc);
    let err: Error | undefined;
    try {
      io.tuneMalloc(-1, 0);
    } catch (e) {
      err = e as Error;
    }
    expect(err).toMatchObject({ name: 'TypeError', message: 'tuneMalloc(mmapThreshold, trimThreshold) takes two integers in [0, 2^31)' });
  });
});

maybe('glibcVersion and execve (addon at hand)', () => {
  it('reports the running glibc as process.report does', () => {
    const report = (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime;
    expect(nativeIo()!.glibcVersion!()).toBe(report);
  });

  it('a failed exec throws the errno and leaves the process running; bad arguments are a TypeError', () => {
    const io = nativeIo()!;
    expect(thrown(() => io.execve!('/nonexistent/llama-pro-no-such-file', ['x'], {}))).toMatchObject({ code: 'ENOENT', message: 'execve: No such file or directory' });
    expect(thrown(() => io.execve!(os.tmpdir(), ['x'], {}))).toMatchObject({ code: 'EACCES' });
    for (const bad of [() => (io.execve as unknown as (...a: unknown[]) => unknown)('/bin/true', 'x', {}), () => io.execve!('/bin/true', ['a\u0000b'], {})]) {
      expect(thrown(bad)?.name).toBe('TypeError');
    }
    // still here, standard streams still open
    for (const fd of [0, 1, 2]) expect(() => fs.fstatSync(fd)).not.toThrow();
  });
});

maybe('adamwUpdate (addon at hand)', () => {
  // Bit-identity with train's JavaScript AdamW is tested in train (optim.test.ts); here: one element by
  // hand, and the argument checks.
  it('updates p, m, v in place by the float64 AdamW formula and leaves g alone', () => {
    const io = nativeIo()!;
    const [p, g, m, v] = [Float32Array.of(0.5), Float32Array.of(0.2), Float32Array.of(0.01), Float32Array.of(0.001)];
    const [b1, b2, eps, stepSize, bc2, decay, scale] = [0.9, 0.95, 1e-8, 0.01 / (1 - 0.9 ** 2), Math.sqrt(1 - 0.95 ** 2), 1 - 0.01 * 0.1, 0.5];
    io.adamwUpdate!(p, g, m, v, b1, b2, eps, stepSize, bc2, decay, scale);
    const gi = Math.fround(Math.fround(0.2) * scale);
    const mi = b1 * Math.fround(0.01) + (1 - b1) * gi;
    const vi = b2 * Math.fround(0.001) + (1 - b2) * gi * gi;
    expect([m[0], v[0], g[0]]).toEqual([Math.fround(mi), Math.fround(vi), Math.fround(0.2)]);
    expect(p[0]).toBe(Math.fround(0.5 * decay - (stepSize * mi) / (Math.sqrt(vi) / bc2 + eps)));
  });

  it('rejects wrong types, lengths, argument counts and shared memory with a TypeError', () => {
    const io = nativeIo()!;
    const f = (n: number) => new Float32Array(n);
    const h = [0.9, 0.95, 1e-8, 0.01, 0.5, 1, 1] as const;
    const shared = new Float32Array(8);
    const loose = io.adamwUpdate as unknown as (...a: unknown[]) => unknown;
    const cases: [() => unknown, RegExp][] = [
      [() => loose(f(2), new Float64Array(2), f(2), f(2), ...h), /must be Float32Arrays/],
      [() => loose(f(2), [0, 0], f(2), f(2), ...h), /must be Float32Arrays/],
      [() => io.adamwUpdate!(f(2), f(3), f(2), f(2), ...h), /same length/],
      [() => io.adamwUpdate!(shared.subarray(0, 4), f(4), shared.subarray(3, 7), f(4), ...h), /share memory/],
      [() => loose(f(2), f(2), f(2), f(2), 0.9, 0.95, 1e-8, 0.01, 0.5, '1', 1), /must be numbers/],
      [() => loose(f(2), f(2), f(2), f(2), 0.9), /takes 4 Float32Arrays and 7 numbers/],
    ];
    for (const [bad, message] of cases) {
      const e = thrown(bad);
      expect(e?.name).toBe('TypeError');
      expect(e?.message).toMatch(message);
    }
    io.adamwUpdate!(shared.subarray(0, 4), f(4), shared.subarray(4, 8), f(4), ...h); // adjacent views do not overlap
  });
});

describe('nativeIoStatus', () => {
  it('says why the addon is unavailable, or where it came from', () => {
    expect(status.detail.length).toBeGreaterThan(0);
    if (status.available) expect(status.detail).toMatch(/llama_pro_native_io\.node$/);
    else expect(nativeIo()).toBeUndefined();
  });
});
