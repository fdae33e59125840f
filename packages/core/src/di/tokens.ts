/**
 * Injection tokens of the extension points. Each implementation has a `readonly name`; several
 * implementations of one token are collected into a `NamedRegistry`.
 */
export const TOKENS = {
  /** ModelBackend: tfjs, onnx, ... */
  Backend: Symbol.for('llama-pro.Backend'),
  /** Block-expansion strategy: interleaved, top, bottom, positions. */
  ExpansionStrategy: Symbol.for('llama-pro.ExpansionStrategy'),
  /** Initializer for copied blocks: zero-output, copy. */
  BlockInitializer: Symbol.for('llama-pro.BlockInitializer'),
  /** Which tensors train: new-blocks, full, layers, lora. */
  FreezePolicy: Symbol.for('llama-pro.FreezePolicy'),
  LrSchedule: Symbol.for('llama-pro.LrSchedule'),
  DatasetSource: Symbol.for('llama-pro.DatasetSource'),
  Evaluator: Symbol.for('llama-pro.Evaluator'),
  CodeSandbox: Symbol.for('llama-pro.CodeSandbox'),
  /** Provider of LanguageModel instances (local backends, remote OpenAI-compatible endpoints). */
  LanguageModelProvider: Symbol.for('llama-pro.LanguageModelProvider'),
  AgentTool: Symbol.for('llama-pro.AgentTool'),
  ActionParser: Symbol.for('llama-pro.ActionParser'),
  ChatTemplate: Symbol.for('llama-pro.ChatTemplate'),
  MetricsSink: Symbol.for('llama-pro.MetricsSink'),
  /** Singleton: Logger. */
  Logger: Symbol.for('llama-pro.Logger'),
} as const;

export type ExtensionPoint = keyof typeof TOKENS;

export interface Named {
  readonly name: string;
}
