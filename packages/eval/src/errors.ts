import { LlamaProError } from '@llama-pro/core';

/** An evaluation could not run: bad task options, a model that cannot serve a task, a sandbox that cannot start. */
export class EvalError extends LlamaProError {
  constructor(message: string, code = 'EVAL_INVALID') {
    super(code, message);
  }
}

/** A dataset is missing, malformed, fails its checksum, or cannot be downloaded. */
export class DatasetError extends LlamaProError {
  constructor(message: string, code = 'DATASET_INVALID') {
    super(code, message);
  }
}

/** A remote language-model endpoint failed or answered something unusable. */
export class EndpointError extends LlamaProError {
  constructor(message: string, code = 'ENDPOINT_FAILED') {
    super(code, message);
  }
}
