/**
 * llama2.c tokenizer files -> tokenizer.json, and the byte-level tokenizer.json.
 *
 * Reference for the llama2.c side: the file layout written by karpathy/llama2.c `tokenizer.py export()`
 * (uint32 max_token_length; per id: float32 score, uint32 length, bytes) and the encoder of llama2.c
 * `run.c` (`encode`: a dummy-prefix " " token, one token per UTF-8 character or byte-fallback ids
 * byte + 3, then repeatedly merge the adjacent pair whose concatenation is in the vocabulary with the
 * highest score). `runcEncode` below re-implements that documented algorithm independently of the code
 * under test, which goes through transformers' LLaMA-converter layout and @huggingface/tokenizers.
 * By hand (not in CI): the tokenizer.json built from llama2.c's own tokenizer.bin (32000 pieces) encodes
 * 310 texts (stories, problems, random unicode with tabs/newlines/emoji) to exactly the ids, and decodes
 * to exactly the text, of sentencepiece 0.2 with llama2.c's tokenizer.model.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ByteTokenizer, Llama2cError, Rng, byteTokenizerJson, llama2cTokenizerJson, loadTokenizer, readLlama2cTokenizer, writeTokenizerFiles } from '../src';

const byteName = (b: number) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;

/** A small sentencepiece-BPE-like vocabulary as llama2.c's export writes it ("▁" already a space). */
function exportedVocab(byteStyle: 'chr' | 'hex'): { pieces: string[]; scores: number[] } {
  const pieces = ['<unk>', '\n<s>\n', '\n</s>\n'];
  const scores = [0, 0, 0];
  for (let b = 0; b < 256; b++) {
    pieces.push(byteStyle === 'hex' ? byteName(b) : String.fromCharCode(b));
    scores.push(0);
  }
  // Merged pieces first (BPE order, score = −rank), then the single characters, as sentencepiece lists them.
  const merged = [' h', 'he', 'll', ' he', 'llo', ' hello', 'ab', ' ab', 'abc', 'lo', ' a', 'é!', ' é'];
  const chars = [' ', 'a', 'b', 'c', 'h', 'e', 'l', 'o', 'é', '!'];
  merged.forEach((p, i) => {
    pieces.push(p);
    scores.push(-i);
  });
  chars.forEach((p, i) => {
    pieces.push(p);
    scores.push(-100 - i);
  });
  return { pieces, scores };
}

function exportFile(v: { pieces: string[]; scores: number[] }): Buffer {
  const bufs = v.pieces.map((p) => Buffer.from(p, 'utf8'));
  const parts: Buffer[] = [];
  const head = Buffer.alloc(4);
  head.writeUInt32LE(Math.max(...bufs.map((b) => b.length)));
  parts.push(head);
  bufs.forEach((b, i) => {
    const rec = Buffer.alloc(8);
    rec.writeFloatLE(v.scores[i]!, 0);
    rec.writeUInt32LE(b.length, 4);
    parts.push(rec, b);
  });
  return Buffer.concat(parts);
}

/** llama2.c run.c's encode (documented algorithm), on the exported (space, not "▁") piece strings. */
function runcEncode(v: { pieces: string[]; scores: number[] }, text: string): number[] {
  const lookup = new Map<string, number>();
  // run.c's byte tokens are reached only through the byte-fallback path (+3), never by lookup.
  v.pieces.forEach((p, i) => {
    if (i >= 259 && !lookup.has(p)) lookup.set(p, i);
  });
  const tokens: number[] = [];
  if (text.length > 0) tokens.push(lookup.get(' ')!);
  for (const ch of text) {
    const id = lookup.get(ch);
    if (id !== undefined) tokens.push(id);
    else for (const b of Buffer.from(ch, 'utf8')) tokens.push(b + 3);
  }
  const str = (id: number) => (id >= 3 && id < 259 ? `\u0000${id}` : v.pieces[id]!);
  for (;;) {
    let best = -Infinity;
    let at = -1;
    let bestId = -1;
    for (let i = 0; i + 1 < tokens.length; i++) {
      const id = lookup.get(str(tokens[i]!) + str(tokens[i + 1]!));
      if (id !== undefined && v.scores[id]! > best) [best, at, bestId] = [v.scores[id]!, i, id];
    }
    if (at < 0) break;
    tokens.splice(at, 2, bestId);
  }
  return tokens;
}

let tmp: string;
beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'llama2c-tok-'));
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

