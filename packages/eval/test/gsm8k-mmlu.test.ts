jest.setTimeout(180_000);
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import type { GenerateUntilRequest, LanguageModel, LoglikelihoodRequest } from '@llama-pro/core';
import { describeWithFixtures, fixturePath } from '@llama-pro/core/testing';
import { parseCsv } from '../src/util/csv';
import { PyRandom } from '../src/util/py-random';
import {
  cotStrictMatch,
  flexibleExtract,
  gsm8kCotPrompt,
  gsm8kExactMatch,
  gsm8kFewshotIndices,
  gsm8kGold,
  gsm8kPrompt,
  loadGsm8k,
  strictMatch,
  type Gsm8kDoc,
} from '../src/tasks/gsm8k';
import { aggregateMmlu, loadMmlu, mmluPrompt, type MmluData } from '../src/tasks/mmlu';
import { gsm8kCotEvaluator, gsm8kEvaluator, mmluEvaluator } from '../src/tasks/evaluators';

const sha = (s: string): string => createHash('sha256').update(s, 'utf8').digest('hex');
const DATA = fixturePath('datasets');

describe('GSM8K extraction (CONFORMANCE §2c, row for row)', () => {
  // [output, strict, strict ok, flexible, flexible ok, cot-strict (null = not listed), cot ok, gold]
  const rows: [string, string | null, boolean | null, string, boolean, string | null, boolean | null, string][] = [
    ['Janet has 3 apples and 4 more: <<3+4=7>>7 apples.\n#### 7', '7', true, '7', true, '[invalid]', false, '7'],
    ['We add them, so 1,234 total.\n#### 1,234', '1,234', true, '1,234', true, '[invalid]', false, '1234'],
    ['#### -5', '-5', true, '-5', true, null, null, '-5'],
    ['#### 5.', '5.', true, '5.', true, null, null, '5'],
    ['#### 3.50', '3.50', false, '3.50', false, null, null, '3.5'],
    ['The answer is $1,250.', '[invalid]', false, '$1,250.', true, '[invalid]', false, '1250'],
    ['I think 12 then 15\n', '[invalid]', false, '15', true, null, null, '15'],
    ['costs $18.00 in total', '[invalid]', false, '$18.00', false, null, null, '18'],
    ['The answer is 8.', null, null, '8.', true, '8', true, '8'],
    ['The answer is 18', null, null, '18', true, '1', false, '18'],
    ['So 5 - 3 = 2. The answer is 2.', null, null, '2.', true, '2', true, '2'],
    ['no number here', '[invalid]', false, '[invalid]', false, '[invalid]', false, '4'],
  ];
  it.each(rows)('%j', (out, strict, strictOk, flex, flexOk, cot, cotOk, gold) => {
    const ref = `Some worked solution.\n#### ${gold}`;
    if (strict !== null) {
      expect(strictMatch(out)).toBe(strict);
      expect(gsm8kExactMatch(strictMatch(out), ref)).toBe(strictOk);
    }
    expect(flexibleExtract(out)).toBe(flex);
    expect(gsm8kExactMatch(flexibleExtract(out), ref)).toBe(flexOk);
    if (cot !== null) {
      expect(cotStrictMatch(out)).toBe(cot);
      expect(gsm8kExactMatch(cotStrictMatch(out), gold)).toBe(cotOk);
    }
  });
  it('gold answers: regex removal order , -> $ -> (?s).*#### -> \\.$', () => {
    expect(gsm8kGold('Work.\n#### 2,125')).toBe('2125');
    expect(gsm8kGold('a #### b\n#### $5.')).toBe('5');
    expect(gsm8kExactMatch('18', 'x\n#### 18')).toBe(true);
    // Python's $ also matches before a final newline.
    expect(gsm8kGold('#### 5.\n')).toBe('5\n');
  });
});

