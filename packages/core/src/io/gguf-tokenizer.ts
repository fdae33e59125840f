/**
 * The GGUF tokenizer metadata (`tokenizer.ggml.*`, `tokenizer.chat_template`) of a Hugging Face model directory,
 * built from tokenizer.json + tokenizer_config.json (+ config.json / generation_config.json for special ids) the way
 * llama.cpp reads it (llama-vocab.cpp) and its converter writes it (convert_hf_to_gguf.py, gguf-py/gguf/vocab.py):
 *
 * - `llama` (llama.cpp's SentencePiece tokenizer, LLAMA_VOCAB_TYPE_SPM): a BPE model over "▁"-escaped text — the
 *   `Prepend("▁")` + `Replace(" ", "▁")` normalizer transformers writes for LLaMA-2/Mistral, or a `Metaspace`
 *   pre-tokenizer. llama.cpp merges, among adjacent symbols, the pair whose joined piece has the highest score
 *   (leftmost on ties); the score written for a piece is minus the rank of the first merge that builds it, so that
 *   rule applies the merges in tokenizer.json's order (transformers' SentencePieceExtractor lists every split of a
 *   piece in the pieces' score order, so for a SentencePiece-made tokenizer this is the original model's order).
 *   llama.cpp's own converter writes -1000 for every piece of such a tokenizer.json (LlamaHfVocab).
 * - `gpt2` (LLAMA_VOCAB_TYPE_BPE): byte-level BPE (`ByteLevel` pre-tokenizer and decoder) with its merges and the
 *   pre-tokenizer regex named by `tokenizer.ggml.pre` (`gpt-2`, `llama-bpe`, `qwen2`: llama.cpp's names for the
 *   patterns recognized here).
 * - A byte tokenizer (BPE with `byte_fallback`, no normalizer, no pre-tokenizer, no merges: every UTF-8 byte is its
 *   `<0xHH>` piece, as the study and `convert` write for models without a tokenizer) is written as `gpt2` with no
 *   merges whose byte pieces are the byte-level spellings of their bytes (GPT-2's bytes_to_unicode): llama.cpp's
 *   BPE then maps every byte to the same id and decodes it back to the same byte. The `llama` type cannot express
 *   it: llama.cpp's SentencePiece tokenizer always turns spaces into "▁".
 *
 * Anything else (WordPiece, Unigram, WordLevel, other normalizers / pre-tokenizers) is refused with a ConfigError.
 */
import * as path from 'node:path';
import { ConfigError } from '../errors';
import { MAX_TOKENIZER_JSON_BYTES, fileMessage, readJsonFile } from './input-files';
import { pathExists } from './atomic';

/** llama_token_type (llama.cpp's LLAMA_TOKEN_TYPE_*; gguf-py TokenType). */
export const TokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

/** Tokenizer metadata for GGUF, built by `ggufTokenizerFromDir` (or by hand). */
export interface GgufTokenizer {
  /** `llama` (SentencePiece-style, uses scores) or `gpt2` (byte-level BPE, uses merges). */
  model: 'llama' | 'gpt2';
  /** `tokenizer.ggml.pre`: llama.cpp's name of the pre-tokenizer regex (gpt2 only). */
  pre?: string;
  tokens: readonly string[];
  scores?: readonly number[];
  /** llama_token_type per token (see TokenType). */
  tokenTypes: readonly number[];
  merges?: readonly string[];
  bosId?: number | null;
  eosId?: number | null;
  unkId?: number | null;
  padId?: number | null;
  addBos?: boolean;
  addEos?: boolean;
  /** `tokenizer.ggml.add_space_prefix` (llama only; llama.cpp defaults it to true). */
  addSpacePrefix?: boolean;
  chatTemplate?: string | null;
}

type Json = Record<string, unknown>;
const SP_SPACE = '\u2581';

/** GPT-2's bytes_to_unicode: the printable character byte-level BPE spells byte `b` with. */
export function byteLevelChar(b: number): string {
  const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  if (printable) return String.fromCharCode(b);
  let n = 0;
  for (let x = 0; x < b; x++) if (!((x >= 0x21 && x <= 0x7e) || (x >= 0xa1 && x <= 0xac) || (x >= 0xae && x <= 0xff))) n++;
  return String.fromCharCode(256 + n);
}

