/**
 * The routes beside generation, in vLLM's shapes: `GET /v1/models` (with `max_model_len`), `POST /tokenize`,
 * `POST /detokenize`, `GET /version`, `GET /metrics` (Prometheus text format 0.0.4) and `GET /health`.
 */
import type { Hono } from 'hono';
import { z } from 'zod';
import type { ServerContext } from './context';
import { ApiError } from './errors';
import { checkModel } from './checks';
import { readJson, textOf } from './request';
import { chatRequestSchema } from './schemas';

const tokenizeSchema = z.union([
  z.object({ model: z.string().nullish(), prompt: z.string(), add_special_tokens: z.boolean().nullish() }),
  z.object({ model: z.string().nullish(), messages: chatRequestSchema.shape.messages, add_generation_prompt: z.boolean().nullish() }),
]);
const detokenizeSchema = z.object({ model: z.string().nullish(), tokens: z.array(z.number().int().min(0)) });

export function packageVersion(): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('../../package.json') as { version: string }).version;
}

export function registerExtras(app: Hono, sc: ServerContext): void {
  const modelCard = { id: sc.served.id, object: 'model', created: sc.created, owned_by: 'llama-pro', max_model_len: sc.contextLength };
  app.get('/health', (c) => c.json({ status: 'ok', queue: sc.queue.size }));
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
    if ('prompt' in body) {
      tokens = sc.served.tokenizer.encode(body.prompt);
      // vLLM: add_special_tokens defaults to true (BOS for Llama-family tokenizers).
      if ((body.add_special_tokens ?? true) && sc.served.tokenizer.bosTokenId !== null) tokens.unshift(sc.served.tokenizer.bosTokenId);
    } else {
      const messages = body.messages.map((m) => ({ role: m.role === 'developer' ? 'system' : m.role, content: textOf(m.content) })) as Parameters<typeof sc.prompts.ids>[0];
      tokens = sc.prompts.ids(messages);
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
