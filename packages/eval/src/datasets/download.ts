/**
 * Datasets from a local directory (the official file layout) or downloaded once from the official source
 * into a cache, each file verified against its pinned sha256 before it is used. Downloads are written
 * atomically, so an interrupted download never leaves a file that looks complete.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathExists, writeFileAtomic } from '@llama-pro/core';
import { DatasetError } from '../errors';
import { sha256Hex } from './files';
import { MMLU_SHA256 } from './mmlu-sha256';
import { readTar } from './tar';

export interface RemoteFile {
  readonly file: string;
  readonly url: string;
  /** Pinned sha256 of the official file; null when no trustworthy hash is known (then recorded, not checked). */
  readonly sha256: string | null;
}

/** Official sources (see the READMEs of the shared datasets for provenance). */
export const DATASET_SOURCES: Readonly<Record<string, readonly RemoteFile[]>> = {
  humaneval: [
    { file: 'HumanEval.jsonl.gz', url: 'https://raw.githubusercontent.com/openai/human-eval/master/data/HumanEval.jsonl.gz', sha256: 'b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef' },
  ],
  // No byte-verified copy of google-research's mbpp.jsonl was available to pin, so its hash is recorded, not checked.
  mbpp: [{ file: 'mbpp.jsonl', url: 'https://raw.githubusercontent.com/google-research/google-research/master/mbpp/mbpp.jsonl', sha256: null }],
  gsm8k: [
    { file: 'test.jsonl', url: 'https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/test.jsonl', sha256: '3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14' },
    { file: 'train.jsonl', url: 'https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/train.jsonl', sha256: '17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465' },
  ],
};

/** MMLU is one archive: `data.tar`, whose `data/{dev,val,test}/*.csv` are extracted and checked one by one. */
export const MMLU_ARCHIVE_URL = 'https://people.eecs.berkeley.edu/~hendrycks/data.tar';

export function defaultCacheDir(): string {
  return process.env['LLAMA_PRO_CACHE'] ? path.join(process.env['LLAMA_PRO_CACHE'], 'datasets') : path.join(os.homedir(), '.cache', 'llama-pro', 'datasets');
}

export interface EnsureDatasetOptions {
  /** Directory holding `<name>/...` in the official layout; used when complete. */
  dataDir?: string;
  /** Download cache (default ~/.cache/llama-pro/datasets or $LLAMA_PRO_CACHE/datasets). */
  cacheDir?: string;
  /** Allow downloading (default true). */
  download?: boolean;
  /** Replaces the official URL's origin, e.g. a mirror (tests use a local server). */
  mirror?: (url: string) => string;
  fetchImpl?: typeof fetch;
  log?: (msg: string) => void;
}

async function hasAll(dir: string, files: readonly RemoteFile[]): Promise<boolean> {
  for (const f of files) if (!(await pathExists(path.join(dir, f.file)))) return false;
  return true;
}

/**
 * Returns the root directory (containing `<name>/`) where the dataset's files are: the data dir when it has
 * them, else the cache (downloading and verifying missing files).
 */
