/**
 * Atomic outputs: write to a temporary name in the same directory, fsync, rename. An interrupted run
 * leaves at most a `.tmp-*` sibling, never something at the final path that looks complete.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { OutputError } from '../errors';

export function tempSibling(target: string, tag = 'tmp'): string {
  const dir = path.dirname(target);
  return path.join(dir, `.${path.basename(target)}.${tag}-${process.pid}-${randomBytes(4).toString('hex')}`);
}

async function fsyncPath(p: string): Promise<void> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(p, 'r');
    await fh.sync();
  } catch {
    // Directories cannot be fsynced on every platform; the rename is still atomic.
  } finally {
    await fh?.close();
  }
}

/** Writes `data` to `file` atomically. */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = tempSibling(file);
  try {
    const fh = await fsp.open(tmp, 'wx');
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, file);
    await fsyncPath(path.dirname(file));
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  }
}

export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  await writeFileAtomic(file, JSON.stringify(value, null, 2) + '\n');
}

export async function pathExists(p: string): Promise<boolean> {
  try {
    await fsp.lstat(p);
    return true;
  } catch {
    return false;
  }
}

/** True when `inner` is `outer` or lies inside it (after resolving both). */
export function isInside(inner: string, outer: string): boolean {
  const rel = path.relative(path.resolve(outer), path.resolve(inner));
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

export interface AtomicDirOptions {
  /** Replace an existing output. Without it an existing output is refused. */
  force?: boolean;
}

/**
 * Builds a directory atomically: `build` fills a temporary sibling directory, which is renamed onto
 * `target` only when `build` resolves. On failure the temporary directory is removed.
 */
export async function buildDirAtomic<T>(
  target: string,
  build: (tmpDir: string) => Promise<T>,
  options: AtomicDirOptions = {},
): Promise<T> {
  const resolved = path.resolve(target);
  if ((await pathExists(resolved)) && !options.force) {
    throw new OutputError(`output ${target} already exists; choose another path or pass --force to replace it`, 'OUTPUT_EXISTS');
  }
  await fsp.mkdir(path.dirname(resolved), { recursive: true });
  const tmp = tempSibling(resolved);
  await fsp.mkdir(tmp);
  let result: T;
  try {
    result = await build(tmp);
  } catch (e) {
    await fsp.rm(tmp, { recursive: true, force: true });
    throw e;
  }
  if (await pathExists(resolved)) {
    // --force: move the old output aside first so that a failure never leaves a half state.
    const old = tempSibling(resolved, 'old');
    await fsp.rename(resolved, old);
    await fsp.rename(tmp, resolved);
    await fsp.rm(old, { recursive: true, force: true });
  } else {
    await fsp.rename(tmp, resolved);
  }
  await fsyncPath(path.dirname(resolved));
  return result;
}
