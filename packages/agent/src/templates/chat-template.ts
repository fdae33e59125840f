/**
 * Chat templates: turn typed messages into the prompt text a model was trained on. A model's own
 * `chat_template` (tokenizer_config.json) is rendered with @huggingface/jinja; the built-in fallbacks
 * (`llama-2`, `chatml`, `plain`) are selectable by name and registered under TOKENS.ChatTemplate.
 */
import type { Template as JinjaTemplate } from '@huggingface/jinja' with { 'resolution-mode': 'import' };
import { NamedRegistry, type Named, type TextTokenizer } from '@llama-pro/core';
import { TOOL_CALL_CLOSE, TOOL_CALL_OPEN } from '../constants';
import { AgentError } from '../errors';
import type { ChatMessage, ToolSpec } from '../messages';

// The package ships a CommonJS build; its typings are declared ESM-only.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Template } = require('@huggingface/jinja') as typeof import('@huggingface/jinja', { with: { 'resolution-mode': 'import' } });

export interface RenderOptions {
  /** Append the header that starts an assistant turn (default true). */
  addGenerationPrompt?: boolean;
  /** Tools offered to the model; templates that do not render them get a tool system prompt instead. */
  tools?: readonly ToolSpec[];
  /** Special-token strings (default `<s>` / `</s>`, or the tokenizer's). */
  bosToken?: string;
  eosToken?: string;
}

export interface ChatTemplate extends Named {
  readonly name: string;
  /** Whether `render` itself shows `tools` to the model. */
  readonly handlesTools: boolean;
  /** Text stop sequences that end an assistant turn besides EOS (e.g. `<|im_end|>`). */
  readonly stop: readonly string[];
  /**
   * How the prompt gets its BOS token: `render` = the template writes `bosToken` (the id is prepended
   * instead when the tokenizer has no BOS text); `prepend` = the BOS id goes before the rendered text;
   * `none` = no BOS (Jinja templates decide themselves, as in transformers' apply_chat_template).
   */
  readonly bos: 'render' | 'prepend' | 'none';
  render(messages: readonly ChatMessage[], options?: RenderOptions): string;
}

/** Assistant tool calls as text, in the form the `json-tool-calls` parser reads back. */
export function toolCallsAsText(m: ChatMessage): string {
  if (m.role !== 'assistant' || !m.tool_calls?.length) return m.content ?? '';
  const calls = m.tool_calls.map((c) => `${TOOL_CALL_OPEN}${JSON.stringify({ name: c.function.name, arguments: parseArgs(c.function.arguments) })}${TOOL_CALL_CLOSE}`);
  return [m.content ?? '', ...calls].filter((s) => s.length > 0).join('\n');
}

