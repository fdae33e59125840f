/**
 * Cost of serving through the OpenAI-compatible HTTP server versus calling generation directly, on one
 * seeded model (dim 64, 2 layers, character vocabulary; onnx unless BENCH_BACKEND=tfjs), same prompts, greedy,
 * 16 new tokens. Ratios are against the direct calls measured in the same run. Then continuous batching (issue 19
 * target ≥ 3×): 8 completions (different prompts, 32 and then 128 new tokens, see BATCH_TOKENS) sent at once against
 * the same 8 one after another.
 *
 * The server is what users run: `llama-pro serve` (packages/cli/dist/bin.js, --max-batch 8) in its own process,
 * reached over real HTTP (node:http keep-alive client, see postCompletion); the direct calls load the same checkpoint in
 * this process.
 *
 *   npm run bench:serve     (env: BENCH_REQUESTS (default 32), BENCH_CONCURRENCY (64), BENCH_ROUNDS (3), BENCH_BATCH_ROUNDS (7),
 *                            BENCH_BACKEND (onnx),
 *                            BENCH_SHAPE (tiny: dim 64 / 2 layers, the default; s: the S shape of bench:infer, dim 288 / 8 layers /
 *                            6 heads / hidden 768, with the same character vocabulary))
 *
 * - direct generate: `TextGenerator.generate` (core `generate()`) in a loop;
 * - http sequential: POST /v1/completions one at a time (JSON parse, validation, queue, response);
 * - http streamed: the same with `stream: true` (an SSE chunk per token);
 * - http concurrent: BENCH_CONCURRENCY requests at once (they share decode steps, 8 slots at a time);
 * - 8 sequential / 8 concurrent: the batching comparison; it says whether the backend has a native slot session
 *   (one batched run per decode step) or core's per-slot fallback (slots run one after another).
 * The modes alternate over rounds (the machine is shared); the best round of each is reported.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { HfCheckpoint, loadTokenizer } from '@llama-pro/core';
import { tinyRawConfig, writeRandomCheckpoint } from '@llama-pro/core/testing';
import { tfjsBackend } from '@llama-pro/backend-tfjs';
import { onnxBackend } from '@llama-pro/backend-onnx';
import { TextGenerator } from '@llama-pro/agent';
import { CHAR_TOKENIZER_VOCAB, writeCharTokenizer } from '@llama-pro/agent/testing';

const N = Number(process.env['BENCH_REQUESTS'] ?? 32);
const C = Number(process.env['BENCH_CONCURRENCY'] ?? 64);
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 3);
/** Rounds of the batching comparison (each is well under a second; the best of more rounds is steadier on a shared machine). */
const BATCH_ROUNDS = Number(process.env['BENCH_BATCH_ROUNDS'] ?? 7);
const MAX_TOKENS = 16;
const BACKEND = process.env['BENCH_BACKEND'] ?? 'onnx';
const SHAPES = {
  tiny: { hiddenSize: 64, intermediateSize: 128, layers: 2, heads: 4, kvHeads: 2 },
  s: { hiddenSize: 288, intermediateSize: 768, layers: 8, heads: 6, kvHeads: 6 },
} as const;
const SHAPE = process.env['BENCH_SHAPE'] ?? 'tiny';
/**
 * New tokens per completion in the batching comparison: 32, and 128 (the output length of vLLM's
 * benchmark_serving random dataset, `--random-output-len` default). Both send `ignore_eos: true`, as that benchmark
 * does (`--ignore-eos`), so every completion is exactly this long; otherwise the random model's EOS ends some early.
 */
const BATCH_TOKENS = [32, 128] as const;

async function time(fn: () => Promise<void>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

const CLI = path.resolve(__dirname, '../../../packages/cli/dist/bin.js');

/** Starts `llama-pro serve` on a free port; resolves with its URL once it logs that it is serving. */
function startCliServer(dir: string): Promise<{ url: string; child: ChildProcess; log: string[] }> {
  const child = spawn(process.execPath, [CLI, 'serve', '--model', dir, '--port', '0', '--backend', BACKEND, '--template', 'plain', '--name', 'bench', '--max-batch', '8'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const log: string[] = [];
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        log.push(line);
        const m = /serving .* on (http:\/\/\S+)\/v1/.exec(line);
        if (m) resolve({ url: m[1]!, child, log });
      }
    });
    child.on('exit', (code) => reject(new Error(`llama-pro serve exited (${code}) before serving:\n${log.join('\n')}${buf}`)));
  });
}

/**
 * POST /v1/completions over node:http with a keep-alive agent; resolves when the whole response has arrived. The
 * client shares the 2 cores with the server, so it is the lightest real HTTP client node has: `fetch` (undici) spent
 * about 0.3-1 ms of CPU per request here before the request left the process, which in the concurrent mode spread 8
 * simultaneous requests over several milliseconds before the server could see them.
 */
