/**
 * Action parsers (TOKENS.ActionParser) read a model reply and say what the model wants: call tools,
 * give a final answer, or nothing recognizable (the loop then tells the model how to act).
 */
import type { Named } from '@llama-pro/core';
import { TOOL_CALL_CLOSE, TOOL_CALL_OPEN } from '../constants';

export interface ParsedToolCall {
  readonly name: string;
  readonly arguments: unknown;
}

export type Action =
  | { readonly type: 'tool_calls'; readonly calls: readonly ParsedToolCall[]; readonly content: string }
  | { readonly type: 'final'; readonly answer: string }
  | { readonly type: 'invalid'; readonly error: string }
  | { readonly type: 'none' };

export interface ActionParser extends Named {
  readonly name: string;
  /**
   * How observations go back: "tool" = assistant message with tool_calls + tool messages (OpenAI);
   * "user" = the reply stays text and the observation is a user message (MINT).
   */
  readonly observationRole: 'tool' | 'user';
  /** Whether the model should be given the tool list (JSON schemas) in its prompt. */
  readonly offersTools: boolean;
  parse(text: string): Action;
}

function toCall(v: unknown): ParsedToolCall | string {
  if (!v || typeof v !== 'object' || Array.isArray(v)) return 'a tool call must be a JSON object {"name": ..., "arguments": {...}}';
  const o = v as Record<string, unknown>;
  const fn = (o['function'] && typeof o['function'] === 'object' ? o['function'] : o) as Record<string, unknown>;
  const name = fn['name'];
  if (typeof name !== 'string' || !name) return 'a tool call needs a "name" string';
  let args = fn['arguments'] ?? fn['parameters'] ?? {};
  if (typeof args === 'string') {
    try {
      args = JSON.parse(args);
    } catch {
      return `the arguments of "${name}" are not valid JSON`;
    }
  }
  return { name, arguments: args };
}

function parseJson(text: string): { ok: true; value: unknown } | { ok: false; error: string } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (e) {
    return { ok: false, error: (e as Error).message };
  }
}

/**
 * OpenAI-style JSON tool calls: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks
 * (as the built-in templates ask for), or a reply that is only such a JSON object / a list of them /
 * `{"tool_calls": [...]}` (optionally in a ```json fence). Any other reply is the final answer.
 */
export class JsonToolCallParser implements ActionParser {
  readonly name = 'json-tool-calls';
  readonly observationRole = 'tool' as const;
  readonly offersTools = true;

  parse(text: string): Action {
    const calls: ParsedToolCall[] = [];
    if (text.includes(TOOL_CALL_OPEN)) {
      let rest = text;
      let content = '';
      for (;;) {
        const i = rest.indexOf(TOOL_CALL_OPEN);
        if (i < 0) break;
        content += rest.slice(0, i);
        const j = rest.indexOf(TOOL_CALL_CLOSE, i);
        const body = (j < 0 ? rest.slice(i + TOOL_CALL_OPEN.length) : rest.slice(i + TOOL_CALL_OPEN.length, j)).trim();
        const parsed = parseJson(body);
        if (!parsed.ok) return { type: 'invalid', error: `the tool call ${body.slice(0, 200)} is not valid JSON (${parsed.error})` };
        const call = toCall(parsed.value);
        if (typeof call === 'string') return { type: 'invalid', error: call };
        calls.push(call);
        if (j < 0) {
          rest = '';
          break;
        }
        rest = rest.slice(j + TOOL_CALL_CLOSE.length);
      }
      return { type: 'tool_calls', calls, content: (content + rest).trim() };
    }
    const trimmed = text.trim().replace(/^```(?:json)?\s*\n([\s\S]*?)\n?```$/, '$1').trim();
    if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
      const parsed = parseJson(trimmed);
      if (parsed.ok) {
        const v = parsed.value as Record<string, unknown> | unknown[];
        const list = Array.isArray(v) ? v : Array.isArray(v['tool_calls']) ? (v['tool_calls'] as unknown[]) : 'name' in v || 'function' in v ? [v] : null;
        if (list && list.length > 0) {
          for (const item of list) {
            const call = toCall(item);
            if (typeof call === 'string') return { type: 'invalid', error: call };
            calls.push(call);
          }
          return { type: 'tool_calls', calls, content: '' };
        }
      }
    }
    return { type: 'final', answer: text.trim() };
  }
}

/**
 * MINT's text protocol: Python code in `<execute>...</execute>` or a ```python fence runs in the
 * Python tool; `<solution>...</solution>` is the final answer (it wins when both appear). Anything else
 * is no action.
 */
export class MintActionParser implements ActionParser {
  readonly name = 'mint';
  readonly observationRole = 'user' as const;
  readonly offersTools = false;

  constructor(readonly pythonToolName = 'python') {}

  parse(text: string): Action {
    const sol = /<solution>([\s\S]*?)(?:<\/solution>|$)/.exec(text);
    if (sol) return { type: 'final', answer: sol[1]!.trim() };
    const exec = /<execute>([\s\S]*?)(?:<\/execute>|$)/.exec(text);
    const fence = exec ? null : /```(?:python|py)[ \t]*\n([\s\S]*?)(?:```|$)/.exec(text);
    const code = exec?.[1] ?? fence?.[1];
    if (code !== undefined && code.trim()) {
      return { type: 'tool_calls', calls: [{ name: this.pythonToolName, arguments: { code: code.replace(/^\n+|\s+$/g, '') } }], content: text };
    }
    return { type: 'none' };
  }
}

export function builtinActionParsers(): ActionParser[] {
  return [new JsonToolCallParser(), new MintActionParser()];
}
