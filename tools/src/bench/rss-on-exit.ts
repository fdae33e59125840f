/**
 * Preloaded (`node --require`) into a process a benchmark measures, e.g. the CLI: on exit it writes the
 * process's peak RSS (process.resourceUsage().maxRSS, KiB; all its threads, workers included) and the
 * exit code as JSON to the file named by LLAMA_PRO_BENCH_RSS_FILE.
 */
import * as fs from 'node:fs';

const file = process.env.LLAMA_PRO_BENCH_RSS_FILE;
if (file) process.on('exit', (code) => fs.writeFileSync(file, JSON.stringify({ maxRssKiB: process.resourceUsage().maxRSS, code })));