function postCompletion(base: string, agent: http.Agent, body: Record<string, unknown>): Promise<void> {
  const url = new URL(`${base}/v1/completions`);
  const data = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode}: ${text}`))));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(data);
  });
}

async function stopCliServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const done = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await done;
}

async function main(): Promise<void> {
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'bench-serve-'));
  const dir = path.join(root, 'model');
  let child: ChildProcess | undefined;
  try {
    if (!Object.hasOwn(SHAPES, SHAPE)) throw new Error(`BENCH_SHAPE must be one of ${Object.keys(SHAPES).join(', ')}, got ${SHAPE}`);
    const shape = SHAPES[SHAPE as keyof typeof SHAPES];
    await writeRandomCheckpoint(dir, tinyRawConfig({ ...shape, vocab: CHAR_TOKENIZER_VOCAB, maxPositions: 512 }), { seed: 1, std: SHAPE === 'tiny' ? 0.3 : 0.02 });
    await writeCharTokenizer(dir);
    const tokenizer = await loadTokenizer(dir);
    const ckpt = await HfCheckpoint.open(dir);
    if (BACKEND !== 'onnx' && BACKEND !== 'tfjs') throw new Error(`BENCH_BACKEND must be onnx or tfjs, got ${BACKEND}`);
    const model = await (BACKEND === 'onnx' ? onnxBackend : tfjsBackend).load(ckpt, { log: (m) => process.stderr.write(`${m}\n`) });
    const prompts = Array.from({ length: N }, (_, i) => `Request number ${i}: tell me a story about a cat.`);
    const gen = new TextGenerator(model, tokenizer);
    const ids = (p: string): number[] => [tokenizer.bosTokenId!, ...tokenizer.encode(p)];
    const server = await startCliServer(dir);
    child = server.child;
    const agent = new http.Agent({ keepAlive: true, maxSockets: Math.max(C, 8) });
    const post = (prompt: string, stream: boolean, maxTokens = MAX_TOKENS, ignoreEos = false): Promise<void> =>
      postCompletion(server.url, agent, { model: 'bench', prompt, max_tokens: maxTokens, temperature: 0, stream, ...(ignoreEos ? { ignore_eos: true } : {}) });
    // Warm-up (kernels, JIT, connections) before any timing.
    await gen.generate({ promptIds: ids(prompts[0]!), maxTokens: MAX_TOKENS });
    await post(prompts[0]!, false);
    await post(prompts[0]!, true);

    const concurrentPrompts = Array.from({ length: C }, (_, i) => prompts[i % N]!);
    const modes: [string, number, () => Promise<void>][] = [
      ['direct generate', N, async () => { for (const p of prompts) await gen.generate({ promptIds: ids(p), maxTokens: MAX_TOKENS }); }],
      ['http sequential', N, async () => { for (const p of prompts) await post(p, false); }],
      ['http streamed', N, async () => { for (const p of prompts) await post(p, true); }],
      ['http concurrent', C, async () => void (await Promise.all(concurrentPrompts.map((p) => post(p, false))))],
    ];
    const eight = prompts.slice(0, 8).map((p, i) => `${'Once upon a time, '.repeat(i % 4)}${p}`); // different lengths
    const batchModes: [string, () => Promise<void>][] = BATCH_TOKENS.flatMap((k): [string, () => Promise<void>][] => [
      [`8 sequential ${k}`, async () => { for (const p of eight) await post(p, false, k, true); }],
      [`8 concurrent ${k}`, async () => void (await Promise.all(eight.map((p) => post(p, false, k, true))))],
    ]);
    const batchBest = new Map<string, number>();
    const best = new Map<string, number>();
    for (let round = 0; round < Math.max(ROUNDS, BATCH_ROUNDS); round++) {
      if (round < ROUNDS) for (const [name, n, run] of modes) best.set(name, Math.min(best.get(name) ?? Infinity, (await time(run)) / n));
      if (round < BATCH_ROUNDS) for (const [name, run] of batchModes) batchBest.set(name, Math.min(batchBest.get(name) ?? Infinity, await time(run)));
    }
    const native = typeof model.startSlotSession === 'function';
    agent.destroy();
    await stopCliServer(server.child);
    await model.dispose();
    await ckpt.close();

    const base = best.get('direct generate')!;
    process.stdout.write(`serve bench: llama-pro serve (${model.device}, --max-batch 8, ${SHAPE} shape: dim ${model.config.hiddenSize}, ${model.config.numHiddenLayers} layers) over HTTP, ${N} requests (${C} concurrent), ${MAX_TOKENS} new tokens each, best of ${ROUNDS} rounds\n`);
    for (const [name, s] of best) process.stdout.write(`${name.padEnd(18)} ${(s * 1000).toFixed(1).padStart(8)} ms/request   ${(s / base).toFixed(3)}x direct\n`);
    process.stdout.write(`continuous batching (${native ? 'native slot session' : "core's per-slot fallback"}), 8 completions with ignore_eos, best of ${BATCH_ROUNDS}; load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}\n`);
    for (const k of BATCH_TOKENS) {
      const seq = batchBest.get(`8 sequential ${k}`)!;
      const con = batchBest.get(`8 concurrent ${k}`)!;
      process.stdout.write(`${k} new tokens: 8 sequential ${(seq * 1000).toFixed(1).padStart(7)} ms, 8 concurrent ${(con * 1000).toFixed(1).padStart(7)} ms   ${(seq / con).toFixed(2)}x faster than sequential (target >= 3x)\n`);
    }
  } finally {
    if (child) await stopCliServer(child);
    await fsp.rm(root, { recursive: true, force: true });
  }
}

main().catch((e: Error) => {
  process.stderr.write(`bench:serve: ${e.stack ?? e.message}\n`);
  process.exit(1);
});
