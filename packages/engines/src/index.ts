/** @llama-pro/engines public API. */
export * from './settings';
export * from './deepspeed';
export * from './llamafactory';
export * from './accelerate';
export * from './import-run';
export * from './from-experiment';
