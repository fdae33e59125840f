import { z } from 'zod';
import { AgentSession, JsonToolCallParser, MintActionParser, createPythonTool, defineTool, runAgent, toolSpec, type AgentTool } from '../src';
import { ScriptedChatModel } from '../src/testing';

jest.setTimeout(60_000);

const add = defineTool({
  name: 'add',
  description: 'Adds two integers.',
  parameters: z.object({ a: z.number().int(), b: z.number().int() }),
  async execute({ a, b }) {
    return String(a + b);
  },
});
const boom = defineTool({
  name: 'boom',
  description: 'Always fails.',
  parameters: z.object({}),
  async execute() {
    throw new Error('disk on fire');
  },
});
const slow = defineTool({
  name: 'slow',
  description: 'Never finishes in time.',
  parameters: z.object({}),
  timeoutMs: 200,
  execute: (_args, ctx) => new Promise<string>((resolve) => ctx.signal.addEventListener('abort', () => resolve('late'))),
});
const chatty = defineTool({ name: 'chatty', description: 'Prints a lot.', parameters: z.object({}), execute: async () => 'y'.repeat(5000) });
const done = defineTool({ name: 'done', description: 'Ends the run.', parameters: z.object({}), execute: async () => ({ output: 'ok', stop: true }) });

const call = (name: string, args: unknown): string => `<tool_call>${JSON.stringify({ name, arguments: args })}</tool_call>`;

describe('tools', () => {
  test('zod parameters become JSON Schema for prompts and the API', () => {
    expect(toolSpec(add as AgentTool)).toEqual({
      type: 'function',
      function: {
        name: 'add',
        description: 'Adds two integers.',
        parameters: {
          type: 'object',
          properties: { a: { type: 'integer', minimum: Number.MIN_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER }, b: { type: 'integer', minimum: Number.MIN_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER } },
          required: ['a', 'b'],
        },
      },
    });
  });
});

