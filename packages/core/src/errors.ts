/**
 * Typed errors. Every error the toolkit raises on bad input is a `LlamaProError` with a stable `code`
 * and a message that names the problem and, where there is one, the fix. The CLI prints `message`
 * on one line and exits non-zero.
 */
export class LlamaProError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A safetensors file is malformed, truncated, or inconsistent with its header. */
export class SafetensorsError extends LlamaProError {
  constructor(
    readonly file: string,
    detail: string,
    code = 'SAFETENSORS_INVALID',
  ) {
    super(code, `${file}: ${detail}`);
  }
}

/** A checkpoint directory is incomplete or inconsistent (missing shard, bad index, missing tensor). */
export class CheckpointError extends LlamaProError {
  constructor(message: string, code = 'CHECKPOINT_INVALID') {
    super(code, message);
  }
}

/** A model configuration is unsupported or invalid. */
export class ConfigError extends LlamaProError {
  constructor(message: string, code = 'CONFIG_INVALID') {
    super(code, message);
  }
}

/** A llama2.c checkpoint is malformed or truncated. */
export class Llama2cError extends LlamaProError {
  constructor(
    readonly file: string,
    detail: string,
  ) {
    super('LLAMA2C_INVALID', `${file}: ${detail}`);
  }
}

/** Plugin loading or registration failed. */
export class PluginError extends LlamaProError {
  constructor(message: string, code = 'PLUGIN_INVALID') {
    super(code, message);
  }
}

/** A named registry lookup or registration failed (unknown or duplicate name). */
export class RegistryError extends LlamaProError {
  constructor(message: string, code = 'REGISTRY') {
    super(code, message);
  }
}

/** An output path is unsafe to write (exists without --force, inside the input, ...). */
export class OutputError extends LlamaProError {
  constructor(message: string, code = 'OUTPUT_INVALID') {
    super(code, message);
  }
}

/** Invalid user input that is not a file-format problem (bad flag values, bad shapes, bad ids). */
export class UsageError extends LlamaProError {
  constructor(message: string, code = 'USAGE') {
    super(code, message);
  }
}
