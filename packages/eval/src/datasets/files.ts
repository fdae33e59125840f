/** Reading the official dataset files: JSONL (optionally gzipped), with hashes for the result records. */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { DatasetError } from '../errors';

export interface DatasetFileInfo {
  /** Path relative to the dataset directory. */
  readonly file: string;
  readonly sha256: string;
  readonly bytes: number;
}

export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Combined hash of a list of files (sha256 over "sha  file\n" lines, sorted by name). */
export function combinedHash(files: readonly DatasetFileInfo[]): string {
  return sha256Hex([...files].sort((a, b) => (a.file < b.file ? -1 : 1)).map((f) => `${f.sha256}  ${f.file}\n`).join(''));
}

export async function readDatasetFile(dir: string, file: string, hint: string): Promise<{ data: Buffer; info: DatasetFileInfo }> {
  const p = path.join(dir, file);
  let data: Buffer;
  try {
    data = await fsp.readFile(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new DatasetError(`${p} not found; ${hint}`, 'DATASET_MISSING');
    throw new DatasetError(`cannot read ${p}: ${(e as Error).message}`, 'DATASET_UNREADABLE');
  }
  return { data, info: { file, sha256: sha256Hex(data), bytes: data.length } };
}

/** Parses JSON lines (gunzipping `.gz` data first); empty lines are skipped. */
export function parseJsonl<T>(data: Buffer, name: string): T[] {
  const text = (name.endsWith('.gz') ? gunzipSync(data) : data).toString('utf8');
  const out: T[] = [];
  const lines = text.split('\n');
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    try {
      out.push(JSON.parse(line) as T);
    } catch (e) {
      throw new DatasetError(`${name} line ${i + 1} is not valid JSON: ${(e as Error).message}`, 'DATASET_INVALID');
    }
  });
  return out;
}

export function requireFields(rec: Record<string, unknown>, fields: readonly string[], where: string): void {
  for (const f of fields) if (!(f in rec)) throw new DatasetError(`${where} has no "${f}" field; expected the official format with ${fields.join(', ')}`, 'DATASET_INVALID');
}
