import * as api from '../src';
import * as testing from '../src/testing';
import { PYTHON_SESSION_DEFAULTS } from '@llama-pro/sandbox';

// The public surface of @llama-pro/agent: a change here is an API change (update this list on purpose).
test('public API surface', () => {
  expect(Object.keys(api).sort()).toEqual([
    'AGENT_DEFAULTS', 'AgentError', 'AgentSession', 'ChatMLTemplate', 'ChatPromptBuilder', 'JinjaChatTemplate', 'JsonToolCallParser',
    'LanguageModelChatModel', 'Llama2ChatTemplate', 'LocalChatModel', 'MINT_SYSTEM_PROMPT', 'MintActionParser', 'MintEvalError', 'MintEvaluator',
    'PYTHON_DEFAULTS', 'PlainChatTemplate', 'PythonSession', 'QueueFullError', 'RequestQueue', 'SERVER_DEFAULTS', 'SandboxError', 'ShuttingDownError', 'StreamingText', 'TOOL_CALL_CLOSE',
    'TOOL_CALL_OPEN', 'TextGenerator', 'agentPlugin', 'agentRegistries', 'builtinActionParsers', 'builtinChatTemplates',
    'chatRequestSchema', 'chatTemplateRegistry', 'completionRequestSchema', 'createOpenAIApp', 'createPythonTool', 'defineTool', 'describeZodError',
    'lastNumber', 'messageText', 'mintEvaluators', 'newToolCallId', 'passesTests', 'pythonObservation', 'resolveChatTemplate',
    'runAgent', 'startServer', 'tokenizerTemplateSource', 'toolCallsAsText', 'toolParametersSchema', 'toolSpec', 'toolSystemPrompt',
    'truncateOutput', 'withToolPrompt',
  ]);
  expect(Object.keys(testing).sort()).toEqual(['CHAR_TOKENIZER_SPECIALS', 'CHAR_TOKENIZER_VOCAB', 'ScriptedChatModel', 'TableCausalLM', 'charTokenizerJson', 'scriptRules', 'writeCharTokenizer']);
});

// The python tool's defaults are the sandbox's PythonSession defaults (one source), plus the interpreter.
test('PYTHON_DEFAULTS spreads the sandbox defaults', () => {
  expect(api.PYTHON_DEFAULTS).toEqual({ executable: 'python3', ...PYTHON_SESSION_DEFAULTS });
  // values the sandbox documents (python-session.ts), so neither side drifts unnoticed
  expect(PYTHON_SESSION_DEFAULTS).toMatchObject({ timeoutMs: 10_000, maxOutputChars: 4000, maxMemoryBytes: 1 << 30, maxCpuSeconds: 120, maxFileBytes: 16 << 20, maxOpenFiles: 64, startTimeoutMs: 15_000 });
});
