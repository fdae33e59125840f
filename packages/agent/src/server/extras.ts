/**
 * The routes beside generation, in vLLM's shapes: `GET /v1/models` (with `max_model_len`), `POST /tokenize`,
 * `POST /detokenize`, `GET /tokenizer_info`, `GET /version`, `GET /metrics` (Prometheus text format 0.0.4) and
 * `GET /health`. The tokenizer routes are what lm-eval's `tokenizer_backend=remote` (lm_eval.utils.RemoteTokenizer,
 * which `local-completions` auto-detects) calls, so lm-eval needs no Hugging Face tokenizer download.
 */
import type { Hono } from 'hono';
import type { TextTokenizer } from '@llama-pro/core';
import { z } from 'zod';
import type { ServerContext } from './context';
import { ApiError } from './errors';
import { checkModel } from './checks';
import { promptOptionsOf, readJson, textOf } from './request';
import { chatRequestSchema } from './schemas';
import { JinjaChatTemplate } from '../templates/chat-template';

// lm-eval 0.4.13's RemoteTokenizer.encode posts {"prompt": <context>, "add_special_tokens": false}; with
// `--apply_chat_template` its context is the chat itself (TemplateAPI.apply_chat_template returns the messages for the
// remote backend), so "prompt" may also be a list of chat messages: it is rendered with the served chat template.
const tokenizeSchema = z.union([
  z.object({ model: z.string().nullish(), prompt: z.string(), add_special_tokens: z.boolean().nullish() }),
  z.object({ model: z.string().nullish(), prompt: chatRequestSchema.shape.messages, add_special_tokens: z.boolean().nullish() }),
  z.object({ model: z.string().nullish(), messages: chatRequestSchema.shape.messages, add_generation_prompt: z.boolean().nullish(), continue_final_message: z.boolean().nullish() }),
]);
const detokenizeSchema = z.object({ model: z.string().nullish(), tokens: z.array(z.number().int().min(0)) });

export function packageVersion(): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('../../package.json') as { version: string }).version;
}

/**
 * A special token's text when it round-trips: `/tokenize` (without special tokens) maps it back to exactly that id,
 * which is how lm-eval's RemoteTokenizer derives `eos_token_id` / `bos_token_id` (`encode(eos_token)[0]`). Null when
 * the token has no text form (byte-level tokenizers), so clients fall back instead of using a wrong id.
 */
function specialText(tokenizer: TextTokenizer, id: number | null): string | null {
  if (id === null) return null;
  let text: string;
  try {
    text = tokenizer.decode([id], { skipSpecialTokens: false });
  } catch {
    return null;
  }
  if (!text) return null;
  const back = tokenizer.encode(text);
  return back.length === 1 && back[0] === id ? text : null;
}

/**
 * `GET /tokenizer_info`, as vLLM's (`TokenizerInfoResponse`: `tokenizer_class` plus the tokenizer's init kwargs, i.e.
 * tokenizer_config.json): the JSON-serialisable tokenizer_config.json fields, with `bos_token` / `eos_token` /
 * `pad_token` / `unk_token` as strings (or null; the key is always present: lm-eval's
 * check_remote_tokenizer_support requires "eos_token" in the reply), `chat_template` (the served Jinja template's
 * source, or null) and `model_max_length` (the served context).
 */
export function tokenizerInfo(sc: ServerContext): Record<string, unknown> {
  const tok = sc.served.tokenizer;
  const out: Record<string, unknown> = {};
  // tokenizer_config.json was parsed from JSON, so every value serialises; the id → token table is left out (size).
  for (const [k, v] of Object.entries(tok.config)) if (k !== 'added_tokens_decoder') out[k] = v;
  out['tokenizer_class'] = typeof tok.config['tokenizer_class'] === 'string' ? tok.config['tokenizer_class'] : tok.kind === 'bytes' ? 'ByteTokenizer' : 'PreTrainedTokenizerFast';
  out['bos_token'] = specialText(tok, tok.bosTokenId);
  out['eos_token'] = specialText(tok, tok.eosTokenId);
  for (const key of ['pad_token', 'unk_token']) {
    const v = tok.config[key];
    out[key] = typeof v === 'string' ? v : v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string' ? (v as { content: string }).content : null;
  }
  const template = sc.served.template;
  out['chat_template'] = template instanceof JinjaChatTemplate ? template.source : null;
  out['model_max_length'] = sc.contextLength;
  return out;
}

export function registerExtras(app: Hono, sc: ServerContext): void {
  const modelCard = { id: sc.served.id, object: 'model', created: sc.created, owned_by: 'llama-pro', max_model_len: sc.contextLength };
  app.get('/health', (c) => c.json({ status: 'ok', queue: sc.queue.size }));
  app.get('/tokenizer_info', (c) => c.json(tokenizerInfo(sc)));
  app.get('/version', (c) => c.json({ version: packageVersion() }));
  app.get('/v1/models', (c) => c.json({ object: 'list', data: [modelCard] }));
  app.get('/v1/models/:id{.+}', (c) => {
    checkModel(sc, c.req.param('id'));
    return c.json(modelCard);
  });
  app.get('/metrics', (c) => {
    const running = sc.queue.running;
    const text = sc.metrics.render(sc.served.id, { waiting: sc.queue.size - running, running });
    return c.body(text, 200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
  });

  app.post('/tokenize', async (c) => {
    const body = await readJson(c, tokenizeSchema);
    if (body.model) checkModel(sc, body.model);
    let tokens: number[];
    const chat = 'messages' in body ? body.messages : typeof body.prompt === 'string' ? null : body.prompt;
    if (chat) {
      const messages = chat.map((m) => ({ role: m.role === 'developer' ? 'system' : m.role, content: textOf(m.content) })) as Parameters<typeof sc.prompts.ids>[0];
      try {
        tokens = sc.prompts.ids(messages, undefined, 'messages' in body ? promptOptionsOf(body) : {});
      } catch (e) {
        throw new ApiError(400, `the messages cannot be rendered with the "${sc.served.template.name}" chat template: ${(e as Error).message}`, 'invalid_request_error', 'messages');
      }
    } else if ('prompt' in body && typeof body.prompt === 'string') {
      tokens = sc.served.tokenizer.encode(body.prompt);
      // vLLM: add_special_tokens defaults to true (BOS for Llama-family tokenizers).
      if ((body.add_special_tokens ?? true) && sc.served.tokenizer.bosTokenId !== null) tokens.unshift(sc.served.tokenizer.bosTokenId);
    } else {
      throw new ApiError(400, 'send "prompt" (a string or chat messages) or "messages"', 'invalid_request_error', 'prompt');
    }
    return c.json({ count: tokens.length, max_model_len: sc.contextLength, tokens });
  });
  app.post('/detokenize', async (c) => {
    const body = await readJson(c, detokenizeSchema);
    if (body.model) checkModel(sc, body.model);
    for (const id of body.tokens) if (id >= sc.vocab) throw new ApiError(400, `token id ${id} is outside the vocabulary [0, ${sc.vocab})`, 'invalid_request_error', 'tokens');
    return c.json({ prompt: sc.served.tokenizer.decode(body.tokens) });
  });
}
