jest.setTimeout(180_000);
import { describeWithFixtures, fixturePath } from '@llama-pro/core/testing';
import { passAtK, passAtKTable, stripPromptEcho, truncateAtStops } from '../src/metrics';
import { evaluateFunctionalCorrectness, HUMANEVAL_STOPS, humanEvalProgram, loadHumanEval, type HumanEvalProblem } from '../src/tasks/humaneval';
import { PythonSandbox } from '../src/sandbox/python-sandbox';

describe('pass@k (CONFORMANCE §1 table)', () => {
  const table: [number, number, number, number][] = [
    [1, 0, 1, 0.0],
    [1, 1, 1, 1.0],
    [10, 3, 1, 0.30000000000000004],
    [10, 3, 5, 0.9166666666666666],
    [10, 3, 8, 1.0],
    [200, 10, 1, 0.04999999999999982],
    [200, 10, 10, 0.40854786608141724],
    [200, 10, 100, 0.9992289739372822],
    [200, 1, 100, 0.5],
    [20, 7, 10, 0.9984520123839009],
    [6, 3, 1, 0.4999999999999999],
  ];
  it.each(table)('n=%i c=%i k=%i -> %p', (n, c, k, expected) => {
    expect(Math.abs(passAtK(n, c, k) - expected)).toBeLessThanOrEqual(1e-12);
  });
  it('omits a k when some problem has fewer than k samples', () => {
    expect(passAtKTable([{ n: 10, c: 3 }, { n: 5, c: 1 }], [1, 10])).toEqual({ 'pass@1': (0.3 + 0.2) / 2 });
    expect(() => passAtK(3, 4, 1)).toThrow(RangeError);
  });
});

describe('stop truncation (CONFORMANCE §6.6, §6.7)', () => {
  it('cuts at the earliest stop in the generated text only', () => {
    expect(truncateAtStops('    return x\n\ndef helper():\n    pass', HUMANEVAL_STOPS)).toBe('    return x\n');
    expect(truncateAtStops('    y = 1\n    print(y)\nprint(2)\n#c\n', HUMANEVAL_STOPS)).toBe('    y = 1\n    print(y)');
    expect(truncateAtStops('    return 1', HUMANEVAL_STOPS)).toBe('    return 1');
  });
  it('strips an echoed prompt', () => {
    expect(stripPromptEcho('def f():\n', 'def f():\n    return 1')).toBe('    return 1');
    expect(stripPromptEcho('def f():\n', '    return 1')).toBe('    return 1');
  });
});

const sandbox = new PythonSandbox();

describe('openai/human-eval example (CONFORMANCE §6.3)', () => {
  const problem: HumanEvalProblem = {
    task_id: 'test/0',
    prompt: 'def return1():\n',
    canonical_solution: '    return 1',
    test: 'def check(candidate):\n    assert candidate() == 1',
    entry_point: 'return1',
  };
  const completions = [
    "    import subprocess\n    subprocess.check_output('rm -rf tmp')",
    '    import time\n    time.sleep(10)\n    return 1',
    "    return input('enter a number')",
    '    return 1',
    '  return 1',
    '\treturn 1',
  ];
  it('scores pass@1 = 0.4999999999999999 with the reference result strings', async () => {
    const r = await evaluateFunctionalCorrectness([problem], completions.map((completion) => ({ task_id: 'test/0', completion })), sandbox);
    expect(r.metrics).toEqual({ 'pass@1': 0.4999999999999999 });
    expect(r.samples.map((s) => s.passed)).toEqual([false, false, false, true, true, true]);
    expect(r.samples[0]!.result).toBe("failed: 'NoneType' object is not callable");
    expect(r.samples[1]!.result).toBe('timed out');
    expect(r.samples[2]!.result).toMatch(/^failed/);
  });
  it('assembles the program exactly as the reference', () => {
    expect(humanEvalProgram(problem, '    return 1')).toBe('def return1():\n    return 1\ndef check(candidate):\n    assert candidate() == 1\ncheck(return1)');
  });
});

describeWithFixtures('HumanEval data (CONFORMANCE §6.1, §6.2)', [['datasets', 'humaneval', 'HumanEval.jsonl.gz']], () => {
  let problems: HumanEvalProblem[];
  beforeAll(async () => {
    ({ problems } = await loadHumanEval(fixturePath('datasets', 'humaneval')));
  });
  it('loads 164 problems', () => {
    expect(problems).toHaveLength(164);
    expect(problems[0]!.task_id).toBe('HumanEval/0');
    expect(problems[163]!.task_id).toBe('HumanEval/163');
  });
  it('canonical solutions pass 164/164 and empty completions 0/164', async () => {
    const samples = [
      ...problems.map((p) => ({ task_id: p.task_id, completion: p.canonical_solution })),
      ...problems.map((p) => ({ task_id: p.task_id, completion: '' })),
    ];
    const canon = await evaluateFunctionalCorrectness(problems, samples.slice(0, 164), sandbox, { ks: [1] });
    const failedCanon = canon.samples.filter((s) => !s.passed).map((s) => `${s.task_id}: ${s.result}`);
    expect(failedCanon).toEqual([]);
    expect(canon.metrics).toEqual({ 'pass@1': 1 });
    const empty = await evaluateFunctionalCorrectness(problems, samples.slice(164), sandbox, { ks: [1, 10] });
    expect(empty.passedSamples).toBe(0);
    expect(empty.metrics).toEqual({ 'pass@1': 0 });
  });
  it('refuses samples that do not cover every problem unless asked', async () => {
    await expect(evaluateFunctionalCorrectness(problems, [{ task_id: 'HumanEval/0', completion: '' }], sandbox)).rejects.toThrow(/not attempted/);
    await expect(evaluateFunctionalCorrectness(problems, [{ task_id: 'Nope/1', completion: '' }], sandbox)).rejects.toThrow(/unknown task_id/);
  });
});