describe('PyRandom ports CPython random.sample', () => {
  const py = spawnSync('python3', ['-c', 'import random\nr = random.Random(7)\nprint([r.sample(range(7473), 5) for _ in range(3)], random.Random(99).sample(range(15), 6), random.Random(2**40 + 3).sample(range(100000), 4))'], { encoding: 'utf8' });
  (py.status === 0 ? it : it.skip)('matches python3 for several seeds and population sizes', () => {
    const r = new PyRandom(7);
    const pop = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
    const ours = `[${[0, 1, 2].map(() => `[${r.sample(pop(7473), 5).join(', ')}]`).join(', ')}] [${new PyRandom(99).sample(pop(15), 6).join(', ')}] [${new PyRandom(2 ** 40 + 3).sample(pop(100000), 4).join(', ')}]`;
    expect(ours).toBe(py.stdout.trim());
  });
});

describeWithFixtures('GSM8K data and prompts (CONFORMANCE §6.8, §6.11)', [['datasets', 'gsm8k', 'test.jsonl']], () => {
  let test: Gsm8kDoc[];
  let train: Gsm8kDoc[];
  beforeAll(async () => {
    ({ test, train } = await loadGsm8k(fixturePath('datasets', 'gsm8k')));
  });
  it('every test gold matches the strict regex; doc 0 gold is 18', () => {
    expect(test).toHaveLength(1319);
    expect(train).toHaveLength(7473);
    for (const d of test) expect(strictMatch(d.answer)).not.toBe('[invalid]');
    expect(gsm8kGold(test[0]!.answer)).toBe('18');
  });
  it('gsm8k_cot doc 0 prompt bytes', () => {
    const p = gsm8kCotPrompt(test[0]!);
    expect(p.length).toBe(2427);
    expect(sha(p)).toBe('901fead9abd2535b6d0610c3c90125f38cad81678c4b2b98ec8fb818e3948bde');
  });
  it('gsm8k 5-shot seeded draws and doc 0 prompt bytes', () => {
    const idx = gsm8kFewshotIndices(train.length, 3);
    expect(idx).toEqual([
      [6374, 3610, 957, 61, 742],
      [7462, 6610, 4769, 286, 5501],
      [5677, 687, 806, 6279, 2905],
    ]);
    const p = gsm8kPrompt(test[0]!, idx[0]!.map((i) => train[i]!));
    expect(p.length).toBe(3187);
    expect(sha(p)).toBe('32680f263ba83280e98a8a24ceefed10a722a4cdcd9f4d78e93c45d43143ca66');
  });
  it('the evaluator cuts generations at the stop strings and scores strict and flexible', async () => {
    const seen: GenerateUntilRequest[] = [];
    const lm: LanguageModel = {
      name: 'scripted',
      loglikelihood: () => Promise.reject(new Error('unused')),
      loglikelihoodRolling: () => Promise.reject(new Error('unused')),
      generateUntil: async (reqs) => {
        seen.push(...reqs);
        // doc 0: right answer in both forms; doc 1: only a trailing number (flexible only); doc 2: wrong.
        return reqs.map((_, i) => [' She makes 18 dollars.\n#### 18', ' So the answer is 3', ' #### 1'][seen.length - reqs.length + i]!);
      },
    };
    const r = await gsm8kEvaluator.evaluate({ lm, dataDir: DATA, limit: 3 });
    expect(seen[0]!.until).toEqual(['Question:', '</s>', '<|im_end|>']);
    expect(seen[0]!.maxGenTokens).toBe(256);
    expect(sha(seen[0]!.context)).toBe('32680f263ba83280e98a8a24ceefed10a722a4cdcd9f4d78e93c45d43143ca66');
    expect(r.metrics['exact_match,strict-match']).toBeCloseTo(1 / 3, 12);
    expect(r.metrics['exact_match,flexible-extract']).toBeCloseTo(2 / 3, 12);
    expect(r.config['num_fewshot']).toBe(5);
  });
  it('gsm8k_cot: 8 exemplars, until Q:, cot strict-match with its quirk', async () => {
    const seen: GenerateUntilRequest[] = [];
    const lm: LanguageModel = {
      name: 'scripted',
      loglikelihood: () => Promise.reject(new Error('unused')),
      loglikelihoodRolling: () => Promise.reject(new Error('unused')),
      generateUntil: async (reqs) => {
        seen.push(...reqs);
        return reqs.map((_, i) => [' She sells 9 eggs for $2 each. The answer is 18.', ' The answer is 3'][i]!);
      },
    };
    const r = await gsm8kCotEvaluator.evaluate({ lm, dataDir: DATA, limit: 2 });
    expect(seen[0]!.until).toEqual(['Q:', '</s>', '<|im_end|>']);
    expect(seen[0]!.maxGenTokens).toBe(256);
    expect(sha(seen[0]!.context)).toBe('901fead9abd2535b6d0610c3c90125f38cad81678c4b2b98ec8fb818e3948bde');
    expect(r.samples.map((s) => s['strict_match'])).toEqual(['18', '[invalid]']);
    expect(r.metrics['exact_match,strict-match']).toBe(0.5);
    expect(r.config['num_fewshot']).toBe(8);
  });
});

