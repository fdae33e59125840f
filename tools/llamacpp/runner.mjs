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
//   {"op":"bench","model":F,"prompts":[[...] x B],"maxNewTokens":N,"warmup":W} -> {"prefillS","decodeS","rssLoadMB","maxRssMB"}
//      B sequences of one context, evaluated together (node-llama-cpp batches a context's sequences);
//      prefillS: start to the last sequence's first token; decodeS: from then to the last sequence's last token.
import { getLlama } from 'node-llama-cpp';

const job = JSON.parse(process.argv[2]);
const threads = job.threads ?? 2;
const mb = (b) => b / (1 << 20);

const llama = await getLlama({ gpu: false, build: 'never', progressLogs: false, logLevel: 'error', maxThreads: threads });
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
    let res;
    for (let r = 0; r <= (job.warmup ?? 0); r++) {
      for (const seq of seqs) await seq.clearHistory();
      const t0 = performance.now();
      let firstDone = 0;
      let lastDone = 0;
      await Promise.all(
        seqs.map(async (seq, b) => {
          let n = 0;
          for await (const tok of seq.evaluate(job.prompts[b], { temperature: 0 })) {
            void tok;
            const now = performance.now();
            if (n === 0) firstDone = Math.max(firstDone, now);
            if (++n >= job.maxNewTokens) {
              lastDone = Math.max(lastDone, now);
              break;
            }
          }
        }),
      );
      res = { prefillS: (firstDone - t0) / 1000, decodeS: (lastDone - firstDone) / 1000 };
    }
    out = { ...res, rssLoadMB, maxRssMB: process.resourceUsage().maxRSS / 1024 };
  } else throw new Error(`unknown op ${job.op}`);
  await context.dispose();
}
await model.dispose();
await llama.dispose();
process.stdout.write(JSON.stringify(out) + '\n');
