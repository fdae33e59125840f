/**
 * LanguageModel providers (TOKENS.LanguageModelProvider): turn a `--model` value into a LanguageModel plus
 * the facts a result record needs. `local` opens a Hugging Face directory through a registered backend;
 * `openai` talks to an OpenAI-compatible endpoint. Plugins can add providers (e.g. another server protocol).
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { DEFAULT_BACKEND, HfCheckpoint, sha256File, loadTokenizer, loadTokenizerOrBytes, type LanguageModel, type ModelBackend, type Named, type NamedRegistry, type TextTokenizer } from '@llama-pro/core';
import type { ModelRecord } from '../results';
import { LocalLanguageModel } from './local';
import { OpenAICompatibleLanguageModel, discoverServedModel } from './openai';

export interface ProviderOpenOptions {
  /** Registered backends (local provider). */
  readonly backends?: NamedRegistry<ModelBackend>;
  readonly backend?: { readonly name: string; readonly variant?: string };
  readonly addBos?: boolean;
  /** Endpoint: a local copy of the served tokenizer. */
  readonly tokenizerDir?: string;
  readonly servedModel?: string;
  readonly apiKey?: string;
  readonly generation?: 'completions' | 'chat';
  readonly log?: (message: string) => void;
}

export interface OpenedModel {
  readonly lm: LanguageModel;
  readonly record: ModelRecord;
  readonly tokenizer: string | null;
  /** null when the provider cannot control BOS (text prompts to an endpoint). */
  readonly addBos: boolean | null;
  dispose(): Promise<void>;
}

export interface LanguageModelProvider extends Named {
  readonly name: string;
  /** Whether this provider understands the `--model` value. */
  matches(model: string): boolean;
  open(model: string, options: ProviderOpenOptions): Promise<OpenedModel>;
}

/** sha256 over the weight files of a model directory (sha256 of "sha  name\n" lines, sorted by name). */
export async function modelHash(dir: string): Promise<string> {
  const files = (await fsp.readdir(dir)).filter((f) => f.endsWith('.safetensors')).sort();
  const lines: string[] = [];
  for (const f of files) lines.push(`${await sha256File(path.join(dir, f))}  ${f}\n`);
  return createHash('sha256').update(lines.join('')).digest('hex');
}

export const localProvider: LanguageModelProvider = {
  name: 'local',
  matches: (model) => !/^https?:\/\//i.test(model),
  async open(model, o) {
    if (!o.backends) throw new Error('the local provider needs the backend registry');
    const spec = o.backend ?? { name: DEFAULT_BACKEND };
    const backend = o.backends.get(spec.name);
    const ckpt = await HfCheckpoint.open(model);
    try {
      const tokenizer = await loadTokenizerOrBytes(model, ckpt.config.vocabSize);
      o.log?.(`hashing the weights of ${model}`);
      const sha256 = await modelHash(model);
      const loaded = await backend.load(ckpt, { ...(spec.variant ? { variant: spec.variant } : {}), log: o.log });
      const lm = new LocalLanguageModel(loaded, tokenizer, { addBos: o.addBos ?? true });
      return {
        lm,
        record: { kind: 'local', source: path.resolve(model), sha256, backend: `${spec.name}${spec.variant ? ':' + spec.variant : ''}`, device: loaded.device, dtype: ckpt.config.torchDtype ?? null },
        tokenizer: tokenizer.kind === 'bytes' ? 'bytes (sentencepiece byte-fallback ids 3..258)' : 'tokenizer.json',
        addBos: lm.addBos,
        dispose: () => loaded.dispose(),
      };
    } finally {
      await ckpt.close();
    }
  },
};

export const openaiProvider: LanguageModelProvider = {
  name: 'openai',
  matches: (model) => /^https?:\/\//i.test(model),
  async open(model, o) {
    let tokenizer: TextTokenizer | undefined;
    if (o.tokenizerDir) tokenizer = await loadTokenizer(o.tokenizerDir);
    // No --served-model: the only model the endpoint lists (llama-pro serve names it after the directory).
    const found = o.servedModel ? null : await discoverServedModel(model, { apiKey: o.apiKey });
    const served = o.servedModel ?? found?.id ?? 'default';
    if (!o.servedModel) o.log?.(found ? `endpoint serves "${served}"${found.maxModelLen ? ` (${found.maxModelLen} positions)` : ''}` : `endpoint lists no models; requesting "${served}"`);
    const lm = new OpenAICompatibleLanguageModel({ baseUrl: model, model: served, apiKey: o.apiKey, generation: o.generation, tokenizer, addBos: o.addBos ?? true, ...(found?.maxModelLen ? { maxLength: found.maxModelLen } : {}) });
    return {
      lm,
      record: { kind: 'endpoint', source: model, sha256: null, backend: null, device: null, dtype: null, served_model: served },
      tokenizer: o.tokenizerDir ? path.resolve(o.tokenizerDir) : null,
      addBos: tokenizer ? (o.addBos ?? true) : null,
      dispose: async () => undefined,
    };
  },
};
