/**
 * The built-in agent plugin: chat templates (llama-2, chatml, plain), action parsers (json-tool-calls,
 * mint), the python tool and the MINT agent evaluators, registered under TOKENS.ChatTemplate /
 * ActionParser / AgentTool / Evaluator.
 */
import { PLUGIN_API_VERSION, TOKENS, resolveRegistry, type LlamaProPlugin } from '@llama-pro/core';
import type { DependencyContainer } from 'tsyringe';
import { mintEvaluators } from './eval/mint';
import { builtinActionParsers, type ActionParser } from './parsers/action-parser';
import { builtinChatTemplates, type ChatTemplate } from './templates/chat-template';
import { createPythonTool } from './tools/python';
import type { AgentTool } from './tools/tool';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const VERSION = (require('../package.json') as { version: string }).version;

export const agentPlugin: LlamaProPlugin = {
  meta: { name: '@llama-pro/agent', version: VERSION, apiVersion: PLUGIN_API_VERSION },
  register(c: DependencyContainer) {
    for (const t of builtinChatTemplates()) c.register(TOKENS.ChatTemplate, { useValue: t });
    for (const p of builtinActionParsers()) c.register(TOKENS.ActionParser, { useValue: p });
    c.register(TOKENS.AgentTool, { useValue: createPythonTool() });
    // MINT-style agent tasks, for `llama-pro eval` (they satisfy eval's Evaluator contract structurally).
    for (const e of mintEvaluators()) c.register(TOKENS.Evaluator, { useValue: e });
  },
};

/** The registries of the agent extension points in a container. */
export function agentRegistries(c: DependencyContainer) {
  return {
    templates: resolveRegistry<ChatTemplate>(c, TOKENS.ChatTemplate, 'chat template'),
    parsers: resolveRegistry<ActionParser>(c, TOKENS.ActionParser, 'action parser'),
    tools: resolveRegistry<AgentTool>(c, TOKENS.AgentTool, 'agent tool'),
  };
}
