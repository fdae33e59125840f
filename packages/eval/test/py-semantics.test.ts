/**
 * Python string semantics the reference harnesses rely on (D6, D7). Expected values are CPython 3's own results,
 * written next to each check as the expression that produced them.
 */
import { ByteTokenizer } from '@llama-pro/core';
import { encodePair } from '../src/lm/local';
import { cotStrictMatch } from '../src/tasks/gsm8k';
import { mmluPrompt } from '../src/tasks/mmlu';
import { wordCount } from '../src/tasks/perplexity';
import { isPyWhitespace, pyRstrip, pyStrip } from '../src/util/py-str';

// [c for c in range(0x110000) if chr(c).isspace()] in CPython 3.11.
const PY_WHITESPACE = [
  0x9, 0xa, 0xb, 0xc, 0xd, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029,
  0x202f, 0x205f, 0x3000,
];

describe('Python whitespace (D6)', () => {
  test('isPyWhitespace is exactly str.isspace over all code points', () => {
    const got: number[] = [];
    for (let c = 0; c < 0x110000; c++) {
      if (c >= 0xd800 && c <= 0xdfff) continue;
      if (isPyWhitespace(String.fromCodePoint(c))) got.push(c);
    }
    expect(got).toEqual(PY_WHITESPACE);
  });

  test('strip / rstrip / re.split(r"\\s+") as CPython', () => {
    expect(pyStrip('\x85\x1c 12 \ufeff')).toBe('12 \ufeff'); // '\x85\x1c 12 \ufeff'.strip() == '12 \ufeff'
    expect(pyStrip('\ufeffQ?\x1f')).toBe('\ufeffQ?'); // '\ufeffQ?\x1f'.strip() == '\ufeffQ?'
    expect(pyRstrip('Answer:\x85')).toBe('Answer:');
    expect(wordCount('a\x1cb\x85c\ufeffd')).toBe(3); // len(re.split(r'\s+', 'a\x1cb\x85c\ufeffd')) == 3
  });

  test('the MMLU question is str.strip()ped ({{question.strip()}}), not JS-trimmed', () => {
    const row = { subject: 'x', question: '\ufeffWhat?\x1c', choices: ['a', 'b', 'c', 'd'] as [string, string, string, string], answer: 0 };
    expect(mmluPrompt('x', row, [])).toContain('\n\n\ufeffWhat?\nA. a');
  });

  test('_encode_pair moves Python-whitespace tails into the continuation (context.rstrip())', () => {
    const tok = new ByteTokenizer(512);
    const p = encodePair(tok, 'Answer:\x85', 'B', []);
    // n_spaces = len('Answer:\x85') - len('Answer:\x85'.rstrip()) == 1
    expect(p.context).toEqual(tok.encode('Answer:'));
    expect(p.continuation).toEqual(tok.encode('\x85B'));
  });
});

describe('regex dot (D7)', () => {
  test("the CoT strict-match '.' matches \\r and U+2028 as Python's re does", () => {
    // re.findall(r'The answer is (\-?[0-9\.\,]+).', 'The answer is 18\r\nThe answer is 7\u2028') == ['18', '7']
    expect(cotStrictMatch('The answer is 18\r\nThe answer is 7\u2028')).toBe('18');
    expect(cotStrictMatch('The answer is 7\u2028')).toBe('7');
    expect(cotStrictMatch('The answer is 18\n')).toBe('1'); // ... 'The answer is 18\n') == ['1']
  });
});
