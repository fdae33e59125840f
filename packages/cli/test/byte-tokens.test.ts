/**
 * Models without a tokenizer are refused by train / eval unless --byte-tokens asks for raw bytes, and
 * `convert --tokenizer` writes a tokenizer.json from a llama2.c tokenizer file (format of llama2.c
 * `tokenizer.py export()`: uint32 max_token_length; per id: float32 score, uint32 length, bytes).
 */
jest.setTimeout(120_000);
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { convertLlama2c, loadTokenizer } from '@llama-pro/core';
import { STORIES260K_BIN, describeWithFixtures, fixturePath } from '@llama-pro/core/testing';
import { runCli } from './run-cli';

/** A 512-piece vocabulary in the export format: specials, 256 byte pieces, printable characters, bigrams. */
function tokFile(n: number): Buffer {
  const pieces: string[] = ['<unk>', '\n<s>\n', '\n</s>\n'];
  const scores: number[] = [0, 0, 0];
  for (let b = 0; b < 256; b++) {
    pieces.push(String.fromCharCode(b));
    scores.push(0);
  }
  const letters = 'etaoinshrdlucmwy';
  const merged: string[] = [];
  for (const a of letters) for (const b of letters) merged.push(a + b);
  for (const a of letters) merged.push(' ' + a);
  const chars = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i));
  const extra = merged.slice(0, n - pieces.length - chars.length);
  extra.forEach((p, i) => [pieces.push(p), scores.push(-i)]);
  chars.forEach((p, i) => [pieces.push(p), scores.push(-1000 - i)]);
  pieces.length = scores.length = Math.min(n, pieces.length);
  const bufs = pieces.map((p) => Buffer.from(p, 'utf8'));
  const head = Buffer.alloc(4);
  head.writeUInt32LE(Math.max(...bufs.map((b) => b.length)));
  const parts = [head];
  bufs.forEach((b, i) => {
    const r = Buffer.alloc(8);
    r.writeFloatLE(scores[i]!, 0);
    r.writeUInt32LE(b.length, 4);
    parts.push(r, b);
  });
  return Buffer.concat(parts);
}

