/** What the routes share: the served model, the generator, the queue, limits and per-request signals. */
import { decodeAfter, type CausalLM, type TextTokenizer } from '@llama-pro/core';
import type { Context } from 'hono';
import type { ActionParser } from '../parsers/action-parser';
import type { ChatPromptBuilder } from '../runtime/chat-model';
import type { TextGenerationRequest, TextGenerationResult, TextGenerator } from '../runtime/engine';
import type { ChatTemplate } from '../templates/chat-template';
import type { ServerMetrics } from './metrics';
import { ShuttingDownError, type RequestQueue } from './queue';
import type { WorkLimits } from './request';
import type { GenericJsonLimits, VocabTrie } from './json-grammar';

export interface ServedModel {
  /** The name clients put in `model`. */
  id: string;
  model: CausalLM;
  tokenizer: TextTokenizer;
  template: ChatTemplate;
}

export interface ServerContext {
  readonly served: ServedModel;
  readonly generator: TextGenerator;
  readonly prompts: ChatPromptBuilder;
  readonly queue: RequestQueue;
  readonly toolParser: ActionParser;
  readonly limits: WorkLimits;
  readonly metrics: ServerMetrics;
  readonly log?: (line: string) => void;
  /** The model's context length. */
  readonly contextLength: number;
  readonly vocab: number;
  readonly created: number;
  /** Bounds for schema-less JSON under structured output (json-grammar.ts). */
  readonly jsonLimits: GenericJsonLimits;
  /** The vocabulary as a trie of token texts, built on the first structured-output request. */
  vocabTrie?: VocabTrie;
}

/**
 * A token's text: what it adds after the tokens before it (vLLM's incremental detokenizer), so logprob tokens join
 * to the returned text and alternatives are spelled as they would read in place.
 */
export function tokenText(sc: ServerContext, before: readonly number[], id: number): string {
  return decodeAfter(sc.served.tokenizer, before, [id], { skipSpecialTokens: true });
}

/** Aborts when the client goes away (hono's request signal) or the server shuts down. */
export function requestSignal(sc: ServerContext, c: Context, extra?: AbortSignal): AbortSignal {
  return AbortSignal.any([c.req.raw.signal, sc.queue.shutdownSignal, ...(extra ? [extra] : [])]);
}

/**
 * Generates the requests (one request's choices) in the running decode batch, counting tokens for /metrics; each
 * promise settles with its request's result. A generation cut by shutdown is a 503, not a short answer.
 */
export function generateCounted(sc: ServerContext, reqs: readonly TextGenerationRequest[]): Promise<TextGenerationResult>[] {
  const jobs = reqs.map((req) => sc.generator.job(req));
  const runs = sc.queue.decode(jobs.map((j, i) => ({ prompt: j.prompt, row: j.row, signal: reqs[i]!.signal })));
  return runs.map(async (run, i) => {
    const out = jobs[i]!.result(await run);
    sc.metrics.promptTokens += reqs[i]!.promptIds.length;
    sc.metrics.generationTokens += out.tokens.length;
    if (out.finishReason === 'aborted' && sc.queue.shutdownSignal.aborted) throw new ShuttingDownError();
    return out;
  });
}
