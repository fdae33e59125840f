#!/usr/bin/env node
import { main } from './main';

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`llama-pro: ${(e as Error).message}\n`);
    process.exitCode = 1;
  },
);
