/**
 * A LanguageModel served by any OpenAI-compatible endpoint (vLLM, llama.cpp server, our own): log-likelihoods
 * through `/completions` with `echo: true, logprobs: 1, max_tokens: 1` (the continuation's tokens are those at
 * or after the context's end, by `text_offset`, or by token count when a local tokenizer sends token ids),
 * generation through `/completions` or `/chat/completions` with the stop strings.
 */
import type { GenerateUntilRequest, LanguageModel, LoglikelihoodRequest, LoglikelihoodResult, RollingScoring, TextTokenizer } from '@llama-pro/core';
import { EndpointError } from '../errors';
import { truncateAtStops } from '../metrics';
import { pyRstrip } from '../util/py-str';
import { encodePair, rollingWindows } from './local';

export interface OpenAICompatibleOptions {
  /** Base URL including the API prefix, e.g. `http://localhost:8000/v1`. */
  baseUrl: string;
  /** Model name sent in requests. */
  model: string;
  apiKey?: string;
  /** Generation endpoint. Default `completions` (what base-model benchmarks need). */
  generation?: 'completions' | 'chat';
  /**
   * A local copy of the served tokenizer: prompts are sent as token ids, so context/continuation boundaries and
   * BOS are exact (lm-eval's `tokenized_requests`). Without it prompts are text and boundaries come from text_offset.
   */
  tokenizer?: TextTokenizer;
  /** With a tokenizer: prepend BOS (default true). */
  addBos?: boolean;
  /**
   * The served model's context length: rolling windows (with a tokenizer) and left-truncation of over-long prompts,
   * as the local model does. Default: `max_model_len` from `/models` when opened by the provider, else 2048.
   */
  maxLength?: number;
  /** Prompts per HTTP request. Default 8. */
  batchSize?: number;
  timeoutMs?: number;
  fetchImpl?: typeof fetch;
}

interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs?: (Record<string, number> | null)[] | null;
  text_offset?: number[];
}

interface CompletionChoice {
  index?: number;
  text: string;
  logprobs?: CompletionLogprobs | null;
}

const codePoints = (s: string): number => [...s].length;

/**
 * The model to request when none is named: the only one `GET {baseUrl}/models` lists (as `llama-pro serve` and vLLM
 * serve one model under its own name), with its `max_model_len` when the server gives it (vLLM, llama-pro serve).
 * null when the endpoint has no usable /models; an error when it lists several.
 */
export async function discoverServedModel(baseUrl: string, o: { apiKey?: string; fetchImpl?: typeof fetch } = {}): Promise<{ id: string; maxModelLen: number | null } | null> {
  const url = `${baseUrl.replace(/\/+$/, '')}/models`;
  let body: { data?: { id?: unknown; max_model_len?: unknown }[] };
  try {
    const res = await (o.fetchImpl ?? fetch)(url, { headers: o.apiKey ? { authorization: `Bearer ${o.apiKey}` } : {}, signal: AbortSignal.timeout(30_000) });
    if (!res.ok) return null;
    body = (await res.json()) as typeof body;
  } catch (e) {
    throw new EndpointError(`cannot reach ${url}: ${(e as Error).message}; check that the server runs and --model points at its /v1 URL`, 'ENDPOINT_UNREACHABLE');
  }
  const ids = (body.data ?? []).filter((m) => typeof m.id === 'string');
  if (ids.length === 0) return null;
  if (ids.length > 1) throw new EndpointError(`${url} serves ${ids.length} models (${ids.map((m) => m.id).join(', ')}); pick one with --served-model`, 'ENDPOINT_MODEL_AMBIGUOUS');
  const len = ids[0]!.max_model_len;
  return { id: ids[0]!.id as string, maxModelLen: typeof len === 'number' && Number.isInteger(len) && len > 0 ? len : null };
}

export class OpenAICompatibleLanguageModel implements LanguageModel {
  readonly name: string;
  private readonly fetchImpl: typeof fetch;
  private readonly base: string;

  constructor(readonly options: OpenAICompatibleOptions) {
    this.base = options.baseUrl.replace(/\/+$/, '');
    this.name = `openai:${this.base}#${options.model}`;
    this.fetchImpl = options.fetchImpl ?? fetch;
  }

