import { Command, CommanderError } from 'commander';
import { LlamaProError } from '@llama-pro/core';
import { EXIT, exitCodeFor, wasInterrupted } from './exit-codes';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const VERSION = (require('../package.json') as { version: string }).version;

type Register = (program: Command) => void;

/*
 * Each command's module, in the order `--help` lists them. A module is loaded (required) only when its command is
 * registered: loading every command's dependencies (the server, zod schemas, the study and engines packages, ...)
 * was most of the CLI's start-up, so `main` registers only the command it is asked to run.
 */
/* eslint-disable @typescript-eslint/no-require-imports */
const COMMANDS: readonly (readonly [name: string, load: () => Register])[] = [
  ['inspect', () => (require('./commands/inspect') as typeof import('./commands/inspect')).registerInspect],
  ['convert', () => (require('./commands/convert') as typeof import('./commands/convert')).registerConvert],
  ['import-run', () => (require('./commands/import-run') as typeof import('./commands/import-run')).registerImportRun],
  ['expand', () => (require('./commands/expand') as typeof import('./commands/expand')).registerExpand],
  ['export-onnx', () => (require('./commands/export-onnx') as typeof import('./commands/export-onnx')).registerExportOnnx],
  ['export-gguf', () => (require('./commands/export-gguf') as typeof import('./commands/export-gguf')).registerExportGguf],
  ['generate', () => (require('./commands/generate') as typeof import('./commands/generate')).registerGenerate],
  ['eval', () => (require('./commands/eval') as typeof import('./commands/eval')).registerEval],
  ['train', () => (require('./commands/train') as typeof import('./commands/train')).registerTrain],
  ['serve', () => (require('./commands/serve') as typeof import('./commands/serve')).registerServe],
  ['chat', () => (require('./commands/chat') as typeof import('./commands/chat')).registerChat],
  ['agent', () => (require('./commands/agent') as typeof import('./commands/agent')).registerAgent],
  ['study', () => (require('./commands/study') as typeof import('./commands/study')).registerStudy],
];
/* eslint-enable @typescript-eslint/no-require-imports */

/**
 * The commands `args` (the arguments after `llama-pro`) need registered: the one it names, none for `--version`,
 * every one otherwise (`--help`, `help <cmd>`, no arguments, an unknown command and its suggestions).
 */
export function commandsFor(args: readonly string[]): readonly string[] {
  const first = args[0];
  if (first !== undefined && COMMANDS.some(([name]) => name === first)) return [first];
  if ((first === '-V' || first === '--version') && !args.includes('-h') && !args.includes('--help')) return [];
  return COMMANDS.map(([name]) => name);
}

/** The program with `commands` registered (default: all of them, in help order). */
export function buildProgram(commands: readonly string[] = COMMANDS.map(([name]) => name)): Command {
  const program = new Command('llama-pro')
    .description('Grow LLaMA-family models by block expansion (LLaMA Pro), then train, evaluate and serve them.')
    .version(VERSION)
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ outputError: (s, write) => write(s) });
  for (const [name, load] of COMMANDS) if (commands.includes(name)) load()(program);
  program.hook('preAction', resolveHubModels);
  return program;
}

/** Options and arguments that name an input model: each may be a hub id (`org/name[@revision]`). */
const MODEL_OPTIONS = ['model', 'base'];
const MODEL_ARGUMENTS = ['in-dir', 'model', 'model-dir'];

/** Rewrites hub ids in model options/arguments to local snapshot directories (see hub.ts) before the command runs. */
async function resolveHubModels(_root: Command, cmd: Command): Promise<void> {
  // hub.ts (and @huggingface/hub) loads only for a command that names a model
  const modelValues = MODEL_OPTIONS.some((name) => typeof cmd.getOptionValue(name) === 'string') || cmd.registeredArguments.some((a, i) => MODEL_ARGUMENTS.includes(a.name()) && typeof cmd.processedArgs[i] === 'string');
  if (!modelValues) return;
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { resolveModelSpec } = require('./hub') as typeof import('./hub');
  const { progressReporter } = require('./output') as typeof import('./output');
  /* eslint-enable @typescript-eslint/no-require-imports */
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
  const program = buildProgram(commandsFor(argv.slice(2)));
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
