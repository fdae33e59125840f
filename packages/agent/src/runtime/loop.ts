/**
 * The agent loop: ask the model, parse its reply into an action, run tools, hand their results back as
 * observations, repeat. It ends with a `finishReason`, never by throwing on model or tool behaviour:
 *   final     — the parser found a final answer
 *   max_turns — the model had `maxTurns` turns without finishing
 *   length    — the conversation reached the token budget or filled the model's context (`detail` says
 *               which, with the numbers; a prompt that does not fit at all ends here on turn 1)
 *   stop      — `stopWhen` said so, or a tool asked to stop
 *   aborted   — the AbortSignal fired
 * Tool errors, unknown tools, bad arguments, timeouts and truncated output become observations.
 */
import { NamedRegistry } from '@llama-pro/core';
import { AGENT_DEFAULTS } from '../constants';
import { newToolCallId, type ChatMessage, type ToolCall } from '../messages';
import type { Action, ActionParser, ParsedToolCall } from '../parsers/action-parser';
import { truncateOutput } from '../tools/python';
import { AgentSession, toolSpec, type AgentTool, type ToolOutput } from '../tools/tool';
import type { ChatModel } from './chat-model';

export type AgentFinishReason = 'final' | 'max_turns' | 'length' | 'stop' | 'aborted';

export type TraceEvent =
  | { type: 'model'; turn: number; text: string; finishReason: string; promptTokens: number; completionTokens: number; ms: number }
  | { type: 'action'; turn: number; action: Action }
  | {
      type: 'tool';
      turn: number;
      name: string;
      arguments: unknown;
      observation: string;
      isError: boolean;
      timedOut: boolean;
      truncatedChars: number;
      ms: number;
    }
  | { type: 'observation'; turn: number; text: string }
  | { type: 'end'; turn: number; finishReason: AgentFinishReason };

export interface AgentUsage {
  promptTokens: number;
  completionTokens: number;
  /** Largest prompt + reply of one turn (what the token budget bounds). */
  peakContextTokens: number;
}

export interface AgentResult {
  finishReason: AgentFinishReason;
  /** The final answer (finishReason "final"), else null. */
  answer: string | null;
  /** The whole conversation, including the model's replies and the observations. */
  messages: ChatMessage[];
  trace: TraceEvent[];
  turns: number;
  usage: AgentUsage;
  /** Why the run ended, in words, when the reason alone does not say (finishReason "length"). */
  detail?: string;
}

export interface RunAgentOptions {
  model: ChatModel;
  parser: ActionParser;
  tools?: readonly AgentTool[] | NamedRegistry<AgentTool>;
  /** The user's task (appended as a user message). */
  task?: string;
  /** Conversation to start from (system prompt, few-shot turns, ...). */
  messages?: readonly ChatMessage[];
  system?: string;
  maxTurns?: number;
  /** Prompt + reply tokens any turn may use; reaching it ends the run with "length". */
  tokenBudget?: number;
  maxTokensPerTurn?: number;
  temperature?: number;
  seed?: number;
  stop?: readonly string[];
  signal?: AbortSignal;
  maxObservationChars?: number;
  toolTimeoutMs?: number;
  /**
   * Judges a final answer: null accepts it (finishReason "final"); a string rejects it and is sent to
   * the model as feedback, and the loop goes on (MINT's wrong-answer feedback).
   */
  checkAnswer?: (answer: string, turn: number) => Promise<string | null>;
  /** Checked after every turn; true ends the run with "stop". */
  stopWhen?: (state: { turn: number; trace: readonly TraceEvent[]; messages: readonly ChatMessage[] }) => boolean;
  /** Tools share this session (kept alive by the caller); by default one is created and disposed. */
  session?: AgentSession;
  onEvent?: (e: TraceEvent) => void;
  /** Streamed model text. */
  onText?: (delta: string) => void;
}

