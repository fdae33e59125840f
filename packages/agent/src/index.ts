/** @llama-pro/agent public API. */
export * from './constants';
export * from './errors';
export * from './messages';
export * from './templates/chat-template';
export * from './tools/tool';
export * from './tools/python';
export * from './parsers/action-parser';
export * from './runtime/engine';
export * from './runtime/chat-model';
export * from './runtime/loop';
export * from './server/queue';
export * from './server/schemas';
export * from './server/app';
export * from './eval/lm-chat-model';
export * from './eval/mint';
export * from './plugin';