describe('llama2.c tokenizer -> tokenizer.json', () => {
  it('reads the export format and encodes / decodes like llama2.c run.c', async () => {
    const v = exportedVocab('chr');
    const file = path.join(tmp, 'tok.bin');
    await fsp.writeFile(file, exportFile(v));
    const read = await readLlama2cTokenizer(file, v.pieces.length);
    expect(read.pieces).toHaveLength(v.pieces.length);
    expect(read.scores[259 + 2]).toBe(-2);
    const dir = path.join(tmp, 'model');
    await fsp.mkdir(dir);
    await writeTokenizerFiles(dir, llama2cTokenizerJson(read));
    const tok = await loadTokenizer(dir);
    expect([tok.bosTokenId, tok.eosTokenId, tok.vocabSize]).toEqual([1, 2, v.pieces.length]);
    const rng = new Rng(3);
    const alphabet = [...'abcehlo  xyz!é\n', '😀'];
    const texts = ['hello', ' hello hello', 'abc ab', 'hé!', 'xyz', 'a\nb', '😀 hello'];
    for (let i = 0; i < 300; i++) texts.push(Array.from({ length: 1 + rng.int(12) }, () => alphabet[rng.int(alphabet.length)]!).join(''));
    for (const t of texts) {
      const ids = tok.encode(t);
      expect([t, ids]).toEqual([t, runcEncode(v, t)]);
      expect(tok.decode(ids, { skipSpecialTokens: true })).toBe(t);
    }
    // Known merges: " hello" is one piece; "hello" alone gets the dummy prefix too.
    expect(tok.encode('hello')).toEqual([v.pieces.indexOf(' hello')]);
    // Bytes outside the vocabulary fall back to <0xNN> = byte + 3.
    expect(tok.encode('x')).toEqual([v.pieces.indexOf(' ', 259), 'x'.charCodeAt(0) + 3]);
  });

  it('accepts older exports that kept "<0xNN>" byte pieces, with the same result', async () => {
    const a = llama2cTokenizerJson(await readLlama2cTokenizer(await write('chr.bin', exportFile(exportedVocab('chr')))));
    const b = llama2cTokenizerJson(await readLlama2cTokenizer(await write('hex.bin', exportFile(exportedVocab('hex')))));
    expect(b).toEqual(a);
  });

  it('refuses truncated, oversized and mismatched files with a message naming the problem', async () => {
    const good = exportFile(exportedVocab('chr'));
    await expect(readLlama2cTokenizer(await write('cut.bin', good.subarray(0, good.length - 3)))).rejects.toThrow(/truncated at token/);
    await expect(readLlama2cTokenizer(await write('good.bin', good), 512)).rejects.toThrow(/holds 282 tokens but the model's vocabulary has 512/);
    await expect(readLlama2cTokenizer(path.join(tmp, 'good.bin'), 100)).rejects.toThrow(/bytes after the model's 100 tokens/);
    const bad = Buffer.from(good);
    bad.writeUInt32LE(0, 0);
    await expect(readLlama2cTokenizer(await write('bad.bin', bad))).rejects.toThrow(Llama2cError);
    await expect(readLlama2cTokenizer(tmp)).rejects.toThrow(/is a directory/);
  });
});

describe('byte-level tokenizer.json', () => {
  it('encodes and decodes exactly like ByteTokenizer', async () => {
    const dir = path.join(tmp, 'bytes');
    await fsp.mkdir(dir);
    await writeTokenizerFiles(dir, byteTokenizerJson(300));
    const hf = await loadTokenizer(dir);
    const bt = new ByteTokenizer(300);
    expect([hf.vocabSize, hf.bosTokenId, hf.eosTokenId]).toEqual([300, 1, 2]);
    const rng = new Rng(9);
    const alphabet = [...'ab \n\t.,#0123456789', 'é', '€', '😀', '日', '\u0000', '\u00ff'];
    const texts = ['Question: Tom has 3 + 4 = 7 apples.\n#### 7', ''];
    for (let i = 0; i < 300; i++) texts.push(Array.from({ length: rng.int(20) }, () => alphabet[rng.int(alphabet.length)]!).join(''));
    for (const t of texts) {
      expect([t, hf.encode(t)]).toEqual([t, bt.encode(t)]);
      // (@huggingface/tokenizers 0.2 refuses to decode an empty id list.)
      if (t) expect(hf.decode(bt.encode(t), { skipSpecialTokens: true })).toBe(t);
    }
    expect(() => byteTokenizerJson(100)).toThrow(/at least 259/);
  });
});

async function write(name: string, data: Buffer): Promise<string> {
  const f = path.join(tmp, name);
  await fsp.writeFile(f, data);
  return f;
}
