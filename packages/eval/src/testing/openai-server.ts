/**
 * A minimal OpenAI-compatible HTTP server (node:http) over any core CausalLM + TextTokenizer, for tests and
 * examples: `/v1/completions` (text or token-id prompts, `echo` with per-token `logprobs`, `top_logprobs`
 * and `text_offset`, greedy generation with `stop`) and `/v1/chat/completions` (last user message as the
 * prompt). Text prompts get BOS, as vLLM does for Llama models.
 */
import * as http from 'node:http';
import { generate, type CausalLM, type TextTokenizer } from '@llama-pro/core';

export interface TestServer {
  readonly url: string;
  readonly requests: Record<string, unknown>[];
  close(): Promise<void>;
}

function tokenText(tok: TextTokenizer, id: number): string {
  const s = tok.decode([id]);
  return /^[\x20-\x7e]+$/.test(s) ? s : `bytes:${id}`;
}

/** Per-position log-probabilities (first position: null) and argmax tokens of a whole sequence. */
export async function sequenceLogprobs(model: CausalLM, ids: readonly number[]): Promise<{ logprobs: (number | null)[]; argmax: number[] }> {
  const T = ids.length;
  const logits = await model.forward({ ids: Int32Array.from(ids), batchSize: 1, seqLen: T });
  const V = logits.vocabSize;
  const logprobs: (number | null)[] = [null];
  const argmax: number[] = [];
  for (let t = 0; t + 1 < T; t++) {
    const row = logits.data.subarray(t * V, (t + 1) * V);
    let max = -Infinity;
    let arg = 0;
    for (let v = 0; v < V; v++) if (row[v]! > max) [max, arg] = [row[v]!, v];
    let sum = 0;
    for (let v = 0; v < V; v++) sum += Math.exp(row[v]! - max);
    logprobs.push(row[ids[t + 1]!]! - max - Math.log(sum));
    argmax.push(arg);
  }
  return { logprobs, argmax };
}

export function startOpenAIServer(model: CausalLM, tok: TextTokenizer): Promise<TestServer> {
  const requests: Record<string, unknown>[] = [];
  const bos = tok.bosTokenId !== null ? [tok.bosTokenId] : [];
  const gen = async (ids: number[], maxTokens: number, stop: string[]): Promise<{ text: string; tokens: number[] }> => {
    const [r] = await generate(model, [ids], { maxNewTokens: maxTokens, eosTokenIds: tok.eosTokenId === null ? [] : [tok.eosTokenId], stopStrings: stop, decode: (x) => tok.decode(x, { skipSpecialTokens: true }) });
    return { text: r!.text!, tokens: r!.tokens };
  };
  const handle = async (url: string | undefined, b: Record<string, unknown>): Promise<[number, unknown]> => {
    const stop = (b['stop'] as string[] | undefined) ?? [];
    const maxTokens = (b['max_tokens'] as number | undefined) ?? 16;
    if (url === '/v1/chat/completions') {
      const msgs = b['messages'] as { content: string }[];
      const { text } = await gen([...bos, ...tok.encode(msgs[msgs.length - 1]!.content)], maxTokens, stop);
      return [200, { choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }] }];
    }
    if (url !== '/v1/completions') return [404, { error: { message: `no route ${url}` } }];
    const raw = b['prompt'] as string | string[] | number[] | number[][];
    const prompts: (string | number[])[] = typeof raw === 'string' ? [raw] : Array.isArray(raw) && typeof raw[0] === 'number' ? [raw as number[]] : (raw as (string | number[])[]);
    const choices = [];
    for (const [index, p] of prompts.entries()) {
      const ids = typeof p === 'string' ? [...bos, ...tok.encode(p)] : p;
      const g = await gen(ids, maxTokens, stop);
      if (!b['echo']) {
        choices.push({ index, text: g.text, finish_reason: 'stop' });
        continue;
      }
      const all = [...ids, ...g.tokens];
      const { logprobs, argmax } = await sequenceLogprobs(model, all);
      const skip = typeof p === 'string' ? bos.length : 0;
      const offsets = all.map((_, i) => (i < skip ? 0 : [...tok.decode(all.slice(skip, i), { skipSpecialTokens: true })].length));
      choices.push({
        index,
        text: tok.decode(all.slice(skip), { skipSpecialTokens: true }),
        logprobs: {
          tokens: all.map((id) => tokenText(tok, id)),
          token_logprobs: logprobs,
          top_logprobs: [null, ...argmax.map((a, i) => ({ [tokenText(tok, a)]: a === all[i + 1] ? logprobs[i + 1]! : logprobs[i + 1]! + 1e-3 }))],
          text_offset: offsets,
        },
        finish_reason: 'length',
      });
    }
    return [200, { choices }];
  };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString('utf8')));
    req.on('end', () => {
      let parsed: Record<string, unknown>;
      try {
        parsed = JSON.parse(body) as Record<string, unknown>;
      } catch {
        res.statusCode = 400;
        res.end('{"error":{"message":"invalid JSON"}}');
        return;
      }
      requests.push(parsed);
      handle(req.url, parsed).then(
        ([status, obj]) => {
          res.statusCode = status;
          res.setHeader('content-type', 'application/json');
          res.end(JSON.stringify(obj));
        },
        (e: Error) => {
          res.statusCode = 500;
          res.end(JSON.stringify({ error: { message: e.message } }));
        },
      );
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      resolve({ url: `http://127.0.0.1:${port}/v1`, requests, close: () => new Promise((r) => server.close(() => r())) });
    }),
  );
}
