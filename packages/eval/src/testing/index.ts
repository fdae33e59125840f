/** Test helpers for evaluator and provider authors. */
export * from './openai-server';
