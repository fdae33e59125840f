import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { ByteTokenizer, CheckpointError, decodeAfter, loadTokenizer, loadTokenizerOrBytes, tokenPieces, type TextTokenizer } from '@llama-pro/core';
import { writeSentencePieceTokenizer } from '@llama-pro/core/testing';
import { tmpDir } from './helpers';

/** A small word-level tokenizer.json in the Hugging Face tokenizers format. */
function wordLevel(): Record<string, unknown> {
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2, hello: 3, world: 4, '!': 5 };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      { id: 0, content: '<unk>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
      { id: 1, content: '<s>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
      { id: 2, content: '</s>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    ],
    normalizer: null,
    pre_tokenizer: { type: 'Whitespace' },
    post_processor: null,
    decoder: null,
    model: { type: 'WordLevel', vocab, unk_token: '<unk>' },
  };
}

describe('tokenizers', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tmpDir('lp-tok-');
    await fsp.writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(wordLevel()));
    await fsp.writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>', eos_token: { content: '</s>' }, chat_template: '{{ messages }}' }));
  });

  it('loads tokenizer.json + tokenizer_config.json', async () => {
    const t = await loadTokenizer(dir);
    expect(t.kind).toBe('hf');
    expect(t.encode('hello world !')).toEqual([3, 4, 5]);
    expect(t.encode('hello mars')).toEqual([3, 0]);
    expect(t.bosTokenId).toBe(1);
    expect(t.eosTokenId).toBe(2);
    expect(t.vocabSize).toBe(6);
    expect(t.chatTemplate).toBe('{{ messages }}');
    expect(t.decode([1, 3, 4], { skipSpecialTokens: true })).toMatch(/hello\s?world/);
  });

  it('reports a missing or broken tokenizer clearly', async () => {
    const empty = await tmpDir('lp-tok-empty-');
    await expect(loadTokenizer(empty)).rejects.toThrow(/has no tokenizer\.json/);
    await fsp.writeFile(path.join(empty, 'tokenizer.json'), '{oops');
    await expect(loadTokenizer(empty)).rejects.toThrow(CheckpointError);
    await expect(loadTokenizer(empty)).rejects.toThrow(/tokenizer\.json is not valid JSON/);
  });

  it('falls back to byte tokens (ids 3..258) for vocabularies with byte pieces', async () => {
    const t = await loadTokenizerOrBytes(await tmpDir('lp-tok-none-'), 512);
    expect(t.kind).toBe('bytes');
    expect(t.encode('Hi é')).toEqual([0x48 + 3, 0x69 + 3, 0x20 + 3, 0xc3 + 3, 0xa9 + 3]);
    expect(t.decode(t.encode('Hi é'))).toBe('Hi é');
    expect(t.decode([1, 0x41 + 3, 2])).toBe('A');
    expect(() => new ByteTokenizer(100)).toThrow(/no room for 256 byte tokens/);
    await expect(loadTokenizerOrBytes(await tmpDir('lp-tok-none2-'), 100)).rejects.toThrow(/no tokenizer\.json/);
  });
});

// Expected strings below were produced by the Rust `tokenizers` 0.23.2 (what transformers uses) on the same
// tokenizer.json (`Tokenizer.from_file(...).decode(ids)`), written by writeSentencePieceTokenizer: LLaMA-2 layout.
describe('SentencePiece-style tokenizer decoding (reference: Rust tokenizers 0.23.2)', () => {
  let t: TextTokenizer;
  let ids: number[];
  const b = (x: number): number => x + 3; // byte-fallback piece <0xHH> is id 3 + HH
  beforeAll(async () => {
    const dir = await tmpDir('lp-tok-sp-');
    await writeSentencePieceTokenizer(dir);
    t = await loadTokenizer(dir);
    ids = t.encode('He has 10 apples.');
  });

  it('encodes as the reference does', () => {
    expect(ids).toEqual([263, 269, 273, 281, 297]); // tokenizers: encode(..., add_special_tokens=False).ids
    expect(t.encode('你 é')).toEqual([259, 231, 192, 163, 259, 198, 172]);
  });

  it('decodes [] to "" (D1: @huggingface/tokenizers throws; the reference returns "")', () => {
    expect(t.decode([])).toBe('');
    expect(t.decode([], { skipSpecialTokens: true })).toBe('');
    expect(t.decode([1], { skipSpecialTokens: true })).toBe('');
    expect(new ByteTokenizer(512).decode([])).toBe('');
  });

  it('decodes whole sequences and lone tokens as the reference (Strip drops a lone token\'s space)', () => {
    expect(t.decode(ids)).toBe('He has 10 apples.');
    expect(t.decode([273])).toBe('10');
    expect(t.decode([269, 273])).toBe('has 10');
    expect(t.decode([1, 273])).toBe('<s> 10');
    expect(t.decode([1, 273], { skipSpecialTokens: true })).toBe('10');
  });

  it('byte-fallback runs: valid UTF-8 decodes, an invalid run is one U+FFFD per byte token (D8)', () => {
    expect(t.decode([b(0xe4), b(0xbd), b(0xa0)])).toBe('你');
    expect(t.decode([b(0xe4), b(0xbd)])).toBe('\uFFFD\uFFFD');
    expect(t.decode([b(0xe4), b(0xbd), b(0x41)])).toBe('\uFFFD\uFFFD\uFFFD');
    expect(t.decode([263, b(0xe4), 269])).toBe('He\uFFFD has');
    // The byte tokenizer (no tokenizer.json) follows the same rule.
    const bytes = new ByteTokenizer(512);
    expect(bytes.decode([b(0xe4), b(0xbd), b(0x41)])).toBe('\uFFFD\uFFFD\uFFFD');
    expect(bytes.decode([b(0xe4), b(0xbd), b(0xa0), b(0x41)])).toBe('你A');
  });

  it('decodes a continuation relative to its prefix (vLLM incremental detokenizer, transformers TextStreamer)', () => {
    // Reference: decode(prefix + new) minus decode(prefix) with the strings above: "He has 10" - "He has" = " 10".
    expect(decodeAfter(t, ids.slice(0, 2), [273])).toBe(' 10');
    expect(decodeAfter(t, ids.slice(0, 2), [273, 273, 273])).toBe(' 10 10 10');
    expect(decodeAfter(t, [1], [273], { skipSpecialTokens: true })).toBe('10');
    expect(decodeAfter(t, ids, [])).toBe('');
    const pieces = tokenPieces(t, [1, ...ids], 0, { skipSpecialTokens: true });
    expect(pieces).toEqual(['', 'He', ' has', ' 10', ' apples', '.']);
    expect(pieces.join('')).toBe(t.decode(ids));
  });
});
