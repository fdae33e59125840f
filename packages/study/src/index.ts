/** @llama-pro/study public API. */
export * from './corpora';
export * from './config';
export * from './results';
export * from './plots';
export * from './report';
export * from './study';
