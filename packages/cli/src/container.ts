/**
 * The composition root: the only place that decides which implementations exist. Built-in packages
 * contribute plugins exactly like third-party ones; user plugins come from the experiment config.
 */
import { createAppContainer, loadPlugins, type LlamaProPlugin } from '@llama-pro/core';
import type { DependencyContainer } from 'tsyringe';
import { onnxBackendPlugin } from '@llama-pro/backend-onnx';
import { tfjsBackendPlugin } from '@llama-pro/backend-tfjs/plugin';
// The plugins alone (each package's ./plugin entry), not the packages' whole API: the CLI starts faster.
import { expandPlugin } from '@llama-pro/expand/plugin';
import { evalPlugin } from '@llama-pro/eval';
import { trainPlugin } from '@llama-pro/train/plugin';
import { agentPlugin } from '@llama-pro/agent/plugin';

/** Built-in plugins, in registration order. Packages add theirs here as they land. */
export function builtinPlugins(): LlamaProPlugin[] {
  return [tfjsBackendPlugin, onnxBackendPlugin, expandPlugin, evalPlugin, trainPlugin, agentPlugin];
}

export async function buildContainer(pluginSpecs: readonly string[] = [], baseDir = process.cwd()): Promise<DependencyContainer> {
  const plugins = await loadPlugins(pluginSpecs, baseDir);
  return createAppContainer(builtinPlugins(), plugins);
}