// Pre-tokenizer patterns llama.cpp knows by name (llama-vocab.cpp; the names convert_hf_to_gguf.py writes).
const LLAMA3_PATTERN = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_PATTERN = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

function bytePieceValue(piece: string): number | null {
  const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
  return m ? parseInt(m[1]!, 16) : null;
}

function isMetaspaceNormalizer(n: unknown): boolean {
  const list = (n as Json | null)?.['type'] === 'Sequence' ? ((n as Json)['normalizers'] as Json[]) : n ? [n as Json] : [];
  const replace = list.some((x) => x['type'] === 'Replace' && (x['pattern'] as Json | undefined)?.['String'] === ' ' && x['content'] === SP_SPACE);
  return replace && list.every((x) => (x['type'] === 'Prepend' && x['prepend'] === SP_SPACE) || x['type'] === 'Replace');
}

function gpt2Pre(pt: Json | null, where: string): string {
  const fail = (what: string): never => {
    throw new ConfigError(`export-gguf: ${where} has a byte-level BPE tokenizer whose pre-tokenizer (${what}) has no llama.cpp counterpart known here (GPT-2's ByteLevel regex, LLaMA-3's and Qwen2's Split patterns are); export without it: --no-tokenizer`);
  };
  if (!pt) return fail('none');
  if (pt['type'] === 'ByteLevel') {
    if (pt['add_prefix_space']) fail('ByteLevel add_prefix_space');
    if (pt['use_regex'] === false) fail('ByteLevel without its regex');
    return 'gpt-2';
  }
  if (pt['type'] === 'Sequence') {
    const steps = (pt['pretokenizers'] as Json[] | undefined) ?? [];
    const split = steps[0];
    const bl = steps[1];
    if (steps.length === 2 && split?.['type'] === 'Split' && bl?.['type'] === 'ByteLevel' && bl['use_regex'] === false && !bl['add_prefix_space']) {
      const re = (split['pattern'] as Json | undefined)?.['Regex'];
      if (split['behavior'] === 'Isolated' && !split['invert']) {
        if (re === LLAMA3_PATTERN) return 'llama-bpe';
        if (re === QWEN2_PATTERN) return 'qwen2';
      }
      return fail(`Split ${JSON.stringify(re)}`);
    }
  }
  return fail(String(pt['type']));
}

function tokenContent(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json)['content'] === 'string') return (v as Json)['content'] as string;
  return null;
}

async function readOptionalJson(file: string): Promise<Json | null> {
  if (!(await pathExists(file))) return null;
  return (await readJsonFile(file, (detail) => new ConfigError(fileMessage(file, detail)), { maxBytes: MAX_TOKENIZER_JSON_BYTES })) as Json;
}

/**
 * The GGUF tokenizer of the model directory `dir` (vocabulary padded to `vocabSize` with unused `[PAD<i>]` pieces, as
 * convert_hf_to_gguf does), or null when it has no tokenizer.json. Throws ConfigError for a tokenizer it cannot map.
 */