describe('agent loop with OpenAI-style JSON tool calls', () => {
  const parser = new JsonToolCallParser();

  test('calls a tool, feeds the result back as a tool message, ends with the final answer', async () => {
    const model = new ScriptedChatModel([`Let me add. ${call('add', { a: 2, b: 3 })}`, 'The sum is 5.']);
    const r = await runAgent({ model, parser, tools: [add as AgentTool], task: 'What is 2 + 3?', system: 'Use tools.' });
    expect(r.finishReason).toBe('final');
    expect(r.answer).toBe('The sum is 5.');
    expect(r.turns).toBe(2);
    const [sys, user, asst, tool, final] = r.messages;
    expect(sys).toEqual({ role: 'system', content: 'Use tools.' });
    expect(user).toEqual({ role: 'user', content: 'What is 2 + 3?' });
    expect(asst).toMatchObject({ role: 'assistant', content: 'Let me add.', tool_calls: [{ type: 'function', function: { name: 'add', arguments: '{"a":2,"b":3}' } }] });
    expect(tool).toMatchObject({ role: 'tool', content: '5', name: 'add' });
    expect((tool as { tool_call_id: string }).tool_call_id).toBe((asst as { tool_calls: { id: string }[] }).tool_calls[0]!.id);
    expect(final).toEqual({ role: 'assistant', content: 'The sum is 5.' });
    // The model was offered the tool schema on every turn and saw the observation on turn 2.
    expect(model.calls[0]!.options.tools?.map((t) => t.function.name)).toEqual(['add']);
    expect(model.calls[1]!.messages.at(-1)).toMatchObject({ role: 'tool', content: '5' });
    expect(r.trace.map((e) => e.type)).toEqual(['model', 'action', 'tool', 'model', 'action', 'end']);
  });

  test('tool errors, unknown tools, bad arguments, timeouts and long output go back as observations', async () => {
    const model = new ScriptedChatModel([
      call('boom', {}),
      call('nope', {}),
      call('add', { a: 'two', b: 3 }),
      call('slow', {}),
      call('chatty', {}),
      '<tool_call>{"name": "add", "arguments": {"a": 1,</tool_call>',
      'giving up',
    ]);
    const r = await runAgent({ model, parser, tools: [add, boom, slow, chatty] as AgentTool[], task: 't', maxTurns: 10, maxObservationChars: 100 });
    expect(r.finishReason).toBe('final');
    const tools = r.trace.filter((e) => e.type === 'tool');
    expect(tools.map((e) => [e.name, e.isError, e.timedOut])).toEqual([
      ['boom', true, false],
      ['nope', true, false],
      ['add', true, false],
      ['slow', true, true],
      ['chatty', false, false],
    ]);
    expect(tools[0]!.observation).toBe('Error: disk on fire');
    expect(tools[1]!.observation).toBe('Error: unknown tool "nope"; available: add, boom, chatty, slow');
    expect(tools[2]!.observation).toMatch(/^Error: invalid arguments for tool "add": a: /);
    expect(tools[3]!.observation).toBe('Error: tool "slow" timed out after 0.2 s');
    expect(tools[4]!.observation).toBe(`${'y'.repeat(100)}\n[... 4900 more characters truncated]`);
    expect(tools[4]!.truncatedChars).toBe(4900);
    const invalid = model.calls[6]!.messages.at(-1)!;
    expect(invalid.role).toBe('user');
    expect(invalid.content).toMatch(/^Error: the tool call .* is not valid JSON/);
  });

  test('finishReason max_turns when the model never finishes', async () => {
    const model = new ScriptedChatModel([call('add', { a: 1, b: 1 }), call('add', { a: 1, b: 1 }), call('add', { a: 1, b: 1 })]);
    const r = await runAgent({ model, parser, tools: [add as AgentTool], task: 't', maxTurns: 3 });
    expect(r).toMatchObject({ finishReason: 'max_turns', answer: null, turns: 3 });
    expect(r.trace.at(-1)).toEqual({ type: 'end', turn: 3, finishReason: 'max_turns' });
  });

  test('finishReason length when the conversation reaches the token budget', async () => {
    // Scripted tokens are characters. Turn 1: task 10 + reply 40 = 50. Turn 2: prompt 10 + observation "2"
    // = 11, so only 49 of the 100-character reply fit in the budget of 60.
    const reply1 = '{"name":"add","arguments":{"a":1,"b":1}}';
    expect(reply1.length).toBe(40);
    const model = new ScriptedChatModel([reply1, 'x'.repeat(100)]);
    const r = await runAgent({ model, parser, tools: [add as AgentTool], task: '0123456789', tokenBudget: 60, maxTurns: 5 });
    expect(r.finishReason).toBe('length');
    expect(r.usage.peakContextTokens).toBe(60);
    expect(r.turns).toBe(2);
    expect(r.messages.at(-1)).toEqual({ role: 'assistant', content: 'x'.repeat(49) });
    expect(r.answer).toBeNull();
    // A prompt already over the budget ends the run without generating.
    const over = await runAgent({ model: new ScriptedChatModel(['unused']), parser, task: 'z'.repeat(70), tokenBudget: 60 });
    expect(over).toMatchObject({ finishReason: 'length', turns: 1, usage: { completionTokens: 0 } });
  });

  test('finishReason stop from stopWhen and from a tool', async () => {
    const r1 = await runAgent({
      model: new ScriptedChatModel([call('add', { a: 1, b: 2 }), 'never']),
      parser,
      tools: [add as AgentTool],
      task: 't',
      stopWhen: ({ trace }) => trace.some((e) => e.type === 'tool' && e.observation === '3'),
    });
    expect(r1.finishReason).toBe('stop');
    const r2 = await runAgent({ model: new ScriptedChatModel([call('done', {}), 'never']), parser, tools: [done as AgentTool], task: 't' });
    expect(r2).toMatchObject({ finishReason: 'stop', turns: 1 });
  });

  test('finishReason aborted when the signal fires (before a turn and during a tool)', async () => {
    const ctl = new AbortController();
    ctl.abort();
    const r1 = await runAgent({ model: new ScriptedChatModel(['hi']), parser, task: 't', signal: ctl.signal });
    expect(r1).toMatchObject({ finishReason: 'aborted', turns: 0 });
    const ctl2 = new AbortController();
    const waits = defineTool({
      name: 'waits',
      description: 'waits for abort',
      parameters: z.object({}),
      execute: (_a, ctx) =>
        new Promise<string>((resolve) => {
          ctx.signal.addEventListener('abort', () => resolve('stopped'));
          setTimeout(() => ctl2.abort(), 50);
        }),
    });
    const r2 = await runAgent({ model: new ScriptedChatModel([call('waits', {}), 'never']), parser, tools: [waits as AgentTool], task: 't', signal: ctl2.signal });
    expect(r2).toMatchObject({ finishReason: 'aborted', turns: 1 });
  });
});

