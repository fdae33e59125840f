/** Reading plain (ustar / GNU / pax) tar archives in memory: regular files only. */
import { DatasetError } from '../errors';

function cstr(buf: Buffer, start: number, len: number): string {
  const end = buf.indexOf(0, start);
  return buf.toString('utf8', start, end >= 0 && end < start + len ? end : start + len);
}

function octal(buf: Buffer, start: number, len: number): number {
  const s = cstr(buf, start, len).trim();
  if (!/^[0-7]*$/.test(s)) throw new DatasetError('tar header has a malformed size field', 'DATASET_INVALID');
  return s ? parseInt(s, 8) : 0;
}

/** Yields `[path, data]` for each regular file in the archive. */
export function* readTar(tar: Buffer): Generator<[string, Buffer]> {
  let off = 0;
  let longName: string | undefined;
  while (off + 512 <= tar.length) {
    const h = tar.subarray(off, off + 512);
    if (h.every((b) => b === 0)) return;
    const size = octal(h, 124, 12);
    const type = String.fromCharCode(h[156]!);
    const prefix = h.toString('latin1', 257, 263).startsWith('ustar') ? cstr(h, 345, 155) : '';
    let name = longName ?? (prefix ? `${prefix}/${cstr(h, 0, 100)}` : cstr(h, 0, 100));
    longName = undefined;
    const dataStart = off + 512;
    if (dataStart + size > tar.length) throw new DatasetError('tar archive is truncated', 'DATASET_INVALID');
    const data = tar.subarray(dataStart, dataStart + size);
    off = dataStart + Math.ceil(size / 512) * 512;
    if (type === 'L') {
      longName = cstr(data, 0, data.length);
      continue;
    }
    if (type === 'x') {
      const m = /\d+ path=([^\n]*)\n/.exec(data.toString('utf8'));
      if (m) longName = m[1];
      continue;
    }
    if (type === '0' || type === '\0') {
      name = name.replace(/^\.\//, '');
      yield [name, data];
    }
  }
}
