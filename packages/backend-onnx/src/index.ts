/** @llama-pro/backend-onnx public API. */
export * from './export';
export * from './backend';
export * from './plugin';
export * from './matmul-kernel';
export * from './train';
