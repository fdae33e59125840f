/**
 * MMLU shows progress while it runs (issue 18 item 9: a 271M model showed none for 100 s): the
 * log-likelihood requests go to the LM in steps of at most 64 (16 questions), each followed by an update.
 */
import type { LoglikelihoodRequest } from '@llama-pro/core';
import { describeWithFixtures, fixturePath } from '@llama-pro/core/testing';
import { mmluEvaluator } from '../src/tasks/evaluators';

describeWithFixtures('MMLU progress', [['datasets', 'mmlu', 'test']], () => {
  it('updates after every 64 requests, from the first step to the total', async () => {
    const calls: number[] = [];
    const events: string[] = [];
    const lm = {
      name: 'mock',
      loglikelihood: async (reqs: readonly LoglikelihoodRequest[]) => {
        calls.push(reqs.length);
        return reqs.map(() => ({ logprob: -1, isGreedy: false }));
      },
      loglikelihoodRolling: () => Promise.reject(new Error('unused')),
      generateUntil: () => Promise.reject(new Error('unused')),
    };
    const progress = { start: (total: number, label: string) => events.push(`start ${label} ${total}`), update: (done: number) => events.push(`update ${done}`), stop: () => events.push('stop') };
    // --limit 1 per subject: 57 questions, 4 continuations each (MMLU's 57 subjects, lm-eval's " A".." D").
    await mmluEvaluator.evaluate({ lm, dataDir: fixturePath('datasets'), limit: 1, progress });
    expect(events[0]).toBe('start mmlu loglikelihood 228');
    const updates = events.filter((e) => e.startsWith('update')).map((e) => Number(e.split(' ')[1]));
    expect(updates).toEqual([64, 128, 192, 228]);
    expect(calls).toEqual([64, 64, 64, 36]);
    expect(events.at(-1)).toBe('stop');
  });
});
