import { LlamaProError } from '@llama-pro/core';

/** An agent-runtime problem caused by input (bad messages, unknown tool, bad template). */
export class AgentError extends LlamaProError {
  constructor(message: string, code = 'AGENT') {
    super(code, message);
  }
}
