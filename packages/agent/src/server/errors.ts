/** OpenAI-style error bodies and the mapping from thrown errors to HTTP statuses. */
import { LlamaProError, UsageError } from '@llama-pro/core';
import { QueueFullError, ShuttingDownError } from './queue';

export type Status = 400 | 404 | 413 | 500 | 503;

export class ApiError extends Error {
  constructor(
    readonly status: Status,
    message: string,
    readonly type = 'invalid_request_error',
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

export function errorBody(e: ApiError): Record<string, unknown> {
  return { error: { message: e.message, type: e.type, param: e.param, code: e.code } };
}

/** The ApiError a thrown value becomes (logging unexpected ones). */
export function toApiError(err: unknown, log?: (line: string) => void): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof QueueFullError) return new ApiError(503, err.message, 'server_error', null, 'queue_full');
  if (err instanceof ShuttingDownError) return new ApiError(503, err.message, 'server_error', null, 'shutting_down');
  if (err instanceof UsageError || (err instanceof LlamaProError && err.code !== 'ABORTED')) return new ApiError(400, err.message, 'invalid_request_error', null, err.code);
  const e = err as Error;
  log?.(`error: ${e.stack ?? e.message}`);
  return new ApiError(500, `internal error: ${e.message}`, 'server_error');
}
