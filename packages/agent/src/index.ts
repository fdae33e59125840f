/** @llama-pro/agent public API. */
export {};