describeWithFixtures('tokenizers for llama2.c models', [STORIES260K_BIN], () => {
  let tmp: string;
  let bare: string;
  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-bytetok-'));
    bare = path.join(tmp, 'bare');
    await convertLlama2c(fixturePath(...STORIES260K_BIN), bare);
    await fsp.writeFile(path.join(tmp, 'corpus.txt'), 'Once upon a time there was a cat.\n\nThe cat sat on the mat and was happy.\n');
  });
  afterAll(async () => {
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  it('train and eval refuse a model without tokenizer.json unless --byte-tokens is given', async () => {
    const args = ['train', '--model', bare, '--data', path.join(tmp, 'corpus.txt'), '--policy', 'full', '--steps', '1', '--seq-len', '16', '--batch-size', '1', '--backend', 'tfjs', '--eval-interval', '0'];
    const refused = await runCli([...args, '--out', path.join(tmp, 'run-a')]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/has no tokenizer\.json: training would feed text as raw byte tokens[^\n]*--byte-tokens/);
    const ok = await runCli([...args, '--out', path.join(tmp, 'run-b'), '--byte-tokens', '--json']);
    expect(ok.stderr).not.toMatch(/llama-pro:/);
    expect(ok.code).toBe(0);
    const ev = await runCli(['eval', '--model', bare, '--tasks', 'perplexity', '--corpus', path.join(tmp, 'corpus.txt'), '--out', tmp, '--name', 'ev']);
    expect(ev.code).toBe(2);
    expect(ev.stderr).toMatch(/has no tokenizer\.json: evaluation would encode text as raw byte tokens[^\n]*--byte-tokens/);
  });

  it('train takes token-id files (auto-detected .i32) on a model without tokenizer.json: no tokenizer is involved', async () => {
    const ids = new Int32Array(64).map((_, i) => 3 + ((i * 7) % 200));
    const corpus = path.join(tmp, 'corpus.i32');
    await fsp.writeFile(corpus, Buffer.from(ids.buffer));
    const r = await runCli(['train', '--model', bare, '--data', corpus, '--policy', 'full', '--steps', '1', '--seq-len', '16', '--batch-size', '1', '--backend', 'tfjs', '--eval-interval', '0', '--out', path.join(tmp, 'run-ids')]);
    expect(r.stderr).not.toMatch(/no tokenizer\.json|byte tokens/);
    expect(r.code).toBe(0);
  });

  it('convert --tokenizer writes a tokenizer.json that generate --prompt and train use', async () => {
    const tok = path.join(tmp, 'tok512.bin');
    await fsp.writeFile(tok, tokFile(512));
    const out = path.join(tmp, 'with-tok');
    const r = await runCli(['convert', fixturePath(...STORIES260K_BIN), out, '--tokenizer', tok, '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ vocabSize: 512, tokenizer: 'tokenizer.json' });
    const t = await loadTokenizer(out);
    expect([t.vocabSize, t.bosTokenId, t.eosTokenId]).toEqual([512, 1, 2]);
    // Of the bigram pieces, "th" (rank 23) merges before "he" (rank 112); "▁t" is not in the 512 pieces:
    // "the" -> "▁" "th" "e". "é" is no piece: its two UTF-8 bytes fall back to ids byte + 3.
    const vocab = (JSON.parse(await fsp.readFile(path.join(out, 'tokenizer.json'), 'utf8')) as { model: { vocab: Record<string, number> } }).model.vocab;
    expect(t.encode('the')).toEqual([vocab['\u2581']!, vocab['th']!, vocab['e']!]);
    expect(t.encode('é')).toEqual([vocab['\u2581']!, 0xc3 + 3, 0xa9 + 3]);
    expect(t.decode(t.encode('the cat é!'), { skipSpecialTokens: true })).toBe('the cat é!');
    const gen = await runCli(['generate', '--model', out, '--prompt', 'Once upon', '--max-new-tokens', '4', '--temperature', '0', '--json']);
    expect(gen.stderr).not.toMatch(/llama-pro:/);
    expect(gen.code).toBe(0);
    const tr = await runCli(['train', '--model', out, '--data', path.join(tmp, 'corpus.txt'), '--policy', 'full', '--steps', '1', '--seq-len', '8', '--batch-size', '1', '--backend', 'tfjs', '--eval-interval', '0', '--out', path.join(tmp, 'run-c'), '--json']);
    expect(tr.stderr).not.toMatch(/llama-pro:/);
    expect(tr.code).toBe(0);
  });

  it('study --base on a model with a real tokenizer trains and evaluates through it', async () => {
    const yaml = path.join(tmp, 'one-seed.yaml');
    await fsp.writeFile(yaml, 'seeds: 1\nsweep: { lrs: [] }\nvariants:\n  - { name: top-1, strategy: top, params: { blocks: 1 } }\n  - { name: full, policy: full }\n');
    const out = path.join(tmp, 'study-tok');
    const r = await runCli(['study', '--preset', 'micro', '--config', yaml, '--base', path.join(tmp, 'with-tok'), '--out', out, '--no-png', '--json']);
    expect(r.stderr).not.toMatch(/llama-pro:/);
    expect(r.stderr).not.toContain('byte tokens');
    expect(r.code).toBe(0);
    const res = JSON.parse(await fsp.readFile(path.join(out, 'results.json'), 'utf8')) as { runs: { variant: string; identity: { identical: boolean } | null; tokensSeen: number }[] };
    expect(res.runs.map((x) => x.variant)).toEqual(['top-1', 'full']);
    expect(res.runs[0]!.identity!.identical).toBe(true);
    // The experiment the study wrote reads the model's tokenizer.json, not bytes.
    const exp = JSON.parse(await fsp.readFile(path.join(out, 'runs', 'full', 'seed-0', 'train', 'experiment.json'), 'utf8')) as { data: { tokenizer: string } };
    expect(exp.data.tokenizer).toBe('auto');
  });

  it('study --preset paper-shape needs --base, and emits the protocol as LLaMA-Factory jobs', async () => {
    const refused = await runCli(['study', '--preset', 'paper-shape', '--out', path.join(tmp, 'ps')]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('pass --base <dir>');
    const emit = path.join(tmp, 'jobs');
    const r = await runCli(['study', '--preset', 'paper-shape', '--base', path.join(tmp, 'with-tok'), '--out', path.join(tmp, 'ps'), '--engine', 'llamafactory', '--emit', emit, '--backend', 'tfjs', '--json']);
    expect(r.stderr).not.toMatch(/llama-pro:/);
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout) as { jobs: string[]; skipped: string[] };
    // stories260K has 5 layers: expansions top-2, bottom-2, interleaved-5, top-5, bottom-5, three seeds each.
    expect(s.jobs).toHaveLength(15);
    expect(s.jobs).toContain(path.join('interleaved-5', 'seed-2'));
    expect([...new Set(s.skipped.map((x) => x.split('/')[0]))]).toEqual(['full', 'lora', 'layers-2']);
    // The same settings as the study's own runs: seed, steps and learning rate of the preset (mini's
    // domain training: 100 steps at lr 1e-2).
    const cfg = await fsp.readFile(path.join(emit, 'interleaved-5', 'seed-1', 'llamafactory.yaml'), 'utf8');
    expect(cfg).toMatch(/^seed: 1$/m);
    expect(cfg).toMatch(/^max_steps: 100$/m);
    expect(cfg).toMatch(/^learning_rate: 0\.01$/m);
    expect(await fsp.readFile(path.join(emit, 'README.md'), 'utf8')).toContain('Not emitted: the baselines full, lora, layers-2');
  });

  it('convert refuses a tokenizer whose size differs from the model vocabulary, writing nothing', async () => {
    const tok = path.join(tmp, 'tok300.bin');
    await fsp.writeFile(tok, tokFile(300));
    const out = path.join(tmp, 'bad-tok');
    const r = await runCli(['convert', fixturePath(...STORIES260K_BIN), out, '--tokenizer', tok]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("holds 300 tokens but the model's vocabulary has 512");
    await expect(fsp.stat(out)).rejects.toThrow();
  });
});
