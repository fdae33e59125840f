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
    return this.tok.decode([...ids], { skip_special_tokens: options.skipSpecialTokens ?? false });
  }
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

  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    const bytes: number[] = [];
    for (const id of ids) {
      if (id >= this.offset && id < this.offset + 256) bytes.push(id - this.offset);
      else if (!options.skipSpecialTokens && id !== this.bosTokenId && id !== this.eosTokenId) bytes.push(...Buffer.from(`<${id}>`));
    }
    return Buffer.from(bytes).toString('utf8');
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
