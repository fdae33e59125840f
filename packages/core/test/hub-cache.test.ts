/**
 * Hub ids through the local Hugging Face cache. The layout and the environment variables are
 * huggingface_hub's (docs: "Manage your cache" / "Environment variables"): HF_HUB_CACHE, else
 * HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub;
 * models--org--name/{refs/main, snapshots/<commit>/, blobs/}.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { findCachedSnapshot, hubCacheDir, hubOffline, hubRepoFolder, parseHubId } from '../src';

describe('parseHubId', () => {
  it('accepts org/name[@revision] and nothing that is clearly a path', () => {
    expect(parseHubId('meta-llama/Llama-2-7b-hf')).toEqual({ repo: 'meta-llama/Llama-2-7b-hf', revision: 'main', explicitRevision: false });
    expect(parseHubId('TinyLlama/TinyLlama-1.1B-Chat-v1.0@refs/pr/1')).toEqual({ repo: 'TinyLlama/TinyLlama-1.1B-Chat-v1.0', revision: 'refs/pr/1', explicitRevision: true });
    expect(parseHubId('org/name@0123456789abcdef0123456789abcdef01234567')?.revision).toBe('0123456789abcdef0123456789abcdef01234567');
    for (const p of ['./org/name', '/abs/name', 'a/b/c', 'name', 'org/', '../x', 'org/..', 'org/name@', 'org/name@../x', 'org/-bad']) expect([p, parseHubId(p)]).toEqual([p, null]);
  });
});

describe('hubCacheDir / hubOffline', () => {
  it('follows huggingface_hub precedence', () => {
    expect(hubCacheDir({ HF_HUB_CACHE: '/c', HF_HOME: '/h', XDG_CACHE_HOME: '/x' })).toBe('/c');
    expect(hubCacheDir({ HF_HOME: '/h', XDG_CACHE_HOME: '/x' })).toBe(path.join('/h', 'hub'));
    expect(hubCacheDir({ XDG_CACHE_HOME: '/x' })).toBe(path.join('/x', 'huggingface', 'hub'));
    expect(hubCacheDir({})).toBe(path.join(os.homedir(), '.cache', 'huggingface', 'hub'));
    expect(hubRepoFolder('meta-llama/Llama-2-7b-hf')).toBe('models--meta-llama--Llama-2-7b-hf');
    expect([hubOffline({ HF_HUB_OFFLINE: '1' }), hubOffline({ HF_HUB_OFFLINE: 'TRUE' }), hubOffline({ HF_HUB_OFFLINE: '0' }), hubOffline({})]).toEqual([true, true, false, false]);
  });
});

describe('findCachedSnapshot', () => {
  let cache: string;
  const commit = 'a'.repeat(40);
  const older = 'b'.repeat(40);
  beforeAll(async () => {
    cache = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-hubc-'));
    const repo = path.join(cache, 'models--org--tiny');
    await fsp.mkdir(path.join(repo, 'refs'), { recursive: true });
    await fsp.mkdir(path.join(repo, 'blobs'));
    await fsp.writeFile(path.join(repo, 'refs', 'main'), commit + '\n');
    for (const [c, files] of [
      [commit, { 'config.json': '{}', 'model.safetensors.index.json': JSON.stringify({ weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' } }), 'model-00001-of-00002.safetensors': 'x', 'model-00002-of-00002.safetensors': 'y' }],
      [older, { 'config.json': '{}', 'model.safetensors.index.json': JSON.stringify({ weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' } }), 'model-00001-of-00002.safetensors': 'x' }],
    ] as const) {
      const snap = path.join(repo, 'snapshots', c);
      await fsp.mkdir(snap, { recursive: true });
      for (const [f, body] of Object.entries(files)) {
        await fsp.writeFile(path.join(repo, 'blobs', `${c}-${f}`), body);
        await fsp.symlink(path.join('..', '..', 'blobs', `${c}-${f}`), path.join(snap, f));
      }
    }
  });
  afterAll(async () => {
    await fsp.rm(cache, { recursive: true, force: true });
  });

  it('resolves refs/main to the snapshot and checks the index shards', async () => {
    const s = await findCachedSnapshot(parseHubId('org/tiny')!, cache);
    expect(s).toMatchObject({ commit, dir: path.join(cache, 'models--org--tiny', 'snapshots', commit), missing: [] });
  });

  it('a commit revision picks its snapshot; a missing shard is reported', async () => {
    const s = await findCachedSnapshot(parseHubId(`org/tiny@${older}`)!, cache);
    expect(s).toMatchObject({ commit: older, missing: ['model-00002-of-00002.safetensors'] });
  });

  it('unknown refs and repos are misses, not errors', async () => {
    expect(await findCachedSnapshot(parseHubId('org/tiny@dev')!, cache)).toMatchObject({ commit: null, dir: null });
    expect(await findCachedSnapshot(parseHubId('org/other')!, cache)).toMatchObject({ commit: null, dir: null });
  });

  it('a dangling symlink (blob deleted) counts as missing', async () => {
    await fsp.rm(path.join(cache, 'models--org--tiny', 'blobs', `${commit}-config.json`));
    expect((await findCachedSnapshot(parseHubId('org/tiny')!, cache)).missing).toEqual(['config.json']);
  });
});