function toRegistry(tools: RunAgentOptions['tools']): NamedRegistry<AgentTool> {
  if (tools instanceof NamedRegistry) return tools;
  return new NamedRegistry<AgentTool>('agent tool', tools ?? []);
}

async function runTool(tool: AgentTool, args: unknown, session: AgentSession, signal: AbortSignal | undefined, timeoutMs: number): Promise<ToolOutput> {
  const parsed = tool.parameters.safeParse(args);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(arguments)'}: ${i.message}`).join('; ');
    return { output: `Error: invalid arguments for tool "${tool.name}": ${issues}`, isError: true };
  }
  const ctl = new AbortController();
  const onAbort = (): void => ctl.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<ToolOutput>((resolve) => {
    timer = setTimeout(() => {
      ctl.abort();
      resolve({ output: `Error: tool "${tool.name}" timed out after ${timeoutMs / 1000} s`, isError: true, timedOut: true });
    }, timeoutMs);
  });
  try {
    const run = tool.execute(parsed.data, { signal: ctl.signal, session }).then(
      (r): ToolOutput => (typeof r === 'string' ? { output: r } : r),
      (e: unknown): ToolOutput => ({ output: `Error: ${(e as Error)?.message ?? String(e)}`, isError: true }),
    );
    return await Promise.race([run, timeout]);
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}

