/** @llama-pro/eval public API. */
export {};
