/**
 * Tokenizer loading: `tokenizer.json` + `tokenizer_config.json` through `@huggingface/tokenizers`,
 * and a byte-level fallback for models without a tokenizer whose vocabulary has sentencepiece
 * byte-fallback pieces (`<0x00>`..`<0xFF>` at ids 3..258, as llama2.c / LLaMA vocabularies do).
 */
import * as path from 'node:path';
import type { Tokenizer as HfTokenizer } from '@huggingface/tokenizers' with { 'resolution-mode': 'import' };
import { CheckpointError } from '../errors';
import { MAX_TOKENIZER_JSON_BYTES, fileMessage, readJsonFile } from '../io/input-files';

// The package ships a CommonJS build for Node; its typings are declared ESM-only.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Tokenizer } = require('@huggingface/tokenizers') as typeof import('@huggingface/tokenizers', { with: { 'resolution-mode': 'import' } });

export interface TextTokenizer {
  readonly kind: 'hf' | 'bytes';
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  /** Encodes text without special tokens (callers add BOS where a task wants it). */
  encode(text: string): number[];
  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string;
  /** The chat template from tokenizer_config.json, if any. */
  readonly chatTemplate: string | null;
  readonly config: Readonly<Record<string, unknown>>;
}

class HfTextTokenizer implements TextTokenizer {
  readonly kind = 'hf' as const;
  constructor(
    private readonly tok: HfTokenizer,
    readonly config: Record<string, unknown>,
    readonly vocabSize: number,
    readonly bosTokenId: number | null,
    readonly eosTokenId: number | null,
    readonly chatTemplate: string | null,
    private readonly unkId: number | null,
  ) {}

  encode(text: string): number[] {
    const ids = this.tok.encode(text, { add_special_tokens: false }).ids;
    // @huggingface/tokenizers 0.2 returns undefined for unknown words in WordLevel models: map them to <unk>.
    return (ids as (number | undefined)[]).map((id) => {
      if (Number.isInteger(id)) return id as number;
      if (this.unkId !== null) return this.unkId;
      throw new CheckpointError(`the tokenizer cannot encode part of ${JSON.stringify(text.slice(0, 40))} and has no unk token`, 'TOKENIZER_INVALID');
    });
  }

  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    // @huggingface/tokenizers throws on []; the Rust tokenizers (and transformers) return "".
    if (ids.length === 0) return '';
    return this.tok.decode([...ids], { skip_special_tokens: options.skipSpecialTokens ?? false });
  }
}