export async function ensureDataset(name: string, o: EnsureDatasetOptions = {}): Promise<string> {
  if (name === 'mmlu') return ensureMmlu(o);
  // MBPP: <data-dir>/mbpp/mbpp.jsonl, or next to HumanEval (<data-dir>/humaneval/mbpp.jsonl, the older layout).
  if (name === 'mbpp' && o.dataDir && (await pathExists(path.join(o.dataDir, 'humaneval', 'mbpp.jsonl'))) && !(await pathExists(path.join(o.dataDir, 'mbpp', 'mbpp.jsonl')))) return o.dataDir;
  const files = DATASET_SOURCES[name];
  if (o.dataDir && (files ? await hasAll(path.join(o.dataDir, name), files) : await pathExists(path.join(o.dataDir, name)))) return o.dataDir;
  if (!files) throw new DatasetError(`dataset ${name} is not in ${o.dataDir ?? '(no --data-dir)'} and has no download source; put the official files in <data-dir>/${name}/`, 'DATASET_MISSING');
  const cache = o.cacheDir ?? defaultCacheDir();
  const dir = path.join(cache, name);
  await fsp.mkdir(dir, { recursive: true });
  for (const f of files) {
    const target = path.join(dir, f.file);
    if (await pathExists(target)) {
      const have = sha256Hex(await fsp.readFile(target));
      if (f.sha256 === null || have === f.sha256) continue;
      o.log?.(`cached ${target} has sha256 ${have}, expected ${f.sha256}; downloading again`);
    }
    if (o.download === false) throw new DatasetError(`${name}/${f.file} is neither in ${o.dataDir ?? '(no --data-dir)'} nor in the cache ${dir}, and downloads are off`, 'DATASET_MISSING');
    const url = o.mirror ? o.mirror(f.url) : f.url;
    o.log?.(`downloading ${url}`);
    const data = await download(url, path.join(o.dataDir ?? '<data-dir>', name, f.file), o);
    const got = sha256Hex(data);
    if (f.sha256 !== null && got !== f.sha256) throw new DatasetError(`${url} has sha256 ${got}, expected ${f.sha256}; refusing to use it (corrupt download or changed upstream)`, 'DATASET_CHECKSUM');
    await writeFileAtomic(target, data);
  }
  return cache;
}

async function download(url: string, manualTarget: string, o: EnsureDatasetOptions): Promise<Buffer> {
  o.log?.(`downloading ${url}`);
  try {
    const res = await (o.fetchImpl ?? fetch)(url, { signal: AbortSignal.timeout(600_000) });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    return Buffer.from(await res.arrayBuffer());
  } catch (e) {
    throw new DatasetError(
      `cannot download ${url} (${(e as Error).message}); if this machine is offline, fetch it elsewhere and put it at ${manualTarget}, then pass --data-dir`,
      'DATASET_DOWNLOAD',
    );
  }
}

async function verifiedMmluDir(dir: string): Promise<boolean> {
  for (const [rel, sha] of Object.entries(MMLU_SHA256)) {
    const p = path.join(dir, rel);
    if (!(await pathExists(p))) return false;
    if (sha256Hex(await fsp.readFile(p)) !== sha) return false;
  }
  return true;
}

async function ensureMmlu(o: EnsureDatasetOptions): Promise<string> {
  if (o.dataDir && (await pathExists(path.join(o.dataDir, 'mmlu', 'test')))) return o.dataDir;
  const cache = o.cacheDir ?? defaultCacheDir();
  const dir = path.join(cache, 'mmlu');
  if (await verifiedMmluDir(dir)) return cache;
  if (o.download === false) throw new DatasetError(`mmlu is neither in ${o.dataDir ?? '(no --data-dir)'} nor in the cache ${dir}, and downloads are off`, 'DATASET_MISSING');
  const url = o.mirror ? o.mirror(MMLU_ARCHIVE_URL) : MMLU_ARCHIVE_URL;
  const tar = await download(url, path.join(o.dataDir ?? '<data-dir>', 'mmlu', '{dev,val,test}/'), o);
  const wanted = new Map<string, Buffer>();
  for (const [name, data] of readTar(tar)) {
    const rel = name.replace(/^data\//, '');
    if (MMLU_SHA256[rel]) wanted.set(rel, Buffer.from(data));
  }
  for (const [rel, sha] of Object.entries(MMLU_SHA256)) {
    const data = wanted.get(rel);
    if (!data) throw new DatasetError(`${url} has no data/${rel}; not the official MMLU data.tar`, 'DATASET_CHECKSUM');
    const got = sha256Hex(data);
    if (got !== sha) throw new DatasetError(`data/${rel} in ${url} has sha256 ${got}, expected ${sha}; refusing to use it`, 'DATASET_CHECKSUM');
  }
  for (const [rel, data] of wanted) {
    await fsp.mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await writeFileAtomic(path.join(dir, rel), data);
  }
  return cache;
}
