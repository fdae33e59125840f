/**
 * An OpenAI-compatible HTTP API over one local model: `GET /v1/models`, `POST /v1/completions`,
 * `POST /v1/chat/completions` (SSE streaming ending in `data: [DONE]`, tools → tool_calls). Requests are
 * validated (4xx with a message naming the problem), bodies are size-limited, and generation goes
 * through a FIFO queue so concurrent requests neither crash the model nor starve.
 */
import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdaptorServer } from '@hono/node-server';
import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { streamSSE, type SSEStreamingApi } from 'hono/streaming';
import { LlamaProError, UsageError, decodeAfter, type CausalLM, type TextTokenizer } from '@llama-pro/core';
import type { z } from 'zod';
import { SERVER_DEFAULTS } from '../constants';
import { newToolCallId, type ChatMessage, type ToolCall, type ToolSpec } from '../messages';
import { JsonToolCallParser, type ActionParser } from '../parsers/action-parser';
import { ChatPromptBuilder } from '../runtime/chat-model';
import { TextGenerator, type TextGenerationResult, type TokenLogprob } from '../runtime/engine';
import type { ChatTemplate } from '../templates/chat-template';
import { QueueFullError, RequestQueue } from './queue';
import { chatRequestSchema, completionRequestSchema, describeZodError, type ChatRequest, type CompletionRequest } from './schemas';

export interface ServedModel {
  /** The name clients put in `model`. */
  id: string;
  model: CausalLM;
  tokenizer: TextTokenizer;
  template: ChatTemplate;
}

export interface ServerOptions {
  maxBodyBytes?: number;
  maxQueueLength?: number;
  /** Parser for tool calls in chat replies when a request has `tools` (default json-tool-calls). */
  toolCallParser?: ActionParser;
  /** One line per request. */
  log?: (line: string) => void;
}

type Status = 400 | 404 | 413 | 500 | 503;

class ApiError extends Error {
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

function errorBody(e: ApiError): Record<string, unknown> {
  return { error: { message: e.message, type: e.type, param: e.param, code: e.code } };
}

async function readJson<T extends z.ZodType>(c: Context, schema: T): Promise<z.infer<T>> {
  const text = await c.req.text();
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ApiError(400, `the request body is not valid JSON (${(e as Error).message}); send a JSON object`, 'invalid_request_error', null, 'invalid_json');
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new ApiError(400, 'the request body must be a JSON object');
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const d = describeZodError(parsed.error);
    throw new ApiError(400, d.message, 'invalid_request_error', d.param, 'invalid_value');
  }
  return parsed.data;
}

function asList(stop: string | string[] | null | undefined): string[] {
  if (stop === null || stop === undefined) return [];
  return (Array.isArray(stop) ? stop : [stop]).filter((s) => s.length > 0);
}

function textOf(content: string | { type: 'text'; text: string }[] | null | undefined): string {
  if (content === null || content === undefined) return '';
  return typeof content === 'string' ? content : content.map((p) => p.text).join('');
}

function finishReason(r: TextGenerationResult): 'stop' | 'length' {
  return r.finishReason === 'length' ? 'length' : 'stop';
}

