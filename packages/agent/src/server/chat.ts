/** `POST /v1/chat/completions`: chat template, tools → tool_calls (tool_choice auto/none/required/named), n, SSE. */
import { randomUUID } from 'node:crypto';
import type { Hono } from 'hono';
import { SERVER_DEFAULTS, TOOL_CALL_CLOSE, TOOL_CALL_OPEN } from '../constants';
import { newToolCallId, type ChatMessage, type ToolCall, type ToolSpec } from '../messages';
import type { TextGenerationResult } from '../runtime/engine';
import { checkModel } from './checks';
import { finishReason } from './completions';
import { generateCounted, requestSignal, tokenText, type ServerContext } from './context';
import { ApiError } from './errors';
import { asList, checkLength, checkWork, logitAdjuster, promptOptionsOf, readJson, sampling, textOf } from './request';
import { chatRequestSchema, type ChatRequest } from './schemas';
import { sse } from './sse';
import { SchemaError, VocabTrie, compileSchema, grammarMask, initialState, toolCallNode } from './json-grammar';

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

async function chatLogprobs(sc: ServerContext, ids: number[], promptLen: number, top: number): Promise<Record<string, unknown>> {
  const all = (await sc.generator.logprobs(ids, top)).slice(promptLen);
  const entry = (before: readonly number[], token: number, logprob: number): Record<string, unknown> => {
    const s = tokenText(sc, before, token);
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

/**
 * The functions `tool_choice` forces a call to: every tool for "required", the named one for a named function; null
 * for auto / none. The reply is then decoded under the tool-call grammar (structuredOutput), not prefilled.
 */
function forcedTools(sc: ServerContext, body: ChatRequest, tools: ToolSpec[] | undefined): ToolSpec[] | null {
  const choice = body.tool_choice ?? 'auto';
  if (choice === 'auto' || choice === 'none') return null;
  if (!tools) throw new ApiError(400, `tool_choice ${JSON.stringify(choice)} needs "tools"`, 'invalid_request_error', 'tool_choice');
  if (sc.toolParser.name !== 'json-tool-calls') throw new ApiError(400, `tool_choice ${JSON.stringify(choice)} needs the json-tool-calls parser, this server parses tool calls with "${sc.toolParser.name}"`, 'invalid_request_error', 'tool_choice');
  if (choice === 'required') return tools;
  const name = choice.function.name;
  const named = tools.filter((t) => t.function.name === name);
  if (named.length === 0) throw new ApiError(400, `tool_choice names function "${name}", which is not in "tools"`, 'invalid_request_error', 'tool_choice');
  return named;
}

function stopTokenIdsOf(sc: ServerContext): number[] {
  return [...sc.generator.eosIds(), ...sc.prompts.stopTokenIds];
}

type Adjust = (logits: Float32Array, generated: readonly number[]) => void;

function combine(a: Adjust | undefined, b: (() => Adjust) | undefined): (() => Adjust | undefined) {
  return () => {
    const m = b?.();
    if (!a) return m;
    if (!m) return a;
    return (logits, generated) => {
      a(logits, generated);
      m(logits, generated);
    };
  };
}

/**
 * A fresh grammar mask per generation (undefined when the reply is free text): forced tool calls (`tool_choice`
 * "required": one or more `<tool_call>{"name": ..., "arguments": ...}</tool_call>`, one with parallel_tool_calls
 * false; named: one call of it; the arguments follow the function's parameters schema), else `response_format`
 * json_object / json_schema.
 */
function structuredOutput(sc: ServerContext, body: ChatRequest, forced: ToolSpec[] | null, endIds: number[]): (() => Adjust) | undefined {
  const rf = body.response_format;
  if (!forced && (!rf || rf.type === 'text')) return undefined;
  const param = forced ? 'tools' : 'response_format';
  let node;
  try {
    node = forced
      ? // OpenAI: "required" = call one or more tools (several unless parallel_tool_calls is false); a named
        // function = call that function (once).
        toolCallNode(forced.map((t) => t.function), TOOL_CALL_OPEN, TOOL_CALL_CLOSE, sc.jsonLimits, body.tool_choice === 'required' && body.parallel_tool_calls !== false)
      : compileSchema(rf!.type === 'json_object' ? { type: 'object' } : rf!.type === 'json_schema' ? (rf!.json_schema.schema ?? {}) : {}, 'response_format.json_schema.schema', sc.jsonLimits);
  } catch (e) {
    if (e instanceof SchemaError) throw new ApiError(400, e.message, 'invalid_request_error', param, 'invalid_schema');
    throw e;
  }
  sc.vocabTrie ??= new VocabTrie(sc.served.tokenizer, sc.vocab);
  const trie = sc.vocabTrie;
  if (trie.allowed(initialState(node)).length === 0) throw new ApiError(400, `no token of the model's vocabulary can start a document for this ${forced ? 'tool call' : 'response_format'}`, 'invalid_request_error', param, 'invalid_schema');
  return () => grammarMask(trie, node, endIds);
}

export function registerChat(app: Hono, sc: ServerContext): void {
  app.post('/v1/chat/completions', async (c) => {
    const body = await readJson(c, chatRequestSchema);
    checkModel(sc, body.model);
    const toolChoice = body.tool_choice ?? 'auto';
    const tools: ToolSpec[] | undefined =
      body.tools?.length && toolChoice !== 'none' ? body.tools.map((t) => ({ type: 'function', function: { name: t.function.name, description: t.function.description, parameters: t.function.parameters } })) : undefined;
    const forced = forcedTools(sc, body, tools);
    let promptIds: number[];
    try {
      promptIds = sc.prompts.ids(chatMessages(body), tools, promptOptionsOf(body));
    } catch (e) {
      throw new ApiError(400, `the messages cannot be rendered with the "${sc.served.template.name}" chat template: ${(e as Error).message}`, 'invalid_request_error', 'messages');
    }
    const n = body.n ?? 1;
    const maxTokens = checkLength(sc.contextLength, promptIds.length, body.max_completion_tokens ?? body.max_tokens, SERVER_DEFAULTS.chatMaxTokens, body.max_completion_tokens ? 'max_completion_tokens' : 'max_tokens');
    checkWork(sc.limits, [{ promptTokens: promptIds.length, maxTokens }], n);
    const s = sampling(body);
    const adjustLogits = combine(logitAdjuster(body, sc.vocab), structuredOutput(sc, body, forced, stopTokenIdsOf(sc)));
    const stop = [...sc.prompts.stop, ...asList(body.stop)];
    const stopTokenIds = sc.prompts.stopTokenIds;
    const id = `chatcmpl-${randomUUID()}`;
    const top = body.logprobs ? (body.top_logprobs ?? 0) : -1;
    sc.log?.(`chat ${id}: ${body.messages.length} messages, ${promptIds.length} prompt tokens, tools=${tools?.length ?? 0}, n=${n}, stream=${!!body.stream}`);
    const base = { id, object: 'chat.completion', created: Math.floor(Date.now() / 1000), model: sc.served.id, system_fingerprint: null };

    const toMessage = (out: TextGenerationResult): { message: Record<string, unknown>; finish: string } => {
      if (tools) {
        const action = sc.toolParser.parse(out.text);
        if (action.type === 'tool_calls' && action.calls.length > 0) {
          const calls: ToolCall[] = action.calls.map((call) => ({ id: newToolCallId(), type: 'function', function: { name: call.name, arguments: JSON.stringify(call.arguments ?? {}) } }));
          return { message: { role: 'assistant', content: action.content || null, tool_calls: calls, refusal: null }, finish: 'tool_calls' };
        }
        // Under the tool-call grammar a call is incomplete only when max_tokens (finish_reason "length") or one of the
        // request's stop strings (finish_reason "stop") cut it: the reply is returned as it is, as OpenAI / vLLM
        // return a cut structured output.
        if (forced) sc.log?.(`chat ${id}: tool_choice ${JSON.stringify(toolChoice)}: the call was cut (${finishReason(out)})`);
      }
      return { message: { role: 'assistant', content: out.text, refusal: null }, finish: finishReason(out) };
    };
    const usage = (outs: TextGenerationResult[]): Record<string, number> => {
      const completion = outs.reduce((k, o) => k + o.tokens.length, 0);
      return { prompt_tokens: promptIds.length, completion_tokens: completion, total_tokens: promptIds.length + completion };
    };

    // The n choices join the running decode batch together (choice j samples with seed + j, its own grammar mask).
    const requests = (signal: AbortSignal, onText?: (index: number) => ((delta: string) => void) | undefined) =>
      Array.from({ length: n }, (_, index) => ({ promptIds, maxTokens, ...s, seed: s.seed + index, stop, stopTokenIds, signal, adjustLogits: adjustLogits(), onText: onText?.(index) }));
    const logprobsOf = (out: TextGenerationResult, signal: AbortSignal): Promise<Record<string, unknown> | null> =>
      top >= 0 ? sc.queue.run(() => chatLogprobs(sc, [...promptIds, ...out.tokens], promptIds.length, top), signal) : Promise.resolve(null);

    if (body.stream) {
      const includeUsage = body.stream_options?.include_usage ?? false;
      const chunkBase = { ...base, object: 'chat.completion.chunk' };
      return sse(sc, c, async (send, signal) => {
        const outs: TextGenerationResult[] = [];
        const chunk = (index: number, delta: Record<string, unknown>, finish: string | null, lp: unknown = null): Record<string, unknown> => ({ ...chunkBase, choices: [{ index, delta, logprobs: lp, finish_reason: finish }], ...(includeUsage ? { usage: null } : {}) });
        // With tools the reply may turn out to be a tool call, so it is sent whole at the end.
        const streamText = !tools && top < 0;
        const runs = generateCounted(sc, requests(signal, (index) => (streamText ? (d) => send(chunk(index, { content: d }, null)) : undefined)));
        for (let index = 0; index < n; index++) send(chunk(index, { role: 'assistant', content: '' }, null));
        await Promise.all(
          runs.map(async (run, index) => {
            const out = await run;
            if (signal.aborted) return;
            const lp = await logprobsOf(out, signal);
            outs.push(out);
            const m = toMessage(out);
            if (m.finish === 'tool_calls') {
              const calls = m.message['tool_calls'] as ToolCall[];
              if (m.message['content']) send(chunk(index, { content: m.message['content'] }, null));
              send(chunk(index, { tool_calls: calls.map((call, i) => ({ index: i, id: call.id, type: 'function', function: { name: call.function.name, arguments: call.function.arguments } })) }, null));
            } else if (tools || top >= 0) send(chunk(index, { content: out.text }, null, lp));
            send(chunk(index, {}, m.finish));
          }),
        );
        if (signal.aborted) return;
        if (includeUsage) send({ ...chunkBase, choices: [], usage: usage(outs) });
      });
    }

    const signal = requestSignal(sc, c);
    const results = await Promise.all(
      generateCounted(sc, requests(signal)).map(async (run, index) => {
        const out = await run;
        const lp = await logprobsOf(out, signal);
        const m = toMessage(out);
        return { out, choice: { index, message: m.message, logprobs: lp, finish_reason: m.finish } };
      }),
    );
    const outs = results.map((r) => r.out);
    const choices = results.map((r) => r.choice);
    return c.json({ ...base, choices, usage: usage(outs) });
  });
}
