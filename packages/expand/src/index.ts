/** @llama-pro/expand public API. */
export * from './plan';
export * from './strategy';
export * from './initializer';
export * from './manifest';
export * from './verify';
export * from './stream-verify';
export * from './expander';
export * from './plugin';
export * from './config';
