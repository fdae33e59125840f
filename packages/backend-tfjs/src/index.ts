/** @llama-pro/backend-tfjs public API. */
export {};