describe('agent loop with the MINT protocol and the Python tool', () => {
  const parser = new MintActionParser();

  test('solves a multi-turn task keeping Python state across turns', async () => {
    const model = new ScriptedChatModel([
      'First I load the numbers.\n<execute>\nnums = [3, 1, 4, 1, 5, 9, 2, 6]\ntotal = sum(nums)\nprint(total)\n</execute>',
      'Now the mean, reusing `total`:\n```python\nmean = total / len(nums)\nmean\n```',
      (messages) => {
        const obs = messages.at(-1)!.content!;
        return `The mean is ${obs.split('\n')[1]}. <solution>${obs.split('\n')[1]}</solution>`;
      },
    ]);
    const r = await runAgent({ model, parser, tools: [createPythonTool()], task: 'Mean of 3,1,4,1,5,9,2,6?' });
    expect(r.finishReason).toBe('final');
    expect(r.answer).toBe('3.875');
    expect(model.calls[1]!.messages.at(-1)).toEqual({ role: 'user', content: 'Observation:\n31' });
    expect(model.calls[2]!.messages.at(-1)).toEqual({ role: 'user', content: 'Observation:\n3.875' });
    expect(model.calls[0]!.options.tools).toBeUndefined();
  });

  test('a reply with no action gets the nudge; a Python timeout is reported and the next turn starts fresh', async () => {
    const model = new ScriptedChatModel(['I think about it.', '<execute>x = 1\nwhile True: pass</execute>', '<execute>print(x)</execute>', '<solution>none</solution>']);
    const r = await runAgent({ model, parser, tools: [createPythonTool({ timeoutMs: 1000 })], task: 't', maxTurns: 6 });
    expect(r.finishReason).toBe('final');
    expect(model.calls[1]!.messages.at(-1)!.content).toMatch(/did not find an action/);
    const tools = r.trace.filter((e) => e.type === 'tool');
    expect(tools[0]).toMatchObject({ timedOut: true, isError: true });
    expect(tools[0]!.observation).toMatch(/ran longer than 1 s[\s\S]*restarted/);
    expect(tools[1]!.observation).toMatch(/^\[The previous Python session was lost[\s\S]*NameError: name 'x' is not defined/);
  });

  test('a caller-owned session keeps the interpreter across runs', async () => {
    const session = new AgentSession();
    try {
      const tools = [createPythonTool()];
      await runAgent({ model: new ScriptedChatModel(['<execute>secret = 41</execute>', '<solution>ok</solution>']), parser, tools, task: 'a', session });
      const r = await runAgent({ model: new ScriptedChatModel(['<execute>secret + 1</execute>', '<solution>ok</solution>']), parser, tools, task: 'b', session });
      expect(r.trace.find((e) => e.type === 'tool')).toMatchObject({ observation: '42' });
    } finally {
      await session.dispose();
    }
  });
});

describe('action parsers', () => {
  const json = new JsonToolCallParser();
  const mint = new MintActionParser();
  test('json-tool-calls reads tags, bare JSON, lists and fenced JSON; anything else is final', () => {
    expect(json.parse('a <tool_call>{"name":"f","arguments":{"x":1}}</tool_call> b <tool_call>{"name":"g","arguments":"{\\"y\\":2}"}</tool_call>')).toEqual({
      type: 'tool_calls',
      calls: [
        { name: 'f', arguments: { x: 1 } },
        { name: 'g', arguments: { y: 2 } },
      ],
      content: 'a  b',
    });
    expect(json.parse('{"name": "f", "arguments": {}}')).toEqual({ type: 'tool_calls', calls: [{ name: 'f', arguments: {} }], content: '' });
    expect(json.parse('```json\n[{"function": {"name": "f", "arguments": "{}"}}]\n```')).toEqual({ type: 'tool_calls', calls: [{ name: 'f', arguments: {} }], content: '' });
    expect(json.parse('{"tool_calls": [{"name": "f"}]}')).toEqual({ type: 'tool_calls', calls: [{ name: 'f', arguments: {} }], content: '' });
    expect(json.parse('{"answer": 3}')).toEqual({ type: 'final', answer: '{"answer": 3}' });
    expect(json.parse(' Paris. ')).toEqual({ type: 'final', answer: 'Paris.' });
    expect(json.parse('<tool_call>{"arguments": {}}</tool_call>')).toEqual({ type: 'invalid', error: 'a tool call needs a "name" string' });
  });
  test('mint reads <execute>, python fences and <solution>', () => {
    expect(mint.parse('<execute>\nprint(1)\n</execute>')).toMatchObject({ type: 'tool_calls', calls: [{ name: 'python', arguments: { code: 'print(1)' } }] });
    expect(mint.parse('x\n```python\na = 2\n```\n')).toMatchObject({ calls: [{ arguments: { code: 'a = 2' } }] });
    expect(mint.parse('<solution> 42 </solution>')).toEqual({ type: 'final', answer: '42' });
    expect(mint.parse('<execute>1</execute><solution>2</solution>')).toEqual({ type: 'final', answer: '2' });
    expect(mint.parse('```js\nx\n```')).toEqual({ type: 'none' });
    expect(mint.parse('<execute>   </execute>')).toEqual({ type: 'none' });
  });
});

describe('runAgent when the context fills', () => {
  /** A model with a 256-token window whose prompt is always 373 tokens (the sizes of issue 18's report). */
  const tooLong = {
    id: 'ctx-256',
    contextLength: 256,
    calls: 0,
    async complete() {
      this.calls++;
      return { text: '', finishReason: 'length' as const, promptTokens: 373, completionTokens: 0, contextFull: true, contextTokens: 256 };
    },
  };

  it('a prompt that does not fit ends on turn 1 with "length" and the numbers (not max_turns after empty turns)', async () => {
    const r = await runAgent({ model: tooLong, parser: new MintActionParser(), task: 'x', maxTurns: 5, tokenBudget: 8192 });
    expect(r.finishReason).toBe('length');
    expect(r.turns).toBe(1);
    expect(tooLong.calls).toBe(1);
    expect(r.detail).toBe("the prompt is 373 tokens and does not fit the model's 256-token context; shorten the task or system prompt, or use a model with a longer context");
  });

  it('a reply cut by the window on a later turn names the turn and the sizes', async () => {
    let n = 0;
    const model = {
      id: 'm',
      contextLength: 100,
      async complete() {
        n++;
        return n === 1 ? { text: 'thinking', finishReason: 'stop' as const, promptTokens: 50, completionTokens: 20 } : { text: 'more', finishReason: 'length' as const, promptTokens: 90, completionTokens: 10, contextFull: true, contextTokens: 100 };
      },
    };
    const r = await runAgent({ model, parser: new MintActionParser(), task: 'x', maxTurns: 5 });
    expect(r).toMatchObject({ finishReason: 'length', turns: 2, detail: "turn 2 filled the model's 100-token context (90 prompt + 10 reply tokens)" });
  });
});
