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
export { layerTensorSuffixes, expectedShape, expectedTensorNames } from './config/tensor-names';
export { CONFIG_LIMITS, MAX_PARAMETERS, checkConfigAgainstTensors, checkConfigBounds } from './config/bounds';
export * from './io/dtype';
export * from './io/atomic';
export {
  MAX_CONFIG_JSON_BYTES,
  MAX_INDEX_JSON_BYTES,
  MAX_JSON_DEPTH,
  MAX_TOKENIZER_JSON_BYTES,
  asOutputError,
  fileMessage,
  openRegularFile,
  readJsonFile,
  type InputErrorFactory,
  type OpenedInput,
  type ReadJsonOptions,
} from './io/input-files';
export * from './io/checksum';
export { HUGEPAGES_ENV, HUGETLB_TUNABLE, hugePagePlan, hugePagesStatus, nativeAdamW, nativeIoStatus, relaunchWithHugePages, tuneAllocatorForInference, type AdamWKernel, type HugePageFacts, type HugePagePlan, type NativeIoStatus, type RangeCopier } from './io/native';
export * from './io/safetensors';
export * from './io/hf-dir';
export * from './io/gguf';
export * from './io/gguf-tokenizer';
export * from './llama2c/import';
export * from './llama2c/convert';
export * from './llama2c/tokenizer';
export * from './tokenizer/tokenizer';
export * from './contracts/model';
export { countedTargets } from './contracts/targets';
export * from './model/arch';
export * from './model/rope';
export * from './model/positions';
export * from './model/validate';
export * from './model/decoder';
export * from './contracts/generation';
export * from './contracts/slots';
export * from './contracts/language-model';
export * from './hub/cache';
