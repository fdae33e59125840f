/** Test helpers for @llama-pro/agent and its plugin authors. */
export * from './scripted-chat-model';
export * from './table-lm';
export * from './char-tokenizer';
