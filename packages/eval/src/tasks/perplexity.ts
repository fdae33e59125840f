/**
 * Perplexity and bits-per-byte of a text corpus (lm-eval's `loglikelihood_rolling` metrics): token
 * perplexity, word perplexity (words = `re.split(r"\s+", doc)`), byte perplexity and bits per byte.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { DatasetError } from '../errors';
import { parseJsonl, sha256Hex, type DatasetFileInfo } from '../datasets/files';
import { pySplitWhitespace } from '../util/py-str';

export interface CorpusDoc {
  readonly id: string;
  readonly text: string;
}

/**
 * Reads a corpus: a `.txt` file (documents separated by blank lines when `split` is "paragraphs", else one
 * document), a `.jsonl` file (field `text`), or a directory of those.
 */
export async function loadCorpus(p: string, split: 'paragraphs' | 'file' = 'paragraphs'): Promise<{ docs: CorpusDoc[]; files: DatasetFileInfo[] }> {
  let stat;
  try {
    stat = await fsp.stat(p);
  } catch {
    throw new DatasetError(`corpus ${p} not found; pass --corpus <file.txt|file.jsonl|dir>`, 'DATASET_MISSING');
  }
  const files = stat.isDirectory() ? (await fsp.readdir(p)).filter((f) => /\.(txt|jsonl)$/.test(f)).sort().map((f) => path.join(p, f)) : [p];
  if (files.length === 0) throw new DatasetError(`corpus directory ${p} has no .txt or .jsonl files`, 'DATASET_MISSING');
  const docs: CorpusDoc[] = [];
  const infos: DatasetFileInfo[] = [];
  for (const f of files) {
    const data = await fsp.readFile(f);
    infos.push({ file: path.basename(f), sha256: sha256Hex(data), bytes: data.length });
    if (f.endsWith('.jsonl')) {
      parseJsonl<Record<string, unknown>>(data, f).forEach((r, i) => {
        if (typeof r['text'] !== 'string') throw new DatasetError(`${f} record ${i + 1} has no string "text" field`, 'DATASET_INVALID');
        docs.push({ id: `${path.basename(f)}:${i}`, text: r['text'] });
      });
    } else {
      const text = data.toString('utf8');
      const parts = split === 'paragraphs' ? text.split(/\n\s*\n/) : [text];
      parts.forEach((t, i) => {
        if (t.trim()) docs.push({ id: `${path.basename(f)}:${i}`, text: split === 'paragraphs' ? t.trim() : t });
      });
    }
  }
  if (docs.length === 0) throw new DatasetError(`corpus ${p} has no text`, 'DATASET_INVALID');
  return { docs, files: infos };
}

export function wordCount(text: string): number {
  return pySplitWhitespace(text).length;
}

export interface PerplexityMetrics {
  readonly token_perplexity: number;
  readonly word_perplexity: number;
  readonly byte_perplexity: number;
  readonly bits_per_byte: number;
  readonly tokens: number;
  readonly words: number;
  readonly bytes: number;
  readonly logprob: number;
}

export function perplexityMetrics(perDoc: readonly { logprob: number; tokens: number; text: string }[]): PerplexityMetrics {
  let lp = 0;
  let tokens = 0;
  let words = 0;
  let bytes = 0;
  for (const d of perDoc) {
    lp += d.logprob;
    tokens += d.tokens;
    words += wordCount(d.text);
    bytes += Buffer.byteLength(d.text, 'utf8');
  }
  return {
    token_perplexity: Math.exp(-lp / tokens),
    word_perplexity: Math.exp(-lp / words),
    byte_perplexity: Math.exp(-lp / bytes),
    bits_per_byte: -lp / bytes / Math.LN2,
    tokens,
    words,
    bytes,
    logprob: lp,
  };
}
