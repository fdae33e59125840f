import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export async function tmpDir(prefix = 'lp-core-'): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), prefix));
}

/** Writes a raw safetensors-like file: u64 length (or an override) + header text + data. */
export async function craftSafetensors(file: string, header: unknown, data: Uint8Array, lengthOverride?: bigint): Promise<string> {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  const h = Buffer.from(text, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(h.length));
  await fsp.writeFile(file, Buffer.concat([len, h, data]));
  return file;
}