function parseArgs(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * The system prompt that tells a model which tools exist and how to call them (for templates that do
 * not render `tools` themselves).
 */
export function toolSystemPrompt(tools: readonly ToolSpec[]): string {
  const lines = tools.map((t) => JSON.stringify({ name: t.function.name, description: t.function.description ?? '', parameters: t.function.parameters ?? {} }));
  return (
    'You can call these tools:\n' +
    lines.join('\n') +
    `\nTo call a tool, reply with ${TOOL_CALL_OPEN}{"name": "<tool name>", "arguments": {<arguments as JSON>}}${TOOL_CALL_CLOSE}. ` +
    'Tool results come back in messages from the tool. When you have the answer, reply with plain text.'
  );
}

/** Adds the tool system prompt (merged into the first system message, or as a new first message). */
export function withToolPrompt(messages: readonly ChatMessage[], tools: readonly ToolSpec[] | undefined): ChatMessage[] {
  if (!tools?.length) return [...messages];
  const prompt = toolSystemPrompt(tools);
  const first = messages[0];
  if (first?.role === 'system') return [{ role: 'system', content: `${first.content}\n\n${prompt}` }, ...messages.slice(1)];
  return [{ role: 'system', content: prompt }, ...messages];
}

function checkMessages(messages: readonly ChatMessage[]): void {
  if (messages.length === 0) throw new AgentError('a chat needs at least one message', 'CHAT_EMPTY');
}

/**
 * Llama-2 chat: `<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] ...`.
 * Tool results become user turns prefixed with `Observation:`; consecutive user/tool turns merge.
 */
export class Llama2ChatTemplate implements ChatTemplate {
  readonly name = 'llama-2';
  readonly bos = 'render' as const;
  readonly handlesTools = false;
  readonly stop: readonly string[] = [];

  render(messages: readonly ChatMessage[], options: RenderOptions = {}): string {
    checkMessages(messages);
    const bos = options.bosToken ?? '<s>';
    const eos = options.eosToken ?? '</s>';
    const msgs = withToolPrompt(messages, options.tools);
    let system: string | null = null;
    let start = 0;
    if (msgs[0]?.role === 'system') {
      system = msgs[0].content;
      start = 1;
    }
    // Collapse into alternating (user-side, assistant) turns.
    const turns: { user: string[]; assistant: string | null }[] = [];
    for (const m of msgs.slice(start)) {
      if (m.role === 'system') throw new AgentError('llama-2 chat allows a system message only first', 'CHAT_SYSTEM_POSITION');
      if (m.role === 'assistant') {
        if (turns.length === 0) turns.push({ user: [], assistant: null });
        const last = turns[turns.length - 1]!;
        const text = toolCallsAsText(m).trim();
        last.assistant = last.assistant === null ? text : `${last.assistant}\n${text}`;
      } else {
        const text = m.role === 'tool' ? `Observation: ${m.content.trim()}` : m.content.trim();
        const last = turns[turns.length - 1];
        if (last && last.assistant === null) last.user.push(text);
        else turns.push({ user: [text], assistant: null });
      }
    }
    let out = '';
    turns.forEach((t, i) => {
      let user = t.user.join('\n\n');
      if (i === 0 && system !== null) user = `<<SYS>>\n${system.trim()}\n<</SYS>>\n\n${user}`;
      out += `${bos}[INST] ${user} [/INST]`;
      if (t.assistant !== null) out += ` ${t.assistant} ${eos}`;
    });
    if (turns.length === 0 && system !== null) out = `${bos}[INST] <<SYS>>\n${system.trim()}\n<</SYS>>\n\n [/INST]`;
    return out;
  }
}

/** ChatML: `<|im_start|>{role}\n{content}<|im_end|>\n` per message, then `<|im_start|>assistant\n`. */
export class ChatMLTemplate implements ChatTemplate {
  readonly name = 'chatml';
  readonly bos = 'none' as const;
  readonly handlesTools = false;
  readonly stop: readonly string[] = ['<|im_end|>'];

  render(messages: readonly ChatMessage[], options: RenderOptions = {}): string {
    checkMessages(messages);
    let out = '';
    for (const m of withToolPrompt(messages, options.tools)) out += `<|im_start|>${m.role}\n${toolCallsAsText(m)}<|im_end|>\n`;
    if (options.addGenerationPrompt ?? true) out += '<|im_start|>assistant\n';
    return out;
  }
}

const PLAIN_ROLE: Record<ChatMessage['role'], string> = { system: 'System', user: 'User', assistant: 'Assistant', tool: 'Observation' };

/** Plain text: `System: ...\n\nUser: ...\n\nAssistant: ...`, ending with `Assistant:` to prompt a reply. */
export class PlainChatTemplate implements ChatTemplate {
  readonly name = 'plain';
  readonly bos = 'prepend' as const;
  readonly handlesTools = false;
  readonly stop: readonly string[] = ['\n\nUser:', '\n\nObservation:'];

  render(messages: readonly ChatMessage[], options: RenderOptions = {}): string {
    checkMessages(messages);
    const parts = withToolPrompt(messages, options.tools).map((m) => `${PLAIN_ROLE[m.role]}: ${toolCallsAsText(m)}`);
    if (options.addGenerationPrompt ?? true) parts.push('Assistant:');
    return parts.join('\n\n');
  }
}

/** A model's own Jinja chat template (HF `chat_template`), rendered with @huggingface/jinja. */
export class JinjaChatTemplate implements ChatTemplate {
  readonly bos = 'none' as const;
  readonly handlesTools: boolean;
  private readonly template: JinjaTemplate;

  constructor(
    readonly name: string,
    readonly source: string,
    /** Special tokens from tokenizer_config.json (bos_token, eos_token, ...), exposed to the template. */
    private readonly specialTokens: Readonly<Record<string, string>> = {},
    readonly stop: readonly string[] = [],
  ) {
    try {
      this.template = new Template(source);
    } catch (e) {
      throw new AgentError(`chat template "${name}" does not parse: ${(e as Error).message}`, 'TEMPLATE_INVALID');
    }
    this.handlesTools = /\btools\b/.test(source);
  }

  render(messages: readonly ChatMessage[], options: RenderOptions = {}): string {
    checkMessages(messages);
    const msgs = this.handlesTools ? [...messages] : withToolPrompt(messages, options.tools);
    const ctx: Record<string, unknown> = {
      ...this.specialTokens,
      messages: msgs.map((m) => {
        if (m.role !== 'assistant') return { ...m };
        const calls = m.tool_calls?.map((c) => ({ id: c.id, type: c.type, function: { name: c.function.name, arguments: parseArgs(c.function.arguments) } }));
        return calls?.length ? { role: 'assistant', content: m.content ?? '', tool_calls: calls } : { role: 'assistant', content: m.content ?? '' };
      }),
      add_generation_prompt: options.addGenerationPrompt ?? true,
    };
    if (options.bosToken !== undefined) ctx['bos_token'] = options.bosToken;
    if (options.eosToken !== undefined) ctx['eos_token'] = options.eosToken;
    if (ctx['bos_token'] === undefined) ctx['bos_token'] = '';
    if (ctx['eos_token'] === undefined) ctx['eos_token'] = '';
    if (this.handlesTools && options.tools?.length) ctx['tools'] = options.tools;
    try {
      return this.template.render(ctx);
    } catch (e) {
      throw new AgentError(`chat template "${this.name}" failed to render these messages: ${(e as Error).message}`, 'TEMPLATE_RENDER');
    }
  }
}

/** The built-in fallback templates. */
export function builtinChatTemplates(): ChatTemplate[] {
  return [new Llama2ChatTemplate(), new ChatMLTemplate(), new PlainChatTemplate()];
}

export function chatTemplateRegistry(items: Iterable<ChatTemplate> = builtinChatTemplates()): NamedRegistry<ChatTemplate> {
  return new NamedRegistry<ChatTemplate>('chat template', items);
}

function specialTokenStrings(config: Readonly<Record<string, unknown>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token']) {
    const v = config[key];
    if (typeof v === 'string') out[key] = v;
    else if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') out[key] = (v as { content: string }).content;
  }
  return out;
}

