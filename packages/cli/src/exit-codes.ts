/**
 * One exit code per class of failure, so scripts can tell a typo from a bad file from Ctrl-C:
 *
 * | code | class | examples |
 * |---|---|---|
 * | 0 | success | |
 * | 1 | input / data | malformed or missing model files, bad datasets, failed identity check, runtime failures |
 * | 2 | usage | unknown command or flag, bad flag value, unknown strategy/backend name, output exists without --force |
 * | 130 | interrupted | Ctrl-C (SIGINT), also when the command stopped cleanly (checkpoint saved) |
 *
 * The README's "Exit codes" section documents the same table; `test/exit-codes.test.ts` checks both.
 */
import { CommanderError } from 'commander';
import { LlamaProError, OutputError, RegistryError, UsageError } from '@llama-pro/core';

export const EXIT = { OK: 0, INPUT: 1, USAGE: 2, INTERRUPTED: 130 } as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/**
 * UsageError codes that describe data, not the command line (a corpus that is missing or empty, a model
 * onnxruntime cannot load, a verification batch that does not fit the model): these exit 1 like other
 * input errors.
 */
const DATA_CODES = new Set(['STUDY_CORPUS_INVALID', 'STUDY_CORPUS_MISSING', 'STUDY_CORPUS_EMPTY', 'ONNX_LOAD', 'VERIFY_SHAPE', 'VERIFY_TOKENS', 'SESSION_DISPOSED', 'BACKEND_UNAVAILABLE']);

/** The run was interrupted (Ctrl-C); commands throw this after stopping cleanly. */
export class InterruptedError extends LlamaProError {
  constructor(message = 'interrupted') {
    super('INTERRUPTED', message);
  }
}

/** Commander's own "not an error" exits (help, version). */
const COMMANDER_OK = new Set(['commander.helpDisplayed', 'commander.help', 'commander.version', 'commander.executeSubCommandAsync']);

/** The exit code for an error thrown by a command (see the table above). */
export function exitCodeFor(e: unknown): ExitCode {
  if (e instanceof CommanderError) return COMMANDER_OK.has(e.code) || e.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
  if (e instanceof InterruptedError || (e instanceof LlamaProError && e.code === 'INTERRUPTED')) return EXIT.INTERRUPTED;
  if (e instanceof UsageError) return DATA_CODES.has(e.code) ? EXIT.INPUT : EXIT.USAGE;
  if (e instanceof RegistryError || e instanceof OutputError) return EXIT.USAGE;
  if (e instanceof LlamaProError && e.code === 'USAGE') return EXIT.USAGE;
  return EXIT.INPUT;
}

let interruptNoted = false;

/** Commands that handle SIGINT themselves call this when they stopped because of it: the CLI then exits 130. */
export function noteInterrupted(): void {
  interruptNoted = true;
}

/** Whether a command noted an interruption since the last reset (the CLI resets it per run). */
export function wasInterrupted(reset = false): boolean {
  const v = interruptNoted;
  if (reset) interruptNoted = false;
  return v;
}
