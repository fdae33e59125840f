/**
 * An OpenAI-compatible HTTP API over one local model: `GET /v1/models`, `POST /v1/completions`,
 * `POST /v1/chat/completions` (SSE streaming ending in `data: [DONE]`, tools → tool_calls), plus vLLM's
 * `/tokenize`, `/detokenize`, `/version` and `/metrics`. Requests are validated (4xx with a message naming the
 * problem), bodies and the work per request are bounded, generation goes through a FIFO queue into a running
 * decode batch (continuous batching: requests join and leave it) so concurrent requests share decode steps without starving, stops when its client goes away, and shutdown answers every request.
 * The routes live in completions.ts, chat.ts and extras.ts; this file wires them and runs the HTTP server.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdaptorServer } from '@hono/node-server';
import { Hono } from 'hono';
import { UsageError } from '@llama-pro/core';
import { SERVER_DEFAULTS } from '../constants';
import { JsonToolCallParser, type ActionParser } from '../parsers/action-parser';
import { ChatPromptBuilder } from '../runtime/chat-model';
import { TextGenerator } from '../runtime/engine';
import { registerChat } from './chat';
import { registerCompletions } from './completions';
import type { ServedModel, ServerContext } from './context';
import { ApiError, errorBody, toApiError } from './errors';
import { registerExtras } from './extras';
import { genericJsonLimits, SchemaError, type GenericJsonLimits } from './json-grammar';
import { ServerMetrics } from './metrics';
import { RequestQueue, ShuttingDownError } from './queue';
import { bodyLimit } from './request';

export type { ServedModel } from './context';

export interface ServerOptions {
  maxBodyBytes?: number;
  maxQueueLength?: number;
  /** Most sequences decoded together in the running batch (continuous batching; default SERVER_DEFAULTS.maxBatchSize). */
  maxBatchSize?: number;
  /** Most completions (prompts × n) per request (default SERVER_DEFAULTS.maxPromptsPerRequest); more get 413. */
  maxPromptsPerRequest?: number;
  /** Most tokens of work (Σ prompt + max_tokens over the completions) per request; more get 400. */
  maxRequestTokens?: number;
  /** Parser for tool calls in chat replies when a request has `tools` (default json-tool-calls). */
  toolCallParser?: ActionParser;
  /**
   * Bounds for schema-less JSON under `response_format` / forced tool calls (json_object, `{}` sub-schemas): string
   * characters, array items, object properties, nesting depth (default: none, GENERIC_JSON_LIMITS is all Infinity).
   * Values a schema describes are never capped.
   */
  jsonLimits?: Partial<GenericJsonLimits>;
  /** One line per request. */
  log?: (line: string) => void;
}

function batchSlots(n: number | undefined): number {
  if (n === undefined) return SERVER_DEFAULTS.maxBatchSize;
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`the batch size must be a positive integer (got ${n})`);
  return n;
}

/** The HTTP app and its queue (the queue is exposed for graceful shutdown and tests). */
export function createOpenAIApp(served: ServedModel, options: ServerOptions = {}): { app: Hono; queue: RequestQueue; drain(): void } {
  const app = new Hono();
  const generator = new TextGenerator(served.model, served.tokenizer);
  let jsonLimits: GenericJsonLimits;
  try {
    jsonLimits = genericJsonLimits(options.jsonLimits);
  } catch (e) {
    throw e instanceof SchemaError ? new UsageError(`server option jsonLimits: ${e.message}`) : e;
  }
  const sc: ServerContext = {
    served,
    generator,
    prompts: new ChatPromptBuilder(served.tokenizer, served.template),
    queue: new RequestQueue(options.maxQueueLength ?? SERVER_DEFAULTS.maxQueueLength, { model: served.model, slots: batchSlots(options.maxBatchSize) }),
    toolParser: options.toolCallParser ?? new JsonToolCallParser(),
    limits: { maxPrompts: options.maxPromptsPerRequest ?? SERVER_DEFAULTS.maxPromptsPerRequest, maxRequestTokens: options.maxRequestTokens ?? SERVER_DEFAULTS.maxRequestTokens },
    metrics: new ServerMetrics(),
    log: options.log,
    contextLength: generator.contextLength,
    vocab: served.model.config.vocabSize,
    jsonLimits,
    created: Math.floor(Date.now() / 1000),
  };
  const maxBody = options.maxBodyBytes ?? SERVER_DEFAULTS.maxBodyBytes;
  let draining = false;

  app.onError((err, c) => {
    const e = toApiError(err, options.log);
    return c.json(errorBody(e), e.status);
  });
  app.notFound((c) => c.json(errorBody(new ApiError(404, `no route ${c.req.method} ${c.req.path}; see GET /v1/models, POST /v1/completions, POST /v1/chat/completions`)), 404));

  app.use('*', async (c, next) => {
    if (draining && c.req.path !== '/metrics' && c.req.path !== '/health') throw new ShuttingDownError();
    await next();
    sc.metrics.countRequest(c.req.routePath, c.res.status);
  });
  app.use(
    '*',
    bodyLimit(maxBody, (c) => c.json(errorBody(new ApiError(413, `the request body exceeds ${maxBody} bytes; send a smaller request`, 'invalid_request_error', null, 'body_too_large')), 413)),
  );

  registerExtras(app, sc);
  registerCompletions(app, sc);
  registerChat(app, sc);

  return {
    app,
    queue: sc.queue,
    drain: () => {
      draining = true;
    },
  };
}

export interface RunningServer {
  readonly url: string;
  readonly port: number;
  readonly server: Server;
  readonly queue: RequestQueue;
  /**
   * Stops accepting requests and lets queued and running ones finish for up to `graceMs`; then every request still
   * waiting or running is answered 503 (shutting_down), and the connections close.
   */
  close(graceMs?: number): Promise<void>;
}

export interface StartServerOptions extends ServerOptions {
  host?: string;
  /** 0 picks a free port. */
  port?: number;
}

/** Serves the app on `host:port` (default 127.0.0.1:8000). */
export async function startServer(served: ServedModel, options: StartServerOptions = {}): Promise<RunningServer> {
  const { app, queue, drain } = createOpenAIApp(served, options);
  const host = options.host ?? SERVER_DEFAULTS.host;
  const server = createAdaptorServer({ fetch: app.fetch }) as Server;
  // Responses not yet finished (streams included), for graceful shutdown.
  let active = 0;
  let idleWaiters: (() => void)[] = [];
  server.on('request', (_req, res: import('node:http').ServerResponse) => {
    active++;
    res.once('close', () => {
      active--;
      if (active === 0) for (const r of idleWaiters.splice(0)) r();
    });
  });
  const idleWithin = async (ms: number): Promise<void> => {
    if (active === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([new Promise<void>((r) => idleWaiters.push(r)), new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
    clearTimeout(timer);
  };
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(e.code === 'EADDRINUSE' ? new UsageError(`port ${options.port} on ${host} is already in use; pick another with --port`) : e),
    );
    server.listen(options.port ?? SERVER_DEFAULTS.port, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  let closing: Promise<void> | null = null;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    server,
    queue,
    close(graceMs = SERVER_DEFAULTS.shutdownGraceMs) {
      closing ??= (async () => {
        drain();
        const closed = new Promise<void>((r) => server.close(() => r()));
        server.closeIdleConnections();
        await idleWithin(graceMs);
        // Past the grace: the running request stops and it and every waiting one answer 503, then connections close.
        queue.close();
        await idleWithin(SERVER_DEFAULTS.shutdownFlushMs);
        server.closeAllConnections();
        await closed;
        idleWaiters = [];
      })();
      return closing;
    },
  };
}
