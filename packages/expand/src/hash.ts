/**
 * sha256 of the base shards for the manifest, computed on a worker thread that reads the files
 * sequentially by itself while the main thread copies tensors (in the kernel, so the copy never sees
 * the bytes). The two overlap; on a machine with two cores hashing costs little wall time.
 */
import { Worker } from 'node:worker_threads';

/** Read size for hashing. */
const HASH_CHUNK = 1 << 20;
/** Nice value of the hashing thread (the copy, which the disk waits on, goes first). */
const HASH_NICE = 10;

const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
// Hashing yields to the copy: on Linux the nice value is per thread, so lower this thread's priority
// (its id from /proc/thread-self). Elsewhere, or when not permitted, it simply runs at normal priority.
try {
  const tid = Number(fs.readlinkSync('/proc/thread-self').split('/').pop());
  if (tid > 0 && workerData.nice) os.setPriority(tid, workerData.nice);
} catch {}
const buf = Buffer.allocUnsafe(workerData.chunk);
const digests = [];
for (const file of workerData.files) {
  const hash = createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    for (let pos = 0; ; ) {
      const n = fs.readSync(fd, buf, 0, buf.length, pos);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
      pos += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  digests.push(hash.digest('hex'));
}
parentPort.postMessage(digests);
`;

/** Hashes `files` on a worker thread, starting at once. */
export class FileHasher {
  private readonly worker: Worker;
  private readonly result: Promise<string[]>;

  constructor(readonly files: readonly string[]) {
    this.worker = new Worker(WORKER, { eval: true, workerData: { files: [...files], chunk: HASH_CHUNK, nice: HASH_NICE } });
    this.result = new Promise<string[]>((resolve, reject) => {
      this.worker.once('message', resolve);
      this.worker.once('error', reject);
      this.worker.once('exit', (code) => reject(new Error(`the hashing worker exited (code ${code}) before it finished`)));
    });
    // A run that fails before asking for the digests must not leave an unhandled rejection behind.
    this.result.catch(() => undefined);
  }

  /** sha256 (hex) of each file, in order. */
  digests(): Promise<string[]> {
    return this.result;
  }

  /** Stops the worker (whether or not it finished). */
  async close(): Promise<void> {
    await this.worker.terminate();
  }
}
