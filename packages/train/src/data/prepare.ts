/**
 * Corpus preparation: stream documents, send each to train or validation (by a seeded hash of its
 * index, so the split never depends on memory or order of reading), and append its tokens — BOS (when
 * the tokenizer has one), the document, EOS — to a flat int32 token file per split. Sequences are then
 * packed windows of that stream (see loader.ts). Memory stays bounded by one write buffer.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { type TextTokenizer, pathExists, tempSibling, writeJsonAtomic } from '@llama-pro/core';
import { DataError } from '../errors';
import { type DataFormat, type IdsDType, type TextSplit, readDocuments } from './documents';
import { listInputFiles } from './files';

export interface DataOptions {
  path: string;
  format: DataFormat | 'auto';
  glob: string;
  textSplit: TextSplit;
  field: string;
  idsDtype: IdsDType;
  /** Fraction of documents held out for validation. */
  valFraction: number;
  /** Add the tokenizer's BOS before each document. */
  bos: boolean;
}

export interface PreparedSplit {
  readonly file: string;
  readonly tokens: number;
  readonly documents: number;
}

export interface PreparedData {
  readonly dir: string;
  readonly fingerprint: string;
  readonly train: PreparedSplit;
  readonly val: PreparedSplit;
  readonly files: number;
  readonly tokenizer: string;
}

export const DATASET_FILE = 'dataset.json';
export const TRAIN_TOKENS = 'train.tokens';
export const VAL_TOKENS = 'val.tokens';

/** Uniform [0, 1) from (seed, index): a 32-bit integer hash (murmur3 finalizer of a splitmix step). */
export function hashUnit(seed: number, index: number): number {
  let h = (Math.imul(index + 1, 0x9e3779b9) ^ Math.imul(seed >>> 0, 0x85ebca6b)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  h = (h ^ (h >>> 16)) >>> 0;
  return h / 4294967296;
}

/** Buffered append-only writer of little-endian numbers to a temporary sibling, renamed on finish. */
class NumberFileWriter<A extends Int32Array | Float64Array> {
  private n = 0;
  count = 0;
  private constructor(
    readonly tmp: string,
    private readonly fh: fsp.FileHandle,
    private readonly buf: A,
  ) {}

  static async open<A extends Int32Array | Float64Array>(target: string, buf: A): Promise<NumberFileWriter<A>> {
    const tmp = tempSibling(target);
    return new NumberFileWriter(tmp, await fsp.open(tmp, 'wx'), buf);
  }

  async push(v: number): Promise<void> {
    this.buf[this.n++] = v;
    this.count++;
    if (this.n === this.buf.length) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.n === 0) return;
    await this.fh.write(new Uint8Array(this.buf.buffer, 0, this.n * this.buf.BYTES_PER_ELEMENT));
    this.n = 0;
  }

  async finish(target: string): Promise<void> {
    await this.flush();
    await this.fh.sync();
    await this.fh.close();
    await fsp.rename(this.tmp, target);
  }

  async abort(): Promise<void> {
    await this.fh.close().catch(() => undefined);
    await fsp.rm(this.tmp, { force: true });
  }
}

/** One split: the flat token stream plus the start offset of every document (float64, for `DocumentFile`). */
class SplitWriter {
  private constructor(
    private readonly tokensW: NumberFileWriter<Int32Array>,
    private readonly docsW: NumberFileWriter<Float64Array>,
  ) {}

  static async open(tokensFile: string): Promise<SplitWriter> {
    const t = await NumberFileWriter.open(tokensFile, new Int32Array(1 << 16));
    try {
      return new SplitWriter(t, await NumberFileWriter.open(docsFileOf(tokensFile), new Float64Array(1 << 12)));
    } catch (e) {
      await t.abort();
      throw e;
    }
  }

  get tokens(): number {
    return this.tokensW.count;
  }

  get documents(): number {
    return this.docsW.count;
  }

  async startDocument(): Promise<void> {
    await this.docsW.push(this.tokensW.count);
  }

  async push(id: number): Promise<void> {
    await this.tokensW.push(id);
  }

