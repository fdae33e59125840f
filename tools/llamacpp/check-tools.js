#!/usr/bin/env node
/**
 * By hand (not in CI: it needs a native llama.cpp build, tools/llamacpp/build-native.sh): every hf-conformance
 * checkpoint exported with export-gguf (f32) and opened by llama.cpp's own tools —
 * - llama-tokenize must give the ids our tokenizer gives for TEXT;
 * - llama-simple (greedy) must continue TEXT with the text of the tokens our onnx backend generates from llama.cpp's
 *   ids (the conformance tests check that backend against transformers' greedy tokens).
 * Sliding-window models are expected to diverge once the sequence passes the window (export-gguf warns: llama.cpp's
 * llama and qwen2 architectures attend to the whole context).
 *
 *   npm run build && LLAMA_CPP_BIN=<dir> node tools/llamacpp/check-tools.js   (env: TEXT, N (40 new tokens), TYPE (f32; f16,
 *   bf16 and q8_0 round the weights, so their greedy text is reported but not required to match))
 */
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { HfCheckpoint, loadTokenizer, generate, exportGguf, ggufTokenizerFromDir, ggufWarnings } = require('@llama-pro/core');
const { onnxBackend } = require('@llama-pro/backend-onnx');

const BIN = process.env.LLAMA_CPP_BIN;
const TEXT = process.env.TEXT || 'Once upon a time, there was a little';
const N = Number(process.env.N || 40);
const TYPE = process.env.TYPE || 'f32';
const FIXTURES = path.resolve(__dirname, '../../../shared/hf-conformance');

async function main() {
  if (!BIN || !fs.existsSync(path.join(BIN, 'llama-simple'))) throw new Error('set LLAMA_CPP_BIN to a directory with llama-simple and llama-tokenize (bash tools/llamacpp/build-native.sh)');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'lp-check-tools-'));
  let failures = 0;
  try {
    for (const name of fs.readdirSync(FIXTURES).filter((d) => fs.statSync(path.join(FIXTURES, d)).isDirectory())) {
      const dir = path.join(FIXTURES, name);
      const gguf = path.join(work, `${name}.gguf`);
      const ckpt = await HfCheckpoint.open(dir);
      const windowed = ggufWarnings(ckpt.config).length > 0;
      await exportGguf(ckpt, gguf, { type: TYPE, tokenizer: await ggufTokenizerFromDir(dir, ckpt.config.vocabSize) });
      const tok = await loadTokenizer(dir);
      const theirs = JSON.parse(execFileSync(path.join(BIN, 'llama-tokenize'), ['-m', gguf, '-p', TEXT, '--ids', '--log-disable'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split('\n').pop());
      const ours = tok.encode(TEXT);
      const withBos = tok.bosTokenId !== null && theirs[0] === tok.bosTokenId && ours[0] !== tok.bosTokenId ? [tok.bosTokenId, ...ours] : ours;
      const sameIds = JSON.stringify(withBos) === JSON.stringify(theirs);
      const model = await onnxBackend.load(ckpt, {});
      const [r] = await generate(model, [theirs], { maxNewTokens: N, temperature: 0, eosTokenIds: [] });
      await model.dispose();
      await ckpt.close();
      const expected = tok.decode(r.tokens, { skipSpecialTokens: false });
      const got = execFileSync(path.join(BIN, 'llama-simple'), ['-m', gguf, '-n', String(N), TEXT], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).replace(/\n$/, '').slice(TEXT.length);
      let agree = 0;
      while (agree < Math.min(got.length, expected.length) && got[agree] === expected[agree]) agree++;
      const same = got === expected;
      if (!sameIds || (!same && !windowed && TYPE === 'f32')) failures++;
      console.log(`${name.padEnd(36)} tokenize: ${sameIds ? 'same ids' : `DIFFERENT (ours ${JSON.stringify(withBos)}, llama.cpp ${JSON.stringify(theirs)})`} | ${N} greedy tokens: ${same ? 'same text' : `differ after ${agree} of ${expected.length} characters${windowed ? ' (sliding window: expected)' : ''}`}`);
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  if (failures > 0) {
    console.log(`${failures} checkpoint(s) disagree with llama.cpp`);
    process.exit(1);
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
