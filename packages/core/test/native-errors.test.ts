/**
 * How the writer treats in-kernel copy failures: a "fallback" error (the filesystems cannot do it)
 * sends the rest of the copy through user space; any other error fails the write with a clear message.
 * The addon is replaced by a fake that copies the first step for real, then fails as told.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { tmpDir } from './helpers';

const failure: { code: string; fallback: boolean } = { code: 'EXDEV', fallback: true };
let calls = 0;
const tuneCalls: [number, number][] = [];

jest.mock('@llama-pro/native-io', () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const fs = require('node:fs') as typeof import('node:fs');
  return {
    nativeIoStatus: () => ({ available: true, detail: 'fake' }),
    nativeIo: () => ({
      tuneMalloc: (mmapThreshold: number, trimThreshold: number) => {
        tuneCalls.push([mmapThreshold, trimThreshold]);
        return true;
      },
      async copyFileRange(fdIn: number, offIn: number, fdOut: number, offOut: number, length: number): Promise<void> {
        if (calls++ === 0) {
          const buf = Buffer.alloc(length);
          fs.readSync(fdIn, buf, 0, length, offIn);
          fs.writeSync(fdOut, buf, 0, length, offOut);
          return;
        }
        throw Object.assign(new Error(`copy_file_range: ${failure.code}`), failure);
      },
    }),
  };
});

// eslint-disable-next-line @typescript-eslint/no-require-imports
const core = require('../src') as typeof import('../src');

it('tuneAllocatorForInference asks the addon once per process for a 32 MiB mmap / 1 GiB trim threshold', () => {
  expect(core.tuneAllocatorForInference()).toBe(true);
  expect(core.tuneAllocatorForInference()).toBe(true);
  expect(tuneCalls).toEqual([[32 << 20, 1 << 30]]);
});

describe('in-kernel copy failures', () => {
  let dir: string;
  let src: import('../src').SafetensorsFile;
  const size = (64 << 20) + 4096; // two copy steps: the first in the "kernel", then the failure
  let data: Buffer;
  beforeAll(async () => {
    dir = await tmpDir('lp-native-err-');
    data = Buffer.alloc(size);
    for (let i = 0; i < size; i += 4096) data[i] = (i / 4096) & 0xff;
    await core.writeSafetensors(path.join(dir, 'src.safetensors'), [{ name: 't', dtype: 'U8', shape: [size], data }]);
    src = await core.SafetensorsFile.open(path.join(dir, 'src.safetensors'));
  });
  afterAll(async () => {
    await src.close();
    await fsp.rm(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    calls = 0;
  });

  it('a fallback error mid-tensor: the rest goes through user space, the bytes are right', async () => {
    Object.assign(failure, { code: 'EXDEV', fallback: true });
    const r = await core.saveModelDir(path.join(dir, 'ok'), { config: {}, tensors: [{ name: 't', dtype: 'U8', shape: [size], source: { file: src, name: 't' } }] });
    expect(r.copy).toEqual({ kernelBytes: 64 << 20, userBytes: 4096 });
    const got = await core.SafetensorsFile.open(path.join(dir, 'ok', 'model.safetensors'));
    expect((await got.read('t')).equals(data)).toBe(true);
    await got.close();
  });

  it('any other error fails the write, names the tensor and the cause, and leaves nothing behind', async () => {
    Object.assign(failure, { code: 'ENOSPC', fallback: false });
    const out = path.join(dir, 'full');
    await expect(core.saveModelDir(out, { config: {}, tensors: [{ name: 't', dtype: 'U8', shape: [size], source: { file: src, name: 't' } }] })).rejects.toThrow(
      `copying tensor "t" from ${path.join(dir, 'src.safetensors')} failed: copy_file_range: ENOSPC (ENOSPC)`,
    );
    expect((await fsp.readdir(dir)).sort()).toEqual(['ok', 'src.safetensors']);
  });
});
