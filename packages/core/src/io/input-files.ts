/**
 * Opening files that come from outside (model directories, llama2.c checkpoints, indexes) without
 * trusting them: only regular files are read (a FIFO, device or socket is refused before any read, so
 * nothing blocks on it), JSON files have a size cap and a nesting-depth cap checked before parsing,
 * and every failure is one typed error naming the file. Errno failures of writes get the output path.
 */
import { constants, promises as fsp, type Stats } from 'node:fs';
import { LlamaProError, OutputError } from '../errors';

/** Builds the caller's typed error from a detail line and a code. */
export type InputErrorFactory = (detail: string, code: string) => LlamaProError;

/**
 * Largest JSON nesting accepted. serde_json (which the reference safetensors reader parses headers
 * with) stops at 128 levels by default; Hugging Face configs and indexes nest 3-4 levels.
 */
export const MAX_JSON_DEPTH = 128;
/** Size cap for config.json-like files (real configs are a few KB; the largest with label maps < 1 MB). */
export const MAX_CONFIG_JSON_BYTES = 16 << 20;
/** Size cap for tokenizer.json / tokenizer_config.json (the largest public ones, e.g. Gemma's, are ~35 MB). */
export const MAX_TOKENIZER_JSON_BYTES = 512 << 20;
/** Size cap for `model.safetensors.index.json` (~100 KB for a 70B model with 723 tensors). */
export const MAX_INDEX_JSON_BYTES = 64 << 20;

// O_NONBLOCK: opening a FIFO for reading returns at once instead of waiting for a writer; fstat then
// refuses it. It changes nothing for regular files. (Absent on Windows, where FIFOs do not arise.)
const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOCTTY ?? 0);

/** What a non-regular file is, in words. */
export function fileKind(st: Stats): string {
  if (st.isFile()) return 'regular file';
  if (st.isDirectory()) return 'directory';
  if (st.isFIFO()) return 'FIFO (named pipe)';
  if (st.isCharacterDevice()) return 'character device';
  if (st.isBlockDevice()) return 'block device';
  if (st.isSocket()) return 'socket';
  return 'special file';
}

/** `<file> is ...` when the detail is a predicate, else `<file>: <detail>`. */
export function fileMessage(file: string, detail: string): string {
  return /^(is|has|nests|starts|ends|cannot|does) /.test(detail) ? `${file} ${detail}` : `${file}: ${detail}`;
}

/** One line for an errno failure on `open`/`read`. */
export function errnoDetail(e: unknown): { detail: string; code: string } {
  const code = (e as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ENOENT':
      return { detail: 'file not found', code: 'INPUT_MISSING' };
    case 'EACCES':
    case 'EPERM':
      return { detail: `cannot be read: permission denied (${code})`, code: 'INPUT_UNREADABLE' };
    case 'ELOOP':
      return { detail: 'cannot be read: symbolic link loop (ELOOP)', code: 'INPUT_UNREADABLE' };
    case 'ENXIO':
      return { detail: 'is a socket or a device without a reader (ENXIO); only regular files are read', code: 'INPUT_NOT_REGULAR' };
    case 'ENOTDIR':
      return { detail: 'does not exist: a component of the path is a file, not a directory (ENOTDIR)', code: 'INPUT_MISSING' };
    case 'EISDIR':
      return { detail: 'is a directory, not a file', code: 'INPUT_NOT_REGULAR' };
    case 'ENAMETOOLONG':
      return { detail: 'cannot be read: the path is too long (ENAMETOOLONG)', code: 'INPUT_UNREADABLE' };
    case 'EIO':
      return { detail: 'cannot be read: input/output error (EIO); the disk or filesystem failed', code: 'INPUT_UNREADABLE' };
    default:
      return { detail: `cannot be read (${code ?? (e as Error).message})`, code: 'INPUT_UNREADABLE' };
  }
}

export interface OpenedInput {
  readonly fh: fsp.FileHandle;
  readonly stat: Stats;
}

/**
 * Opens `file` for reading and checks (on the open descriptor, so a swap in between cannot fool it)
 * that it is a regular file. Anything else is closed and refused through `fail` before a byte is read.
 */
export async function openRegularFile(file: string, fail: InputErrorFactory): Promise<OpenedInput> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(file, OPEN_FLAGS);
  } catch (e) {
    const { detail, code } = errnoDetail(e);
    throw fail(detail, code);
  }
  let stat: Stats;
  try {
    stat = await fh.stat();
  } catch (e) {
    await fh.close();
    const { detail, code } = errnoDetail(e);
    throw fail(detail, code);
  }
  if (!stat.isFile()) {
    await fh.close();
    throw fail(`is a ${fileKind(stat)}, not a regular file; only regular files are read`, 'INPUT_NOT_REGULAR');
  }
  return { fh, stat };
}