/** The HTTP app and its queue (the queue is exposed for graceful shutdown and tests). */
export function createOpenAIApp(served: ServedModel, options: ServerOptions = {}): { app: Hono; queue: RequestQueue; drain(): void } {
  const app = new Hono();
  const queue = new RequestQueue(options.maxQueueLength ?? SERVER_DEFAULTS.maxQueueLength);
  const generator = new TextGenerator(served.model, served.tokenizer);
  const prompts = new ChatPromptBuilder(served.tokenizer, served.template);
  const toolParser = options.toolCallParser ?? new JsonToolCallParser();
  const created = Math.floor(Date.now() / 1000);
  const maxBody = options.maxBodyBytes ?? SERVER_DEFAULTS.maxBodyBytes;
  const ctx = generator.contextLength;
  const vocab = served.model.config.vocabSize;
  let draining = false;

  // A token's text is what it adds after the tokens before it (vLLM's incremental detokenizer), so logprob tokens
  // join to the returned text and alternatives are spelled as they would read in place.
  const tokenText = (before: readonly number[], id: number): string => decodeAfter(served.tokenizer, before, [id], { skipSpecialTokens: true });

  app.onError((err, c) => {
    let e: ApiError;
    if (err instanceof ApiError) e = err;
    else if (err instanceof QueueFullError) e = new ApiError(503, err.message, 'server_error', null, 'queue_full');
    else if (err instanceof UsageError || (err instanceof LlamaProError && err.code !== 'ABORTED')) e = new ApiError(400, err.message, 'invalid_request_error', null, err.code);
    else {
      options.log?.(`error: ${err.stack ?? err.message}`);
      e = new ApiError(500, `internal error: ${err.message}`, 'server_error');
    }
    return c.json(errorBody(e), e.status);
  });
  app.notFound((c) => c.json(errorBody(new ApiError(404, `no route ${c.req.method} ${c.req.path}; see GET /v1/models, POST /v1/completions, POST /v1/chat/completions`)), 404));

  app.use('*', async (_c, next) => {
    if (draining) throw new ApiError(503, 'the server is shutting down', 'server_error', null, 'shutting_down');
    await next();
  });
  app.use(
    '/v1/*',
    bodyLimit({
      maxSize: maxBody,
      onError: (c) => c.json(errorBody(new ApiError(413, `the request body exceeds ${maxBody} bytes; send a smaller request`, 'invalid_request_error', null, 'body_too_large')), 413),
    }),
  );

  const modelCard = { id: served.id, object: 'model', created, owned_by: 'llama-pro' };
  app.get('/health', (c) => c.json({ status: 'ok', queue: queue.size }));
  app.get('/v1/models', (c) => c.json({ object: 'list', data: [modelCard] }));
  app.get('/v1/models/:id{.+}', (c) => {
    if (c.req.param('id') !== served.id) throw new ApiError(404, `model "${c.req.param('id')}" does not exist; this server serves "${served.id}"`, 'invalid_request_error', 'model', 'model_not_found');
    return c.json(modelCard);
  });

  function checkCommon(body: { model: string; n?: number | null; presence_penalty?: number | null; frequency_penalty?: number | null }): void {
    if (body.model !== served.id) throw new ApiError(404, `model "${body.model}" does not exist; this server serves "${served.id}"`, 'invalid_request_error', 'model', 'model_not_found');
    if ((body.n ?? 1) !== 1) throw new ApiError(400, 'n > 1 is not supported; send one request per completion', 'invalid_request_error', 'n');
    if (body.presence_penalty || body.frequency_penalty) throw new ApiError(400, 'presence_penalty and frequency_penalty are not supported; leave them at 0', 'invalid_request_error', body.presence_penalty ? 'presence_penalty' : 'frequency_penalty');
  }

  function checkLength(promptTokens: number, maxTokens: number | null | undefined, fallback: number, param: string): number {
    if (promptTokens >= ctx) throw new ApiError(400, `the prompt has ${promptTokens} tokens but the model's maximum context length is ${ctx} tokens; shorten the prompt`, 'invalid_request_error', 'messages', 'context_length_exceeded');
    if (maxTokens === null || maxTokens === undefined) return Math.min(fallback, ctx - promptTokens);
    if (promptTokens + maxTokens > ctx) {
      throw new ApiError(400, `the model's maximum context length is ${ctx} tokens, but ${promptTokens + maxTokens} were requested (${promptTokens} in the prompt, ${maxTokens} for the completion); reduce ${param} or the prompt`, 'invalid_request_error', param, 'context_length_exceeded');
    }
    return maxTokens;
  }

  function sampling(body: { temperature?: number | null; top_p?: number | null; seed?: number | null }): { temperature: number; topP?: number; seed: number } {
    return { temperature: body.temperature ?? 1, topP: body.top_p ?? undefined, seed: body.seed ?? Math.floor(Math.random() * 2 ** 31) };
  }

  /** SSE with writes kept in order; `signal` fires when the client goes away. */
  function sse(c: Context, run: (send: (data: unknown) => void, signal: AbortSignal) => Promise<void>): Response {
    // Refuse before the 200 and the event stream start.
    if (queue.full) throw new QueueFullError(queue.maxLength);
    return streamSSE(c, async (stream: SSEStreamingApi) => {
      const ctl = new AbortController();
      stream.onAbort(() => ctl.abort());
      let chain: Promise<void> = Promise.resolve();
      const send = (data: unknown): void => {
        const text = typeof data === 'string' ? data : JSON.stringify(data);
        chain = chain.then(() => stream.writeSSE({ data: text })).catch(() => ctl.abort());
      };
      try {
        await run(send, ctl.signal);
      } catch (e) {
        const err = e instanceof ApiError ? e : new ApiError(e instanceof QueueFullError ? 503 : 500, (e as Error).message, 'server_error');
        send(errorBody(err));
      }
      send('[DONE]');
      await chain;
    });
  }

  // ---- completions ----
  function completionPrompts(body: CompletionRequest): number[][] {
    const p = body.prompt;
    const list: (string | number[])[] = typeof p === 'string' ? [p] : p.length > 0 && typeof p[0] === 'number' ? [p as number[]] : (p as (string | number[])[]);
    return list.map((item, i) => {
      if (typeof item === 'string') {
        const ids = served.tokenizer.encode(item);
        if (served.tokenizer.bosTokenId !== null) ids.unshift(served.tokenizer.bosTokenId);
        return ids;
      }
      for (const id of item) if (id >= vocab) throw new ApiError(400, `prompt${list.length > 1 ? `.${i}` : ''} has token id ${id}, outside the vocabulary [0, ${vocab})`, 'invalid_request_error', 'prompt');
      return item;
    });
  }

  async function completionLogprobs(ids: number[], promptLen: number, echo: boolean, top: number): Promise<Record<string, unknown>> {
    const all = await generator.logprobs(ids, top);
    const from = echo ? 0 : promptLen;
    const entries: TokenLogprob[] = all.slice(from);
    // Offsets index the returned text in code points (Python's len, as vLLM); special tokens (BOS) take no room.
    const tokens: string[] = [];
    const offsets: number[] = [];
    const tops: (Record<string, number> | null)[] = [];
    let offset = 0;
    entries.forEach((e, j) => {
      const before = ids.slice(0, from + j);
      const piece = tokenText(before, e.token);
      tokens.push(piece);
      offsets.push(offset);
      offset += [...piece].length;
      tops.push(e.logprob === null ? null : Object.fromEntries(e.top.map((t) => [tokenText(before, t.token), t.logprob])));
    });
    return { tokens, token_logprobs: entries.map((e) => e.logprob), top_logprobs: tops, text_offset: offsets };
  }

  app.post('/v1/completions', async (c) => {
    const body = await readJson(c, completionRequestSchema);
    checkCommon(body);
    if (body.best_of !== null && body.best_of !== undefined && body.best_of !== 1) throw new ApiError(400, 'best_of > 1 is not supported', 'invalid_request_error', 'best_of');
    if (body.suffix) throw new ApiError(400, 'suffix is not supported', 'invalid_request_error', 'suffix');
    const ids = completionPrompts(body);
    const maxTokens = ids.map((p) => checkLength(p.length, body.max_tokens, SERVER_DEFAULTS.completionMaxTokens, 'max_tokens'));
    const s = sampling(body);
    const stop = asList(body.stop);
    const id = `cmpl-${randomUUID()}`;
    const echo = body.echo ?? false;
    const logprobs = body.logprobs ?? null;
    const promptTexts = ids.map((p) => served.tokenizer.decode(p, { skipSpecialTokens: true }));
    options.log?.(`completion ${id}: ${ids.length} prompt(s), ${ids.reduce((n, p) => n + p.length, 0)} tokens, stream=${!!body.stream}`);
    const base = { id, object: 'text_completion', created: Math.floor(Date.now() / 1000), model: served.id };

    if (body.stream) {
      return sse(c, async (send, signal) => {
        let promptTokens = 0;
        let completionTokens = 0;
        const includeUsage = body.stream_options?.include_usage ?? false;
        for (let i = 0; i < ids.length; i++) {
          if (signal.aborted) return;
          const chunk = (text: string, finish: string | null, lp: unknown = null): Record<string, unknown> => ({ ...base, choices: [{ text, index: i, logprobs: lp, finish_reason: finish }], ...(includeUsage ? { usage: null } : {}) });
          const r = await queue.run(async () => {
            if (echo) send(chunk(promptTexts[i]!, null));
            const out = await generator.generate({ promptIds: ids[i]!, maxTokens: maxTokens[i]!, ...s, stop, signal, onText: logprobs === null ? (d) => send(chunk(d, null)) : undefined });
            const lp = logprobs === null ? null : await completionLogprobs([...ids[i]!, ...out.tokens], ids[i]!.length, echo, logprobs);
            return { out, lp };
          }, signal);
          promptTokens += ids[i]!.length;
          completionTokens += r.out.tokens.length;
          if (r.lp) send(chunk(r.out.text, null, r.lp));
          send(chunk('', finishReason(r.out)));
        }
        if (includeUsage) send({ ...base, choices: [], usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens } });
      });
    }

    const signal = c.req.raw.signal;
    const choices: Record<string, unknown>[] = [];
    let promptTokens = 0;
    let completionTokens = 0;
    for (let i = 0; i < ids.length; i++) {
      const { out, lp } = await queue.run(async () => {
        const out = await generator.generate({ promptIds: ids[i]!, maxTokens: maxTokens[i]!, ...s, stop, signal });
        const lp = logprobs === null ? null : await completionLogprobs([...ids[i]!, ...out.tokens], ids[i]!.length, echo, logprobs);
        return { out, lp };
      }, signal);
      promptTokens += ids[i]!.length;
      completionTokens += out.tokens.length;
      choices.push({ text: (echo ? promptTexts[i]! : '') + out.text, index: i, logprobs: lp, finish_reason: finishReason(out) });
    }
    return c.json({ ...base, choices, usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens } });
  });

  // ---- chat ----
  function chatMessages(body: ChatRequest): ChatMessage[] {
    return body.messages.map((m): ChatMessage => {
      switch (m.role) {
        case 'system':
        case 'developer':
          return { role: 'system', content: textOf(m.content) };
        case 'user':
          return { role: 'user', content: textOf(m.content) };
        case 'assistant':
          return { role: 'assistant', content: m.content === null || m.content === undefined ? null : textOf(m.content), ...(m.tool_calls?.length ? { tool_calls: m.tool_calls } : {}) };
        case 'tool':
          return { role: 'tool', content: textOf(m.content), tool_call_id: m.tool_call_id };
      }
    });
  }

  async function chatLogprobs(ids: number[], promptLen: number, top: number): Promise<Record<string, unknown>> {
    const all = (await generator.logprobs(ids, top)).slice(promptLen);
    const entry = (before: readonly number[], token: number, logprob: number): Record<string, unknown> => {
      const s = tokenText(before, token);
      return { token: s, logprob, bytes: [...Buffer.from(s, 'utf8')] };
    };
    return {
      content: all.map((e, j) => {
        const before = ids.slice(0, promptLen + j);
        return { ...entry(before, e.token, e.logprob ?? 0), top_logprobs: e.top.map((t) => entry(before, t.token, t.logprob)) };
      }),
      refusal: null,
    };
  }

  app.post('/v1/chat/completions', async (c) => {
    const body = await readJson(c, chatRequestSchema);
    checkCommon(body);
    const toolChoice = body.tool_choice ?? 'auto';
    if (toolChoice !== 'auto' && toolChoice !== 'none') throw new ApiError(400, 'tool_choice "required" or a named function is not supported; use "auto" or "none"', 'invalid_request_error', 'tool_choice');
    const tools: ToolSpec[] | undefined = body.tools?.length && toolChoice !== 'none' ? body.tools.map((t) => ({ type: 'function', function: { name: t.function.name, description: t.function.description, parameters: t.function.parameters } })) : undefined;
    let promptIds: number[];
    try {
      promptIds = prompts.ids(chatMessages(body), tools);
    } catch (e) {
      throw new ApiError(400, `the messages cannot be rendered with the "${served.template.name}" chat template: ${(e as Error).message}`, 'invalid_request_error', 'messages');
    }
    const maxTokens = checkLength(promptIds.length, body.max_completion_tokens ?? body.max_tokens, SERVER_DEFAULTS.chatMaxTokens, body.max_completion_tokens ? 'max_completion_tokens' : 'max_tokens');
    const s = sampling(body);
    const stop = [...prompts.stop, ...asList(body.stop)];
    const stopTokenIds = prompts.stopTokenIds;
    const id = `chatcmpl-${randomUUID()}`;
    const top = body.logprobs ? (body.top_logprobs ?? 0) : -1;
    options.log?.(`chat ${id}: ${body.messages.length} messages, ${promptIds.length} prompt tokens, tools=${tools?.length ?? 0}, stream=${!!body.stream}`);
    const base = { id, object: 'chat.completion', created: Math.floor(Date.now() / 1000), model: served.id, system_fingerprint: null };

    const toMessage = (out: TextGenerationResult): { message: Record<string, unknown>; finish: string } => {
      if (tools) {
        const action = toolParser.parse(out.text);
        if (action.type === 'tool_calls' && action.calls.length > 0) {
          const calls: ToolCall[] = action.calls.map((call) => ({ id: newToolCallId(), type: 'function', function: { name: call.name, arguments: JSON.stringify(call.arguments ?? {}) } }));
          return { message: { role: 'assistant', content: action.content || null, tool_calls: calls, refusal: null }, finish: 'tool_calls' };
        }
      }
      return { message: { role: 'assistant', content: out.text, refusal: null }, finish: finishReason(out) };
    };
    const usage = (out: TextGenerationResult): Record<string, number> => ({ prompt_tokens: promptIds.length, completion_tokens: out.tokens.length, total_tokens: promptIds.length + out.tokens.length });

    if (body.stream) {
      const includeUsage = body.stream_options?.include_usage ?? false;
      const chunkBase = { ...base, object: 'chat.completion.chunk' };
      const chunk = (delta: Record<string, unknown>, finish: string | null, lp: unknown = null): Record<string, unknown> => ({ ...chunkBase, choices: [{ index: 0, delta, logprobs: lp, finish_reason: finish }], ...(includeUsage ? { usage: null } : {}) });
      return sse(c, async (send, signal) => {
        const { out, lp } = await queue.run(async () => {
          send(chunk({ role: 'assistant', content: '' }, null));
          // With tools the reply may turn out to be a tool call, so it is sent whole at the end.
          const streamText = !tools && top < 0;
          const out = await generator.generate({ promptIds, maxTokens, ...s, stop, stopTokenIds, signal, onText: streamText ? (d) => send(chunk({ content: d }, null)) : undefined });
          const lp = top >= 0 ? await chatLogprobs([...promptIds, ...out.tokens], promptIds.length, top) : null;
          return { out, lp };
        }, signal);
        if (signal.aborted) return;
        const m = toMessage(out);
        if (m.finish === 'tool_calls') {
          const calls = m.message['tool_calls'] as ToolCall[];
          if (m.message['content']) send(chunk({ content: m.message['content'] }, null));
          send(chunk({ tool_calls: calls.map((call, index) => ({ index, id: call.id, type: 'function', function: { name: call.function.name, arguments: call.function.arguments } })) }, null));
        } else if (tools || top >= 0) send(chunk({ content: out.text }, null, lp));
        send(chunk({}, m.finish));
        if (includeUsage) send({ ...chunkBase, choices: [], usage: usage(out) });
      });
    }

    const signal = c.req.raw.signal;
    const { out, lp } = await queue.run(async () => {
      const out = await generator.generate({ promptIds, maxTokens, ...s, stop, stopTokenIds, signal });
      const lp = top >= 0 ? await chatLogprobs([...promptIds, ...out.tokens], promptIds.length, top) : null;
      return { out, lp };
    }, signal);
    const m = toMessage(out);
    return c.json({ ...base, choices: [{ index: 0, message: m.message, logprobs: lp, finish_reason: m.finish }], usage: usage(out) });
  });

  return {
    app,
    queue,
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
  /** Stops accepting requests, lets queued and running ones finish (up to `graceMs`), then closes. */
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
  let onIdle: (() => void) | null = null;
  server.on('request', (_req, res: import('node:http').ServerResponse) => {
    active++;
    res.once('close', () => {
      active--;
      if (active === 0) onIdle?.();
    });
  });
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
        let timer: NodeJS.Timeout | undefined;
        const idle = active === 0 ? Promise.resolve() : new Promise<void>((r) => (onIdle = r));
        await Promise.race([idle, new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
        clearTimeout(timer);
        server.closeAllConnections();
        await closed;
      })();
      return closing;
    },
  };
}
