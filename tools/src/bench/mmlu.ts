/**
 * MMLU 5-shot over all 57 subjects with --limit 1 on stories260K (onnx, byte tokens: the model ships without its
 * tokenizer), against one batched forward over the same tokens (issue 19 target: eval ≤ 1.5× the forward).
 *
 *   npm run bench:mmlu     (env: BENCH_ROUNDS (default 2), MMLU_DIR (default ../shared/datasets))
 *
 * - cli eval: `llama-pro eval --tasks mmlu --num-fewshot 5 --limit 1 --byte-tokens` in a child process, wall time
 *   (includes node start, module loading, the weights hash, session creation and the dataset);
 * - in-process eval: the same evaluator and LocalLanguageModel on a model already loaded (what eval itself costs);
 * - one forward: every row the eval ran (recorded from the in-process run: forward rows, decode-session rows),
 *   right-padded to the longest, in one `forward` call on the same loaded model: the FLOPs floor of the eval.
 * Modes alternate over rounds (the machine is shared); the best round of each is reported, with the ratios.
 */
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ByteTokenizer, HfCheckpoint, NamedRegistry, convertLlama2c, type CausalLM, type DecodeSession, type TokenBatch } from '@llama-pro/core';
import { STORIES260K_BIN, fixturePath } from '@llama-pro/core/testing';
import { onnxBackend } from '@llama-pro/backend-onnx';
import { LocalLanguageModel, mmluEvaluator, runEvaluation, type Evaluator } from '@llama-pro/eval';

const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 2);
const REPO = path.resolve(__dirname, '../../..');
const DATA = process.env['MMLU_DIR'] ?? path.resolve(REPO, '../shared/datasets');

async function time<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t0 = process.hrtime.bigint();
  const v = await fn();
  return [Number(process.hrtime.bigint() - t0) / 1e9, v];
}

/** The model with the rows it is run on recorded (forward rows, and each decode-session row's tokens; padding dropped). */
function recording(model: CausalLM, rows: number[][]): CausalLM {
  const take = (batch: TokenBatch, into: number[][]): void => {
    for (let b = 0; b < batch.batchSize; b++)
      for (let t = 0; t < batch.seqLen; t++) if (!batch.attentionMask || batch.attentionMask[b * batch.seqLen + t]) into[b]!.push(batch.ids[b * batch.seqLen + t]!);
  };
  return new Proxy(model, {
    get(target, prop, receiver) {
      if (prop === 'forward')
        return (batch: TokenBatch) => {
          const got = Array.from({ length: batch.batchSize }, (): number[] => []);
          take(batch, got);
          rows.push(...got);
          return target.forward(batch);
        };
      if (prop === 'startSession')
        return (batchSize: number): DecodeSession => {
          const s = target.startSession(batchSize);
          const got = Array.from({ length: batchSize }, (): number[] => []);
          return {
            get length() {
              return s.length;
            },
            step: (batch: TokenBatch) => (take(batch, got), s.step(batch)),
            dispose: () => (rows.push(...got), s.dispose()),
          };
        };
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

async function main(): Promise<void> {
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'bench-mmlu-'));
  const dir = path.join(root, 'stories260K');
  try {
    await convertLlama2c(fixturePath(...STORIES260K_BIN), dir);
    const ckpt = await HfCheckpoint.open(dir);
    const model = await onnxBackend.load(ckpt);
    const tokenizer = new ByteTokenizer(model.config.vocabSize);
    const evaluators = new NamedRegistry<Evaluator>('evaluator', [mmluEvaluator]);
    const evalOnce = async (m: CausalLM): Promise<void> => {
      const out = await fsp.mkdtemp(path.join(root, 'run-'));
      await runEvaluation({ evaluators, tasks: ['mmlu'], lm: new LocalLanguageModel(m, tokenizer), dataDir: DATA, limit: 1, numFewshot: 5, model: { kind: 'local', source: dir, sha256: null, backend: 'onnx', device: m.device, dtype: null }, addBos: true, tokenizer: 'bytes', outDir: out });
    };
    const rows: number[][] = [];
    await evalOnce(recording(model, rows)); // warm-up, and the rows the eval scores
    const T = Math.max(...rows.map((r) => r.length));
    const tokens = rows.reduce((k, r) => k + r.length, 0);
    const ids = new Int32Array(rows.length * T);
    const mask = new Uint8Array(rows.length * T);
    rows.forEach((r, b) => r.forEach((id, t) => ((ids[b * T + t] = id), (mask[b * T + t] = 1))));
    const cli = path.join(REPO, 'packages/cli/dist/bin.js');
    const cliArgs = [cli, 'eval', '--model', dir, '--byte-tokens', '--tasks', 'mmlu', '--num-fewshot', '5', '--limit', '1', '--data-dir', DATA, '--out', root, '--name', 'cli', '--overwrite'];

    const best = { cli: Infinity, inProcess: Infinity, forward: Infinity };
    for (let round = 0; round < ROUNDS; round++) {
      best.cli = Math.min(best.cli, (await time(async () => void execFileSync(process.execPath, cliArgs, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, LLAMA_PRO_PROGRESS: 'none' } })))[0]);
      best.inProcess = Math.min(best.inProcess, (await time(() => evalOnce(model)))[0]);
      best.forward = Math.min(best.forward, (await time(() => model.forward({ ids, batchSize: rows.length, seqLen: T, attentionMask: mask })))[0]);
    }
    await model.dispose();
    await ckpt.close();

    const load = os.loadavg().map((x) => x.toFixed(2)).join(' ');
    process.stdout.write(`mmlu bench: stories260K on ${model.device}, 57 subjects × 1 doc × 4 choices 5-shot (byte tokens): ${rows.length} rows, ${tokens} tokens (longest ${T}); best of ${ROUNDS} rounds; load average ${load}\n`);
    process.stdout.write(`one batched forward  ${best.forward.toFixed(3).padStart(7)} s   1.00x\n`);
    process.stdout.write(`in-process eval      ${best.inProcess.toFixed(3).padStart(7)} s   ${(best.inProcess / best.forward).toFixed(2)}x one forward\n`);
    process.stdout.write(`cli eval (process)   ${best.cli.toFixed(3).padStart(7)} s   ${(best.cli / best.forward).toFixed(2)}x one forward\n`);
  } finally {
    await fsp.rm(root, { recursive: true, force: true });
  }
}

main().catch((e: Error) => {
  process.stderr.write(`bench:mmlu: ${e.stack ?? e.message}\n`);
  process.exit(1);
});
