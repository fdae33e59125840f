import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { convertLlama2c, loadTokenizer } from '@llama-pro/core';
import { STORIES260K_BIN, STORIES260K_GOLDEN, describeWithFixtures, fixturePath, tinyRawConfig, writeRandomCheckpoint } from '@llama-pro/core/testing';
import { parseBackendSpec } from '../src/backend-option';
import { runCli } from './run-cli';

async function tmp(prefix: string): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), prefix));
}

describe('--backend name[:variant]', () => {
  it('parses names and variants', () => {
    expect(parseBackendSpec('tfjs:wasm')).toEqual({ name: 'tfjs', variant: 'wasm' });
    expect(parseBackendSpec(' ONNX ')).toEqual({ name: 'onnx', variant: undefined });
    expect(parseBackendSpec(undefined)).toEqual({ name: 'onnx', variant: undefined }); // onnx is the inference default
    expect(() => parseBackendSpec('tfjs:')).toThrow(/name\[:variant\]/);
    expect(() => parseBackendSpec('a:b:c')).toThrow(/name\[:variant\]/);
  });
});

describeWithFixtures('llama-pro generate on stories260K', [STORIES260K_BIN, [...STORIES260K_GOLDEN, 'tokens.txt']], () => {
  let dir: string;
  let golden: number[];
  beforeAll(async () => {
    dir = path.join(await tmp('lp-gen-'), 'stories260K');
    await convertLlama2c(fixturePath(...STORIES260K_BIN), dir);
    golden = (await fsp.readFile(fixturePath(...STORIES260K_GOLDEN, 'tokens.txt'), 'utf8')).split(/\s+/).filter(Boolean).map(Number);
  });

  it.each(['tfjs:wasm', 'tfjs'])('greedy from BOS reproduces tokens.txt (--backend %s)', async (backend) => {
    const r = await runCli(['generate', '--model', dir, '--prompt-ids', '1', '--max-new-tokens', '63', '--temperature', '0', '--backend', backend, '--json']);
    expect(r.stderr).toContain('tfjs: using the');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).tokens).toEqual(golden.slice(1));
  });

  it('continues a multi-token prompt (prompt excluded from the output)', async () => {
    const r = await runCli(['generate', '--model', dir, '--prompt-ids', golden.slice(0, 5).join(','), '--max-new-tokens', '10', '--backend', 'tfjs:cpu']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(golden.slice(5, 15).join(','));
  });

  // Several prompts in one left-padded batch (issue 19 item 2). Prefixes of the golden greedy path (llama2.c run.c,
  // tokens.txt) must continue along it, whatever their length and batch; any other prompts must come out as they do
  // one by one.
  const jsonLines = (stdout: string) => stdout.trim().split('\n').map((l) => JSON.parse(l) as { index: number; tokens: number[] });

  it.each(['onnx', 'tfjs:cpu'])('batches prompts of different lengths (left padding); each continues its golden path (--backend %s)', async (backend) => {
    const lengths = [9, 1, 15, 4, 2];
    const args = lengths.flatMap((k) => ['--prompt-ids', golden.slice(0, k).join(',')]);
    const r = await runCli(['generate', '--model', dir, ...args, '--max-new-tokens', '12', '--batch-size', '3', '--backend', backend, '--json']);
    expect(r.code).toBe(0);
    const out = jsonLines(r.stdout);
    expect(out.map((o) => o.index)).toEqual([0, 1, 2, 3, 4]);
    lengths.forEach((k, i) => expect(out[i]!.tokens).toEqual(golden.slice(k, k + 12)));
  });

  it('--prompts-file (JSON Lines): batched outputs equal one-by-one generation, in input order', async () => {
    const prompts = [[1, 300, 7, 80], [1], [1, 42, 42, 42, 42, 42, 42, 9], [1, 250, 251]];
    const file = path.join(path.dirname(dir), 'prompts.jsonl');
    await fsp.writeFile(file, prompts.map((p) => JSON.stringify(p)).join('\n') + '\n\n');
    const batched = await runCli(['generate', '--model', dir, '--prompts-file', file, '--max-new-tokens', '10', '--batch-size', '4']);
    expect(batched.code).toBe(0);
    const single: string[] = [];
    for (const p of prompts) {
      const r = await runCli(['generate', '--model', dir, '--prompt-ids', p.join(','), '--max-new-tokens', '10']);
      expect(r.code).toBe(0);
      single.push(r.stdout.trim());
    }
    expect(batched.stdout.trim().split('\n')).toEqual(single);

    await fsp.writeFile(file, '[1, 2]\n{"prompt": 3}\n');
    const bad = await runCli(['generate', '--model', dir, '--prompts-file', file]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/line 2 must be a JSON string .* or a non-empty array/);
    const both = await runCli(['generate', '--model', dir, '--prompts-file', file, '--prompt-ids', '1']);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('exactly one of --prompt-ids, --prompt (each repeatable) and --prompts-file');
  });

  it('names the known backends and variants on bad input', async () => {
    const a = await runCli(['generate', '--model', dir, '--prompt-ids', '1', '--backend', 'nope', '--json']);
    expect(a.code).toBe(2); // usage class, like the unknown variant below
    expect(a.stderr).toMatch(/unknown backend "nope"; known: .*tfjs/);
    const b = await runCli(['generate', '--model', dir, '--prompt-ids', '1', '--backend', 'tfjs:webgpu', '--json']);
    expect(b.code).toBe(2);
    expect(b.stderr).toContain('unknown tfjs variant "webgpu"');
    const c = await runCli(['generate', '--model', dir, '--prompt-ids', '1,999', '--json']);
    expect(c.code).toBe(2);
    expect(c.stderr).toContain('outside the vocabulary');
  });
});

