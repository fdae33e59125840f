/** @llama-pro/backend-onnx public API. */
export {};
