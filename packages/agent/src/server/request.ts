/** Request parsing shared by the routes: JSON bodies, sampling options, logit adjustments, length and work limits. */
import type { Context, MiddlewareHandler } from 'hono';
import type { z } from 'zod';
import { ApiError } from './errors';
import { describeZodError } from './schemas';
import type { PromptOptions } from '../runtime/chat-model';

/** Bodies of chunked requests (no content-length), read by `bodyLimit` while it counted them. */
const chunkedBodies = new WeakMap<Request, string>();

/**
 * Refuses bodies over `maxBytes` with `onTooLarge`'s response (413). A declared content-length is checked without
 * reading the body, which the route then reads with @hono/node-server's direct path; hono's own body-limit middleware
 * reads `c.req.raw.body` for that check, which makes the adapter build a full WHATWG Request for every request
 * (~0.2 ms each, measured on the serve bench). A chunked body is read here, counting as it arrives.
 */
export function bodyLimit(maxBytes: number, onTooLarge: (c: Context) => Response): MiddlewareHandler {
  return async (c, next) => {
    if (c.req.method === 'GET' || c.req.method === 'HEAD') return next();
    const length = c.req.header('content-length');
    if (length !== undefined && c.req.header('transfer-encoding') === undefined) return Number(length) > maxBytes ? onTooLarge(c) : next();
    const reader = c.req.raw.body?.getReader();
    if (!reader) return next();
    const parts: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) {
        await reader.cancel();
        return onTooLarge(c);
      }
      parts.push(value);
    }
    chunkedBodies.set(c.req.raw, Buffer.concat(parts).toString('utf8'));
    return next();
  };
}

export async function readJson<T extends z.ZodType>(c: Context, schema: T): Promise<z.infer<T>> {
  const text = chunkedBodies.get(c.req.raw) ?? (await c.req.text());
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

export function asList(stop: string | string[] | null | undefined): string[] {
  if (stop === null || stop === undefined) return [];
  return (Array.isArray(stop) ? stop : [stop]).filter((s) => s.length > 0);
}

/** vLLM's chat-template request fields as prompt options (absent fields keep the builder's defaults). */
export function promptOptionsOf(body: { add_generation_prompt?: boolean | null; continue_final_message?: boolean | null }): PromptOptions {
  return { addGenerationPrompt: body.add_generation_prompt ?? undefined, continueFinalMessage: body.continue_final_message ?? undefined };
}

export function textOf(content: string | { type: 'text'; text: string }[] | null | undefined): string {
  if (content === null || content === undefined) return '';
  return typeof content === 'string' ? content : content.map((p) => p.text).join('');
}

export interface SamplingBody {
  temperature?: number | null;
  top_p?: number | null;
  seed?: number | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  logit_bias?: Record<string, number> | null;
  ignore_eos?: boolean | null;
}

/** The request's sampling options; `ignore_eos` is vLLM's extra parameter (benchmark clients send it to get exactly max_tokens). */
export function sampling(body: SamplingBody): { temperature: number; topP?: number; seed: number; ignoreEos: boolean } {
  return { temperature: body.temperature ?? 1, topP: body.top_p ?? undefined, seed: body.seed ?? Math.floor(Math.random() * 2 ** 31), ignoreEos: body.ignore_eos ?? false };
}

/**
 * OpenAI's logit adjustments, applied to the next-token logits before sampling: `logit_bias` adds its value to the
 * token's logit; `presence_penalty` subtracts once from every token already generated and `frequency_penalty`
 * subtracts once per occurrence (OpenAI's "mu[j] -= c[j] * alpha_frequency + (c[j] > 0) * alpha_presence", counted over
 * the completion, as vLLM does). Undefined when the request asks for none.
 */
export function logitAdjuster(body: SamplingBody, vocab: number): ((logits: Float32Array, generated: readonly number[]) => void) | undefined {
  const bias: [number, number][] = [];
  for (const [key, value] of Object.entries(body.logit_bias ?? {})) {
    const id = Number(key);
    if (!/^\d+$/.test(key) || id >= vocab) throw new ApiError(400, `logit_bias key "${key}" is not a token id in [0, ${vocab})`, 'invalid_request_error', 'logit_bias');
    bias.push([id, value]);
  }
  const presence = body.presence_penalty ?? 0;
  const frequency = body.frequency_penalty ?? 0;
  if (bias.length === 0 && presence === 0 && frequency === 0) return undefined;
  return (logits, generated) => {
    for (const [id, v] of bias) logits[id] = logits[id]! + v;
    if (presence === 0 && frequency === 0) return;
    const counts = new Map<number, number>();
    for (const t of generated) counts.set(t, (counts.get(t) ?? 0) + 1);
    for (const [id, n] of counts) logits[id] = logits[id]! - frequency * n - presence;
  };
}

/** max_tokens for a prompt: the request's (checked against the context), else `fallback` capped by the context. */
export function checkLength(ctx: number, promptTokens: number, maxTokens: number | null | undefined, fallback: number, param: string): number {
  if (promptTokens >= ctx) throw new ApiError(400, `the prompt has ${promptTokens} tokens but the model's maximum context length is ${ctx} tokens; shorten the prompt`, 'invalid_request_error', 'messages', 'context_length_exceeded');
  if (maxTokens === null || maxTokens === undefined) return Math.min(fallback, ctx - promptTokens);
  if (promptTokens + maxTokens > ctx) {
    throw new ApiError(400, `the model's maximum context length is ${ctx} tokens, but ${promptTokens + maxTokens} were requested (${promptTokens} in the prompt, ${maxTokens} for the completion); reduce ${param} or the prompt`, 'invalid_request_error', param, 'context_length_exceeded');
  }
  return maxTokens;
}

export interface WorkLimits {
  /** Most prompts × n choices per request (413 past it). */
  maxPrompts: number;
  /** Most tokens (Σ over choices of prompt + max_tokens) one request may make the model process (400 past it). */
  maxRequestTokens: number;
}

/** Bounds the work of one request before anything is queued. */
export function checkWork(limits: WorkLimits, jobs: readonly { promptTokens: number; maxTokens: number }[], n: number): void {
  const choices = jobs.length * n;
  if (choices > limits.maxPrompts) {
    throw new ApiError(413, `the request asks for ${jobs.length} prompts × n=${n} = ${choices} completions, at most ${limits.maxPrompts} are served per request (server option --max-prompts); split it`, 'invalid_request_error', 'prompt', 'too_many_prompts');
  }
  const tokens = n * jobs.reduce((s, j) => s + j.promptTokens + j.maxTokens, 0);
  if (tokens > limits.maxRequestTokens) {
    throw new ApiError(400, `the request needs up to ${tokens} tokens of work (prompts + max_tokens, × n), more than the ${limits.maxRequestTokens} one request may use (server option --max-request-tokens); lower max_tokens or n, or split it`, 'invalid_request_error', 'max_tokens', 'request_too_large');
  }
}
