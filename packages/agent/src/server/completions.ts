/** `POST /v1/completions`: text or token-id prompts, `n` choices each, echo, logprobs, SSE streaming. */
import { randomUUID } from 'node:crypto';
import type { Hono } from 'hono';
import { SERVER_DEFAULTS } from '../constants';
import type { TextGenerationResult, TokenLogprob } from '../runtime/engine';
import { generateCounted, requestSignal, tokenText, type ServerContext } from './context';
import { ApiError } from './errors';
import { asList, checkLength, checkWork, logitAdjuster, readJson, sampling } from './request';
import { completionRequestSchema, type CompletionRequest } from './schemas';
import { sse } from './sse';
import { checkModel } from './checks';

export function finishReason(r: TextGenerationResult): 'stop' | 'length' {
  return r.finishReason === 'length' ? 'length' : 'stop';
}

function completionPrompts(sc: ServerContext, body: CompletionRequest): number[][] {
  const p = body.prompt;
  const list: (string | number[])[] = typeof p === 'string' ? [p] : p.length > 0 && typeof p[0] === 'number' ? [p as number[]] : (p as (string | number[])[]);
  return list.map((item, i) => {
    if (typeof item === 'string') {
      const ids = sc.served.tokenizer.encode(item);
      if (sc.served.tokenizer.bosTokenId !== null) ids.unshift(sc.served.tokenizer.bosTokenId);
      return ids;
    }
    for (const id of item) if (id >= sc.vocab) throw new ApiError(400, `prompt${list.length > 1 ? `.${i}` : ''} has token id ${id}, outside the vocabulary [0, ${sc.vocab})`, 'invalid_request_error', 'prompt');
    return item;
  });
}

/** OpenAI / vLLM completion logprobs: tokens as incremental pieces, text_offset in code points from 0. */
async function completionLogprobs(sc: ServerContext, ids: number[], promptLen: number, echo: boolean, top: number): Promise<Record<string, unknown>> {
  const all = await sc.generator.logprobs(ids, top);
  const from = echo ? 0 : promptLen;
  const entries: TokenLogprob[] = all.slice(from);
  // Special tokens (BOS) take no room in the text.
  const tokens: string[] = [];
  const offsets: number[] = [];
  const tops: (Record<string, number> | null)[] = [];
  let offset = 0;
  entries.forEach((e, j) => {
    const before = ids.slice(0, from + j);
    const piece = tokenText(sc, before, e.token);
    tokens.push(piece);
    offsets.push(offset);
    offset += [...piece].length;
    tops.push(e.logprob === null ? null : Object.fromEntries(e.top.map((t) => [tokenText(sc, before, t.token), t.logprob])));
  });
  return { tokens, token_logprobs: entries.map((e) => e.logprob), top_logprobs: tops, text_offset: offsets };
}

export function registerCompletions(app: Hono, sc: ServerContext): void {
  app.post('/v1/completions', async (c) => {
    const body = await readJson(c, completionRequestSchema);
    checkModel(sc, body.model);
    const n = body.n ?? 1;
    if (body.best_of !== null && body.best_of !== undefined && body.best_of !== n) throw new ApiError(400, 'best_of other than n is not supported', 'invalid_request_error', 'best_of');
    if (body.suffix) throw new ApiError(400, 'suffix is not supported', 'invalid_request_error', 'suffix');
    const ids = completionPrompts(sc, body);
    const maxTokens = ids.map((p) => checkLength(sc.contextLength, p.length, body.max_tokens, SERVER_DEFAULTS.completionMaxTokens, 'max_tokens'));
    checkWork(sc.limits, ids.map((p, i) => ({ promptTokens: p.length, maxTokens: maxTokens[i]! })), n);
    const s = sampling(body);
    const adjustLogits = logitAdjuster(body, sc.vocab);
    const stop = asList(body.stop);
    const id = `cmpl-${randomUUID()}`;
    const echo = body.echo ?? false;
    const logprobs = body.logprobs ?? null;
    const promptTexts = echo ? ids.map((p) => sc.served.tokenizer.decode(p, { skipSpecialTokens: true })) : [];
    sc.log?.(`completion ${id}: ${ids.length} prompt(s) × n=${n}, ${ids.reduce((k, p) => k + p.length, 0)} tokens, stream=${!!body.stream}`);
    const base = { id, object: 'text_completion', created: Math.floor(Date.now() / 1000), model: sc.served.id };
    // Choice index = prompt × n + j (OpenAI's order); choice j samples with seed + j.
    const jobs = ids.flatMap((_p, i) => Array.from({ length: n }, (_, j) => ({ index: i * n + j, prompt: i, seed: s.seed + j })));

    // All choices join the running decode batch together; logprobs (one forward each) run between decode steps.
    const requests = (signal: AbortSignal, onText?: (index: number) => (delta: string) => void) =>
      jobs.map((job) => ({ promptIds: ids[job.prompt]!, maxTokens: maxTokens[job.prompt]!, ...s, seed: job.seed, stop, signal, adjustLogits, onText: onText?.(job.index) }));
    const logprobsOf = (out: TextGenerationResult, i: number, signal: AbortSignal): Promise<Record<string, unknown> | null> =>
      logprobs === null ? Promise.resolve(null) : sc.queue.run(() => completionLogprobs(sc, [...ids[i]!, ...out.tokens], ids[i]!.length, echo, logprobs), signal);

    if (body.stream) {
      return sse(sc, c, async (send, signal) => {
        const promptTokens = ids.reduce((k, p) => k + p.length, 0);
        let completionTokens = 0;
        const includeUsage = body.stream_options?.include_usage ?? false;
        const chunk = (index: number, text: string, finish: string | null, lp: unknown = null): Record<string, unknown> => ({ ...base, choices: [{ text, index, logprobs: lp, finish_reason: finish }], ...(includeUsage ? { usage: null } : {}) });
        const runs = generateCounted(sc, requests(signal, logprobs === null ? (index) => (d) => send(chunk(index, d, null)) : undefined));
        if (echo) for (const job of jobs) send(chunk(job.index, promptTexts[job.prompt]!, null));
        await Promise.all(
          runs.map(async (run, k) => {
            const job = jobs[k]!;
            const out = await run;
            if (signal.aborted) return;
            const lp = await logprobsOf(out, job.prompt, signal);
            completionTokens += out.tokens.length;
            if (lp) send(chunk(job.index, out.text, null, lp));
            send(chunk(job.index, '', finishReason(out)));
          }),
        );
        if (signal.aborted) return;
        if (includeUsage) send({ ...base, choices: [], usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens } });
      });
    }

    const signal = requestSignal(sc, c);
    let completionTokens = 0;
    const choices = await Promise.all(
      generateCounted(sc, requests(signal)).map(async (run, k) => {
        const job = jobs[k]!;
        const out = await run;
        const lp = await logprobsOf(out, job.prompt, signal);
        completionTokens += out.tokens.length;
        return { text: (echo ? promptTexts[job.prompt]! : '') + out.text, index: job.index, logprobs: lp, finish_reason: finishReason(out) };
      }),
    );
    // OpenAI counts each prompt once in usage, whatever n is.
    const promptTokens = ids.reduce((k, p) => k + p.length, 0);
    return c.json({ ...base, choices, usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens } });
  });
}
