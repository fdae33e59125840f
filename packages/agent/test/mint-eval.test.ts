import { createAppContainer, TOKENS, resolveRegistry, type GenerateUntilRequest, type LanguageModel, type Named } from '@llama-pro/core';
import { describeWithFixtures, fixturesDir } from '@llama-pro/core/testing';
import * as path from 'node:path';
import { MintEvaluator, agentPlugin, lastNumber } from '../src';

jest.setTimeout(60_000);

/** A LanguageModel whose generate_until replies are scripted (the other calls are unused here). */
function scriptedLm(replies: string[]): LanguageModel & { requests: GenerateUntilRequest[] } {
  const requests: GenerateUntilRequest[] = [];
  let i = 0;
  return {
    name: 'scripted',
    requests,
    loglikelihood: async () => {
      throw new Error('unused');
    },
    loglikelihoodRolling: async () => {
      throw new Error('unused');
    },
    generateUntil: async (reqs) => {
      requests.push(...reqs);
      return reqs.map(() => {
        const r = replies[i++];
        if (r === undefined) throw new Error('script exhausted');
        return r;
      });
    },
  };
}

test('lastNumber reads the final number of an answer', () => {
  expect(lastNumber('It is 1,234.5 dollars.')).toBe(1234.5);
  expect(lastNumber('-3 then 7')).toBe(7);
  expect(lastNumber('none')).toBeNull();
});

test('the plugin registers mint-gsm8k and mint-humaneval as evaluators', async () => {
  const c = await createAppContainer([agentPlugin]);
  expect(resolveRegistry<Named>(c, TOKENS.Evaluator, 'evaluator').names()).toEqual(['mint-gsm8k', 'mint-humaneval']);
});

describeWithFixtures('MINT-style evaluation on the official data', [['datasets', 'gsm8k', 'test.jsonl'], ['datasets', 'humaneval', 'HumanEval.jsonl.gz']], () => {
  const dataDir = path.join(fixturesDir(), 'datasets');

  test('gsm8k: code runs in the Python tool, a wrong answer gets feedback, success rate per turn', async () => {
    // Problem 0 (gold 18): compute, answer wrong, then right → solved at turn 3. Problem 1 (gold 3): solved at turn 1.
    const lm = scriptedLm(['Let me compute.\n<execute>\neggs = 16 - 3 - 4\nprint(eggs * 2)\n', '<solution>17', 'Sorry: <solution>$18', '<solution>3']);
    const r = await new MintEvaluator('gsm8k').evaluate({ lm, dataDir, limit: 2, options: { turns: 3 } });
    expect(r.metrics).toEqual({ 'success_rate@1': 0.5, 'success_rate@2': 0.5, 'success_rate@3': 1, success_rate: 1 });
    expect(r.samples.map((s) => [s['id'], s['gold'], s['solvedAtTurn'], s['finishReason']])).toEqual([
      ['gsm8k/test/0', '18', 3, 'final'],
      ['gsm8k/test/1', '3', 1, 'final'],
    ]);
    expect(lm.requests[0]!.context).toMatch(/^System: You are a helpful assistant[\s\S]*User: Janet.s ducks lay 16 eggs/);
    expect(lm.requests[0]!.until).toEqual(expect.arrayContaining(['</execute>', '</solution>']));
    expect(lm.requests[1]!.context).toMatch(/print\(eggs \* 2\)\n<\/execute>\n\nUser: Observation:\n18\n\nAssistant:$/);
    expect(lm.requests[2]!.context).toMatch(/User: Your answer is wrong. You have 1 turn\(s\) left.\n\nAssistant:$/);
    expect(r.dataset.files[0]!.file).toBe('test.jsonl');
    expect(r.dataset.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  test('humaneval: the proposed function must pass the tests; k turns bound the episode', async () => {
    const wrong = '<solution>\ndef has_close_elements(numbers, threshold):\n    return False\n';
    const right =
      '<solution>\nfrom typing import List\n\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n' +
      '    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for j, b in enumerate(numbers) if i != j)\n';
    const r = await new MintEvaluator('humaneval').evaluate({ lm: scriptedLm([wrong, right]), dataDir, limit: 1, options: { turns: 2 } });
    expect(r.metrics).toEqual({ 'success_rate@1': 0, 'success_rate@2': 1, success_rate: 1 });
    const r2 = await new MintEvaluator('humaneval').evaluate({ lm: scriptedLm([wrong, wrong]), dataDir, limit: 1, options: { turns: 2 } });
    expect(r2.metrics['success_rate']).toBe(0);
    expect(r2.samples[0]).toMatchObject({ solvedAtTurn: null, finishReason: 'max_turns', turns: 2 });
  });
});
