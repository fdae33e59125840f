#!/usr/bin/env node
// The light entry of core: nothing else loads before the restart below.
import { relaunchWithHugePages } from '@llama-pro/core/native';

// First, before any work: on Linux with glibc >= 2.35 and THP in madvise mode, a command restarts itself
// in place (execve: same pid, arguments, descriptors) with malloc on transparent huge pages; see
// relaunchWithHugePages. `--help` / `--version` alone skip it (it costs one more Node start, ~0.1 s).
// LLAMA_PRO_HUGEPAGES=0 opts out.
const args = process.argv.slice(2);
if (!args.every((a) => ['-h', '--help', 'help', '-V', '--version'].includes(a))) relaunchWithHugePages();

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { main } = require('./main') as typeof import('./main');

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`llama-pro: ${(e as Error).message}\n`);
    process.exitCode = 1;
  },
);
