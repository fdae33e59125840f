/** Typed errors of the trainer. */
import { LlamaProError } from '@llama-pro/core';

/** A training corpus is missing, empty, malformed, or too small for the requested split / sequence length. */
export class DataError extends LlamaProError {
  constructor(message: string, code = 'DATA_INVALID') {
    super(code, message);
  }
}

/** The experiment configuration is invalid (YAML, schema, or inconsistent values). */
export class ExperimentError extends LlamaProError {
  constructor(message: string, code = 'EXPERIMENT_INVALID') {
    super(code, message);
  }
}

/** A training run directory or training checkpoint is missing, incomplete or does not match the run. */
export class RunError extends LlamaProError {
  constructor(message: string, code = 'RUN_INVALID') {
    super(code, message);
  }
}