/** A byte-fallback piece `<0xHH>`, as the Rust tokenizers' `ByteFallback` decoder recognizes it; else null. */
function bytePiece(token: string): number | null {
  if (token.length !== 6 || !token.startsWith('<0x') || !token.endsWith('>')) return null;
  const hex = token.slice(3, 5);
  return /^[0-9A-Fa-f]{2}$/.test(hex) ? parseInt(hex, 16) : null;
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The Rust tokenizers' `ByteFallback` rule (decoders/byte_fallback.rs): a run of consecutive byte pieces becomes its
 * UTF-8 text when the run is valid UTF-8, else one U+FFFD per byte piece. @huggingface/tokenizers 0.2 decodes the run
 * with a lenient TextDecoder instead (one U+FFFD per maximal invalid subsequence), so `[<0xE4>, <0xBD>]` gave "\uFFFD"
 * where transformers gives "\uFFFD\uFFFD".
 */
export function byteFallbackChain(tokens: readonly string[]): string[] {
  const out: string[] = [];
  let run: number[] = [];
  const flush = (): void => {
    if (run.length === 0) return;
    try {
      out.push(STRICT_UTF8.decode(Uint8Array.from(run)));
    } catch {
      for (let i = 0; i < run.length; i++) out.push('\uFFFD');
    }
    run = [];
  };
  for (const t of tokens) {
    const b = bytePiece(t);
    if (b !== null) run.push(b);
    else {
      flush();
      out.push(t);
    }
  }
  flush();
  return out;
}

interface DecoderNode {
  config?: { type?: string };
  decoders?: DecoderNode[];
  decode_chain?: (tokens: string[]) => string[];
}

/** Gives every `ByteFallback` step of a loaded tokenizer's decoder the Rust tokenizers' rule (see byteFallbackChain). */
function useReferenceByteFallback(node: DecoderNode | null | undefined): void {
  // Decoders are callable objects (functions) in @huggingface/tokenizers.
  if (!node || (typeof node !== 'object' && typeof node !== 'function')) return;
  if (node.config?.type === 'ByteFallback' && typeof node.decode_chain === 'function') node.decode_chain = byteFallbackChain;
  for (const d of node.decoders ?? []) useReferenceByteFallback(d);
}

function tokenContent(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return null;
}

/** Loads `tokenizer.json` (+ `tokenizer_config.json` when present) from a model directory. */
export async function loadTokenizer(dir: string): Promise<TextTokenizer> {
  const tjPath = path.join(dir, 'tokenizer.json');
  let tj: Record<string, unknown>;
  // Regular files only, size- and depth-capped (a FIFO or /dev/zero here used to hang or fill memory).
  const tokFail = (file: string) => (detail: string, code: string) => new CheckpointError(fileMessage(file, detail), code === 'INPUT_MISSING' ? 'TOKENIZER_MISSING' : 'TOKENIZER_INVALID');
  try {
    tj = (await readJsonFile(tjPath, tokFail(tjPath), { maxBytes: MAX_TOKENIZER_JSON_BYTES })) as Record<string, unknown>;
  } catch (e) {
    if ((e as CheckpointError).code === 'TOKENIZER_MISSING') throw new CheckpointError(`${dir} has no tokenizer.json; pass token ids instead, or use the byte tokenizer`, 'TOKENIZER_MISSING');
    throw e;
  }
  let tc: Record<string, unknown> = {};
  const tcPath = path.join(dir, 'tokenizer_config.json');
  try {
    tc = (await readJsonFile(tcPath, tokFail(tcPath), { maxBytes: MAX_TOKENIZER_JSON_BYTES })) as Record<string, unknown>;
  } catch (e) {
    if ((e as CheckpointError).code !== 'TOKENIZER_MISSING') throw e;
  }
  let tok: HfTokenizer;
  try {
    tok = new Tokenizer(tj as never, tc as never);
  } catch (e) {
    throw new CheckpointError(`cannot build a tokenizer from ${tjPath}: ${(e as Error).message}`, 'TOKENIZER_INVALID');
  }
  useReferenceByteFallback((tok as unknown as { decoder?: DecoderNode }).decoder);
  const vocab = (tj['model'] as { vocab?: unknown } | undefined)?.vocab;
  const added = Array.isArray(tj['added_tokens']) ? (tj['added_tokens'] as { id: number }[]) : [];
  let vocabSize = Array.isArray(vocab) ? vocab.length : vocab && typeof vocab === 'object' ? Object.keys(vocab).length : 0;
  for (const a of added) vocabSize = Math.max(vocabSize, a.id + 1);
  const idOf = (v: unknown): number | null => {
    const c = tokenContent(v);
    if (c === null) return null;
    const id = tok.token_to_id(c);
    return id === undefined || id === null ? null : id;
  };
  const template = typeof tc['chat_template'] === 'string' ? (tc['chat_template'] as string) : null;
  const unk = (tj['model'] as { unk_token?: unknown } | undefined)?.unk_token;
  return new HfTextTokenizer(tok, tc, vocabSize, idOf(tc['bos_token']), idOf(tc['eos_token']), template, idOf(unk));
}

/**
 * Byte tokens for sentencepiece vocabularies with byte fallback: byte b is id `offset + b`
 * (offset 3 for LLaMA / llama2.c vocabularies: 0 unk, 1 BOS, 2 EOS).
 */
export class ByteTokenizer implements TextTokenizer {
  readonly kind = 'bytes' as const;
  readonly chatTemplate = null;
  readonly config = {};
  readonly bosTokenId = 1;
  readonly eosTokenId = 2;
  constructor(
    readonly vocabSize: number,
    readonly offset = 3,
  ) {
    if (vocabSize < offset + 256) throw new CheckpointError(`vocabulary of ${vocabSize} has no room for 256 byte tokens at offset ${offset}`, 'TOKENIZER_INVALID');
  }

  encode(text: string): number[] {
    return [...Buffer.from(text, 'utf8')].map((b) => b + this.offset);
  }

  /** Byte runs decode as the Rust tokenizers' `ByteFallback` does (an invalid run is one U+FFFD per byte). */
  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    const pieces: string[] = [];
    for (const id of ids) {
      if (id >= this.offset && id < this.offset + 256) pieces.push(`<0x${(id - this.offset).toString(16).toUpperCase().padStart(2, '0')}>`);
      else if (!options.skipSpecialTokens && id !== this.bosTokenId && id !== this.eosTokenId) pieces.push(`<${id}>`);
    }
    return byteFallbackChain(pieces).join('');
  }
}

/** The model's tokenizer.json when it has one, else byte tokens when the vocabulary allows, else an error. */
export async function loadTokenizerOrBytes(dir: string, vocabSize: number): Promise<TextTokenizer> {
  try {
    return await loadTokenizer(dir);
  } catch (e) {
    if (e instanceof CheckpointError && e.code === 'TOKENIZER_MISSING' && vocabSize >= 259) return new ByteTokenizer(vocabSize);
    throw e;
  }
}

/** Prefix tokens `decodeAfter` decodes along with the new ones (vLLM's INITIAL_INCREMENTAL_DETOKENIZATION_OFFSET). */
export const DECODE_CONTEXT_TOKENS = 5;

/**
 * The text `ids` add after `prefix`: decode(ctx + ids) minus decode(ctx), where ctx is the last
 * DECODE_CONTEXT_TOKENS of the prefix — what vLLM's incremental detokenizer and transformers' TextStreamer do.
 * Decoding a continuation on its own loses what the decoder does at the start of a text: SentencePiece-style
 * tokenizers strip the first token's leading space (`Strip` decoder), so `▁10` alone is "10" but " 10" after "has".
 * When a multi-byte character spans the boundary, the common prefix is kept and the rest counts as new text.
 */
export function decodeAfter(tokenizer: TextTokenizer, prefix: readonly number[], ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
  if (ids.length === 0) return '';
  const ctx = prefix.slice(Math.max(0, prefix.length - DECODE_CONTEXT_TOKENS));
  const before = tokenizer.decode(ctx, options);
  const all = tokenizer.decode([...ctx, ...ids], options);
  if (all.startsWith(before)) return all.slice(before.length);
  let i = 0;
  while (i < before.length && i < all.length && before.charCodeAt(i) === all.charCodeAt(i)) i++;
  return all.slice(i);
}

/** The text of each of `ids[from..]` in the context of the tokens before it (see decodeAfter); they join to the text. */
export function tokenPieces(tokenizer: TextTokenizer, ids: readonly number[], from = 0, options: { skipSpecialTokens?: boolean } = {}): string[] {
  const out: string[] = [];
  for (let t = from; t < ids.length; t++) out.push(decodeAfter(tokenizer, ids.slice(0, t), [ids[t]!], options));
  return out;
}
