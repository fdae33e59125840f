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

/**
 * What a rolling log-likelihood scores. `lm-eval` (lm-evaluation-harness 0.4.x `loglikelihood_rolling`): the
 * tokens of `tok_encode(text)`, which start with BOS when BOS is added, each predicted after a BOS (else EOS)
 * prefix token — so BOS itself is scored. `text-only`: only the text's own tokens, after the prefix token.
 */
export type RollingScoring = 'lm-eval' | 'text-only';
export const ROLLING_SCORINGS: readonly RollingScoring[] = ['lm-eval', 'text-only'];

export interface LanguageModel {
  readonly name: string;
  loglikelihood(requests: readonly LoglikelihoodRequest[]): Promise<LoglikelihoodResult[]>;
  /** Total log-likelihood of each whole text (for perplexity), with its scored token count. Default scoring `lm-eval`. */
  loglikelihoodRolling(texts: readonly string[], options?: { scoring?: RollingScoring }): Promise<{ logprob: number; tokens: number }[]>;
  generateUntil(requests: readonly GenerateUntilRequest[]): Promise<string[]>;
}
