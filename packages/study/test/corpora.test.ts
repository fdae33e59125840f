import { Rng } from '@llama-pro/core';
import { generateCopyAddProblem, generateCorpora, generateProblem, problemPrompt, problemText } from '../src/corpora';

const SIZES = { generalTrain: 300, generalVal: 40, domainTrain: 400, domainVal: 40, domainTest: 60 };

/** Recomputes a problem's answer from its question text (independent of the generator's arithmetic). */
function solve(question: string): number {
  let m = /has (\d+) \S+ and gets (\d+) more/.exec(question);
  if (m) return Number(m[1]) + Number(m[2]);
  m = /has (\d+) \S+ and gives away (\d+)\./.exec(question);
  if (m) return Number(m[1]) - Number(m[2]);
  m = /has (\d+) bags with (\d+) \S+ in each bag/.exec(question);
  if (m) return Number(m[1]) * Number(m[2]);
  throw new Error(`unrecognized question: ${question}`);
}

describe('built-in corpora', () => {
  it('are deterministic by seed and differ between seeds', () => {
    const a = generateCorpora(11, SIZES);
    const b = generateCorpora(11, SIZES);
    const c = generateCorpora(12, SIZES);
    expect(b).toEqual(a);
    expect(c.generalTrain).not.toEqual(a.generalTrain);
    expect(c.domainTrain).not.toEqual(a.domainTrain);
    expect(a.generalTrain).toHaveLength(300);
    expect(a.domainTest).toHaveLength(60);
  });

  it('stories are varied English-like text', () => {
    const { generalTrain } = generateCorpora(3, SIZES);
    const distinct = new Set(generalTrain);
    expect(distinct.size).toBeGreaterThan(290);
    for (const s of generalTrain.slice(0, 50)) {
      expect(s).toMatch(/^[A-Z][^]*[.!?"]$/);
      expect(s.split(/(?<=[.!?"])\s/).length).toBeGreaterThanOrEqual(3);
    }
    const words = new Set(generalTrain.join(' ').split(/\W+/));
    expect(words.size).toBeGreaterThan(80);
  });

  it('every worked answer ends in #### n with the correct value', () => {
    const rng = new Rng(5);
    for (let i = 0; i < 500; i++) {
      const p = generateProblem(rng);
      const expected = solve(p.question);
      expect(p.value).toBe(expected);
      expect(p.answer.endsWith(`\n#### ${expected}`)).toBe(true);
      // The worked line states the same computation.
      expect(p.answer).toContain(`= ${expected} `);
    }
    const { domainTrain } = generateCorpora(9, SIZES);
    for (const t of domainTrain) {
      const q = /^Question: (.*)\nAnswer: /.exec(t)![1]!;
      expect(t.endsWith(`#### ${solve(q)}`)).toBe(true);
    }
  });

  it('no test question appears in the training or validation text; test questions are distinct', () => {
    const c = generateCorpora(1, { ...SIZES, domainTrain: 3000 });
    const trainQuestions = new Set([...c.domainTrain, ...c.domainVal].map((t) => /^Question: (.*)\n/.exec(t)![1]));
    expect(new Set(c.domainTest.map((p) => p.question)).size).toBe(c.domainTest.length);
    for (const p of c.domainTest) expect(trainQuestions.has(p.question)).toBe(false);
  });

  it('the prompt is the problem text up to the answer', () => {
    const p = generateProblem(new Rng(2));
    expect(problemText(p).startsWith(problemPrompt(p))).toBe(true);
    expect(problemText(p).slice(problemPrompt(p).length)).toBe(' ' + p.answer);
  });
});

describe('copy-add task and domain problems in the general corpus', () => {
  /** Recomputes the answer from the question text (independent of the generator). */
  function solveCopyAdd(question: string): number {
    let m = /has (\d+) and gets (\d+) more\.$/.exec(question);
    if (m) return Number(m[1]) + Number(m[2]);
    m = /has (\d+)\.$/.exec(question);
    if (m) return Number(m[1]);
    throw new Error(`unrecognized question: ${question}`);
  }

  it('answers are correct, end in #### n, and the numbers close the question', () => {
    const rng = new Rng(4);
    const kinds = new Set<string>();
    for (let i = 0; i < 600; i++) {
      const p = generateCopyAddProblem(rng);
      expect(p.value).toBe(solveCopyAdd(p.question));
      expect(p.answer.endsWith(`\n#### ${p.value}`)).toBe(true);
      kinds.add(/gets 1 more/.test(p.question) ? 'plus1' : /gets/.test(p.question) ? 'sum' : 'copy');
    }
    expect([...kinds].sort()).toEqual(['copy', 'plus1', 'sum']);
  });

  it('mixes the requested share of problems into general pretraining, never a test question', () => {
    const sizes = { ...SIZES, generalTrain: 1000, domainInGeneral: 0.1 };
    const c = generateCorpora(5, sizes, 'copy-add');
    const mixed = c.generalTrain.filter((t) => t.startsWith('Question: '));
    expect(mixed).toHaveLength(100);
    const test = new Set(c.domainTest.map((p) => p.question));
    for (const t of mixed) expect(test.has(/^Question: (.*)\n/.exec(t)![1]!)).toBe(false);
    // The domain splits do not depend on the mixture.
    const plain = generateCorpora(5, { ...sizes, domainInGeneral: 0 }, 'copy-add');
    expect(plain.domainTrain).toEqual(c.domainTrain);
    expect(plain.domainTest).toEqual(c.domainTest);
    expect(plain.generalTrain.filter((t) => t.startsWith('Question: '))).toHaveLength(0);
  });
});