describe('RFC 4180 CSV', () => {
  it('handles quotes, doubled quotes, embedded CRLF/LF, lone CR in a field, CRLF records', () => {
    expect(parseCsv('a,"b,c","say ""hi""\r\nthere"\r\n"x\ry",,z\n')).toEqual([
      ['a', 'b,c', 'say "hi"\r\nthere'],
      ['x\ry', '', 'z'],
    ]);
    expect(parseCsv('a,b')).toEqual([['a', 'b']]);
    expect(() => parseCsv('"open')).toThrow(/unterminated/);
  });

  it('keeps a quote inside an unquoted field, ends records at a lone CR, and a trailing comma gives an empty field', () => {
    expect(parseCsv('a"b,c\rd,\n\ne,')).toEqual([['a"b', 'c'], ['d', ''], [''], ['e', '']]);
    expect(parseCsv('')).toEqual([]);
    expect(parseCsv('"q""",""')).toEqual([['q"', '']]);
  });

  it('names the line of an error, counting line breaks inside quoted fields', () => {
    expect(() => parseCsv('x\n"two\nlines"y')).toThrow(/^line 3: unexpected character after closing quote$/);
    expect(() => parseCsv('x\n"a\nb\nc')).toThrow(/^line 4: unterminated quoted field$/);
  });
});

