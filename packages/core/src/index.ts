/** @llama-pro/core public API. */
// tsyringe needs the Reflect metadata polyfill; loading it here lets libraries embed llama-pro without ceremony.
import 'reflect-metadata';
export * from './errors';
export * from './rng';
export * from './log';
export * from './di/tokens';
export * from './di/registry';
export * from './di/plugins';
export * from './config/llama-config';
export * from './config/tensor-names';
export * from './io/dtype';
export * from './io/atomic';
export * from './io/checksum';
export { nativeIoStatus, tuneAllocatorForInference, type NativeIoStatus, type RangeCopier } from './io/native';
export * from './io/safetensors';
export * from './io/hf-dir';
export * from './io/gguf';
export * from './llama2c/import';
export * from './llama2c/convert';
export * from './tokenizer/tokenizer';
export * from './contracts/model';
export * from './contracts/generation';
export * from './contracts/language-model';
