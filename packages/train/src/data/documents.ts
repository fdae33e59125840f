/**
 * Streaming documents as token pieces. Nothing holds a whole file: text is read line by line, JSONL
 * record by record, token-id files in fixed-size chunks. A document may arrive in several pieces; the
 * last piece has `end: true`.
 */
import { createReadStream, promises as fsp } from 'node:fs';
import { createInterface } from 'node:readline';
import type { TextTokenizer } from '@llama-pro/core';
import { DataError } from '../errors';

export type DataFormat = 'text' | 'jsonl' | 'ids';
/** How text files split into documents: one per file, per non-empty line, or per blank-line paragraph. */
export type TextSplit = 'file' | 'line' | 'paragraph';
export type IdsDType = 'int32' | 'uint16';

export interface TokenPiece {
  readonly ids: number[];
  /** True on the last piece of a document. */
  readonly end: boolean;
}

export interface DocumentOptions {
  textSplit: TextSplit;
  /** JSONL field holding the text (a string) or token ids (an integer array). */
  field: string;
  idsDtype: IdsDType;
  /** Token id that separates documents inside id files. */
  eosTokenId: number | null;
  vocabSize: number;
}

/** Infers the format from the file extension when `format` is "auto". */
export function formatOf(file: string, format: DataFormat | 'auto'): DataFormat {
  if (format !== 'auto') return format;
  if (/\.jsonl$/i.test(file)) return 'jsonl';
  if (/\.(bin|i32|u16|ids)$/i.test(file)) return 'ids';
  return 'text';
}

function checkIds(ids: number[], vocab: number, where: string): number[] {
  for (const id of ids) if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new DataError(`${where}: token id ${id} is outside the vocabulary of ${vocab}`, 'DATA_TOKEN_RANGE');
  return ids;
}

async function* textPieces(file: string, split: TextSplit, tok: TextTokenizer, vocab: number): AsyncGenerator<TokenPiece> {
  const rl = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  let pending = false; // a document has pieces emitted and not yet ended
  let lineNo = 0;
  for await (const line of rl) {
    lineNo++;
    const where = `${file}:${lineNo}`;
    if (split === 'line') {
      if (line.trim() === '') continue;
      yield { ids: checkIds(tok.encode(line), vocab, where), end: true };
    } else if (split === 'paragraph') {
      if (line.trim() === '') {
        if (pending) yield { ids: [], end: true };
        pending = false;
        continue;
      }
      yield { ids: checkIds(tok.encode((pending ? '\n' : '') + line), vocab, where), end: false };
      pending = true;
    } else {
      yield { ids: checkIds(tok.encode((lineNo > 1 ? '\n' : '') + line), vocab, where), end: false };
      pending = true;
    }
  }
  if (pending) yield { ids: [], end: true };
}

async function* jsonlPieces(file: string, field: string, tok: TextTokenizer, vocab: number): AsyncGenerator<TokenPiece> {
  const rl = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  let lineNo = 0;
  for await (const line of rl) {
    lineNo++;
    if (line.trim() === '') continue;
    const where = `${file}:${lineNo}`;
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch (e) {
      throw new DataError(`${where} is not valid JSON: ${(e as Error).message}`, 'DATA_JSONL');
    }
    const v = rec && typeof rec === 'object' ? (rec as Record<string, unknown>)[field] : undefined;
    if (typeof v === 'string') yield { ids: checkIds(tok.encode(v), vocab, where), end: true };
    else if (Array.isArray(v) && v.every((x) => Number.isInteger(x))) yield { ids: checkIds(v as number[], vocab, where), end: true };
    else {
      const keys = rec && typeof rec === 'object' ? Object.keys(rec).join(', ') : typeof rec;
      throw new DataError(`${where} has no string or token-id array in field "${field}" (keys: ${keys}); set data.field`, 'DATA_JSONL');
    }
  }
}

async function* idPieces(file: string, dtype: IdsDType, eos: number | null, vocab: number): AsyncGenerator<TokenPiece> {
  const width = dtype === 'int32' ? 4 : 2;
  const st = await fsp.stat(file);
  if (st.size % width !== 0) throw new DataError(`${file} has ${st.size} bytes, not a multiple of ${width}; is data.idsDtype (${dtype}) right?`, 'DATA_IDS');
  let carry = Buffer.alloc(0);
  let cur: number[] = [];
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) {
    const buf = carry.length ? Buffer.concat([carry, chunk as Buffer]) : (chunk as Buffer);
    const usable = buf.length - (buf.length % width);
    for (let off = 0; off < usable; off += width) {
      const id = width === 4 ? buf.readInt32LE(off) : buf.readUInt16LE(off);
      if (id < 0 || id >= vocab) throw new DataError(`${file}: token id ${id} at byte ${off} is outside the vocabulary of ${vocab}`, 'DATA_TOKEN_RANGE');
      if (eos !== null && id === eos) {
        yield { ids: cur, end: true };
        cur = [];
      } else cur.push(id);
      if (cur.length >= 65536) {
        yield { ids: cur, end: false };
        cur = [];
      }
    }
    carry = Buffer.from(buf.subarray(usable));
  }
  if (cur.length) yield { ids: cur, end: true };
}

/** Token pieces of every document of every file, in order. */
export async function* readDocuments(files: readonly string[], format: DataFormat | 'auto', o: DocumentOptions, tok: TextTokenizer): AsyncGenerator<TokenPiece> {
  for (const file of files) {
    const f = formatOf(file, format);
    if (f === 'text') yield* textPieces(file, o.textSplit, tok, o.vocabSize);
    else if (f === 'jsonl') yield* jsonlPieces(file, o.field, tok, o.vocabSize);
    else {
      // The extension wins over data.idsDtype: .u16 is uint16, .i32 is int32 (.bin/.ids use the option).
      const dtype: IdsDType = /\.u16$/i.test(file) ? 'uint16' : /\.i32$/i.test(file) ? 'int32' : o.idsDtype;
      yield* idPieces(file, dtype, o.eosTokenId, o.vocabSize);
    }
  }
}