describeWithFixtures('MMLU (CONFORMANCE §6.12-15)', [['datasets', 'mmlu', 'test']], () => {
  let data: MmluData;
  beforeAll(async () => {
    data = await loadMmlu(fixturePath('datasets', 'mmlu'));
  });
  const count = (split: 'dev' | 'val' | 'test'): number => [...data.splits[split].values()].reduce((a, r) => a + r.length, 0);
  it('loads 57 subjects with dev 285, val 1531, test 14042 and README per-subject counts', () => {
    expect(data.subjects).toHaveLength(57);
    expect([count('dev'), count('val'), count('test')]).toEqual([285, 1531, 14042]);
    expect(data.splits.test.get('professional_law')).toHaveLength(1534);
    expect(data.splits.val.get('moral_scenarios')).toHaveLength(100);
    expect(data.splits.test.get('miscellaneous')).toHaveLength(783);
    const gold = [0, 0, 0, 0];
    for (const rows of data.splits.test.values()) for (const r of rows) gold[r.answer]!++;
    expect(gold).toEqual([3222, 3462, 3582, 3776]);
  });
  it('prompt bytes: lm-eval 5-shot, 0-shot and original evaluate.py', () => {
    const row = data.splits.test.get('abstract_algebra')![0]!;
    const shots = data.splits.dev.get('abstract_algebra')!;
    const five = mmluPrompt('abstract_algebra', row, shots);
    expect(five.length).toBe(993);
    expect(sha(five)).toBe('ff9b00310e214beacf4b324da8c9e6c1de4e49cb422f1bcb1f7037b78f40a2a3');
    expect(mmluPrompt('abstract_algebra', row, [])).toBe(
      'The following are multiple choice questions (with answers) about abstract algebra.\n\nFind the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\nA. 0\nB. 4\nC. 2\nD. 6\nAnswer:',
    );
    expect(sha(mmluPrompt('abstract_algebra', row, []))).toBe('04ebc0806ad169c848f7078af1359da6f9f2c07f662e9f3cea9a94c7d54cbc7d');
    const orig = mmluPrompt('abstract_algebra', row, shots, 'original');
    expect(orig.length).toBe(994);
    expect(sha(orig)).toBe('da2912d4e148f4edca160fef6e2223e5a198274da16b2bdca2a16695df8b77de');
  });
  it('category sizes: STEM 3153, humanities 4705, social sciences 3077, other 3107', () => {
    const all = [...data.splits.test.values()].flat().map((r) => ({ subject: r.subject, correct: true }));
    const agg = aggregateMmlu(all);
    expect(Object.fromEntries(Object.entries(agg.categories).map(([k, v]) => [k, [v.subjects, v.total]]))).toEqual({
      stem: [19, 3153],
      humanities: [13, 4705],
      social_sciences: [12, 3077],
      other: [13, 3107],
    });
  });
  it('micro vs macro fixture: all subjects right except abstract_algebra', () => {
    const all = [...data.splits.test.values()].flat().map((r) => ({ subject: r.subject, correct: r.subject !== 'abstract_algebra' }));
    const agg = aggregateMmlu(all);
    expect(agg.correct).toBe(13942);
    expect(agg.acc).toBe(13942 / 14042);
    expect(agg.accMacro).toBeCloseTo(56 / 57, 12);
  });

  const mockLm = (score: (r: LoglikelihoodRequest) => number): LanguageModel & { calls: LoglikelihoodRequest[] } => {
    const calls: LoglikelihoodRequest[] = [];
    return {
      name: 'mock',
      calls,
      loglikelihood: async (reqs) => {
        calls.push(...reqs);
        return reqs.map((r) => ({ logprob: score(r), isGreedy: false }));
      },
      loglikelihoodRolling: () => Promise.reject(new Error('unused')),
      generateUntil: () => Promise.reject(new Error('unused')),
    };
  };
  it('" B"-always mock scores 3462/14042; all-tied scores 3222/14042 (ties to A)', async () => {
    const b = mockLm((r) => (r.continuation === ' B' ? -0.5 : -3));
    const rb = await mmluEvaluator.evaluate({ lm: b, dataDir: DATA, numFewshot: 5 });
    expect(rb.details!['correct']).toBe(3462);
    expect(rb.metrics['acc']).toBeCloseTo(3462 / 14042, 12);
    expect(rb.metrics['acc']).toBeCloseTo(0.24655, 5);
    expect(new Set(b.calls.map((c) => c.continuation))).toEqual(new Set([' A', ' B', ' C', ' D']));
    expect(sha(b.calls[0]!.context)).toBe('ff9b00310e214beacf4b324da8c9e6c1de4e49cb422f1bcb1f7037b78f40a2a3');
    expect(Object.keys(rb.details!['subjects'] as object)).toHaveLength(57);
    const tied = mockLm(() => -1);
    const rt = await mmluEvaluator.evaluate({ lm: tied, dataDir: DATA });
    expect(rt.details!['correct']).toBe(3222);
    expect(rt.metrics['acc']).toBe(3222 / 14042);
    expect(rt.config['num_fewshot']).toBe(0);
    expect(tied.calls[0]!.context).toMatch(/^The following are multiple choice questions \(with answers\) about abstract algebra\.\n\nFind the degree/);
  });
});
