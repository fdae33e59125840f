/**
 * Packed sequences over a flat token file: sequence i is tokens [i·L, i·L + L] (L + 1 tokens: inputs and
 * next-token targets), so documents are packed back to back with EOS between them. Sequences are read
 * by position from disk (nothing holds the corpus in memory). Each epoch visits every sequence once in
 * a seeded permutation; the position {epoch, cursor} is all that resume needs.
 */
import { promises as fsp } from 'node:fs';
import { IGNORE_INDEX, Rng, type TrainingBatch } from '@llama-pro/core';
import { DataError } from '../errors';

export interface DataPosition {
  epoch: number;
  /** Sequences consumed in the current epoch. */
  cursor: number;
}

export class SequenceFile {
  private constructor(
    readonly file: string,
    private readonly fh: fsp.FileHandle,
    readonly seqLen: number,
    readonly numSequences: number,
  ) {}

  static async open(file: string, seqLen: number): Promise<SequenceFile> {
    if (!Number.isInteger(seqLen) || seqLen < 1) throw new DataError(`sequence length must be a positive integer, got ${seqLen}`, 'USAGE');
    const fh = await fsp.open(file, 'r');
    const tokens = (await fh.stat()).size / 4;
    const n = tokens > seqLen ? Math.floor((tokens - 1) / seqLen) : 0;
    return new SequenceFile(file, fh, seqLen, n);
  }

  /** Sequence `i`: seqLen + 1 token ids. */
  async read(i: number): Promise<Int32Array> {
    if (!(i >= 0 && i < this.numSequences)) throw new DataError(`sequence ${i} out of range (${this.numSequences})`);
    const buf = Buffer.alloc((this.seqLen + 1) * 4);
    let off = 0;
    while (off < buf.length) {
      const { bytesRead } = await this.fh.read(buf, off, buf.length - off, i * this.seqLen * 4 + off);
      if (bytesRead === 0) throw new DataError(`${this.file} is truncated`, 'DATA_TRUNCATED');
      off += bytesRead;
    }
    return new Int32Array(buf.buffer, buf.byteOffset, this.seqLen + 1).slice();
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

/** Input/target batch from sequences of seqLen + 1 tokens. */
export function toBatch(seqs: readonly Int32Array[], seqLen: number): TrainingBatch {
  const ids = new Int32Array(seqs.length * seqLen);
  const targets = new Int32Array(seqs.length * seqLen);
  seqs.forEach((s, b) => {
    ids.set(s.subarray(0, seqLen), b * seqLen);
    targets.set(s.subarray(1, seqLen + 1), b * seqLen);
  });
  return { ids, targets, batchSize: seqs.length, seqLen };
}

/** The seeded permutation of an epoch (identity when not shuffling). */
export function epochOrder(n: number, seed: number, epoch: number, shuffle: boolean): Uint32Array {
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  if (!shuffle) return order;
  const rng = new Rng((Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(epoch + 1, 0x85ebca77)) >>> 0);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = order[i]!;
    order[i] = order[j]!;
    order[j] = t;
  }
  return order;
}

export class BatchStream {
  private order: Uint32Array;
  private pos: DataPosition;

  constructor(
    readonly data: SequenceFile,
    private readonly seed: number,
    private readonly shuffle: boolean,
    start: DataPosition = { epoch: 0, cursor: 0 },
  ) {
    if (data.numSequences === 0) throw new DataError(`${data.file} holds fewer than ${data.seqLen + 1} tokens: not one training sequence; use more data or a shorter seqLen`, 'DATA_TOO_SMALL');
    if (!(start.cursor >= 0 && start.cursor <= data.numSequences)) throw new DataError(`data position ${start.cursor} is beyond the ${data.numSequences} sequences; the corpus changed since the checkpoint`, 'DATA_POSITION');
    this.pos = { ...start };
    this.order = epochOrder(data.numSequences, seed, start.epoch, shuffle);
  }

  get position(): DataPosition {
    return { ...this.pos };
  }

  async next(batchSize: number): Promise<TrainingBatch> {
    const seqs: Int32Array[] = [];
    while (seqs.length < batchSize) {
      if (this.pos.cursor >= this.order.length) {
        this.pos = { epoch: this.pos.epoch + 1, cursor: 0 };
        this.order = epochOrder(this.data.numSequences, this.seed, this.pos.epoch, this.shuffle);
      }
      seqs.push(await this.data.read(this.order[this.pos.cursor++]!));
    }
    return toBatch(seqs, this.data.seqLen);
  }
}

/**
 * Documents of a prepared split, each as one sequence from its start (BOS): the first seqLen + 1
 * tokens, shorter documents padded with IGNORE_INDEX targets. For evaluations that should not
 * depend on where packing cuts (e.g. the general-domain sample).
 */
export class DocumentFile {
  private constructor(
    readonly file: string,
    private readonly fh: fsp.FileHandle,
    private readonly starts: Float64Array,
    private readonly totalTokens: number,
    readonly seqLen: number,
  ) {}

  static async open(tokensFile: string, docsFile: string, seqLen: number): Promise<DocumentFile> {
    const raw = await fsp.readFile(docsFile).catch(() => {
      throw new DataError(`${docsFile} is missing; prepare the data again (delete ${tokensFile})`, 'DATA_TRUNCATED');
    });
    const starts = new Float64Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
    const fh = await fsp.open(tokensFile, 'r');
    return new DocumentFile(tokensFile, fh, starts, (await fh.stat()).size / 4, seqLen);
  }

  get numDocuments(): number {
    return this.starts.length;
  }

  /** Document `i` as a one-row batch (ids padded with 0, padding targets IGNORE_INDEX). */
  async read(i: number): Promise<{ ids: Int32Array; targets: Int32Array }> {
    const start = this.starts[i]!;
    const end = i + 1 < this.starts.length ? this.starts[i + 1]! : this.totalTokens;
    const n = Math.min(end - start, this.seqLen + 1);
    const buf = Buffer.alloc(n * 4);
    let off = 0;
    while (off < buf.length) {
      const { bytesRead } = await this.fh.read(buf, off, buf.length - off, start * 4 + off);
      if (bytesRead === 0) throw new DataError(`${this.file} is truncated`, 'DATA_TRUNCATED');
      off += bytesRead;
    }
    const toks = new Int32Array(buf.buffer, buf.byteOffset, n);
    const ids = new Int32Array(this.seqLen);
    const targets = new Int32Array(this.seqLen).fill(IGNORE_INDEX);
    ids.set(toks.subarray(0, Math.min(n, this.seqLen)));
    targets.set(toks.subarray(1, n));
    return { ids, targets };
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}
