/**
 * The server's scheduler (RequestQueue) at the level of its slot session: which sequences one decode step feeds and
 * how long the session (its preallocated cache) lives. The model is TableCausalLM behind a slot session that
 * records every feed (core's per-slot fallback underneath), so each assertion is about what the queue asked for.
 */
import { GenerationRow, Rng, startSlotSession, type CausalLM, type SlotDecodeSession } from '@llama-pro/core';
import { RequestQueue } from '../src';
import { CHAR_TOKENIZER_VOCAB, TableCausalLM } from '../src/testing';

function recordingModel(): { model: CausalLM; feeds: number[][]; sessions: () => number; disposed: () => number } {
  const base = new TableCausalLM(CHAR_TOKENIZER_VOCAB, [], { eosTokenId: 999, maxPositions: 256 });
  const feeds: number[][] = [];
  let sessions = 0;
  let disposed = 0;
  const model = Object.create(base) as CausalLM;
  model.startSlotSession = (slots: number, o: { readonly maxLength: number }): SlotDecodeSession => {
    sessions++;
    const s = startSlotSession(base, slots, o);
    return {
      slots: s.slots,
      maxLength: s.maxLength,
      length: (slot) => s.length(slot),
      feed: (entries) => {
        feeds.push(entries.map((e) => e.ids.length));
        return s.feed(entries);
      },
      release: (slot) => s.release(slot),
      dispose: () => {
        disposed++;
        s.dispose();
      },
    };
  };
  return { model, feeds, sessions: () => sessions, disposed: () => disposed };
}

const job = (prompt: number[], maxNewTokens: number) => ({ prompt, row: new GenerationRow({ maxNewTokens }, new Rng(0)) });

test('requests that arrive in the same event-loop turn are admitted together: their prompts share the first step', async () => {
  const { model, feeds } = recordingModel();
  const q = new RequestQueue(16, { model, slots: 4 });
  // three separate requests (three decode calls), as three HTTP handlers would enqueue them
  const runs = [[1, 5, 6], [1, 7], [1, 8, 9, 10]].map((p) => q.decode([job(p, 3)])[0]!);
  const results = await Promise.all(runs);
  expect(results.map((r) => r.tokens.length)).toEqual([3, 3, 3]);
  // one prefill step for all three prompts (the first used to run alone while the others waited), then decode steps
  expect(feeds[0]).toEqual([3, 2, 4]);
  expect(feeds.slice(1)).toEqual([
    [1, 1, 1],
    [1, 1, 1],
  ]);
  q.close();
});

test('the slot session is kept between back-to-back busy periods and disposed when the queue closes', async () => {
  const { model, sessions, disposed } = recordingModel();
  const q = new RequestQueue(16, { model, slots: 2 });
  await q.decode([job([1, 5], 2)])[0];
  await q.idle();
  await q.decode([job([1, 6, 7], 2)])[0];
  await q.idle();
  expect([sessions(), disposed()]).toEqual([1, 0]);
  q.close();
  expect(disposed()).toBe(1);
});

test('an idle queue disposes its slot session after SESSION_IDLE_MS (2 s) and starts a fresh one for the next request', async () => {
  jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] });
  try {
    const { model, sessions, disposed } = recordingModel();
    const q = new RequestQueue(16, { model, slots: 2 });
    await q.decode([job([1, 5], 2)])[0];
    await q.idle();
    jest.advanceTimersByTime(1999);
    expect(disposed()).toBe(0);
    jest.advanceTimersByTime(1);
    expect(disposed()).toBe(1);
    await q.decode([job([1, 5], 2)])[0];
    await q.idle();
    expect(sessions()).toBe(2);
    q.close();
    expect(disposed()).toBe(2);
  } finally {
    jest.useRealTimers();
  }
});
