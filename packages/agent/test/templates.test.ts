import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadTokenizer, RegistryError } from '@llama-pro/core';
import { ChatMLTemplate, ChatPromptBuilder, JinjaChatTemplate, Llama2ChatTemplate, PlainChatTemplate, resolveChatTemplate, toolSystemPrompt, type ChatMessage, type ChatTemplate } from '../src';
import { writeCharTokenizer } from '../src/testing';

const chat: ChatMessage[] = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Hi' },
  { role: 'assistant', content: 'Hello.' },
  { role: 'user', content: 'Add 2 and 3' },
];

describe('built-in chat templates (documented formats)', () => {
  test('llama-2: system folded into the first [INST], assistant turns closed by </s>', () => {
    expect(new Llama2ChatTemplate().render(chat)).toBe('<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi [/INST] Hello. </s><s>[INST] Add 2 and 3 [/INST]');
  });

  test('llama-2 without a system message, and with tokenizer-given special tokens', () => {
    expect(new Llama2ChatTemplate().render([{ role: 'user', content: 'Hi' }], { bosToken: '<BOS>', eosToken: '<EOS>' })).toBe('<BOS>[INST] Hi [/INST]');
  });

  test('llama-2 puts tool results in the next user turn', () => {
    const text = new Llama2ChatTemplate().render([
      { role: 'user', content: 'Add' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'add', arguments: '{"a":2}' } }] },
      { role: 'tool', tool_call_id: 'c1', content: '5' },
    ]);
    expect(text).toBe('<s>[INST] Add [/INST] <tool_call>{"name":"add","arguments":{"a":2}}</tool_call> </s><s>[INST] Observation: 5 [/INST]');
  });

  test('chatml: <|im_start|>role\\ncontent<|im_end|>\\n and an assistant header', () => {
    expect(new ChatMLTemplate().render(chat)).toBe(
      '<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nAdd 2 and 3<|im_end|>\n<|im_start|>assistant\n',
    );
    expect(new ChatMLTemplate().render(chat.slice(0, 2), { addGenerationPrompt: false })).toBe('<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n');
  });

  test('plain: Role: text blocks ending with "Assistant:"', () => {
    expect(new PlainChatTemplate().render(chat)).toBe('System: You are terse.\n\nUser: Hi\n\nAssistant: Hello.\n\nUser: Add 2 and 3\n\nAssistant:');
  });

  test('tools become a system prompt for templates that do not render them', () => {
    const tools = [{ type: 'function' as const, function: { name: 'add', description: 'adds', parameters: { type: 'object' } } }];
    const text = new ChatMLTemplate().render([{ role: 'user', content: 'x' }], { tools });
    expect(text).toBe(`<|im_start|>system\n${toolSystemPrompt(tools)}<|im_end|>\n<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n`);
    expect(toolSystemPrompt(tools)).toContain('{"name":"add","description":"adds","parameters":{"type":"object"}}');
  });

  test('an empty chat is an error', () => {
    expect(() => new ChatMLTemplate().render([])).toThrow(/at least one message/);
  });
});

// A Zephyr-style template written for this test: <|role|>\ncontent</s>\n, assistant header at the end.
const ZEPHYR_LIKE =
  "{% for m in messages %}{{ '<|' + m.role + '|>\\n' + m.content + eos_token + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}";
const TOOLS_AWARE = "{% if tools %}{% for t in tools %}[{{ t.function.name }}]{% endfor %}{% endif %}{% for m in messages %}{{ m.role }}={{ m.content }};{% endfor %}";

