/** The built-in expansion plugin: the four strategies and the two initializers. */
import { PLUGIN_API_VERSION, TOKENS, resolveRegistry, type LlamaProPlugin, type NamedRegistry } from '@llama-pro/core';
import type { DependencyContainer } from 'tsyringe';
import { BUILTIN_INITIALIZERS, type BlockInitializer } from './initializer';
import { BUILTIN_STRATEGIES, type ExpansionStrategy } from './strategy';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const PKG = require('../package.json') as { name: string; version: string };

export const expandPlugin: LlamaProPlugin = {
  meta: { name: PKG.name, version: PKG.version, apiVersion: PLUGIN_API_VERSION },
  register(c: DependencyContainer) {
    for (const s of BUILTIN_STRATEGIES) c.register(TOKENS.ExpansionStrategy, { useValue: s });
    for (const i of BUILTIN_INITIALIZERS) c.register(TOKENS.BlockInitializer, { useValue: i });
  },
};

/** Every expansion strategy registered in `container` (unknown names list the known ones). */
export function strategyRegistry(container: DependencyContainer): NamedRegistry<ExpansionStrategy> {
  return resolveRegistry<ExpansionStrategy>(container, TOKENS.ExpansionStrategy, 'expansion strategy');
}

/** Every block initializer registered in `container`. */
export function initializerRegistry(container: DependencyContainer): NamedRegistry<BlockInitializer> {
  return resolveRegistry<BlockInitializer>(container, TOKENS.BlockInitializer, 'block initializer');
}
