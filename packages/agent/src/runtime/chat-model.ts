/**
 * The model side of the agent loop: anything that answers a list of messages. `LocalChatModel` runs a
 * core `CausalLM` through a chat template; `ScriptedChatModel` (testing) replays fixed replies.
 */
import { UsageError, type CausalLM, type TextTokenizer } from '@llama-pro/core';
import type { ChatMessage, ToolSpec } from '../messages';
import type { ChatTemplate } from '../templates/chat-template';
import { TextGenerator } from './engine';

export interface ChatCompleteOptions {
  /** New tokens for this reply. */
  maxTokens?: number;
  /** Prompt + reply may not exceed this many tokens (the reply is shortened; finishReason "length"). */
  maxContextTokens?: number;
  temperature?: number;
  topP?: number;
  seed?: number;
  stop?: readonly string[];
  tools?: readonly ToolSpec[];
  signal?: AbortSignal;
  /** Streamed text. */
  onText?: (delta: string) => void;
}

export interface ChatModelResult {
  text: string;
  /** stop = the model ended its turn (EOS or a stop string); length = token limit; aborted = signal. */
  finishReason: 'stop' | 'length' | 'aborted';
  promptTokens: number;
  completionTokens: number;
  /**
   * With finishReason "length": the reply ended because prompt + reply filled the context (the model's
   * window or `maxContextTokens`), not because `maxTokens` ran out. `contextTokens` is that limit.
   */
  contextFull?: boolean;
  contextTokens?: number;
}

export interface ChatModel {
  readonly id: string;
  /** The model's context window in tokens, when known (callers size budgets from it). */
  readonly contextLength?: number;
  complete(messages: readonly ChatMessage[], options?: ChatCompleteOptions): Promise<ChatModelResult>;
}

/** How a chat becomes a prompt (vLLM's chat request fields `add_generation_prompt` / `continue_final_message`). */
export interface PromptOptions {
  /** Append the header that starts a new assistant turn (default true, false with `continueFinalMessage`). */
  addGenerationPrompt?: boolean;
  /** Leave the final message open for the model to continue (default false). */
  continueFinalMessage?: boolean;
}

/** The marker appended to the final message's text to find where it ends in the rendered prompt. */
const CONTINUE_MARK = 'CONTINUE_FINAL_MESSAGE_MARK ';

/** Renders messages to token ids the way a chat model expects them. */
export class ChatPromptBuilder {
  constructor(
    readonly tokenizer: TextTokenizer,
    readonly template: ChatTemplate,
  ) {}

  private special(key: 'bos_token' | 'eos_token'): string | undefined {
    const v = this.tokenizer.config[key];
    if (typeof v === 'string') return v;
    if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
    return undefined;
  }

  /**
   * The prompt text (special tokens as text when the tokenizer has them). `continueFinalMessage` leaves the last
   * message open so the model continues it (a prefilled reply), as transformers' `apply_chat_template(...,
   * continue_final_message=True)` does: the message is rendered with a marker after its text and the prompt is cut at
   * the marker (or just before it, without the whitespace, where the template trims the text). It cannot be combined
   * with `addGenerationPrompt` (both on is a UsageError, as in transformers and vLLM).
   */
  text(messages: readonly ChatMessage[], tools?: readonly ToolSpec[], options: PromptOptions = {}): string {
    const addGenerationPrompt = options.addGenerationPrompt ?? !options.continueFinalMessage;
    const specials = { tools, bosToken: this.special('bos_token') ?? '', eosToken: this.special('eos_token') ?? '' };
    if (!options.continueFinalMessage) return this.template.render(messages, { ...specials, addGenerationPrompt });
    if (addGenerationPrompt) throw new UsageError('continue_final_message and add_generation_prompt cannot both be true: send add_generation_prompt: false to continue the final message');
    const last = messages[messages.length - 1];
    if (!last || !last.content) throw new UsageError('continue_final_message is set but the final message has no text to continue');
    const marked = [...messages.slice(0, -1), { ...last, content: last.content + CONTINUE_MARK } as ChatMessage];
    const rendered = this.template.render(marked, { ...specials, addGenerationPrompt: false });
    const at = rendered.lastIndexOf(CONTINUE_MARK.trim());
    if (at < 0 || !rendered.includes(last.content.trim())) throw new UsageError(`continue_final_message is set but the "${this.template.name}" chat template does not render the final message's text, so it cannot be continued`);
    return rendered.startsWith(CONTINUE_MARK, at) ? rendered.slice(0, at) : rendered.slice(0, at).trimEnd();
  }

