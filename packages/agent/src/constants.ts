/**
 * Behaviour-changing defaults of the agent runtime, the Python tool and the server, in one place.
 * Every option that falls back to a default reads it from here.
 */
import { PYTHON_SESSION_DEFAULTS } from '@llama-pro/sandbox';

export const AGENT_DEFAULTS = {
  /** Model turns before the loop ends with finishReason "max_turns". */
  maxTurns: 5,
  /** Prompt + completion tokens over all turns before the loop ends with "length". */
  tokenBudget: 8192,
  /** New tokens per model turn. */
  maxTokensPerTurn: 512,
  /** Sampling for agent turns (0 = greedy). */
  temperature: 0,
  /** Characters of a tool observation handed back to the model (longer output is cut and says so). */
  maxObservationChars: 2000,
  /** Per-call tool timeout (ms) for tools that do not set their own. */
  toolTimeoutMs: 30_000,
  /** Observation sent when a MINT-protocol reply contains neither code nor a solution. */
  noActionObservation:
    'I did not find an action in your reply. Run Python code inside <execute>...</execute> (or a ```python fence), or give your final answer inside <solution>...</solution>.',
} as const;

/** The Python tool: the sandbox's PythonSession defaults (one source), plus the interpreter looked up on PATH. */
export const PYTHON_DEFAULTS = {
  executable: 'python3',
  ...PYTHON_SESSION_DEFAULTS,
} as const;

export const SERVER_DEFAULTS = {
  host: '127.0.0.1',
  port: 8000,
  /** Largest accepted request body (bytes); larger bodies get 413. */
  maxBodyBytes: 1024 * 1024,
  /** max_tokens when a request does not set one (completions: 16 as OpenAI; chat: up to the context). */
  completionMaxTokens: 16,
  chatMaxTokens: 256,
  /** Requests waiting for the model beyond this get 503 (they are never dropped silently). */
  maxQueueLength: 1024,
  /** Sequences decoded together in the running batch (continuous batching); more wait in the queue. */
  maxBatchSize: 8,
  /** Seconds graceful shutdown waits for in-flight requests before closing connections. */
  shutdownGraceMs: 10_000,
  /** Most alternatives returned per position when `logprobs` is requested (OpenAI allows 5 / 20). */
  maxLogprobs: 20,
  /** Most stop strings per request (OpenAI allows 4; vLLM any number). */
  maxStopStrings: 64,
  /** Most choices per prompt (`n`; OpenAI allows 128). */
  maxN: 128,
  /** Most completions (prompts × n) per request; more get 413. */
  maxPromptsPerRequest: 256,
  /** Most tokens of work (Σ prompt + max_tokens over the completions) per request; more get 400. */
  maxRequestTokens: 262_144,
  /** After the shutdown grace, how long responses (503s included) get to reach their clients before connections close. */
  shutdownFlushMs: 2_000,
} as const;

/** Tool-call markers used by the built-in templates and the JSON tool-call parser. */
export const TOOL_CALL_OPEN = '<tool_call>';
export const TOOL_CALL_CLOSE = '</tool_call>';

/** System prompt for MINT's text protocol (the model writes code or a solution in tags). */
export const MINT_SYSTEM_PROMPT =
  'You are a helpful assistant that solves tasks by thinking and running Python. ' +
  'At each turn, first think, then either run Python code by writing it inside <execute>...</execute> ' +
  '(you will see its output; variables persist between turns), or give your final answer inside <solution>...</solution>. ' +
  'Use one of the two in every reply.';