describe('llama-pro generate with a tokenizer', () => {
  let dir: string;
  beforeAll(async () => {
    dir = path.join(await tmp('lp-gen-tok-'), 'model');
    await writeRandomCheckpoint(dir, tinyRawConfig({ vocab: 64 }), { seed: 4, std: 0.5, inPlace: false });
    const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
    for (let i = 3; i < 64; i++) vocab[`w${String(i).padStart(2, '0')}`] = i;
    const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
    const tj = {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
      normalizer: null,
      pre_tokenizer: { type: 'Whitespace' },
      post_processor: null,
      decoder: null,
      model: { type: 'WordLevel', vocab, unk_token: '<unk>' },
    };
    await fsp.writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(tj));
    await fsp.writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>', eos_token: '</s>' }));
  });

  it('encodes --prompt (with BOS), prints text, and cuts at --stop', async () => {
    const byIds = await runCli(['generate', '--model', dir, '--prompt-ids', '1,5,7', '--max-new-tokens', '8', '--json']);
    expect(byIds.code).toBe(0);
    const ids = JSON.parse(byIds.stdout).tokens as number[];
    expect(ids.length).toBeGreaterThanOrEqual(3);
    const tok = await loadTokenizer(dir);
    const text = tok.decode(ids, { skipSpecialTokens: true });

    const byText = await runCli(['generate', '--model', dir, '--prompt', 'w05 w07', '--max-new-tokens', '8']);
    expect(byText.code).toBe(0);
    expect(byText.stdout).toBe(text + '\n');

    const stop = tok.decode([ids[2]!]);
    const cut = await runCli(['generate', '--model', dir, '--prompt', 'w05 w07', '--max-new-tokens', '8', '--stop', stop, '--json']);
    expect(cut.code).toBe(0);
    const res = JSON.parse(cut.stdout);
    expect(res.text).toBe(text.slice(0, text.indexOf(stop)));
    expect([res.finishReason, res.stop]).toEqual(['stop', stop]);
  });
});
