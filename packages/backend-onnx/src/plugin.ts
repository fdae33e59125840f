/** The built-in plugin: registers the `onnx` ModelBackend under `TOKENS.Backend`. */
import { PLUGIN_API_VERSION, TOKENS, type LlamaProPlugin } from '@llama-pro/core';
import { onnxBackend } from './backend';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const VERSION = (require('../package.json') as { version: string }).version;

export const onnxBackendPlugin: LlamaProPlugin = {
  meta: { name: '@llama-pro/backend-onnx', version: VERSION, apiVersion: PLUGIN_API_VERSION },
  register(container) {
    container.register(TOKENS.Backend, { useValue: onnxBackend });
  },
};
