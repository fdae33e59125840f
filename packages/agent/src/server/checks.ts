import type { ServerContext } from './context';
import { ApiError } from './errors';

/** 404 unless `model` is the served model's id. */
export function checkModel(sc: ServerContext, model: string): void {
  if (model !== sc.served.id) throw new ApiError(404, `model "${model}" does not exist; this server serves "${sc.served.id}"`, 'invalid_request_error', 'model', 'model_not_found');
}