  private async post<T>(route: string, body: Record<string, unknown>): Promise<T> {
    const url = `${this.base}${route}`;
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (this.options.apiKey) headers['authorization'] = `Bearer ${this.options.apiKey}`;
    let res: Response;
    try {
      res = await this.fetchImpl(url, { method: 'POST', headers, body: JSON.stringify({ model: this.options.model, ...body }), signal: AbortSignal.timeout(this.options.timeoutMs ?? 600_000) });
    } catch (e) {
      throw new EndpointError(`cannot reach ${url}: ${(e as Error).message}; check that the server runs and --model points at its /v1 URL`, 'ENDPOINT_UNREACHABLE');
    }
    const text = await res.text();
    if (!res.ok) throw new EndpointError(`${url} answered HTTP ${res.status}: ${text.slice(0, 300)}`, 'ENDPOINT_HTTP');
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new EndpointError(`${url} did not answer JSON: ${text.slice(0, 200)}`, 'ENDPOINT_BAD_RESPONSE');
    }
  }

  /** Token ids of `text` as the server tokenizes it (vLLM's `POST /tokenize` at the server root, as llama-pro serve has). */
  private async tokenizeRemote(text: string): Promise<number[]> {
    const root = this.base.replace(/\/v1$/, '');
    const url = `${root}/tokenize`;
    let res: Response;
    try {
      res = await this.fetchImpl(url, { method: 'POST', headers: { 'content-type': 'application/json', ...(this.options.apiKey ? { authorization: `Bearer ${this.options.apiKey}` } : {}) }, body: JSON.stringify({ model: this.options.model, prompt: text }) });
    } catch (e) {
      throw new EndpointError(`cannot reach ${url}: ${(e as Error).message}`, 'ENDPOINT_UNREACHABLE');
    }
    const body = (await res.json().catch(() => null)) as { tokens?: unknown } | null;
    if (!res.ok || !body || !Array.isArray(body.tokens)) throw new EndpointError(`the prompt is longer than the served model's context and ${url} cannot tokenize it to cut it (HTTP ${res.status}); pass --tokenizer <dir>`, 'ENDPOINT_TOO_LONG');
    return body.tokens as number[];
  }

  /** Echoes prompts with per-token logprobs; returns the choices in prompt order. */
  private async echo(prompts: (string | number[])[]): Promise<CompletionLogprobs[]> {
    const out: CompletionLogprobs[] = [];
    const bs = this.options.batchSize ?? 8;
    for (let i = 0; i < prompts.length; i += bs) {
      const part = prompts.slice(i, i + bs);
      const r = await this.post<{ choices?: CompletionChoice[] }>('/completions', { prompt: part, max_tokens: 1, echo: true, logprobs: 1, temperature: 0 });
      const choices = r.choices ?? [];
      if (choices.length !== part.length) throw new EndpointError(`${this.base}/completions returned ${choices.length} choices for ${part.length} prompts`, 'ENDPOINT_BAD_RESPONSE');
      const sorted = [...choices].sort((a, b) => (a.index ?? 0) - (b.index ?? 0));
      for (const c of sorted) {
        const lp = c.logprobs;
        if (!lp || !Array.isArray(lp.tokens) || !Array.isArray(lp.token_logprobs)) {
          throw new EndpointError(`${this.base}/completions did not return echo logprobs; the server must support "echo": true with "logprobs" (vLLM, llama.cpp server do)`, 'ENDPOINT_NO_LOGPROBS');
        }
        out.push(lp);
      }
    }
    return out;
  }

  async loglikelihood(requests: readonly LoglikelihoodRequest[]): Promise<LoglikelihoodResult[]> {
    const tok = this.options.tokenizer;
    if (tok) {
      const prefix = this.options.addBos ?? true ? [tok.bosTokenId!] : [];
      const pairs = requests.map((r) => encodePair(tok, r.context, r.continuation, prefix));
      // Left-truncated as the local model does, leaving room for the one generated token echo requests need.
      const keep = Math.max(1, (this.options.maxLength ?? 2048) - 1);
      const seqs = pairs.map((p) => [...p.context, ...p.continuation].slice(-keep));
      const echoed = await this.echo(seqs);
      return echoed.map((lp, i) => {
        const n = pairs[i]!.continuation.length;
        if (n > keep) throw new EndpointError(`a continuation of ${n} tokens does not fit the served model's ${keep + 1} positions`, 'ENDPOINT_TOO_LONG');
        return this.sumRange(lp, seqs[i]!.length - n, seqs[i]!.length);
      });
    }
    const echoed = await this.echo(requests.map((r) => r.context + r.continuation));
    return echoed.map((lp, i) => {
      const r = requests[i]!;
      const offsets = lp.text_offset;
      if (!offsets) throw new EndpointError('the endpoint returned no text_offset; pass a tokenizer (--tokenizer) so prompts go as token ids', 'ENDPOINT_NO_OFFSETS');
      const ctxLen = codePoints(pyRstrip(r.context));
      const end = codePoints(r.context + r.continuation);
      let start = offsets.findIndex((o) => o >= ctxLen);
      let stop = offsets.findIndex((o) => o >= end);
      if (start < 0) start = offsets.length;
      if (stop < 0) stop = offsets.length;
      return this.sumRange(lp, start, stop);
    });
  }

  private sumRange(lp: CompletionLogprobs, start: number, stop: number): LoglikelihoodResult {
    if (stop <= start) throw new EndpointError('the endpoint returned no tokens for a continuation', 'ENDPOINT_BAD_RESPONSE');
    let logprob = 0;
    let isGreedy = true;
    for (let j = start; j < stop; j++) {
      const v = lp.token_logprobs[j];
      if (typeof v !== 'number') throw new EndpointError(`the endpoint returned no logprob for prompt token ${j}`, 'ENDPOINT_BAD_RESPONSE');
      logprob += v;
      const top = lp.top_logprobs?.[j];
      if (top) {
        let best: string | undefined;
        let bestLp = -Infinity;
        for (const [t, x] of Object.entries(top)) if (x > bestLp) [best, bestLp] = [t, x];
        if (best !== lp.tokens[j]) isGreedy = false;
      } else isGreedy = false;
    }
    return { logprob, isGreedy };
  }

  /**
   * With a tokenizer: as the local model (RollingScoring). Text prompts can only be scored `text-only` (the server adds
   * BOS and cannot score it; lm-eval's local-completions tokenizes locally for the same reason).
   */
  async loglikelihoodRolling(texts: readonly string[], options: { scoring?: RollingScoring } = {}): Promise<{ logprob: number; tokens: number }[]> {
    const tok = this.options.tokenizer;
    if (tok) {
      const prefixToken = tok.bosTokenId ?? tok.eosTokenId;
      if (prefixToken === null) throw new EndpointError('the tokenizer has neither BOS nor EOS for rolling windows', 'ENDPOINT_NO_PREFIX');
      const bos = (options.scoring ?? 'lm-eval') === 'lm-eval' && (this.options.addBos ?? true) ? [tok.bosTokenId!] : [];
      const windows = texts.map((t) => rollingWindows([...bos, ...tok.encode(t)], prefixToken, this.options.maxLength ?? 2048));
      const flat = windows.flat();
      const echoed = await this.echo(flat.map((w) => [...w.input, w.targets[w.targets.length - 1]!]));
      let k = 0;
      return windows.map((ws) => {
        let logprob = 0;
        let tokens = 0;
        for (const w of ws) {
          const lp = echoed[k++]!;
          const L = w.input.length + 1;
          logprob += this.sumRange(lp, L - w.targets.length, L).logprob;
          tokens += w.targets.length;
        }
        return { logprob, tokens };
      });
    }
    if ((options.scoring ?? 'lm-eval') === 'lm-eval') {
      throw new EndpointError('lm-eval rolling scoring scores the BOS token, which text prompts to an endpoint cannot; pass --tokenizer <dir> (prompts go as token ids) or --rolling-scoring text-only', 'ENDPOINT_ROLLING_NEEDS_TOKENIZER');
    }
    const echoed = await this.echo([...texts]);
    return echoed.map((lp, i) => {
      const end = codePoints(texts[i]!);
      let logprob = 0;
      let tokens = 0;
      lp.tokens.forEach((_, j) => {
        const v = lp.token_logprobs[j];
        const off = lp.text_offset?.[j] ?? 0;
        if (typeof v === 'number' && off < end) {
          logprob += v;
          tokens++;
        }
      });
      return { logprob, tokens };
    });
  }

  async generateUntil(requests: readonly GenerateUntilRequest[]): Promise<string[]> {
    const out: string[] = [];
    for (const r of requests) {
      const common = { max_tokens: r.maxGenTokens ?? 256, temperature: r.temperature ?? 0, ...(r.topP !== undefined ? { top_p: r.topP } : {}), ...(r.seed !== undefined ? { seed: r.seed } : {}), stop: r.until.slice(0, 4) };
      let text: string;
      if ((this.options.generation ?? 'completions') === 'chat') {
        const res = await this.post<{ choices?: { message?: { content?: string | null } }[] }>('/chat/completions', { messages: [{ role: 'user', content: r.context }], ...common });
        const c = res.choices?.[0]?.message?.content;
        if (typeof c !== 'string') throw new EndpointError(`${this.base}/chat/completions returned no message content`, 'ENDPOINT_BAD_RESPONSE');
        text = c;
      } else {
        const tok = this.options.tokenizer;
        // Over-long prompts are cut from the left to max length - max_tokens, as the local model (and lm-eval) do.
        const budget = Math.max(1, (this.options.maxLength ?? 2048) - common.max_tokens);
        let prompt: string | number[] = tok ? [...(this.options.addBos ?? true ? [tok.bosTokenId!] : []), ...tok.encode(r.context)].slice(-budget) : r.context;
        let res: { choices?: CompletionChoice[] };
        try {
          res = await this.post<{ choices?: CompletionChoice[] }>('/completions', { prompt, ...common });
        } catch (e) {
          // Text prompts: the server knows the length; on its context-length refusal, tokenize there and cut the ids.
          if (tok || !(e instanceof EndpointError) || !/context_length_exceeded|maximum context length/.test(e.message)) throw e;
          prompt = (await this.tokenizeRemote(r.context)).slice(-budget);
          res = await this.post<{ choices?: CompletionChoice[] }>('/completions', { prompt, ...common });
        }
        const c = res.choices?.[0]?.text;
        if (typeof c !== 'string') throw new EndpointError(`${this.base}/completions returned no text`, 'ENDPOINT_BAD_RESPONSE');
        text = c;
      }
      // Servers accept at most 4 stop strings (OpenAI); the rest are applied here, as lm-eval does.
      out.push(truncateAtStops(text, r.until));
    }
    return out;
  }
}
