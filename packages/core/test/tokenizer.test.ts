import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { ByteTokenizer, CheckpointError, loadTokenizer, loadTokenizerOrBytes } from '@llama-pro/core';
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
