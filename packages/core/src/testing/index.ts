export * from './fixtures';
export * from './random-model';
export * from './sentencepiece-tokenizer';
export * from './slot-sequences';