describe('Jinja templates from tokenizer_config.json', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'agent-tpl-'));
    await writeCharTokenizer(dir, ZEPHYR_LIKE);
  });
  afterAll(() => fsp.rm(dir, { recursive: true, force: true }));

  test('the tokenizer template is used by default and sees eos_token', async () => {
    const tok = await loadTokenizer(dir);
    const t = resolveChatTemplate(tok, undefined);
    expect(t).toBeInstanceOf(JinjaChatTemplate);
    expect(t.render([{ role: 'system', content: 'S' }, { role: 'user', content: 'U' }])).toBe('<|system|>\nS</s>\n<|user|>\nU</s>\n<|assistant|>\n');
  });

  test('a built-in template overrides by name; unknown names list the known ones', async () => {
    const tok = await loadTokenizer(dir);
    expect(resolveChatTemplate(tok, 'chatml').name).toBe('chatml');
    expect(() => resolveChatTemplate(tok, 'vicuna')).toThrow(RegistryError);
    expect(() => resolveChatTemplate(tok, 'vicuna')).toThrow(/chatml, llama-2, plain/);
  });

  test('without a tokenizer template the fallback (plain) is used', () => {
    expect(resolveChatTemplate({ chatTemplate: null, config: {} }, 'auto').name).toBe('plain');
  });

  test('named template lists (chat_template as [{name, template}]) use "default"', () => {
    const t = resolveChatTemplate({ chatTemplate: null, config: { chat_template: [{ name: 'tool_use', template: 'T' }, { name: 'default', template: 'D{{ messages | length }}' }] } }, undefined);
    expect(t.render([{ role: 'user', content: 'x' }])).toBe('D1');
  });

  test('templates that mention tools get them; others get the tool system prompt', () => {
    const tools = [{ type: 'function' as const, function: { name: 'add' } }];
    const aware = new JinjaChatTemplate('t', TOOLS_AWARE);
    expect(aware.handlesTools).toBe(true);
    expect(aware.render([{ role: 'user', content: 'hi' }], { tools })).toBe('[add]user=hi;');
  });

  test('a broken template is a typed error naming the template', () => {
    expect(() => new JinjaChatTemplate('broken', '{% for m in messages %}')).toThrow(/chat template "broken"/);
    const raising = new JinjaChatTemplate('strict', "{{ raise_exception('roles must alternate') }}");
    expect(() => raising.render([{ role: 'user', content: 'x' }])).toThrow(/roles must alternate/);
  });
});

describe('prompt ids and BOS', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'agent-bos-'));
    await writeCharTokenizer(dir, "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}");
  });
  afterAll(() => fsp.rm(dir, { recursive: true, force: true }));

  test('Jinja templates place BOS themselves; plain prepends the id; chatml has none; llama-2 renders <s>', async () => {
    const tok = await loadTokenizer(dir);
    const msgs: ChatMessage[] = [{ role: 'user', content: 'ab' }];
    const ids = (t: ChatTemplate): number[] => new ChatPromptBuilder(tok, t).ids(msgs);
    const [a, b] = tok.encode('ab');
    expect(ids(resolveChatTemplate(tok, undefined))).toEqual([1, a, b]);
    expect(ids(new PlainChatTemplate())).toEqual([1, ...tok.encode('User: ab\n\nAssistant:')]);
    expect(ids(new ChatMLTemplate())).toEqual(tok.encode('<|im_start|>user\nab<|im_end|>\n<|im_start|>assistant\n'));
    expect(ids(new ChatMLTemplate())[0]).toBe(3);
    expect(ids(new Llama2ChatTemplate())).toEqual([1, ...tok.encode('[INST] ab [/INST]')]);
  });

  test('special-token stop strings stop by id, text ones by string', async () => {
    const tok = await loadTokenizer(dir);
    const chatml = new ChatPromptBuilder(tok, new ChatMLTemplate());
    expect(chatml.stopTokenIds).toEqual([4]);
    expect(chatml.stop).toEqual([]);
    const plain = new ChatPromptBuilder(tok, new PlainChatTemplate());
    expect(plain.stopTokenIds).toEqual([]);
    expect(plain.stop).toEqual(['\n\nUser:', '\n\nObservation:']);
  });
});

