/**
 * export-gguf checked against llama.cpp itself: the GGUF of a real model is loaded by llama.cpp (node-llama-cpp's
 * prebuilt CPU binary, 2 threads, run in a child process by tools/llamacpp/runner.mjs) and must
 * - tokenize text to the same ids as our tokenizer (byte-level BPE, SentencePiece-style BPE and byte tokenizers),
 * - give next-token distributions close to the reference's (softmax of llama2.c's own run.c logits for stories260K,
 *   ../shared/golden/stories260K; of transformers' logits for the hf-conformance model) and to our onnx backend's,
 * - and continue prompts greedily with the same tokens as our onnx backend through core's `generate`.
 * llama.cpp keeps its KV cache in f16 by default, so it differs from float32 references by ~1e-3 (relative L2).
 * node-llama-cpp 3.21 hands out next-token probabilities (softmax at temperature 1), not raw logits.
 */
import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { HfCheckpoint, byteTokenizerJson, convertLlama2c, exportGguf, generate, ggufTokenizerFromDir, loadTokenizer, writeTokenizerFiles } from '@llama-pro/core';
import { STORIES260K_BIN, STORIES260K_GOLDEN, fixturePath, haveFixtures, relL2, writeSentencePieceTokenizer } from '@llama-pro/core/testing';
import { onnxBackend } from '@llama-pro/backend-onnx';

const RUNNER = path.join(__dirname, '..', 'llamacpp', 'runner.mjs');
// Generous: two engines load and generate per test, on a CPU that may be shared (not a timing assertion).
const TIMEOUT_MS = 600_000;
const TEXTS = [
  'Once upon a time, there was a little girl named Lily.',
  'He has 10 apples. The answer is 42.\nQ: A',
  '  two  spaces\nnew line\ttab',
  "it's we're I'll don't",
  'héllo wörld ✓ 日本語 🙂',
  '',
];

async function llamaCpp<T>(job: Record<string, unknown>): Promise<T> {
  const { stdout } = await promisify(execFile)(process.execPath, [RUNNER, JSON.stringify({ threads: 2, ...job })], { maxBuffer: 64 << 20 });
  return JSON.parse(stdout) as T;
}

async function readF32(file: string): Promise<Float32Array> {
  const b = await fsp.readFile(file);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

function softmax(x: ArrayLike<number>): Float32Array {
  let m = -Infinity;
  for (let i = 0; i < x.length; i++) m = Math.max(m, x[i]!);
  const out = Float32Array.from(x as ArrayLike<number>, (v) => Math.exp(v - m));
  const z = out.reduce((a, b) => a + b, 0);
  return out.map((v) => v / z);
}

function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
}

