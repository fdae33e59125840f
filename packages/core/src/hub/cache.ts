/**
 * Models by Hugging Face hub id (`org/name[@revision]`) from the standard local cache, offline, in the
 * layout `huggingface_hub` and transformers write (documented in huggingface_hub's "Manage your cache"
 * guide):
 *
 *   $HF_HUB_CACHE (default $HF_HOME/hub, HF_HOME default $XDG_CACHE_HOME/huggingface, i.e. ~/.cache/huggingface)
 *     models--org--name/
 *       refs/main                 the commit hash the branch/tag pointed at when last downloaded
 *       snapshots/<commit>/...    the repository files at that commit (symlinks into blobs/)
 *       blobs/<etag>              file contents, named by git blob sha1 or, for LFS files, sha256
 *
 * Nothing here touches the network; downloading missing files is the CLI's job (cli/src/hub.ts).
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CheckpointError } from '../errors';

/** A parsed hub id. `revision` is a branch, tag or 40-hex commit ("main" when not given). */
export interface HubId {
  readonly repo: string;
  readonly revision: string;
  /** True when the id named a revision (`@...`). */
  readonly explicitRevision: boolean;
}

const NAME = '[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_-])?';
const HUB_ID = new RegExp(`^(${NAME})/(${NAME})(?:@([A-Za-z0-9][A-Za-z0-9._/-]{0,199}))?$`);
export const COMMIT_HASH = /^[0-9a-f]{40}$/;

/**
 * Parses `org/name[@revision]`; null when `spec` cannot be a hub id (absolute or ./ paths, more than one
 * slash before `@`, `..` segments, characters the hub does not allow).
 */
export function parseHubId(spec: string): HubId | null {
  const m = HUB_ID.exec(spec);
  if (!m) return null;
  const [, org, name, rev] = m;
  if (org!.includes('..') || name!.includes('..') || (rev !== undefined && rev.split('/').some((s) => s === '..' || s === '.' || s === ''))) return null;
  return { repo: `${org}/${name}`, revision: rev ?? 'main', explicitRevision: rev !== undefined };
}

/** The hub cache directory, as huggingface_hub computes it (HF_HUB_CACHE, else HF_HOME/hub, else XDG_CACHE_HOME/huggingface/hub). */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env['HF_HUB_CACHE']) return env['HF_HUB_CACHE'];
  const home = env['HF_HOME'] || path.join(env['XDG_CACHE_HOME'] || path.join(os.homedir(), '.cache'), 'huggingface');
  return path.join(home, 'hub');
}

/** True when HF_HUB_OFFLINE asks for no network (huggingface_hub accepts 1/ON/YES/TRUE, any case). */
export function hubOffline(env: NodeJS.ProcessEnv = process.env): boolean {
  return ['1', 'on', 'yes', 'true'].includes((env['HF_HUB_OFFLINE'] ?? '').trim().toLowerCase());
}

/** `models--org--name`, the repository's folder in the cache. */
export function hubRepoFolder(repo: string): string {
  return `models--${repo.split('/').join('--')}`;
}

export interface CachedSnapshot {
  readonly id: HubId;
  /** The cache root that was searched. */
  readonly cacheDir: string;
  /** `<cacheDir>/models--org--name`. */
  readonly repoDir: string;
  /** The commit the revision resolved to, or null when the cache has no ref for it. */
  readonly commit: string | null;
  /** `snapshots/<commit>` when it exists, else null. */
  readonly dir: string | null;
  /** Files a model directory needs that the snapshot lacks (config.json, weights, index shards); empty when complete. */
  readonly missing: readonly string[];
}

async function exists(p: string): Promise<boolean> {
  return fsp.stat(p).then(
    () => true,
    () => false,
  );
}

/**
 * The model files a snapshot lacks: config.json and the safetensors weights (a single file, or the
 * index plus every shard it lists). Dangling symlinks (blob removed) count as missing.
 */
export async function missingModelFiles(dir: string): Promise<string[]> {
  const missing: string[] = [];
  if (!(await exists(path.join(dir, 'config.json')))) missing.push('config.json');
  const index = path.join(dir, 'model.safetensors.index.json');
  if (await exists(index)) {
    let shards: string[];
    try {
      const parsed = JSON.parse(await fsp.readFile(index, 'utf8')) as { weight_map?: Record<string, string> };
      shards = [...new Set(Object.values(parsed.weight_map ?? {}))].sort();
    } catch (e) {
      throw new CheckpointError(`${index} is not valid JSON (${(e as Error).message}); delete it from the cache and download again`, 'HUB_CACHE_INVALID');
    }
    for (const s of shards) if (!(await exists(path.join(dir, s)))) missing.push(s);
  } else if (!(await exists(path.join(dir, 'model.safetensors')))) missing.push('model.safetensors');
  return missing;
}

/** Resolves a hub id to its snapshot in the local cache (offline; never throws for a cache miss). */
export async function findCachedSnapshot(id: HubId, cacheDir = hubCacheDir()): Promise<CachedSnapshot> {
  const repoDir = path.join(cacheDir, hubRepoFolder(id.repo));
  let commit: string | null = null;
  if (COMMIT_HASH.test(id.revision)) commit = id.revision;
  else {
    const ref = await fsp.readFile(path.join(repoDir, 'refs', ...id.revision.split('/')), 'utf8').catch(() => null);
    const c = ref?.trim();
    if (c && COMMIT_HASH.test(c)) commit = c;
  }
  const snap = commit ? path.join(repoDir, 'snapshots', commit) : null;
  const dir = snap && (await exists(snap)) ? snap : null;
  const missing = dir ? await missingModelFiles(dir) : ['config.json', 'model.safetensors'];
  return { id, cacheDir, repoDir, commit, dir, missing };
}
