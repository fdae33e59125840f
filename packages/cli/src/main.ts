import { Command, CommanderError } from 'commander';
import { LlamaProError } from '@llama-pro/core';
import { EXIT, exitCodeFor, wasInterrupted } from './exit-codes';
import { resolveModelSpec } from './hub';
import { progressReporter } from './output';
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
  program.hook('preAction', resolveHubModels);
  return program;
}

/** Options and arguments that name an input model: each may be a hub id (`org/name[@revision]`). */
const MODEL_OPTIONS = ['model', 'base'];
const MODEL_ARGUMENTS = ['in-dir', 'model', 'model-dir'];

/** Rewrites hub ids in model options/arguments to local snapshot directories (see hub.ts) before the command runs. */
async function resolveHubModels(_root: Command, cmd: Command): Promise<void> {
  const hub = { progress: progressReporter(), log: (m: string) => process.stderr.write(`llama-pro: ${m}\n`) };
  for (const name of MODEL_OPTIONS) {
    const v: unknown = cmd.getOptionValue(name);
    if (typeof v === 'string') cmd.setOptionValue(name, await resolveModelSpec(v, hub));
  }
  const args = cmd.registeredArguments;
  for (let i = 0; i < args.length; i++) {
    const v: unknown = cmd.processedArgs[i];
    if (MODEL_ARGUMENTS.includes(args[i]!.name()) && typeof v === 'string') cmd.processedArgs[i] = await resolveModelSpec(v, hub);
  }
}

/**
 * Runs the CLI; returns the exit code (one per class: 0 ok, 1 input/data, 2 usage, 130 interrupted; see
 * exit-codes.ts). Errors print one line: `llama-pro: <message>`.
 */
export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  // Every command throws instead of calling process.exit, so usage errors get the usage exit code (2).
  const override = (c: Command): void => {
    c.exitOverride();
    c.commands.forEach(override);
  };
  override(program);
  wasInterrupted(true);
  // Ctrl-C in a command that does not handle SIGINT itself: say so and exit 130 (what a shell reports for SIGINT).
  const onSigint = (): void => {
    if (process.listenerCount('SIGINT') > 1) return;
    // A progress bar may have hidden the cursor; show it again before leaving.
    process.stderr.write(`${process.stderr.isTTY ? '\r\x1b[2K\x1b[?25h' : ''}llama-pro: interrupted\n`);
    process.exit(EXIT.INTERRUPTED);
  };
  process.on('SIGINT', onSigint);
  try {
    await program.parseAsync([...argv]);
    return wasInterrupted(true) ? EXIT.INTERRUPTED : EXIT.OK;
  } catch (e) {
    const code = exitCodeFor(e);
    if (e instanceof LlamaProError) process.stderr.write(`llama-pro: ${e.message}\n`);
    else if (!(e instanceof CommanderError)) {
      const err = e as Error;
      process.stderr.write(`llama-pro: unexpected error: ${err.message}\n`);
      if (process.env['LLAMA_PRO_DEBUG']) process.stderr.write(`${err.stack}\n`);
    }
    return code;
  } finally {
    process.off('SIGINT', onSigint);
  }
}
