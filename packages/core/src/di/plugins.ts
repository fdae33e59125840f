/**
 * Plugins: plain objects `{ meta: { name, version, apiVersion }, register(container) }`, loaded from an
 * explicit list of module paths or package names (resolved relative to the config file that lists
 * them). Built-in implementations register the same way.
 */
import * as path from 'node:path';
import { container as globalContainer, type DependencyContainer } from 'tsyringe';
import { PluginError } from '../errors';

/** Bumped when the plugin contract changes incompatibly. */
export const PLUGIN_API_VERSION = 1;

export interface PluginMeta {
  readonly name: string;
  readonly version: string;
  readonly apiVersion: number;
}

export interface LlamaProPlugin {
  readonly meta: PluginMeta;
  register(container: DependencyContainer): void | Promise<void>;
}

export function validatePlugin(value: unknown, source: string): LlamaProPlugin {
  const p = value as Partial<LlamaProPlugin> | null;
  if (!p || typeof p !== 'object') throw new PluginError(`${source} does not export a plugin object`);
  const meta = p.meta as Partial<PluginMeta> | undefined;
  if (!meta || typeof meta.name !== 'string' || typeof meta.version !== 'string' || typeof meta.apiVersion !== 'number') {
    throw new PluginError(`${source}: plugin must have meta {name: string, version: string, apiVersion: number}`);
  }
  if (typeof p.register !== 'function') throw new PluginError(`${source}: plugin "${meta.name}" has no register(container) function`);
  if (meta.apiVersion !== PLUGIN_API_VERSION) {
    throw new PluginError(
      `plugin "${meta.name}" (${source}) targets plugin API ${meta.apiVersion}, but this llama-pro provides API ${PLUGIN_API_VERSION}; upgrade the plugin or llama-pro`,
      'PLUGIN_API_VERSION',
    );
  }
  return p as LlamaProPlugin;
}

function resolveSpecifier(spec: string, baseDir: string): string {
  const isPath = spec.startsWith('.') || path.isAbsolute(spec);
  try {
    return isPath ? require.resolve(path.resolve(baseDir, spec)) : require.resolve(spec, { paths: [baseDir] });
  } catch {
    throw new PluginError(
      `cannot find plugin "${spec}"` + (isPath ? ` at ${path.resolve(baseDir, spec)}` : ` (install it next to ${baseDir} or give a path)`),
      'PLUGIN_NOT_FOUND',
    );
  }
}

/** Loads one plugin module: `default`, `plugin`, or the module itself. */
export async function loadPlugin(spec: string, baseDir: string): Promise<LlamaProPlugin> {
  const resolved = resolveSpecifier(spec, baseDir);
  let mod: Record<string, unknown>;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    mod = require(resolved) as Record<string, unknown>;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_REQUIRE_ESM') {
      mod = (await (new Function('s', 'return import(s)') as (s: string) => Promise<Record<string, unknown>>)(resolved)) as Record<string, unknown>;
    } else throw new PluginError(`plugin "${spec}" failed to load: ${(e as Error).message}`, 'PLUGIN_LOAD');
  }
  const candidate = (mod['default'] as Record<string, unknown> | undefined)?.['meta'] ? mod['default'] : mod['plugin'] ?? mod;
  return validatePlugin(candidate, spec);
}

/** Loads plugins in order from an explicit list. */
export async function loadPlugins(specs: readonly string[], baseDir: string): Promise<LlamaProPlugin[]> {
  const out: LlamaProPlugin[] = [];
  const seen = new Set<string>();
  for (const spec of specs) {
    const p = await loadPlugin(spec, baseDir);
    if (seen.has(p.meta.name)) throw new PluginError(`plugin "${p.meta.name}" is listed twice`, 'PLUGIN_DUPLICATE');
    seen.add(p.meta.name);
    out.push(p);
  }
  return out;
}

/**
 * The composition root helper: a fresh container with built-ins and plugins registered, all into the
 * same container (a child that registers a multi-token would hide the parent's registrations).
 */
export async function createAppContainer(builtins: readonly LlamaProPlugin[], plugins: readonly LlamaProPlugin[] = []): Promise<DependencyContainer> {
  const c = globalContainer.createChildContainer();
  for (const p of [...builtins, ...plugins]) {
    validatePlugin(p, p?.meta?.name ?? '<builtin>');
    try {
      await p.register(c);
    } catch (e) {
      throw new PluginError(`plugin "${p.meta.name}" failed to register: ${(e as Error).message}`, 'PLUGIN_REGISTER');
    }
  }
  return c;
}
