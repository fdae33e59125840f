/**
 * The accuracy protocol: the prompt is the training text up to the answer (as text and as token ids of
 * the study's byte-level tokenizer.json), the scorer follows lm-eval's GSM8K strict-match
 * (`#### (-?[0-9.,]+)`, first match, `regexes_to_ignore` `,` `$` `(?s).*#### ` `\.$`), and the
 * majority-answer baseline counts what always answering the commonest training answer scores.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { byteTokenizerJson, loadTokenizerOrBytes, writeTokenizerFiles } from '@llama-pro/core';
import { DOMAIN_TASKS, type MathProblem, generateCorpora, problemPrompt, problemText } from '../src/corpora';
import { majorityAnswerBaseline, scoreAnswer } from '../src/study';

const nine: MathProblem = { question: 'How many eggs does Tim have? He has 9.', answer: '9.\n#### 9', value: 9 };
const worked: MathProblem = { question: 'How many eggs does Tim have? He has 4 and gets 5 more.', answer: '4 + 5 = 9.\n#### 9', value: 9 };

describe('scoreAnswer (GSM8K strict match)', () => {
  it.each([
    [' #### 9', true, '9'],
    [' 4 + 5 = 9.\n#### 9', true, '9'],
    // lm-eval's regex captures "9." and the ignore pattern `\.$` drops the final period.
    [' #### 9.', true, '9.'],
    [' #### 1,000', false, '1,000'],
    [' #### 8', false, '8'],
    [' #### 19', false, '19'],
    // Without "#### " nothing is extracted, even when the right number is there.
    [' 9', false, '[invalid]'],
    [' 9.\n', false, '[invalid]'],
    // The first "#### n" counts (group_select 0), not a later one.
    [' #### 8\n#### 9', false, '8'],
  ])('%j → correct %s (extracted %j)', (generation, correct, extracted) => {
    expect(scoreAnswer(generation, nine)).toEqual({ extracted, correct });
    expect(scoreAnswer(generation, worked).correct).toBe(correct);
  });
});

describe('the accuracy prompt is the training format', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'study-scoring-'));
    await writeTokenizerFiles(dir, byteTokenizerJson(259));
  });
  afterAll(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it.each(Object.keys(DOMAIN_TASKS))('%s: training text = prompt + " " + answer, in text and token ids; the gold continuation scores correct', async (task) => {
    const tok = await loadTokenizerOrBytes(dir, 259);
    expect(tok.kind).not.toBe('bytes');
    const c = generateCorpora(3, { generalTrain: 10, generalVal: 2, domainTrain: 20, domainVal: 2, domainTest: 20 }, task);
    for (const p of c.domainTest) {
      const text = problemText(p);
      const prompt = problemPrompt(p);
      expect(text).toBe(`${prompt} ${p.answer}`);
      const ids = tok.encode(text);
      const promptIds = tok.encode(prompt);
      expect(ids.slice(0, promptIds.length)).toEqual(promptIds);
      // What a model that learned the training text generates after the prompt is scored correct …
      expect(tok.decode(ids.slice(promptIds.length))).toBe(` ${p.answer}`);
      expect(scoreAnswer(` ${p.answer}`, p).correct).toBe(true);
      // … and the same text with another final number is not.
      expect(scoreAnswer(` ${p.answer.replace(/#### (\d+)$/, (_, n: string) => `#### ${Number(n) + 1}`)}`, p).correct).toBe(false);
    }
    // Training documents are in the same format as the prompts (every one has the answer marker).
    for (const t of c.domainTrain) expect(t).toMatch(/^Question: [^\n]+\nAnswer: [^]*#### -?\d+$/);
  });
});

describe('majorityAnswerBaseline', () => {
  it('answers the commonest training answer (ties: the smaller) and counts the test problems it gets right', () => {
    const texts = ['Question: a\nAnswer: #### 7', 'Question: b\nAnswer: 3 + 4 = 7.\n#### 7', 'Question: c\nAnswer: #### 5', 'Question: d\nAnswer: #### 5', 'Question: e\nAnswer: #### 9', 'no answer here'];
    const test: MathProblem[] = [5, 7, 5, 9].map((v) => ({ question: `q${v}`, answer: `#### ${v}`, value: v }));
    // 5 and 7 both occur twice: the tie goes to 5, which answers 2 of the 4 test problems.
    expect(majorityAnswerBaseline(texts, test)).toEqual({ answer: '5', accuracy: 0.5, correct: 2, total: 4 });
    expect(majorityAnswerBaseline(texts.slice(0, 3), test)).toEqual({ answer: '7', accuracy: 0.25, correct: 1, total: 4 });
    expect(majorityAnswerBaseline([], test)).toEqual({ answer: '', accuracy: 0, correct: 0, total: 4 });
  });
});
