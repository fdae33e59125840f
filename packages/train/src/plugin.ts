/** The built-in plugin: freeze policies and learning-rate schedules. */
import { PLUGIN_API_VERSION, TOKENS, type LlamaProPlugin, type NamedRegistry, resolveRegistry } from '@llama-pro/core';
import type { DependencyContainer } from 'tsyringe';
import { BUILTIN_SCHEDULES, type LrSchedule } from './optim/schedule';
import { BUILTIN_POLICIES } from './policy/policies';
import type { FreezePolicy } from './policy/types';

export const trainPlugin: LlamaProPlugin = {
  meta: { name: '@llama-pro/train', version: '0.1.0', apiVersion: PLUGIN_API_VERSION },
  register(c: DependencyContainer) {
    for (const p of BUILTIN_POLICIES) c.register(TOKENS.FreezePolicy, { useValue: p });
    for (const s of BUILTIN_SCHEDULES) c.register(TOKENS.LrSchedule, { useValue: s });
  },
};

export function freezePolicies(c: DependencyContainer): NamedRegistry<FreezePolicy> {
  return resolveRegistry<FreezePolicy>(c, TOKENS.FreezePolicy, 'freeze policy');
}

export function lrSchedules(c: DependencyContainer): NamedRegistry<LrSchedule> {
  return resolveRegistry<LrSchedule>(c, TOKENS.LrSchedule, 'learning-rate schedule');
}