// Expected prompts: transformers 5.18 `render_jinja_template(..., continue_final_message=True,
// add_generation_prompt=False)` (what `apply_chat_template` calls) on these templates, run by hand.
const TRIMMING = "{% for m in messages %}{{ '<|' + m.role + '|>\\n' + (m.content | trim) + eos_token + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}";
const USER_ONLY = "{% for m in messages %}{% if m.role == 'user' %}{{ 'U:' + m.content + '\\n' }}{% endif %}{% endfor %}";
describe('continue_final_message (a prefilled reply the model continues)', () => {
  const prefill: ChatMessage[] = [
    { role: 'user', content: 'Write is_even' },
    { role: 'assistant', content: 'Here is the completed function:\n```python\n' },
  ];
  const spaced: ChatMessage[] = [
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: 'Sure thing  ' },
  ];
  let dirs: string[] = [];
  const builder = async (template: string): Promise<ChatPromptBuilder> => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'agent-cfm-'));
    dirs.push(dir);
    await writeCharTokenizer(dir, template);
    const tok = await loadTokenizer(dir);
    return new ChatPromptBuilder(tok, resolveChatTemplate(tok, undefined));
  };
  afterAll(async () => {
    for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
    dirs = [];
  });

  test('a template that keeps the text: the prompt ends right after it, whitespace included', async () => {
    const b = await builder(ZEPHYR_LIKE);
    expect(b.text(prefill, undefined, { continueFinalMessage: true })).toBe('<|user|>\nWrite is_even</s>\n<|assistant|>\nHere is the completed function:\n```python\n');
    expect(b.text(spaced, undefined, { continueFinalMessage: true, addGenerationPrompt: false })).toBe('<|user|>\nHi</s>\n<|assistant|>\nSure thing  ');
    // Without it the assistant turn is closed and a new one starts (vLLM's default, add_generation_prompt true).
    expect(b.text(spaced)).toBe('<|user|>\nHi</s>\n<|assistant|>\nSure thing  </s>\n<|assistant|>\n');
    expect(b.ids(spaced, undefined, { continueFinalMessage: true })).toEqual(b.tokenizer.encode('<|user|>\nHi</s>\n<|assistant|>\nSure thing  '));
  });

  test('a template that trims the text: the prompt ends at the trimmed text', async () => {
    const b = await builder(TRIMMING);
    expect(b.text(prefill, undefined, { continueFinalMessage: true })).toBe('<|user|>\nWrite is_even</s>\n<|assistant|>\nHere is the completed function:\n```python');
    expect(b.text(spaced, undefined, { continueFinalMessage: true })).toBe('<|user|>\nHi</s>\n<|assistant|>\nSure thing');
  });

  test('built-in templates continue the final message too', () => {
    // transformers 5.18 on the ChatML Jinja template (the one Qwen2 / OpenHermes ship) gives the same string.
    const tok = { encode: (s: string) => [...s].map((c) => c.charCodeAt(0)), bosTokenId: null, config: {} } as unknown as ConstructorParameters<typeof ChatPromptBuilder>[0];
    expect(new ChatPromptBuilder(tok, new ChatMLTemplate()).text(spaced, undefined, { continueFinalMessage: true })).toBe('<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nSure thing  ');
  });

  test('refused: both flags on, no final text, a template that drops the final message (one line naming the problem)', async () => {
    const b = await builder(ZEPHYR_LIKE);
    expect(() => b.text(prefill, undefined, { continueFinalMessage: true, addGenerationPrompt: true })).toThrow(/continue_final_message and add_generation_prompt cannot both be true/);
    expect(() => b.text([{ role: 'user', content: 'x' }, { role: 'assistant', content: null }], undefined, { continueFinalMessage: true })).toThrow(/final message has no text to continue/);
    const dropping = await builder(USER_ONLY);
    expect(() => dropping.text(prefill, undefined, { continueFinalMessage: true })).toThrow(/does not render the final message's text/);
  });
});
