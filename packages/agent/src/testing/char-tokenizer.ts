import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

/** Special tokens of the test tokenizer (ids 0..). */
export const CHAR_TOKENIZER_SPECIALS = ['<unk>', '<s>', '</s>', '<|im_start|>', '<|im_end|>'] as const;

/**
 * A character-level `tokenizer.json` (BPE with no merges, Fuse decoder) that @huggingface/tokenizers
 * loads: specials first, then printable ASCII and newline, one token each.
 */
export function charTokenizerJson(): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  CHAR_TOKENIZER_SPECIALS.forEach((s, i) => (vocab[s] = i));
  const chars = ['\n'];
  for (let c = 32; c < 127; c++) chars.push(String.fromCharCode(c));
  for (const ch of chars) vocab[ch] = Object.keys(vocab).length;
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: CHAR_TOKENIZER_SPECIALS.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: { type: 'Fuse' },
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: [] },
  };
}

export const CHAR_TOKENIZER_VOCAB = CHAR_TOKENIZER_SPECIALS.length + 1 + 95;

/** Writes tokenizer.json (+ tokenizer_config.json with `chatTemplate` when given) into `dir`. */
export async function writeCharTokenizer(dir: string, chatTemplate?: string): Promise<void> {
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(charTokenizerJson()));
  const cfg: Record<string, unknown> = { bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>', model_max_length: 512 };
  if (chatTemplate !== undefined) cfg['chat_template'] = chatTemplate;
  await fsp.writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify(cfg));
}
