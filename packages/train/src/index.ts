/** @llama-pro/train public API. */
export {};