/** Runs the agent loop to a finishReason. */
export async function runAgent(o: RunAgentOptions): Promise<AgentResult> {
  const tools = toRegistry(o.tools);
  const maxTurns = o.maxTurns ?? AGENT_DEFAULTS.maxTurns;
  const budget = o.tokenBudget ?? AGENT_DEFAULTS.tokenBudget;
  const maxObs = o.maxObservationChars ?? AGENT_DEFAULTS.maxObservationChars;
  const messages: ChatMessage[] = [];
  if (o.system !== undefined) messages.push({ role: 'system', content: o.system });
  messages.push(...(o.messages ?? []));
  if (o.task !== undefined) messages.push({ role: 'user', content: o.task });
  const trace: TraceEvent[] = [];
  const usage: AgentUsage = { promptTokens: 0, completionTokens: 0, peakContextTokens: 0 };
  const emit = (e: TraceEvent): void => {
    trace.push(e);
    o.onEvent?.(e);
  };
  const session = o.session ?? new AgentSession();
  const specs = o.parser.offersTools && tools.names().length > 0 ? tools.list().map(toolSpec) : undefined;
  let turn = 0;
  let answer: string | null = null;
  let detail: string | undefined;
  const end = (finishReason: AgentFinishReason): AgentResult => {
    emit({ type: 'end', turn, finishReason });
    return { finishReason, answer, messages, trace, turns: turn, usage, ...(detail !== undefined ? { detail } : {}) };
  };
  try {
    for (;;) {
      if (o.signal?.aborted) return end('aborted');
      if (turn >= maxTurns) return end('max_turns');
      turn += 1;
      const t0 = Date.now();
      const r = await o.model.complete(messages, {
        maxTokens: o.maxTokensPerTurn ?? AGENT_DEFAULTS.maxTokensPerTurn,
        maxContextTokens: budget,
        temperature: o.temperature ?? AGENT_DEFAULTS.temperature,
        seed: o.seed,
        stop: o.stop,
        tools: specs,
        signal: o.signal,
        onText: o.onText,
      });
      usage.promptTokens += r.promptTokens;
      usage.completionTokens += r.completionTokens;
      usage.peakContextTokens = Math.max(usage.peakContextTokens, r.promptTokens + r.completionTokens);
      emit({ type: 'model', turn, text: r.text, finishReason: r.finishReason, promptTokens: r.promptTokens, completionTokens: r.completionTokens, ms: Date.now() - t0 });
      if (r.finishReason === 'aborted' || o.signal?.aborted) {
        messages.push({ role: 'assistant', content: r.text });
        return end('aborted');
      }
      const budgetHit = r.finishReason === 'length' && (r.contextFull === true || r.promptTokens + r.completionTokens >= budget);
      if (budgetHit) {
        const limit = r.contextTokens ?? budget;
        const which = limit === o.model.contextLength || limit < budget ? `the model's ${limit}-token context` : `the ${budget}-token budget`;
        detail =
          r.completionTokens > 0
            ? `turn ${turn} filled ${which} (${r.promptTokens} prompt + ${r.completionTokens} reply tokens)`
            : turn === 1
              ? `the prompt is ${r.promptTokens} tokens and does not fit ${which}; shorten the task or system prompt, or use a model with a longer context`
              : `turn ${turn}: the conversation is ${r.promptTokens} tokens and no longer fits ${which}`;
      }
      const action = o.parser.parse(r.text);
      emit({ type: 'action', turn, action });
      if (action.type === 'final') {
        messages.push({ role: 'assistant', content: r.text });
        if (budgetHit) return end('length');
        const feedback = o.checkAnswer ? await o.checkAnswer(action.answer, turn) : null;
        if (feedback === null) {
          answer = action.answer;
          return end('final');
        }
        messages.push({ role: 'user', content: feedback });
        emit({ type: 'observation', turn, text: feedback });
        if (o.signal?.aborted) return end('aborted');
        if (o.stopWhen?.({ turn, trace, messages })) return end('stop');
        continue;
      }
      if (budgetHit) {
        messages.push({ role: 'assistant', content: r.text });
        return end('length');
      }
      let stopRequested = false;
      if (action.type === 'tool_calls') {
        const calls: { call: ParsedToolCall; id: string }[] = action.calls.map((call) => ({ call, id: newToolCallId() }));
        if (o.parser.observationRole === 'tool') {
          const toolCalls: ToolCall[] = calls.map(({ call, id }) => ({ id, type: 'function', function: { name: call.name, arguments: JSON.stringify(call.arguments ?? {}) } }));
          messages.push({ role: 'assistant', content: action.content || null, tool_calls: toolCalls });
        } else messages.push({ role: 'assistant', content: r.text });
        const observations: string[] = [];
        for (const { call, id } of calls) {
          const t1 = Date.now();
          let out: ToolOutput;
          if (!tools.has(call.name)) {
            out = { output: `Error: unknown tool "${call.name}"; available: ${tools.names().join(', ') || '(none)'}`, isError: true };
          } else {
            const tool = tools.get(call.name);
            out = await runTool(tool, call.arguments, session, o.signal, tool.timeoutMs ?? o.toolTimeoutMs ?? AGENT_DEFAULTS.toolTimeoutMs);
          }
          const cut = truncateOutput(out.output, maxObs);
          emit({ type: 'tool', turn, name: call.name, arguments: call.arguments, observation: cut.text, isError: out.isError ?? false, timedOut: out.timedOut ?? false, truncatedChars: cut.cut, ms: Date.now() - t1 });
          if (out.stop) stopRequested = true;
          if (o.parser.observationRole === 'tool') messages.push({ role: 'tool', tool_call_id: id, name: call.name, content: cut.text });
          else observations.push(cut.text);
          if (o.signal?.aborted) break;
        }
        if (observations.length) {
          const text = `Observation:\n${observations.join('\n')}`;
          messages.push({ role: 'user', content: text });
          emit({ type: 'observation', turn, text });
        }
      } else {
        messages.push({ role: 'assistant', content: r.text });
        const text = action.type === 'invalid' ? `Error: ${action.error}. Reply again with a valid action.` : AGENT_DEFAULTS.noActionObservation;
        messages.push({ role: 'user', content: text });
        emit({ type: 'observation', turn, text });
      }
      if (o.signal?.aborted) return end('aborted');
      if (stopRequested || o.stopWhen?.({ turn, trace, messages })) return end('stop');
    }
  } finally {
    if (!o.session) await session.dispose();
  }
}