const have = haveFixtures(STORIES260K_BIN, [...STORIES260K_GOLDEN, 'logits.f32'], ['hf-conformance', 'llama-tied-fp32', 'tokenizer.json']);
(have ? describe : describe.skip)('export-gguf loaded in llama.cpp (node-llama-cpp)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-llamacpp-'));
  });
  afterAll(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  async function exported(modelDir: string, name: string): Promise<string> {
    const ckpt = await HfCheckpoint.open(modelDir);
    try {
      const file = path.join(dir, `${name}.gguf`);
      await exportGguf(ckpt, file, { tokenizer: await ggufTokenizerFromDir(modelDir, ckpt.config.vocabSize) });
      return file;
    } finally {
      await ckpt.close();
    }
  }

  /** llama.cpp's greedy continuation and first next-token distribution vs our onnx backend's (core `generate`, as the CLI runs it). */
  async function compareGreedy(modelDir: string, gguf: string, prompts: number[][], maxNewTokens: number): Promise<Float32Array[]> {
    const cpp = await llamaCpp<{ tokens: number[][]; firstProbs: number[][] }>({ op: 'greedy', model: gguf, prompts, maxNewTokens });
    const ckpt = await HfCheckpoint.open(modelDir);
    const model = await onnxBackend.load(ckpt, { threads: 2 });
    try {
      for (let i = 0; i < prompts.length; i++) {
        const [ours] = await generate(model, [prompts[i]!], { maxNewTokens, temperature: 0 });
        expect(cpp.tokens[i]).toEqual(ours!.tokens);
        const s = model.startSession(1);
        const logits = await s.step({ ids: Int32Array.from(prompts[i]!), batchSize: 1, seqLen: prompts[i]!.length });
        s.dispose();
        expect(relL2(cpp.firstProbs[i]!, softmax(logits))).toBeLessThan(1e-2);
      }
    } finally {
      await model.dispose();
      await ckpt.close();
    }
    return cpp.firstProbs.map((l) => Float32Array.from(l));
  }

  it('stories260K (byte tokenizer): same tokenization, next-token distribution near llama2.c run.c, same greedy tokens as onnx', async () => {
    const m = path.join(dir, 'stories260K');
    await convertLlama2c(fixturePath(...STORIES260K_BIN), m);
    // tok512 is not available (../shared/golden/stories260K/README.md): the byte tokenizer, whose ids 3..258 are the
    // model's own byte-fallback pieces.
    await writeTokenizerFiles(m, byteTokenizerJson(512));
    const gguf = await exported(m, 'stories260K');
    const tok = await loadTokenizer(m);
    const cpp = await llamaCpp<{ tokens: number[][] }>({ op: 'tokenize', model: gguf, texts: TEXTS });
    expect(cpp.tokens).toEqual(TEXTS.map((t) => tok.encode(t)));

    // Golden: tokens.txt is run.c's greedy path from BOS; row t of logits.f32 is the distribution after tokens[0..t].
    const golden = (await fsp.readFile(fixturePath(...STORIES260K_GOLDEN, 'tokens.txt'), 'utf8')).trim().split('\n').map(Number);
    const goldenLogits = await readF32(fixturePath(...STORIES260K_GOLDEN, 'logits.f32'));
    const prompts = [golden.slice(0, 12), [1, ...tok.encode('Once upon a time, there was a')], [1, ...tok.encode('Lily and Ben went to the park.')]];
    const first = await compareGreedy(m, gguf, prompts, 24);
    expect(relL2(first[0]!, softmax(goldenLogits.subarray(11 * 512, 12 * 512)))).toBeLessThan(1e-2);
    expect(argmax(first[0]!)).toBe(golden[12]);
  }, TIMEOUT_MS);

  it('hf-conformance llama-tied-fp32 (byte-level BPE): same tokenization, next-token distribution near transformers, same greedy tokens as onnx', async () => {
    const m = fixturePath('hf-conformance', 'llama-tied-fp32');
    const gguf = await exported(m, 'tied');
    const tok = await loadTokenizer(m);
    const cpp = await llamaCpp<{ tokens: number[][] }>({ op: 'tokenize', model: gguf, texts: TEXTS });
    expect(cpp.tokens).toEqual(TEXTS.map((t) => tok.encode(t)));

    // transformers' reference: logits.f32 is [96, 320] for input_ids.json; greedy.json continues its first 8 ids.
    const ids = JSON.parse(await fsp.readFile(path.join(m, 'reference', 'input_ids.json'), 'utf8')) as number[];
    const ref = await readF32(path.join(m, 'reference', 'logits.f32'));
    const greedy = JSON.parse(await fsp.readFile(path.join(m, 'reference', 'greedy.json'), 'utf8')) as { prompt: number[]; tokens: number[] };
    const first = await compareGreedy(m, gguf, [ids.slice(0, 16), greedy.prompt, [1, ...tok.encode('The answer is')]], 16);
    expect(relL2(first[0]!, softmax(ref.subarray(15 * 320, 16 * 320)))).toBeLessThan(1e-2);
    const cpp2 = await llamaCpp<{ tokens: number[][] }>({ op: 'greedy', model: gguf, prompts: [greedy.prompt], maxNewTokens: 24 });
    expect(cpp2.tokens[0]).toEqual(greedy.tokens.slice(0, 24));
  }, TIMEOUT_MS);

  // Every architecture and rope scaling export-gguf writes: llama.cpp must continue transformers' own greedy prompt with
  // transformers' greedy tokens (greedy.json) and put its first next-token distribution near transformers' logits.
  // llama3 scaling travels as the rope_freqs tensor, qwen2 as llama.cpp's qwen2 architecture (biases, no q/k permute).
  it.each(['llama3-scaling-fp16', 'qwen2-bias-tied-bf16', 'llama-gqa-untied-bf16', 'llama-linear-scaling-bf16', 'llama-yarn-bf16'])(
    'hf-conformance %s: llama.cpp reproduces transformers greedy tokens and next-token distribution',
    async (name) => {
      const m = fixturePath('hf-conformance', name);
      const gguf = await exported(m, name);
      const ids = JSON.parse(await fsp.readFile(path.join(m, 'reference', 'input_ids.json'), 'utf8')) as number[];
      const ref = await readF32(path.join(m, 'reference', 'logits.f32'));
      const greedy = JSON.parse(await fsp.readFile(path.join(m, 'reference', 'greedy.json'), 'utf8')) as { prompt: number[]; tokens: number[] };
      const cpp = await llamaCpp<{ tokens: number[][]; firstProbs: number[][] }>({ op: 'greedy', model: gguf, prompts: [greedy.prompt, ids.slice(0, 16)], maxNewTokens: 24 });
      expect(cpp.tokens[0]).toEqual(greedy.tokens.slice(0, 24));
      expect(relL2(Float32Array.from(cpp.firstProbs[1]!), softmax(ref.subarray(15 * 320, 16 * 320)))).toBeLessThan(1e-2);
    },
    TIMEOUT_MS,
  );

  it('a SentencePiece-style tokenizer (llama): llama.cpp tokenizes text as we do', async () => {
    const m = path.join(dir, 'sp');
    await convertLlama2c(fixturePath(...STORIES260K_BIN), m);
    await writeSentencePieceTokenizer(m);
    const gguf = await exported(m, 'sp');
    const tok = await loadTokenizer(m);
    const texts = [...TEXTS, 'He has the answer. Q: A10 apples', 'HeHas▁has'];
    const cpp = await llamaCpp<{ tokens: number[][] }>({ op: 'tokenize', model: gguf, texts });
    expect(cpp.tokens).toEqual(texts.map((t) => tok.encode(t)));
  }, TIMEOUT_MS);
});
