/**
 * Model arguments given as Hugging Face hub ids. `resolveModelSpec` turns `org/name[@revision]` into a
 * local snapshot directory: from the standard cache (core `findCachedSnapshot`, offline) when it is
 * complete there, else by downloading the missing files into that same cache, in huggingface_hub's layout
 * (blobs/<etag>, snapshots/<commit>/<file> symlinks, refs/<branch>), so Python tools share the files.
 *
 * Downloads: repository metadata through `@huggingface/hub` (modelInfo for the commit, listFiles for
 * sizes and etags), file bytes by ranged GETs of `<hub>/<repo>/resolve/<commit>/<file>` so an
 * interrupted download resumes from its `.incomplete` file; every file is checked against its etag
 * (sha256 for LFS files, git blob sha1 for the others) before it enters the cache. HF_TOKEN is sent as a
 * bearer token; HF_HUB_OFFLINE=1 forbids any network access; HF_ENDPOINT picks another hub.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { listFiles, modelInfo } from '@huggingface/hub';
import { progressReporter } from './output';
import { COMMIT_HASH, CheckpointError, findCachedSnapshot, hubCacheDir, hubOffline, parseHubId, writeFileAtomic, type HubId, type ProgressReporter } from '@llama-pro/core';

export interface HubOptions {
  env?: NodeJS.ProcessEnv;
  /** fetch for every request (tests pass a fake one; the default is the global fetch). */
  fetch?: typeof fetch;
  progress?: ProgressReporter;
  log?: (message: string) => void;
}

