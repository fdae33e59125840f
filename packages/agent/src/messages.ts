/** Typed chat messages, in the shape OpenAI's chat API uses (so the server can pass them through). */

export interface ToolCall {
  readonly id: string;
  readonly type: 'function';
  readonly function: {
    readonly name: string;
    /** JSON text of the arguments, as OpenAI sends it. */
    readonly arguments: string;
  };
}

export interface SystemMessage {
  readonly role: 'system';
  readonly content: string;
}
export interface UserMessage {
  readonly role: 'user';
  readonly content: string;
}
export interface AssistantMessage {
  readonly role: 'assistant';
  readonly content: string | null;
  readonly tool_calls?: readonly ToolCall[];
}
export interface ToolMessage {
  readonly role: 'tool';
  readonly content: string;
  readonly tool_call_id: string;
  /** Tool name (informative; templates may show it). */
  readonly name?: string;
}

export type ChatMessage = SystemMessage | UserMessage | AssistantMessage | ToolMessage;
export type Role = ChatMessage['role'];

/** A tool as described to a model and to the OpenAI API (`{type: "function", function: {...}}`). */
export interface ToolSpec {
  readonly type: 'function';
  readonly function: {
    readonly name: string;
    readonly description?: string;
    readonly parameters?: Record<string, unknown>;
  };
}

let callCounter = 0;
/** A fresh tool-call id (`call_<n>_<random>`). */
export function newToolCallId(): string {
  callCounter += 1;
  return `call_${callCounter.toString(36)}${Math.random().toString(36).slice(2, 10)}`;
}

/** The text content of a message ("" for an assistant message that only calls tools). */
export function messageText(m: ChatMessage): string {
  return m.content ?? '';
}
