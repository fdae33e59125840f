/**
 * llama2.c tokenizer files -> Hugging Face `tokenizer.json`, and a byte-level `tokenizer.json` for models
 * trained on byte tokens.
 *
 * The llama2.c format (`tokenizer.py export()` in karpathy/llama2.c, read by `run.c`): a uint32
 * `max_token_length`, then for every id in order a float32 score, a uint32 byte length and the piece's
 * UTF-8 bytes. The vocabulary size is not stored (run.c takes it from the model header). The export
 * rewrites the sentencepiece pieces: BOS becomes "\n<s>\n", EOS "\n</s>\n", byte-fallback pieces
 * `<0xAB>` become the character U+00AB (UTF-8 encoded), and "▁" becomes a space.
 *
 * The tokenizer.json undoes those rewrites and describes the same sentencepiece BPE the way transformers'
 * LLaMA converter does: normalizer prepends "▁" and maps spaces to "▁", a BPE model with byte fallback
 * whose merges are ranked by the merged piece's score (what run.c's greedy "merge the best-scoring pair"
 * loop computes), and a decoder that maps "▁" back, fuses byte pieces and strips the dummy prefix.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Llama2cError } from '../errors';
import { writeJsonAtomic } from '../io/atomic';

export interface Llama2cVocab {
  maxTokenLength: number;
  /** Piece bytes as stored, by id. */
  pieces: Buffer[];
  scores: number[];
}

/** Reads a llama2.c tokenizer file; `vocabSize` (from the model) makes the read exact, else it reads to the end. */
export async function readLlama2cTokenizer(file: string, vocabSize?: number): Promise<Llama2cVocab> {
  let buf: Buffer;
  try {
    buf = await fsp.readFile(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Llama2cError(file, code === 'ENOENT' ? 'tokenizer file not found' : code === 'EISDIR' ? 'is a directory; pass the tokenizer .bin file (e.g. tok512.bin) itself' : `cannot read: ${(e as Error).message}`);
  }
  if (buf.length < 4) throw new Llama2cError(file, 'too short for a llama2.c tokenizer (no max_token_length header)');
  const maxTokenLength = buf.readUInt32LE(0);
  if (maxTokenLength === 0 || maxTokenLength > 1 << 16) throw new Llama2cError(file, `max_token_length ${maxTokenLength} is not plausible; this is not a llama2.c tokenizer file (tokenizer.py export())`);
  const pieces: Buffer[] = [];
  const scores: number[] = [];
  let off = 4;
  while (off < buf.length && (vocabSize === undefined || pieces.length < vocabSize)) {
    if (off + 8 > buf.length) throw new Llama2cError(file, `truncated at token ${pieces.length}: the score/length record is cut off`);
    const score = buf.readFloatLE(off);
    const len = buf.readUInt32LE(off + 4);
    off += 8;
    if (len > maxTokenLength) throw new Llama2cError(file, `token ${pieces.length} has length ${len} > max_token_length ${maxTokenLength}; the file is corrupt or not a llama2.c tokenizer`);
    if (off + len > buf.length) throw new Llama2cError(file, `truncated at token ${pieces.length}: ${len} bytes announced, ${buf.length - off} left`);
    pieces.push(buf.subarray(off, off + len));
    scores.push(score);
    off += len;
  }
  if (vocabSize !== undefined && pieces.length < vocabSize) throw new Llama2cError(file, `holds ${pieces.length} tokens but the model's vocabulary has ${vocabSize}; use the tokenizer the model was trained with`);
  if (vocabSize !== undefined && off !== buf.length) throw new Llama2cError(file, `has ${buf.length - off} bytes after the model's ${vocabSize} tokens; use the tokenizer the model was trained with`);
  if (pieces.length < 3) throw new Llama2cError(file, `holds only ${pieces.length} tokens`);
  return { maxTokenLength, pieces, scores };
}

const SPECIALS = ['<unk>', '<s>', '</s>'] as const;
const byteName = (b: number) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;

function addedTokens(): object[] {
  return SPECIALS.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
}

/** The sentencepiece piece strings of a llama2.c vocabulary (the export's rewrites undone), and whether it has byte fallback. */
export function llama2cPieces(vocab: Llama2cVocab): { pieces: string[]; byteFallback: boolean } {
  const text = vocab.pieces.map((b) => b.toString('utf8'));
  // sentencepiece puts the 256 byte pieces right after <unk>, <s>, </s>; the current export writes each as
  // chr(byte), older exports (e.g. llama2.c's own tokenizer.bin) kept the "<0xAB>" text.
  const byteFallback = text.length >= 259 && Array.from({ length: 256 }, (_, b) => text[3 + b] === String.fromCharCode(b) || text[3 + b] === byteName(b)).every(Boolean);
  const pieces = text.map((t, id) => {
    if (id === 1 && t === '\n<s>\n') return '<s>';
    if (id === 2 && t === '\n</s>\n') return '</s>';
    if (byteFallback && id >= 3 && id < 259) return byteName(id - 3);
    return t.replace(/ /g, '\u2581');
  });
  return { pieces, byteFallback };
}

/**
 * tokenizer.json + tokenizer_config.json equivalent to a llama2.c tokenizer. Merges: for every piece, every
 * split into two pieces of the vocabulary, ordered by the merged piece's score (highest first; ties keep
 * vocabulary order), as transformers' SentencePieceExtractor does.
 */
export function llama2cTokenizerJson(vocab: Llama2cVocab, o: { modelMaxLength?: number } = {}): { tokenizer: Record<string, unknown>; config: Record<string, unknown> } {
  const { pieces, byteFallback } = llama2cPieces(vocab);
  const ids = new Map<string, number>();
  pieces.forEach((p, i) => {
    if (!ids.has(p)) ids.set(p, i);
  });
  const merges: { l: string; r: string; score: number; order: number }[] = [];
  let order = 0;
  pieces.forEach((p, id) => {
    if (id < 3 || (byteFallback && id < 259)) return;
    const chars = [...p];
    const local: { l: string; r: string }[] = [];
    for (let i = 1; i < chars.length; i++) {
      const l = chars.slice(0, i).join('');
      const r = chars.slice(i).join('');
      if (ids.has(l) && ids.has(r)) local.push({ l, r });
    }
    local.sort((a, b) => ids.get(a.l)! - ids.get(b.l)! || ids.get(a.r)! - ids.get(b.r)!);
    for (const m of local) merges.push({ ...m, score: vocab.scores[id]!, order: order++ });
  });
  merges.sort((a, b) => b.score - a.score || a.order - b.order);
  const vocabObj: Record<string, number> = {};
  for (const [p, i] of ids) vocabObj[p] = i;
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens(),
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '\u2581' }, { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }] },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<s>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [{ type: 'Replace', pattern: { String: '\u2581' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }],
    },
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: byteFallback, ignore_merges: false, vocab: vocabObj, merges: merges.map((m) => [m.l, m.r]) },
  };
  return { tokenizer, config: tokenizerConfig(o.modelMaxLength, true) };
}

