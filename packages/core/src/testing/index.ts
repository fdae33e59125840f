export * from './fixtures';
export * from './random-model';