export async function ggufTokenizerFromDir(dir: string, vocabSize: number): Promise<GgufTokenizer | null> {
  const tjFile = path.join(dir, 'tokenizer.json');
  const tj = await readOptionalJson(tjFile);
  if (!tj) return null;
  const tc = (await readOptionalJson(path.join(dir, 'tokenizer_config.json'))) ?? {};
  const cfg = (await readOptionalJson(path.join(dir, 'config.json'))) ?? {};
  const gen = (await readOptionalJson(path.join(dir, 'generation_config.json'))) ?? {};
  const model = (tj['model'] ?? {}) as Json;
  const refuse = (what: string): never => {
    throw new ConfigError(`export-gguf: ${tjFile} is ${what}, which this exporter cannot map to a llama.cpp tokenizer (SentencePiece-style BPE, byte-level BPE and byte tokenizers are supported); export without it: --no-tokenizer`);
  };
  // Unigram is refused too: llama.cpp would read its scores with the SentencePiece-BPE rule (highest-score adjacent
  // merge), not the Viterbi segmentation Unigram defines, so the two would tokenize some text differently.
  if (model['type'] === 'Unigram') refuse('a Unigram tokenizer (llama.cpp would segment it by greedy score merges, not Viterbi, so its ids would differ)');
  if (model['type'] !== 'BPE') refuse(`a ${String(model['type'])} tokenizer`);
  const vocab = model['vocab'] as Record<string, number> | undefined;
  if (!vocab || typeof vocab !== 'object' || Array.isArray(vocab)) refuse('a BPE tokenizer without a vocab object');
  const rawMerges = (model['merges'] as unknown[] | undefined) ?? [];
  const merges = rawMerges.map((m) => {
    // The pair form (transformers >= 4.45) may hold spaces; gguf-py writes them as U+0120 (chr(ord(' ') + 256)).
    if (Array.isArray(m) && m.length === 2) return m.map((p: string) => p.replace(/ /g, '\u0120')).join(' ');
    if (typeof m === 'string') return m;
    return refuse('a BPE tokenizer with malformed merges');
  });
  const added = Array.isArray(tj['added_tokens']) ? (tj['added_tokens'] as Json[]) : [];

  const n = vocabSize;
  const pieces: (string | undefined)[] = new Array(n);
  for (const [p, id] of Object.entries(vocab!)) {
    if (!Number.isInteger(id) || id < 0) refuse(`a tokenizer with a bad id for ${JSON.stringify(p)}`);
    if (id >= n) throw new ConfigError(`export-gguf: ${tjFile} has token id ${id}, but the model's vocab_size is ${vocabSize}; the tokenizer does not belong to this model`);
    pieces[id] = p;
  }
  const types: number[] = new Array(n).fill(TokenType.NORMAL);
  for (const a of added) {
    const id = a['id'] as number;
    const content = a['content'] as string;
    if (!Number.isInteger(id) || id < 0 || typeof content !== 'string') refuse('a tokenizer with a malformed added token');
    if (id >= n) throw new ConfigError(`export-gguf: ${tjFile} has added token id ${id}, but the model's vocab_size is ${vocabSize}; the tokenizer does not belong to this model`);
    pieces[id] = content;
    types[id] = a['special'] ? TokenType.CONTROL : TokenType.USER_DEFINED;
  }

  const normalizer = (tj['normalizer'] ?? null) as Json | null;
  const pre = (tj['pre_tokenizer'] ?? null) as Json | null;
  const decoderType = ((tj['decoder'] ?? {}) as Json)['type'];
  const byteFallback = model['byte_fallback'] === true;
  const isAdded = new Set(added.map((a) => a['id'] as number));

  let out: GgufTokenizer;
  if (!byteFallback && (pre?.['type'] === 'ByteLevel' || pre?.['type'] === 'Sequence') && decoderType === 'ByteLevel') {
    if (normalizer) refuse(`a byte-level BPE tokenizer with a ${String(normalizer['type'])} normalizer`);
    out = { model: 'gpt2', pre: gpt2Pre(pre, tjFile), tokens: [], tokenTypes: types, merges };
  } else if (byteFallback && !normalizer && !pre && merges.length === 0) {
    // The byte tokenizer: byte pieces are respelled in byte-level form (see the file comment).
    for (let id = 0; id < n; id++) {
      const p = pieces[id];
      if (p === undefined || isAdded.has(id)) continue;
      const b = bytePieceValue(p);
      if (b !== null) pieces[id] = byteLevelChar(b);
      else if ([...p].length === 1) refuse('a byte tokenizer with single-character pieces besides the bytes');
    }
    out = { model: 'gpt2', pre: 'gpt-2', tokens: [], tokenTypes: types, merges: [] };
  } else if (isMetaspaceNormalizer(normalizer) || (!normalizer && pre?.['type'] === 'Metaspace')) {
    let addSpacePrefix = JSON.stringify(normalizer ?? '').includes('"Prepend"');
    if (pre?.['type'] === 'Metaspace') {
      if (pre['replacement'] !== SP_SPACE || pre['split'] === true) refuse('a Metaspace pre-tokenizer that splits words or uses another replacement');
      addSpacePrefix = pre['prepend_scheme'] !== 'never' && pre['add_prefix_space'] !== false;
    } else if (pre) refuse(`a SentencePiece-style tokenizer with a ${String(pre['type'])} pre-tokenizer`);
    const rank = new Map<string, number>();
    merges.forEach((m, r) => {
      const joined = m.replace(' ', '');
      if (!rank.has(joined)) rank.set(joined, r);
    });
    const scores = new Array<number>(n);
    const unk = tokenContent(model['unk_token']);
    for (let id = 0; id < n; id++) {
      const p = pieces[id];
      if (p === undefined) continue;
      const r = rank.get(p);
      // Pieces no merge builds (characters, bytes, specials) score below every merged piece.
      scores[id] = r === undefined ? -(merges.length + 1) : -r;
      if (isAdded.has(id)) continue;
      if (byteFallback && bytePieceValue(p) !== null) types[id] = TokenType.BYTE;
      if (p === unk) types[id] = TokenType.UNKNOWN;
    }
    out = { model: 'llama', tokens: [], scores, tokenTypes: types, addSpacePrefix };
  } else {
    return refuse(`a BPE tokenizer with normalizer ${JSON.stringify(normalizer?.['type'] ?? null)}, pre-tokenizer ${JSON.stringify(pre?.['type'] ?? null)} and decoder ${JSON.stringify(decoderType ?? null)}`);
  }

  // Ids the tokenizer does not define (a model vocabulary larger than the tokenizer's): unused pad pieces.
  const scores = out.scores ? [...out.scores] : undefined;
  for (let id = 0; id < n; id++) {
    if (pieces[id] !== undefined) continue;
    pieces[id] = `[PAD${id}]`;
    types[id] = TokenType.UNUSED;
    if (scores) scores[id] = -1000;
  }
  const seen = new Map<string, number>();
  pieces.forEach((p, id) => {
    if (seen.has(p!)) throw new ConfigError(`export-gguf: ${tjFile} gives ids ${seen.get(p!)} and ${id} the same piece ${JSON.stringify(p)}; llama.cpp needs distinct pieces`);
    seen.set(p!, id);
  });

  // Special ids as gguf-py's SpecialVocab finds them: tokenizer_config.json's tokens (as added tokens), then
  // config.json's / generation_config.json's *_token_id.
  const addedId = (v: unknown): number | null => {
    const c = tokenContent(v);
    if (c === null) return null;
    const a = added.find((x) => x['content'] === c);
    return a ? (a['id'] as number) : null;
  };
  const firstId = (v: unknown): number | null => {
    const x = Array.isArray(v) ? v[0] : v;
    return Number.isInteger(x) && (x as number) >= 0 && (x as number) < n ? (x as number) : null;
  };
  const special = (kind: 'bos' | 'eos' | 'unk' | 'pad'): number | null =>
    addedId(tc[`${kind}_token`]) ?? firstId(cfg[`${kind}_token_id`]) ?? firstId(gen[`${kind}_token_id`]);
  const flag = (kind: 'bos' | 'eos'): boolean | undefined => {
    const v = tc[`add_${kind}_token`];
    if (typeof v === 'boolean') return v;
    // Else from a TemplateProcessing post-processor: a leading/trailing special token is added.
    const pp = (tj['post_processor'] ?? null) as Json | null;
    const procs = pp?.['type'] === 'Sequence' ? ((pp['processors'] as Json[]) ?? []) : pp ? [pp] : [];
    const tp = procs.find((x) => x['type'] === 'TemplateProcessing');
    if (!tp) return undefined;
    const single = (tp['single'] as Json[] | undefined) ?? [];
    const edge = kind === 'bos' ? single[0] : single[single.length - 1];
    return single.length > 1 && !!edge && 'SpecialToken' in edge;
  };
  const chat = typeof tc['chat_template'] === 'string' ? (tc['chat_template'] as string) : null;
  return {
    ...out,
    tokens: pieces as string[],
    tokenTypes: types,
    ...(scores ? { scores } : {}),
    bosId: special('bos'),
    eosId: special('eos'),
    unkId: special('unk') ?? (tokenContent(model['unk_token']) !== null ? (vocab![tokenContent(model['unk_token'])!] ?? null) : null),
    padId: special('pad'),
    addBos: flag('bos'),
    addEos: flag('eos'),
    chatTemplate: chat,
  };
}