/** The Jinja source of a tokenizer's chat template (a string, or the `default` of a named list). */
export function tokenizerTemplateSource(tokenizer: Pick<TextTokenizer, 'chatTemplate' | 'config'>): string | null {
  if (tokenizer.chatTemplate) return tokenizer.chatTemplate;
  const raw = tokenizer.config['chat_template'];
  if (Array.isArray(raw)) {
    const list = raw as { name?: unknown; template?: unknown }[];
    const def = list.find((t) => t.name === 'default') ?? list[0];
    if (def && typeof def.template === 'string') return def.template;
  }
  return null;
}

/**
 * Picks the template for a model: `name` = a registered template name, or `auto` / undefined = the
 * tokenizer's own `chat_template` when it has one, else `fallback` (default `plain`).
 */
export function resolveChatTemplate(
  tokenizer: Pick<TextTokenizer, 'chatTemplate' | 'config'> | null,
  name: string | undefined,
  registry: NamedRegistry<ChatTemplate> = chatTemplateRegistry(),
  fallback = 'plain',
): ChatTemplate {
  if (name && name !== 'auto') return registry.get(name);
  const source = tokenizer ? tokenizerTemplateSource(tokenizer) : null;
  if (source) {
    const specials = specialTokenStrings(tokenizer!.config);
    const stop = source.includes('<|im_end|>') ? ['<|im_end|>'] : source.includes('<|eot_id|>') ? ['<|eot_id|>'] : [];
    return new JinjaChatTemplate('tokenizer', source, specials, stop);
  }
  return registry.get(fallback);
}
