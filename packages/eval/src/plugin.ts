/**
 * The built-in evaluation plugin: evaluators under TOKENS.Evaluator, the python sandbox under TOKENS.CodeSandbox,
 * the local and OpenAI-compatible providers under TOKENS.LanguageModelProvider.
 */
import { PLUGIN_API_VERSION, TOKENS, type LlamaProPlugin } from '@llama-pro/core';
import { BUILTIN_EVALUATORS } from './tasks/evaluators';
import { PythonSandbox } from './sandbox/python-sandbox';
import { localProvider, openaiProvider } from './lm/providers';

export const evalPlugin: LlamaProPlugin = {
  meta: { name: '@llama-pro/eval', version: '0.1.0', apiVersion: PLUGIN_API_VERSION },
  register(c) {
    for (const e of BUILTIN_EVALUATORS) c.register(TOKENS.Evaluator, { useValue: e });
    c.register(TOKENS.CodeSandbox, { useValue: new PythonSandbox() });
    c.register(TOKENS.LanguageModelProvider, { useValue: localProvider });
    c.register(TOKENS.LanguageModelProvider, { useValue: openaiProvider });
  },
};