  /** Prompt ids, with BOS as the template's `bos` mode says. */
  ids(messages: readonly ChatMessage[], tools?: readonly ToolSpec[], options: PromptOptions = {}): number[] {
    const ids = this.tokenizer.encode(this.text(messages, tools, options));
    const bos = this.tokenizer.bosTokenId;
    const mode = this.template.bos;
    const prepend = mode === 'prepend' || (mode === 'render' && this.special('bos_token') === undefined);
    if (prepend && bos !== null && ids[0] !== bos) ids.unshift(bos);
    if (ids.length === 0) throw new UsageError('the chat renders to an empty prompt');
    return ids;
  }

  /** Stop strings of the template that are ordinary text (special tokens are in `stopTokenIds`). */
  get stop(): readonly string[] {
    return this.template.stop.filter((s) => this.specialId(s) === null);
  }

  /** Template stop strings that are single special tokens (decoded text skips them, so they stop by id). */
  get stopTokenIds(): number[] {
    return this.template.stop.map((s) => this.specialId(s)).filter((id): id is number => id !== null);
  }

  private specialId(s: string): number | null {
    const ids = this.tokenizer.encode(s);
    return ids.length === 1 && this.tokenizer.decode(ids, { skipSpecialTokens: true }) === '' ? ids[0]! : null;
  }
}

export interface LocalChatModelOptions {
  id?: string;
  /** Default new tokens per reply. */
  maxTokens?: number;
}

/** A chat model over a core `CausalLM`, its tokenizer and a chat template; core `generate()` samples. */
export class LocalChatModel implements ChatModel {
  readonly id: string;
  readonly generator: TextGenerator;
  readonly prompts: ChatPromptBuilder;

  constructor(model: CausalLM, tokenizer: TextTokenizer, template: ChatTemplate, private readonly options: LocalChatModelOptions = {}) {
    this.id = options.id ?? 'local';
    this.generator = new TextGenerator(model, tokenizer);
    this.prompts = new ChatPromptBuilder(tokenizer, template);
  }

  get contextLength(): number {
    return this.generator.contextLength;
  }

  async complete(messages: readonly ChatMessage[], o: ChatCompleteOptions = {}): Promise<ChatModelResult> {
    const ids = this.prompts.ids(messages, o.tools);
    const ctx = Math.min(o.maxContextTokens ?? Infinity, this.generator.contextLength);
    const room = ctx - ids.length;
    if (room <= 0) return { text: '', finishReason: 'length', promptTokens: ids.length, completionTokens: 0, contextFull: true, contextTokens: ctx };
    const want = o.maxTokens ?? this.options.maxTokens ?? 256;
    const maxTokens = Math.min(want, room);
    const r = await this.generator.generate({
      promptIds: ids,
      maxTokens,
      temperature: o.temperature,
      topP: o.topP,
      seed: o.seed,
      stop: [...this.prompts.stop, ...(o.stop ?? [])],
      stopTokenIds: this.prompts.stopTokenIds,
      signal: o.signal,
      onText: o.onText,
    });
    const finishReason = r.finishReason === 'aborted' ? 'aborted' : r.finishReason === 'length' ? 'length' : 'stop';
    const contextFull = finishReason === 'length' && maxTokens < want && ids.length + r.tokens.length >= ctx;
    return { text: r.text, finishReason, promptTokens: ids.length, completionTokens: r.tokens.length, ...(finishReason === 'length' ? { contextFull, contextTokens: ctx } : {}) };
  }
}
