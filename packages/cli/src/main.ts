import { Command, CommanderError } from 'commander';
import { LlamaProError } from '@llama-pro/core';
import { registerInspect } from './commands/inspect';
import { registerConvert } from './commands/convert';
import { registerImportRun } from './commands/import-run';
import { registerExpand } from './commands/expand';
import { registerExportOnnx } from './commands/export-onnx';
import { registerExportGguf } from './commands/export-gguf';
import { registerGenerate } from './commands/generate';
import { registerEval } from './commands/eval';
import { registerTrain } from './commands/train';
import { registerServe } from './commands/serve';
import { registerChat } from './commands/chat';
import { registerAgent } from './commands/agent';
import { registerStudy } from './commands/study';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const VERSION = (require('../package.json') as { version: string }).version;

export function buildProgram(): Command {
  const program = new Command('llama-pro')
    .description('Grow LLaMA-family models by block expansion (LLaMA Pro), then train, evaluate and serve them.')
    .version(VERSION)
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ outputError: (s, write) => write(s) });
  registerInspect(program);
  registerConvert(program);
  registerImportRun(program);
  registerExpand(program);
  registerExportOnnx(program);
  registerExportGguf(program);
  registerGenerate(program);
  registerEval(program);
  registerTrain(program);
  registerServe(program);
  registerChat(program);
  registerAgent(program);
  registerStudy(program);
  return program;
}

/** Runs the CLI; returns the exit code. Errors print one line: `llama-pro: <message>`. */
export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram().exitOverride();
  try {
    await program.parseAsync([...argv]);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode;
    if (e instanceof LlamaProError) {
      process.stderr.write(`llama-pro: ${e.message}\n`);
      return e.code === 'USAGE' ? 2 : 1;
    }
    const err = e as Error;
    process.stderr.write(`llama-pro: unexpected error: ${err.message}\n`);
    if (process.env['LLAMA_PRO_DEBUG']) process.stderr.write(`${err.stack}\n`);
    return 1;
  }
}
