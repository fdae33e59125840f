/**
 * A small tokenizer.json in the layout transformers writes for LLaMA-2 / Mistral (SentencePiece BPE converted to
 * the tokenizers format): normalizer `Prepend("▁")` + `Replace(" ", "▁")`, BPE with `byte_fallback` over
 * `<0x00>`..`<0xFF>` at ids 3..258, and the decoder `Replace("▁", " ")`, `ByteFallback`, `Fuse`,
 * `Strip(" ", 1, 0)` — the decoder that drops a lone token's leading space. Ids: 0 `<unk>`, 1 `<s>`, 2 `</s>`,
 * 3..258 bytes, then, piece by piece, its characters and its prefixes (so left-to-right merges build each piece).
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

export const SP_SPACE = '\u2581';

export function sentencePieceTokenizerJson(pieces: readonly string[]): Record<string, unknown> {
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = 3 + b;
  const merges: string[] = [];
  let next = 259;
  for (const piece of pieces) {
    const chars = [...piece];
    for (const ch of chars) if (vocab[ch] === undefined) vocab[ch] = next++;
    for (let k = 1; k <= chars.length; k++) {
      const p = chars.slice(0, k).join('');
      if (vocab[p] !== undefined) continue;
      vocab[p] = next++;
      if (k >= 2) merges.push(`${chars.slice(0, k - 1).join('')} ${chars[k - 1]}`);
    }
  }
  const special = (id: number, content: string): Record<string, unknown> => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: SP_SPACE },
        { type: 'Replace', pattern: { String: ' ' }, content: SP_SPACE },
      ],
    },
    pre_tokenizer: null,
    post_processor: null,
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: SP_SPACE }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges },
  };
}

/** The pieces of the shared SentencePiece-style test tokenizer (LLaMA-2 style, see above). */
export const SP_TEST_PIECES: readonly string[] = ['▁He', '▁has', '▁10', '▁apples', '▁The', '▁answer', '▁is', '.', '\n', '▁', 'Q', ':', '▁A'];

/** Writes tokenizer.json + tokenizer_config.json (BOS `<s>`, EOS `</s>`) of the test tokenizer into `dir`. */
export async function writeSentencePieceTokenizer(dir: string, pieces: readonly string[] = SP_TEST_PIECES): Promise<void> {
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(sentencePieceTokenizerJson(pieces)));
  await fsp.writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>', add_bos_token: true, clean_up_tokenization_spaces: false }));
}