  async finish(tokensFile: string): Promise<void> {
    await this.tokensW.finish(tokensFile);
    await this.docsW.finish(docsFileOf(tokensFile));
  }

  async abort(): Promise<void> {
    await this.tokensW.abort();
    await this.docsW.abort();
  }
}

/** The document-offsets file next to a token file (`train.tokens` -> `train.docs`). */
export function docsFileOf(tokensFile: string): string {
  return tokensFile.replace(/\.tokens$/, '') + '.docs';
}

async function fingerprintOf(files: readonly string[], o: DataOptions, tok: TextTokenizer, seed: number): Promise<string> {
  const h = createHash('sha256');
  h.update(JSON.stringify({ v: 2, o: { ...o, path: path.resolve(o.path) }, seed, tok: { kind: tok.kind, vocab: tok.vocabSize, bos: tok.bosTokenId, eos: tok.eosTokenId } }));
  for (const f of files) {
    const st = await fsp.stat(f);
    h.update(`\n${path.resolve(f)}\t${st.size}\t${st.mtimeMs}`);
  }
  return h.digest('hex');
}

/**
 * Tokenizes the corpus into `dir` (train.tokens, val.tokens, dataset.json). An existing preparation
 * with the same fingerprint (same files, sizes, mtimes, options, tokenizer and seed) is reused.
 */
export async function prepareData(dir: string, o: DataOptions, tok: TextTokenizer, seed: number, onProgress?: (docs: number, tokens: number) => void): Promise<PreparedData> {
  if (!(o.valFraction >= 0 && o.valFraction < 1)) throw new DataError(`data.valFraction must be in [0, 1), got ${o.valFraction}`, 'USAGE');
  const files = await listInputFiles(o.path, o.glob);
  const fingerprint = await fingerprintOf(files, o, tok, seed);
  const metaFile = path.join(dir, DATASET_FILE);
  if (await pathExists(metaFile)) {
    const meta = JSON.parse(await fsp.readFile(metaFile, 'utf8')) as PreparedData;
    if (meta.fingerprint === fingerprint) return { ...meta, dir };
  }
  await fsp.mkdir(dir, { recursive: true });
  const train = await SplitWriter.open(path.join(dir, TRAIN_TOKENS));
  const val = await SplitWriter.open(path.join(dir, VAL_TOKENS));
  try {
    let doc = 0;
    let inDoc = false;
    let target = train;
    for await (const piece of readDocuments(files, o.format, { ...o, eosTokenId: tok.eosTokenId, vocabSize: tok.vocabSize }, tok)) {
      if (!inDoc) {
        if (piece.end && piece.ids.length === 0) continue;
        target = o.valFraction > 0 && hashUnit(seed, doc) < o.valFraction ? val : train;
        await target.startDocument();
        if (o.bos && tok.bosTokenId !== null) await target.push(tok.bosTokenId);
        inDoc = true;
      }
      for (const id of piece.ids) await target.push(id);
      if (piece.end) {
        if (tok.eosTokenId !== null) await target.push(tok.eosTokenId);
        doc++;
        inDoc = false;
        if (doc % 1000 === 0) onProgress?.(doc, train.tokens + val.tokens);
      }
    }
    if (inDoc && tok.eosTokenId !== null) await target.push(tok.eosTokenId);
    await train.finish(path.join(dir, TRAIN_TOKENS));
    await val.finish(path.join(dir, VAL_TOKENS));
  } catch (e) {
    await train.abort();
    await val.abort();
    throw e;
  }
  if (train.tokens === 0) throw new DataError(`the corpus at ${o.path} has no training tokens (${files.length} file(s) read)`, 'DATA_EMPTY');
  const meta: PreparedData = {
    dir,
    fingerprint,
    files: files.length,
    tokenizer: tok.kind,
    train: { file: TRAIN_TOKENS, tokens: train.tokens, documents: train.documents },
    val: { file: VAL_TOKENS, tokens: val.tokens, documents: val.documents },
  };
  await writeJsonAtomic(metaFile, meta);
  return meta;
}
