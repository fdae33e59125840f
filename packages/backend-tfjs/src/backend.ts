/**
 * The `tfjs` ModelBackend and the plugin that registers it. The model code loads on the first `load` (the CLI registers
 * every built-in backend; a command run on onnx then never loads tfjs's modules).
 */
import { PLUGIN_API_VERSION, TOKENS, type BackendLoadOptions, type CausalLM, type LlamaProPlugin, type ModelBackend, type TrainableLM, type WeightSource } from '@llama-pro/core';
import type { TfjsLlama } from './model';

async function loadModel(source: WeightSource, options: BackendLoadOptions = {}): Promise<TfjsLlama> {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { TfjsLlama } = require('./model') as typeof import('./model');
  const { chooseVariant } = require('./variant') as typeof import('./variant');
  /* eslint-enable @typescript-eslint/no-require-imports */
  TfjsLlama.checkConfig(source.config); // refuse unsupported models before touching an engine
  const variant = await chooseVariant(options.variant, options.log);
  if (options.threads !== undefined && variant !== 'tensorflow') {
    options.log?.(`tfjs: the ${variant} engine runs single-threaded in Node; threads=${options.threads} is ignored`);
  }
  return TfjsLlama.load(source, variant);
}

export const tfjsBackend: ModelBackend = {
  name: 'tfjs',
  description: 'TensorFlow.js: tfjs-node-gpu / tfjs-node when installed, else WebAssembly, else plain JS (variants: tensorflow, wasm, cpu); forward, KV-cache decoding and autodiff',
  supportsTraining: true,
  load(source: WeightSource, options?: BackendLoadOptions): Promise<CausalLM> {
    return loadModel(source, options);
  },
  loadTrainable(source: WeightSource, options?: BackendLoadOptions): Promise<TrainableLM> {
    return loadModel(source, options);
  },
};

// eslint-disable-next-line @typescript-eslint/no-require-imports
const VERSION = (require('../package.json') as { version: string }).version;

export const tfjsBackendPlugin: LlamaProPlugin = {
  meta: { name: '@llama-pro/backend-tfjs', version: VERSION, apiVersion: PLUGIN_API_VERSION },
  register(container) {
    container.register(TOKENS.Backend, { useValue: tfjsBackend });
  },
};
