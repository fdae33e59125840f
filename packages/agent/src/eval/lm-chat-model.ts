import type { LanguageModel } from '@llama-pro/core';
import type { ChatMessage } from '../messages';
import type { ChatCompleteOptions, ChatModel, ChatModelResult } from '../runtime/chat-model';
import type { ChatTemplate } from '../templates/chat-template';

/**
 * A chat model over core's `LanguageModel` (`generateUntil`), so agent tasks run on anything the
 * evaluators run on (local backends, remote OpenAI-compatible endpoints). The contract has no token
 * counts: `countTokens` estimates them (default: characters / 4, rounded up) for the token budget.
 */
export class LanguageModelChatModel implements ChatModel {
  readonly id: string;

  constructor(
    private readonly lm: LanguageModel,
    private readonly template: ChatTemplate,
    private readonly countTokens: (text: string) => number = (t) => Math.ceil(t.length / 4),
  ) {
    this.id = lm.name;
  }

  async complete(messages: readonly ChatMessage[], o: ChatCompleteOptions = {}): Promise<ChatModelResult> {
    const context = this.template.render(messages, { tools: o.tools });
    const promptTokens = this.countTokens(context);
    if (o.signal?.aborted) return { text: '', finishReason: 'aborted', promptTokens, completionTokens: 0 };
    const room = Math.min(o.maxTokens ?? 256, (o.maxContextTokens ?? Infinity) - promptTokens);
    if (room <= 0) return { text: '', finishReason: 'length', promptTokens, completionTokens: 0 };
    const [text = ''] = await this.lm.generateUntil([{ context, until: [...this.template.stop, ...(o.stop ?? [])], maxGenTokens: room, temperature: o.temperature, seed: o.seed }]);
    const completionTokens = this.countTokens(text);
    o.onText?.(text);
    return { text, finishReason: completionTokens >= room ? 'length' : 'stop', promptTokens, completionTokens };
  }
}
