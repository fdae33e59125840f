// Runs one job on llama.cpp through node-llama-cpp (an ESM-only package, hence a plain .mjs run as a child
// process by the llama.cpp comparison test and by `npm run bench:infer`) and prints one JSON line.
// CPU only, the prebuilt binary only (build: "never": no download, no source build).
//
//   node tools/llamacpp/runner.mjs '<job json>'
//
// Jobs (token ids everywhere; `threads` defaults to 2):
//   {"op":"tokenize","model":F,"texts":[...]}                       -> {"tokens":[[...],...]}   (no BOS, no special parsing)
//   {"op":"greedy","model":F,"prompts":[[...]],"maxNewTokens":N}    -> {"tokens":[[...]],"firstProbs":[[...]]}
//      firstProbs: the next-token distribution after each prompt (softmax of the logits at temperature 1: node-llama-cpp
//      3.21 gives probabilities, not raw logits, from controlledEvaluate)
//   {"op":"bench","model":F,"prompts":[[...] x B],"maxNewTokens":N,"warmup":W}
//      -> {"prefillS","decodeS","llamaS","cpuDecodeS","threads","cpuBackend","version","rssLoadMB","maxRssMB"}
//      B sequences of one context, evaluated together (node-llama-cpp batches a context's sequences);
//      prefillS: start to the last sequence's first token; decodeS: from then to the last sequence's last token;
//      llamaS: llama.cpp's own compute timer (llama_perf_context: prompt eval + eval, i.e. the time spent inside
//      llama_decode) over the whole timed run, read once at its end, so prefillS + decodeS - llamaS is what
//      node-llama-cpp's JS scheduling and sampling add; cpuDecodeS: process CPU time (user + sys) during decodeS;
//      threads: the thread count the context really runs with; cpuBackend: the ggml-cpu variant that loaded.
//
// Measured on this 2-core machine (issue 19 peer audit): node-llama-cpp's evaluate() costs well under 1 ms per decode
// step over calling its addon directly. Run it with UV_THREADPOOL_SIZE=1 (bench:infer does): with libuv's default 4
// pool threads its 2-thread llama_decode ran 3-4x slower by llama.cpp's own timer. And ggml's 2 threads meet at a spin
// barrier after every graph node (~300 per token), so decode collapses whenever anything else runs on the 2 cores.
import { readFileSync } from 'node:fs';
import { getLlama } from 'node-llama-cpp';

const version = () => JSON.parse(readFileSync(new URL('../package.json', import.meta.resolve('node-llama-cpp')), 'utf8')).version;

const job = JSON.parse(process.argv[2]);
const threads = job.threads ?? 2;
const mb = (b) => b / (1 << 20);

// llama.cpp's perf counters and the loaded CPU variant come through the log; everything else stays quiet but errors.
const perfMs = [];
let cpuBackend = null;
const logger = (level, message) => {
  const perf = /(?:prompt eval|eval) time =\s*([\d.]+) ms/.exec(message);
  const backend = /loaded CPU backend from .*libggml-cpu-([\w-]+)\.so/.exec(message);
  if (perf) perfMs.push(Number(perf[1]));
  else if (backend) cpuBackend = backend[1];
  else if (level === 'error' || level === 'fatal') process.stderr.write(message + '\n');
};
const llama = await getLlama({ gpu: false, build: 'never', progressLogs: false, logLevel: job.op === 'bench' ? 'debug' : 'error', logger, maxThreads: threads });
const model = await llama.loadModel({ modelPath: job.model, gpuLayers: 0 });
let out;
if (job.op === 'tokenize') {
  out = { tokens: job.texts.map((t) => Array.from(model.tokenize(t, false))) };
} else {
  const B = job.prompts.length;
  const maxLen = Math.max(...job.prompts.map((p) => p.length));
  const perSeq = maxLen + job.maxNewTokens + 8;
  const context = await model.createContext({
    sequences: B,
    contextSize: B * perSeq,
    batchSize: B * maxLen,
    threads: { ideal: threads, min: threads },
    // llama.cpp's own timers (llama_perf_context), printed by printTimings(); off outside the benchmark.
    performanceTracking: job.op === 'bench',
  });
  if (job.op === 'greedy') {
    const tokens = [];
    const firstProbs = [];
    for (const p of job.prompts) {
      const seq = context.getSequence();
      const greedy = { token: true, options: { temperature: 0 } };
      const first = await seq.controlledEvaluate([...p.slice(0, -1), [p[p.length - 1], { generateNext: { ...greedy, probabilities: true } }]]);
      const next = first[p.length - 1].next;
      const probs = new Array(next.probabilities.size);
      for (const [id, v] of next.probabilities) probs[id] = v;
      firstProbs.push(probs);
      const gen = [next.token];
      while (gen.length < job.maxNewTokens) {
        const r = await seq.controlledEvaluate([[gen[gen.length - 1], { generateNext: greedy }]]);
        gen.push(r[0].next.token);
      }
      tokens.push(gen);
      seq.dispose();
    }
    out = { tokens, firstProbs };
  } else if (job.op === 'bench') {
    const rssLoadMB = mb(process.memoryUsage().rss);
    const seqs = job.prompts.map(() => context.getSequence());
    // `warmup` untimed runs first (same shapes), each sequence's history cleared between runs.
    // printTimings() prints and resets llama.cpp's counters; its log lines arrive asynchronously.
    const llamaMs = async () => {
      await context.printTimings();
      await new Promise((r) => setTimeout(r, 50));
      return perfMs.splice(0).reduce((a, b) => a + b, 0);
    };
    let res;
    for (let r = 0; r <= (job.warmup ?? 0); r++) {
      for (const seq of seqs) await seq.clearHistory();
      await llamaMs();
      const t0 = performance.now();
      let firstDone = 0;
      let lastDone = 0;
      let firstSeen = 0;
      let cpu0 = process.cpuUsage();
      await Promise.all(
        seqs.map(async (seq, b) => {
          let n = 0;
          // Greedy; no repeat penalty, token bias or grammar (none is set), EOS does not stop the run.
          for await (const tok of seq.evaluate(job.prompts[b], { temperature: 0, yieldEogToken: true })) {
            void tok;
            const now = performance.now();
            if (n === 0) {
              firstDone = Math.max(firstDone, now);
              if (++firstSeen === B) cpu0 = process.cpuUsage();
            }
            if (++n >= job.maxNewTokens) {
              lastDone = Math.max(lastDone, now);
              break;
            }
          }
        }),
      );
      const cpu = process.cpuUsage(cpu0);
      res = {
        prefillS: (firstDone - t0) / 1000,
        decodeS: (lastDone - firstDone) / 1000,
        cpuDecodeS: (cpu.user + cpu.system) / 1e6,
        llamaS: (await llamaMs()) / 1000,
      };
    }
    out = { ...res, threads: context.currentThreads, cpuBackend, version: version(), rssLoadMB, maxRssMB: process.resourceUsage().maxRSS / 1024 };
  } else throw new Error(`unknown op ${job.op}`);
  await context.dispose();
}
await model.dispose();
await llama.dispose();
process.stdout.write(JSON.stringify(out) + '\n');
