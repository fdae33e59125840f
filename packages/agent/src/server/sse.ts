/** Server-sent events with writes kept in order, ending in `data: [DONE]`. */
import type { Context } from 'hono';
import { streamSSE, type SSEStreamingApi } from 'hono/streaming';
import type { ServerContext } from './context';
import { errorBody, toApiError } from './errors';
import { QueueFullError, ShuttingDownError } from './queue';

/** `signal` fires when the client goes away or the server shuts down; errors after the 200 are sent in-stream. */
export function sse(sc: ServerContext, c: Context, run: (send: (data: unknown) => void, signal: AbortSignal) => Promise<void>): Response {
  // Refuse before the 200 and the event stream start.
  if (sc.queue.shutdownSignal.aborted) throw new ShuttingDownError();
  if (sc.queue.full) throw new QueueFullError(sc.queue.maxLength);
  return streamSSE(c, async (stream: SSEStreamingApi) => {
    const ctl = new AbortController();
    stream.onAbort(() => ctl.abort());
    const signal = AbortSignal.any([ctl.signal, sc.queue.shutdownSignal]);
    let chain: Promise<void> = Promise.resolve();
    const send = (data: unknown): void => {
      const text = typeof data === 'string' ? data : JSON.stringify(data);
      chain = chain.then(() => stream.writeSSE({ data: text })).catch(() => ctl.abort());
    };
    try {
      await run(send, signal);
    } catch (e) {
      send(errorBody(toApiError(e, sc.log)));
    }
    send('[DONE]');
    await chain;
  });
}