/** Files of a repository a model directory uses (top level only): config, weights, tokenizer, templates. */
export function wantedHubFile(p: string): boolean {
  if (p.includes('/')) return false;
  return (
    p.endsWith('.safetensors') ||
    ['config.json', 'generation_config.json', 'model.safetensors.index.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'tokenizer.model', 'chat_template.jinja', 'chat_template.json'].includes(p)
  );
}

async function pathExists(p: string): Promise<boolean> {
  return fsp.lstat(p).then(
    () => true,
    () => false,
  );
}

/**
 * A model argument as a local path: an existing path or an http(s) URL is returned unchanged; a hub id
 * resolves through the cache (downloading what is missing unless offline); anything else is returned
 * unchanged so the command reports it as a missing directory.
 */
export async function resolveModelSpec(spec: string, o: HubOptions = {}): Promise<string> {
  if (/^https?:\/\//i.test(spec) || (await pathExists(spec))) return spec;
  const id = parseHubId(spec);
  if (!id) return spec;
  return resolveHubId(spec, id, o);
}

/**
 * A model named in a config file (a train experiment's `model:`, a study's `base.path:`), whose relative
 * paths are relative to the file's directory `dir`: a path that exists there (or that cannot be a hub id)
 * is returned resolved against `dir`; a hub id resolves exactly as on the command line (resolveModelSpec:
 * the cache, offline; the same errors).
 */
export async function resolveConfigModelSpec(spec: string, dir: string, o: HubOptions = {}): Promise<string> {
  if (/^https?:\/\//i.test(spec)) return spec;
  const local = path.resolve(dir, spec);
  const id = parseHubId(spec);
  if (!id || (await pathExists(local))) return local;
  return resolveHubId(spec, id, o);
}

/** Hub options as the CLI uses them: a progress bar for downloads, notes on stderr. */
export function cliHubOptions(): HubOptions {
  return { progress: progressReporter(), log: (m: string) => process.stderr.write(`llama-pro: ${m}\n`) };
}

async function resolveHubId(spec: string, id: HubId, o: HubOptions): Promise<string> {
  const env = o.env ?? process.env;
  const cacheDir = hubCacheDir(env);
  const snap = await findCachedSnapshot(id, cacheDir);
  if (snap.dir && snap.missing.length === 0) {
    o.log?.(`${spec}: using the Hugging Face cache ${snap.dir}`);
    return snap.dir;
  }
  const where = !snap.commit
    ? `${snap.repoDir} has no ${COMMIT_HASH.test(id.revision) ? `snapshot ${id.revision}` : `ref "${id.revision}"`}`
    : !snap.dir
      ? `${snap.repoDir} has no snapshot ${snap.commit}`
      : `snapshot ${snap.dir} lacks ${snap.missing.join(', ')}`;
  if (hubOffline(env)) {
    throw new CheckpointError(
      `${spec} is not a local directory and not complete in the Hugging Face cache (${where}); HF_HUB_OFFLINE is set, so nothing is downloaded: unset HF_HUB_OFFLINE, or fetch it where there is a network (huggingface-cli download ${id.repo}${id.explicitRevision ? ` --revision ${id.revision}` : ''}) and point HF_HUB_CACHE at that cache`,
      'HUB_OFFLINE',
    );
  }
  o.log?.(`${spec}: not a local directory and not complete in the Hugging Face cache (${where}); fetching it from the hub into ${cacheDir}`);
  try {
    return await downloadSnapshot(id, cacheDir, o);
  } catch (e) {
    // A mistyped local path looks like a hub id too: say both readings.
    if (e instanceof CheckpointError && e.code === 'HUB_LOOKUP') throw new CheckpointError(`${spec} is not a local path, and as a Hugging Face hub id: ${e.message}`, 'MODEL_NOT_FOUND');
    throw e;
  }
}

/** The hub's base URL (HF_ENDPOINT, as huggingface_hub reads it). */
function hubUrl(env: NodeJS.ProcessEnv): string {
  return (env['HF_ENDPOINT'] || 'https://huggingface.co').replace(/\/+$/, '');
}

function networkError(what: string, e: unknown): CheckpointError {
  const status = (e as { statusCode?: number }).statusCode;
  const hint = status === 401 || status === 403 ? ' (gated or private: set HF_TOKEN to a token with access)' : status === 404 ? ' (no such repository or revision on the hub)' : '';
  return new CheckpointError(`${what}: ${(e as Error).message}${hint}`, 'HUB_DOWNLOAD');
}

/** Downloads the model files of `id` into the cache; returns the snapshot directory. */
export async function downloadSnapshot(id: HubId, cacheDir: string, o: HubOptions = {}): Promise<string> {
  const env = o.env ?? process.env;
  const token = env['HF_TOKEN'] || undefined;
  const common = { hubUrl: hubUrl(env), ...(o.fetch ? { fetch: o.fetch } : {}), ...(token ? { accessToken: token } : {}) };
  let commit: string;
  try {
    commit = (await modelInfo({ name: id.repo, revision: id.revision, additionalFields: ['sha'], ...common })).sha;
  } catch (e) {
    const err = networkError(`cannot look up ${id.repo}@${id.revision} on ${common.hubUrl}`, e);
    throw new CheckpointError(err.message, 'HUB_LOOKUP');
  }
  if (!COMMIT_HASH.test(commit ?? '')) throw new CheckpointError(`${common.hubUrl} answered no commit for ${id.repo}@${id.revision}`, 'HUB_DOWNLOAD');
  const files: { path: string; size: number; etag: string; lfs: boolean }[] = [];
  try {
    for await (const f of listFiles({ repo: id.repo, revision: commit, recursive: false, ...common })) {
      if (f.type !== 'file' || !wantedHubFile(f.path)) continue;
      const etag = f.lfs?.oid ?? f.oid;
      if (!etag) throw new CheckpointError(`the hub lists no checksum for ${id.repo}/${f.path}; cannot verify it`, 'HUB_DOWNLOAD');
      files.push({ path: f.path, size: f.size, etag, lfs: f.lfs !== undefined });
    }
  } catch (e) {
    if (e instanceof CheckpointError) throw e;
    throw networkError(`cannot list the files of ${id.repo}@${commit}`, e);
  }
  if (!files.some((f) => f.path === 'config.json')) throw new CheckpointError(`${id.repo}@${id.revision} has no config.json; it is not a transformers model repository`, 'HUB_NOT_A_MODEL');
  if (!files.some((f) => f.path.endsWith('.safetensors'))) throw new CheckpointError(`${id.repo}@${id.revision} has no .safetensors weights (llama-pro reads safetensors only; convert the .bin/.pth weights with transformers first)`, 'HUB_NOT_A_MODEL');

  const repoDir = path.join(cacheDir, `models--${id.repo.split('/').join('--')}`);
  const snapDir = path.join(repoDir, 'snapshots', commit);
  await fsp.mkdir(path.join(repoDir, 'blobs'), { recursive: true });
  await fsp.mkdir(snapDir, { recursive: true });
  const todo = [];
  for (const f of files) if (!(await pathExists(path.join(repoDir, 'blobs', f.etag)))) todo.push(f);
  const total = todo.reduce((s, f) => s + f.size, 0);
  let done = 0;
  if (todo.length) o.progress?.start(total, `download ${id.repo}`);
  try {
    for (const f of todo) {
      const url = `${common.hubUrl}/${id.repo}/resolve/${commit}/${encodeURIComponent(f.path)}`;
      await downloadBlob(url, path.join(repoDir, 'blobs', f.etag), f, token, o.fetch ?? fetch, (n) => {
        done += n;
        o.progress?.update(done, { file: f.path });
      });
    }
  } finally {
    if (todo.length) o.progress?.stop();
  }
  for (const f of files) {
    const link = path.join(snapDir, f.path);
    if (await pathExists(link)) continue;
    await fsp.symlink(path.join('..', '..', 'blobs', f.etag), link);
  }
  if (!COMMIT_HASH.test(id.revision)) {
    await fsp.mkdir(path.dirname(path.join(repoDir, 'refs', ...id.revision.split('/'))), { recursive: true });
    await writeFileAtomic(path.join(repoDir, 'refs', ...id.revision.split('/')), commit);
  }
  return snapDir;
}

/** Git's blob id: sha1 over `blob <size>\0` and the bytes (what the hub lists as oid for non-LFS files). */
function gitBlobHasher(size: number): Hash {
  return createHash('sha1').update(`blob ${size}\0`);
}

async function hashExisting(file: string, h: Hash): Promise<number> {
  let n = 0;
  for await (const chunk of createReadStream(file)) {
    h.update(chunk as Buffer);
    n += (chunk as Buffer).length;
  }
  return n;
}

/**
 * One file into `blob`: resumes `<blob>.incomplete` with a Range request when the server honours it
 * (206), restarts otherwise; the checksum covers the whole file and must equal the etag.
 */
async function downloadBlob(url: string, blob: string, f: { path: string; size: number; etag: string; lfs: boolean }, token: string | undefined, fetchFn: typeof fetch, onBytes: (n: number) => void): Promise<void> {
  const partial = `${blob}.incomplete`;
  let have = (await fsp.stat(partial).catch(() => null))?.size ?? 0;
  if (have > f.size) {
    await fsp.rm(partial, { force: true });
    have = 0;
  }
  const headers: Record<string, string> = {};
  if (token) headers['Authorization'] = `Bearer ${token}`;
  if (have > 0) headers['Range'] = `bytes=${have}-`;
  let res: Response;
  try {
    res = await fetchFn(url, { headers, redirect: 'follow' });
  } catch (e) {
    throw new CheckpointError(`cannot download ${url}: ${(e as Error).message} (rerun to resume from ${partial})`, 'HUB_DOWNLOAD');
  }
  if (res.status === 416 && have === f.size) {
    // Everything is already there; only the check remains.
  } else if (!res.ok) {
    const hint = res.status === 401 || res.status === 403 ? ' (gated or private: set HF_TOKEN to a token with access)' : '';
    throw new CheckpointError(`cannot download ${url}: HTTP ${res.status}${hint}`, 'HUB_DOWNLOAD');
  }
  const resumed = res.status === 206 || res.status === 416;
  if (!resumed) have = 0;
  const h = f.lfs ? createHash('sha256') : gitBlobHasher(f.size);
  if (resumed) onBytes(await hashExisting(partial, h));
  const out = await fsp.open(partial, resumed ? 'a' : 'w');
  try {
    if (res.status !== 416 && res.body) {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        h.update(chunk);
        await out.write(chunk);
        onBytes(chunk.length);
      }
    }
    await out.sync();
  } finally {
    await out.close();
  }
  const size = (await fsp.stat(partial)).size;
  const digest = h.digest('hex');
  if (size !== f.size || digest !== f.etag) {
    await fsp.rm(partial, { force: true });
    throw new CheckpointError(`downloaded ${f.path} does not match the hub's checksum (${size} bytes, ${f.lfs ? 'sha256' : 'git sha1'} ${digest}; expected ${f.size} bytes, ${f.etag}); removed it, rerun to download again`, 'HUB_CHECKSUM');
  }
  await fsp.rename(partial, blob);
}
