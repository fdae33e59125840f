export * from './isolation';
export * from './code-sandbox';
