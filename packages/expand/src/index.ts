/** @llama-pro/expand public API. */
export {};
