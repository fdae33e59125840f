/** @llama-pro/train public API. */
export * from './errors';
export { PAPER_RECIPE, DEFAULT_TRAIN_BACKEND } from './defaults';
export * from './optim/adamw';
export * from './optim/clip';
export * from './optim/schedule';
export * from './policy/types';
export * from './policy/policies';
export * from './params';
export * from './data/files';
export * from './data/documents';
export * from './data/prepare';
export * from './data/loader';
export * from './config';
export * from './checkpoint';
export * from './trainer';
export * from './export';
export * from './run';
export * from './plugin';