function tokenizerConfig(modelMaxLength: number | undefined, sentencepiece: boolean): Record<string, unknown> {
  return {
    bos_token: '<s>',
    eos_token: '</s>',
    unk_token: '<unk>',
    add_bos_token: true,
    add_eos_token: false,
    clean_up_tokenization_spaces: false,
    ...(sentencepiece ? { legacy: true, tokenizer_class: 'LlamaTokenizerFast' } : { tokenizer_class: 'PreTrainedTokenizerFast' }),
    ...(modelMaxLength ? { model_max_length: modelMaxLength } : {}),
  };
}

/**
 * A byte-level tokenizer.json: ids 0..2 `<unk>`, `<s>`, `</s>`, then byte b at id 3 + b (`<0xBB>`), no
 * normalizer and no merges, so every UTF-8 byte of the text is one token (what `ByteTokenizer` encodes;
 * the one difference is that the literal texts "<unk>", "<s>", "</s>" match the special tokens, as in
 * any Hugging Face tokenizer). Ids from 259 up to `vocabSize` are unused `<extra_i>` tokens.
 */
export function byteTokenizerJson(vocabSize = 259, o: { modelMaxLength?: number } = {}): { tokenizer: Record<string, unknown>; config: Record<string, unknown> } {
  if (!Number.isInteger(vocabSize) || vocabSize < 259) throw new RangeError(`a byte tokenizer needs a vocabulary of at least 259 (3 specials + 256 bytes), got ${vocabSize}`);
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (let b = 0; b < 256; b++) vocab[byteName(b)] = 3 + b;
  for (let i = 259; i < vocabSize; i++) vocab[`<extra_${i}>`] = i;
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens(),
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: { type: 'Sequence', decoders: [{ type: 'ByteFallback' }, { type: 'Fuse' }] },
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: true, ignore_merges: false, vocab, merges: [] },
  };
  return { tokenizer, config: tokenizerConfig(o.modelMaxLength, false) };
}

/** Writes tokenizer.json and tokenizer_config.json into a model directory (atomically, each). */
export async function writeTokenizerFiles(dir: string, files: { tokenizer: Record<string, unknown>; config: Record<string, unknown> }): Promise<string[]> {
  const a = path.join(dir, 'tokenizer.json');
  const b = path.join(dir, 'tokenizer_config.json');
  await writeJsonAtomic(a, files.tokenizer);
  await writeJsonAtomic(b, files.config);
  return [a, b];
}
