/** Request schemas of the OpenAI-compatible endpoints (unknown fields are ignored, as OpenAI does). */
import { z } from 'zod';
import { SERVER_DEFAULTS } from '../constants';

// OpenAI caps stop at 4 strings; vLLM and llama.cpp take any number, and lm-eval's local-completions sends 6 for
// humaneval, so the cap here only bounds the work per request.
const stop = z.union([z.string(), z.array(z.string()).max(SERVER_DEFAULTS.maxStopStrings)]).nullish();
const streamOptions = z.object({ include_usage: z.boolean().nullish() }).nullish();
const sampling = {
  model: z.string().min(1),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  seed: z.number().int().nullish(),
  stop,
  stream: z.boolean().nullish(),
  stream_options: streamOptions,
  n: z.number().int().min(1).max(SERVER_DEFAULTS.maxN).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  logit_bias: z.record(z.string(), z.number().min(-100).max(100)).nullish(),
  user: z.string().nullish(),
  // vLLM's extra sampling parameter: keep generating past EOS (and the template's end-of-turn tokens) until max_tokens.
  ignore_eos: z.boolean().nullish(),
};

const tokenIds = z.array(z.number().int().min(0));
export const completionRequestSchema = z.object({
  ...sampling,
  prompt: z.union([z.string(), z.array(z.string()).min(1), tokenIds.min(1), z.array(tokenIds.min(1)).min(1)]),
  max_tokens: z.number().int().min(0).nullish(),
  // OpenAI: 5; vLLM: max_logprobs (20 by default).
  logprobs: z.number().int().min(0).max(SERVER_DEFAULTS.maxLogprobs).nullish(),
  echo: z.boolean().nullish(),
  suffix: z.string().nullish(),
  best_of: z.number().int().min(1).nullish(),
});
export type CompletionRequest = z.infer<typeof completionRequestSchema>;

const textContent = z.union([z.string(), z.array(z.object({ type: z.literal('text'), text: z.string() }))]);
const toolCall = z.object({
  id: z.string(),
  type: z.literal('function'),
  function: z.object({ name: z.string(), arguments: z.string() }),
});
const message = z.discriminatedUnion('role', [
  z.object({ role: z.literal('system'), content: textContent, name: z.string().optional() }),
  z.object({ role: z.literal('developer'), content: textContent, name: z.string().optional() }),
  z.object({ role: z.literal('user'), content: textContent, name: z.string().optional() }),
  z.object({ role: z.literal('assistant'), content: textContent.nullish(), tool_calls: z.array(toolCall).nullish(), name: z.string().optional() }),
  z.object({ role: z.literal('tool'), content: textContent, tool_call_id: z.string() }),
]);

export const chatRequestSchema = z.object({
  ...sampling,
  messages: z.array(message).min(1),
  max_tokens: z.number().int().min(1).nullish(),
  max_completion_tokens: z.number().int().min(1).nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(SERVER_DEFAULTS.maxLogprobs).nullish(),
  tools: z
    .array(
      z.object({
        type: z.literal('function'),
        function: z.object({ name: z.string().min(1), description: z.string().optional(), parameters: z.record(z.string(), z.unknown()).optional(), strict: z.boolean().nullish() }),
      }),
    )
    .nullish(),
  tool_choice: z.union([z.enum(['none', 'auto', 'required']), z.object({ type: z.literal('function'), function: z.object({ name: z.string() }) })]).nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  // vLLM's chat-template extras: a new assistant turn (default) or continuing the final message (a prefilled reply).
  add_generation_prompt: z.boolean().nullish(),
  continue_final_message: z.boolean().nullish(),
  response_format: z
    .discriminatedUnion('type', [
      z.object({ type: z.literal('text') }),
      z.object({ type: z.literal('json_object') }),
      z.object({ type: z.literal('json_schema'), json_schema: z.object({ name: z.string().optional(), description: z.string().optional(), schema: z.record(z.string(), z.unknown()).optional(), strict: z.boolean().nullish() }) }),
    ])
    .nullish(),
});
export type ChatRequest = z.infer<typeof chatRequestSchema>;

/** One line naming every problem: `messages.0.role: ...; max_tokens: ...`. */
export function describeZodError(e: z.ZodError): { message: string; param: string | null } {
  const first = e.issues[0];
  return {
    message: e.issues.map((i) => `${i.path.length ? i.path.join('.') : 'body'}: ${i.message}`).join('; '),
    param: first && first.path.length ? first.path.join('.') : null,
  };
}
