/** File checksums. */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';

/** sha256 (hex) of a file, read sequentially through one reused 8 MiB buffer. */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(8 << 20);
  const fh = await fsp.open(file, 'r');
  try {
    for (let pos = 0; ; ) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return hash.digest('hex');
}
