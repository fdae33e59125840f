/**
 * The evaluator-facing language-model contract, as lm-evaluation-harness defines it. Implemented by
 * local backends (through a tokenizer) and by remote OpenAI-compatible endpoints.
 */
export interface LoglikelihoodRequest {
  readonly context: string;
  readonly continuation: string;
}

export interface LoglikelihoodResult {
  /** Sum of log-probabilities of the continuation's tokens given the context. */
  readonly logprob: number;
  /** Whether every continuation token is the argmax (greedy) token. */
  readonly isGreedy: boolean;
}

export interface GenerateUntilRequest {
  readonly context: string;
  /** Stop strings; generation stops at the first and the text is cut there. */
  readonly until: readonly string[];
  readonly maxGenTokens?: number;
  readonly temperature?: number;
  readonly topP?: number;
  readonly seed?: number;
}

export interface LanguageModel {
  readonly name: string;
  loglikelihood(requests: readonly LoglikelihoodRequest[]): Promise<LoglikelihoodResult[]>;
  /** Total log-likelihood of each whole text (for perplexity), with its token count. */
  loglikelihoodRolling(texts: readonly string[]): Promise<{ logprob: number; tokens: number }[]>;
  generateUntil(requests: readonly GenerateUntilRequest[]): Promise<string[]>;
}
