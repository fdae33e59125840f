/**
 * Preloaded (`node --require`) into a process a benchmark measures, e.g. the CLI: on exit it writes the
 * process's peak RSS (process.resourceUsage().maxRSS, KiB), its CPU time (user + system, µs; both over
 * all its threads, workers and onnxruntime's included) and the exit code as JSON to the file named by
 * LLAMA_PRO_BENCH_RSS_FILE.
 */
import * as fs from 'node:fs';

const file = process.env.LLAMA_PRO_BENCH_RSS_FILE;
if (file) {
  process.on('exit', (code) => {
    const u = process.resourceUsage();
    fs.writeFileSync(file, JSON.stringify({ maxRssKiB: u.maxRSS, cpuMicros: u.userCPUTime + u.systemCPUTime, code }));
  });
}
