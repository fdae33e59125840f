/**
 * `llama-pro export-gguf` end to end (in process): the tokenizer is read from the model directory by default,
 * `--no-tokenizer` writes the id-only vocabulary, and a tokenizer kind llama.cpp cannot express fails with one
 * error line naming the problem and the way out. What llama.cpp does with the files: tools/test/llamacpp.test.ts.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { byteTokenizerJson, writeTokenizerFiles } from '@llama-pro/core';
import { tinyRawConfig, writeRandomCheckpoint } from '@llama-pro/core/testing';
import { runCli } from './run-cli';

let dir: string;
beforeAll(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-cli-gguf-'));
});
afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

describe('export-gguf', () => {
  it('writes the model tokenizer by default, the id-only vocabulary with --no-tokenizer, and refuses unmappable tokenizers', async () => {
    const m = path.join(dir, 'm');
    await writeRandomCheckpoint(m, tinyRawConfig({ vocab: 300 }), { seed: 3 });
    await writeTokenizerFiles(m, byteTokenizerJson(300));
    const a = await runCli(['export-gguf', m, path.join(dir, 'a.gguf'), '--json']);
    expect(a.code).toBe(0);
    expect(JSON.parse(a.stdout)).toMatchObject({ type: 'f32', tokenizer: 'gpt2' });
    const b = await runCli(['export-gguf', m, path.join(dir, 'b.gguf'), '--no-tokenizer', '--json']);
    expect(b.code).toBe(0);
    expect(JSON.parse(b.stdout)).toMatchObject({ tokenizer: null });
    const buf = await fsp.readFile(path.join(dir, 'b.gguf'));
    expect(buf.includes(Buffer.from('<id_299>'))).toBe(true); // the placeholder piece of the id-only vocabulary

    await fsp.writeFile(path.join(m, 'tokenizer.json'), JSON.stringify({ model: { type: 'WordPiece', vocab: { a: 0 } } }));
    const c = await runCli(['export-gguf', m, path.join(dir, 'c.gguf')]);
    expect(c.code).not.toBe(0);
    expect(c.stderr).toMatch(/WordPiece tokenizer.*--no-tokenizer/);
    expect(c.stderr.trim().split('\n')).toHaveLength(1);
    await expect(fsp.access(path.join(dir, 'c.gguf'))).rejects.toThrow();
  });

  it('exports a sliding-window model with one warning line that llama.cpp attends to the whole context', async () => {
    const m = path.join(dir, 'sw');
    await writeRandomCheckpoint(m, tinyRawConfig({ vocab: 300, architecture: 'MistralForCausalLM', extra: { sliding_window: 16 } }), { seed: 4 });
    await writeTokenizerFiles(m, byteTokenizerJson(300));
    const r = await runCli(['export-gguf', m, path.join(dir, 'sw.gguf'), '--json']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^llama-pro: warning: export-gguf: \d+ of \d+ layers attend within a sliding window of 16 tokens.*up to 16 tokens$/m);
    expect(JSON.parse(r.stdout).warnings).toHaveLength(1);
  });
});
