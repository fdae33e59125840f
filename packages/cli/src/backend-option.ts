/**
 * The shared `--backend name[:variant]` option: `tfjs`, `tfjs:wasm`, `onnx`, `onnx:cpu`, ... The name
 * picks a ModelBackend from the DI registry (built-ins and plugins alike); the variant is passed to
 * the backend's load options untouched, so each backend validates its own variants.
 */
import { DEFAULT_BACKEND, TOKENS, UsageError, resolveRegistry, type BackendLoadOptions, type ModelBackend } from '@llama-pro/core';
import type { DependencyContainer } from 'tsyringe';

/**
 * The one default backend (core's DEFAULT_BACKEND, onnx) for every command: generate, eval, serve, chat,
 * agent, expand --verify, and, through the experiment / study schemas that read the same constant, train
 * and study.
 */
export { DEFAULT_BACKEND };

/** The help text for `--backend`, so every command describes it the same way. */
export const BACKEND_OPTION_HELP = `model backend as name[:variant]: ${DEFAULT_BACKEND} (the default for every command), onnx:cpu, tfjs, tfjs:wasm, tfjs:cpu, tfjs:tensorflow`;

export interface BackendSpec {
  readonly name: string;
  /** Backend-specific variant (e.g. "wasm"), or undefined to let the backend choose. */
  readonly variant?: string;
}

/** Parses `name[:variant]` (whitespace-trimmed, name lower-cased). */
export function parseBackendSpec(value: string | undefined, fallback = DEFAULT_BACKEND): BackendSpec {
  const raw = (value ?? fallback).trim();
  const m = /^([A-Za-z0-9][\w.-]*)(?::([\w.-]+))?$/.exec(raw);
  if (!m) throw new UsageError(`--backend must look like name[:variant] (e.g. tfjs:wasm), got "${raw}"`);
  return { name: m[1]!.toLowerCase(), variant: m[2] };
}

/** Looks the backend up in the container's registry (unknown names list the known ones). */
export function resolveBackend(container: DependencyContainer, value: string | undefined, fallback = DEFAULT_BACKEND): { backend: ModelBackend; spec: BackendSpec } {
  const spec = parseBackendSpec(value, fallback);
  const backend = resolveRegistry<ModelBackend>(container, TOKENS.Backend, 'backend').get(spec.name);
  return { backend, spec };
}

/** Load options for a parsed spec: the variant plus a logger (stderr by default). */
export function backendLoadOptions(spec: BackendSpec, log: (message: string) => void = (m) => process.stderr.write(m + '\n')): BackendLoadOptions {
  return spec.variant === undefined ? { log } : { variant: spec.variant, log };
}