/** Reads `length` bytes at `position`, failing (typed) on a short read or an IO error. */
export async function readFully(fh: fsp.FileHandle, buf: Uint8Array, position: number, fail: InputErrorFactory): Promise<void> {
  let off = 0;
  while (off < buf.byteLength) {
    let bytesRead: number;
    try {
      ({ bytesRead } = await fh.read(buf, off, buf.byteLength - off, position + off));
    } catch (e) {
      const { detail, code } = errnoDetail(e);
      throw fail(detail, code);
    }
    if (bytesRead === 0) throw fail(`ends early at byte ${position + off}; the file is truncated or changed while reading`, 'INPUT_TRUNCATED');
    off += bytesRead;
  }
}

/**
 * Returns the first position where JSON `text` nests deeper than `maxDepth`, or -1. A linear scan that
 * skips strings, so arbitrarily deep input cannot exhaust the stack of any later recursive walk.
 */
export function jsonDepthViolation(text: string, maxDepth: number = MAX_JSON_DEPTH): number {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > maxDepth) return i;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return -1;
}

/** Parses JSON text with the depth cap; failures come back through `fail`. */
export function parseJsonBounded(text: string, fail: InputErrorFactory, maxDepth: number = MAX_JSON_DEPTH): unknown {
  const at = jsonDepthViolation(text, maxDepth);
  if (at >= 0) throw fail(`nests JSON deeper than ${maxDepth} levels (at character ${at}); no model file nests like that, the file is corrupt or hostile`, 'INPUT_JSON_DEPTH');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw fail(`is not valid JSON: ${(e as Error).message}`, 'INPUT_JSON');
  }
}

export interface ReadJsonOptions {
  /** Refuse files larger than this many bytes (default MAX_CONFIG_JSON_BYTES). */
  maxBytes?: number;
  maxDepth?: number;
}

/** Reads a JSON file that came from outside: a regular file, at most `maxBytes`, UTF-8, depth-capped. */
export async function readJsonFile(file: string, fail: InputErrorFactory, options: ReadJsonOptions = {}): Promise<unknown> {
  const maxBytes = options.maxBytes ?? MAX_CONFIG_JSON_BYTES;
  const { fh, stat } = await openRegularFile(file, fail);
  let buf: Buffer;
  try {
    if (stat.size > maxBytes) throw fail(`is ${stat.size} bytes, more than the ${maxBytes}-byte limit for this kind of file; it is not what it should be`, 'INPUT_TOO_LARGE');
    buf = Buffer.alloc(stat.size);
    await readFully(fh, buf, 0, fail);
  } finally {
    await fh.close();
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(buf);
  } catch {
    throw fail('is not valid UTF-8 text', 'INPUT_JSON');
  }
  if (text.charCodeAt(0) === 0xfeff) throw fail('starts with a UTF-8 byte-order mark, which JSON does not allow (RFC 8259 §8.1); save it without one', 'INPUT_JSON');
  return parseJsonBounded(text, fail, options.maxDepth);
}

/** Errno failures while writing an output, in words (ENOSPC and friends name the output path). */
export function writeErrnoDetail(e: unknown): string | undefined {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code !== 'string') return undefined;
  const words: Record<string, string> = {
    ENOSPC: 'no space left on device (ENOSPC); free space or choose another output path',
    EDQUOT: 'disk quota exceeded (EDQUOT); free space or choose another output path',
    EFBIG: 'file too large for this filesystem or ulimit (EFBIG)',
    EROFS: 'the filesystem is read-only (EROFS); choose another output path',
    EACCES: 'permission denied (EACCES); choose a writable output path',
    EPERM: 'operation not permitted (EPERM); choose a writable output path',
    EIO: 'input/output error (EIO); the disk or filesystem failed',
    EXDEV: 'the temporary and final paths are on different filesystems (EXDEV)',
    ENOTDIR: 'a component of the output path is a file, not a directory (ENOTDIR)',
    EISDIR: 'the output path is a directory (EISDIR)',
    ENAMETOOLONG: 'the output path is too long (ENAMETOOLONG)',
    EMFILE: 'too many open files (EMFILE); raise `ulimit -n`',
  };
  return words[code] ?? (code.startsWith('E') ? `${code}: ${(e as Error).message}` : undefined);
}

/** An errno error raised while writing `target` as an OutputError naming it; anything else is returned as it is. */
export function asOutputError(e: unknown, target: string): unknown {
  // Duck-typed: Node's system errors come from another realm under some hosts (jest's vm, where
  // `instanceof Error` is false), and the native copy addon's errors carry an errno `code` without `syscall`.
  if (e instanceof LlamaProError || typeof e !== 'object' || e === null) return e;
  const { syscall, code } = e as NodeJS.ErrnoException;
  if (typeof syscall !== 'string' && !(typeof code === 'string' && /^E[A-Z0-9]+$/.test(code))) return e;
  const detail = writeErrnoDetail(e);
  return detail ? new OutputError(`cannot write ${target}: ${detail}`, 'OUTPUT_WRITE') : e;
}
