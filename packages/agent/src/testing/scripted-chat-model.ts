import type { ChatMessage } from '../messages';
import type { ChatCompleteOptions, ChatModel, ChatModelResult } from '../runtime/chat-model';

export type ScriptedReply = string | ((messages: readonly ChatMessage[], options: ChatCompleteOptions) => string);

/**
 * A deterministic chat model for tests: returns its replies in order. Token counts are characters
 * (prompt = all message text), so budgets are predictable. Runs out → throws (a test bug).
 */
export class ScriptedChatModel implements ChatModel {
  readonly id = 'scripted';
  readonly calls: { messages: ChatMessage[]; options: ChatCompleteOptions }[] = [];
  private next = 0;

  constructor(private readonly replies: readonly ScriptedReply[]) {}

  async complete(messages: readonly ChatMessage[], options: ChatCompleteOptions = {}): Promise<ChatModelResult> {
    this.calls.push({ messages: messages.map((m) => ({ ...m })), options });
    if (options.signal?.aborted) return { text: '', finishReason: 'aborted', promptTokens: 0, completionTokens: 0 };
    const reply = this.replies[this.next++];
    if (reply === undefined) throw new Error(`ScriptedChatModel has only ${this.replies.length} replies`);
    let text = typeof reply === 'function' ? reply(messages, options) : reply;
    const promptTokens = messages.reduce((n, m) => n + (m.content ?? '').length, 0);
    let finishReason: ChatModelResult['finishReason'] = 'stop';
    const room = Math.min(options.maxTokens ?? Infinity, (options.maxContextTokens ?? Infinity) - promptTokens);
    if (text.length > room) {
      text = text.slice(0, Math.max(0, room));
      finishReason = 'length';
    }
    options.onText?.(text);
    return { text, finishReason, promptTokens, completionTokens: text.length };
  }
}
