/**
 * Core without @llama-pro/native-io (its optional dependency): everything works, copies go through user
 * space, and the status says why.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { tmpDir } from './helpers';

jest.mock('@llama-pro/native-io', () => {
  throw new Error("Cannot find module '@llama-pro/native-io'");
});

// Loaded after the mock is in place (static imports of core would share the real module).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const core = require('../src') as typeof import('../src');

it('without the addon package the allocator is left alone and there is no native AdamW (the optimizer runs its own loop)', () => {
  expect(core.tuneAllocatorForInference()).toBe(false);
  expect(core.nativeAdamW()).toBeUndefined();
});

it('without the addon package, copyFrom copies through user space and nativeIoStatus says why', async () => {
  expect(core.nativeIoStatus()).toEqual({ available: false, detail: '@llama-pro/native-io is not installed (an optional dependency of @llama-pro/core)' });
  const dir = await tmpDir('lp-nonative-');
  const srcFile = path.join(dir, 'src.safetensors');
  const data = Buffer.from(Array.from({ length: 64 }, (_, i) => 255 - i));
  await core.writeSafetensors(srcFile, [{ name: 't', dtype: 'U8', shape: [64], data }]);
  const src = await core.SafetensorsFile.open(srcFile);
  try {
    const out = path.join(dir, 'out');
    const r = await core.saveModelDir(out, { config: { note: 'x' }, tensors: [{ name: 'u', dtype: 'U8', shape: [64], source: { file: src, name: 't' } }] });
    expect(r.copy).toEqual({ kernelBytes: 0, userBytes: 64 });
    const got = await core.SafetensorsFile.open(path.join(out, 'model.safetensors'));
    expect((await got.read('u')).equals(data)).toBe(true);
    await got.close();
  } finally {
    await src.close();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});
