/**
 * Built-in corpora, generated deterministically from a seed (no downloads):
 * - general: short TinyStories-like stories (characters, places, actions, feelings);
 * - domain: GSM8K-style arithmetic word problems with a worked answer ending in `#### <n>`.
 * Held-out splits: general validation text, domain validation text, and domain test questions with gold
 * answers. Test questions are unique and never occur in the domain training or validation text.
 */
import { Rng } from '@llama-pro/core';

const NAMES = ['Tom', 'Lily', 'Max', 'Mia', 'Ben', 'Sara', 'Leo', 'Anna', 'Sam', 'Zoe', 'Tim', 'Lucy'];
const ANIMALS = ['cat', 'dog', 'bird', 'frog', 'bunny', 'duck', 'fox', 'bear'];
const PLACES = ['the park', 'the garden', 'the forest', 'the beach', 'the farm', 'the lake', 'the hill', 'the town'];
const THINGS = ['ball', 'kite', 'box', 'hat', 'boat', 'cake', 'book', 'toy car', 'red balloon', 'shell'];
const FEELINGS = ['happy', 'sad', 'scared', 'proud', 'tired', 'excited', 'angry', 'surprised'];
const WEATHER = ['sunny', 'rainy', 'windy', 'cold', 'warm', 'quiet'];
const ACTIONS = ['play', 'run', 'sing', 'dance', 'jump', 'swim', 'look for bugs', 'draw'];

const ITEMS = ['apples', 'pencils', 'stickers', 'marbles', 'cookies', 'books', 'shells', 'cards', 'eggs', 'coins'];

function pick<T>(rng: Rng, xs: readonly T[]): T {
  return xs[rng.int(xs.length)]!;
}

function pronoun(name: string): { he: string; his: string } {
  const girls = new Set(['Lily', 'Mia', 'Sara', 'Anna', 'Zoe', 'Lucy']);
  return girls.has(name) ? { he: 'she', his: 'her' } : { he: 'he', his: 'his' };
}

function cap(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** One short story of 4-7 sentences. */
export function generateStory(rng: Rng): string {
  const a = pick(rng, NAMES);
  let b = pick(rng, NAMES);
  while (b === a) b = pick(rng, NAMES);
  const p = pronoun(a);
  const place = pick(rng, PLACES);
  const thing = pick(rng, THINGS);
  const animal = pick(rng, ANIMALS);
  const sentences: string[] = [];
  sentences.push(pick(rng, [`Once upon a time, there was a little ${pick(rng, ['girl', 'boy', 'kid'])} named ${a}.`, `One ${pick(rng, WEATHER)} day, ${a} went to ${place}.`, `${a} had a ${thing}.`]));
  const middle = [
    `${cap(p.he)} liked to ${pick(rng, ACTIONS)} with ${b}.`,
    `At ${place}, ${p.he} saw a ${animal}.`,
    `The ${animal} was ${pick(rng, FEELINGS)}.`,
    `${a} and ${b} wanted to ${pick(rng, ACTIONS)}.`,
    `${b} said, "Can I have your ${thing}?"`,
    `${a} felt ${pick(rng, FEELINGS)} and shared the ${thing}.`,
    `Then the ${thing} fell into the ${pick(rng, ['water', 'mud', 'grass', 'sand'])}.`,
    `${cap(p.his)} mom said, "Be careful, ${a}."`,
    `The sky was ${pick(rng, WEATHER)}, so they went home.`,
  ];
  const n = 2 + rng.int(4);
  for (const i of rng.shuffle([...middle.keys()]).slice(0, n)) sentences.push(middle[i]!);
  sentences.push(pick(rng, [`In the end, ${a} was ${pick(rng, FEELINGS)}.`, `${a} and ${b} became good friends.`, `From that day on, ${a} always took care of the ${thing}.`, `They all went home and had a nap.`]));
  return sentences.join(' ');
}

export interface MathProblem {
  readonly question: string;
  /** Worked answer ending in `#### <n>`. */
  readonly answer: string;
  readonly value: number;
}

/**
 * One arithmetic word problem: addition, subtraction, or a product, with small numbers so that a
 * miniature model can learn them. The answer works it out and ends with `#### <n>`.
 */
export function generateProblem(rng: Rng): MathProblem {
  const who = pick(rng, NAMES);
  const { he } = pronoun(who);
  const item = pick(rng, ITEMS);
  const kind = rng.int(3);
  if (kind === 0) {
    const x = 1 + rng.int(9);
    const y = 1 + rng.int(9);
    const v = x + y;
    return {
      question: `${who} has ${x} ${item} and gets ${y} more. How many ${item} does ${who} have?`,
      answer: `${who} has ${x} + ${y} = ${v} ${item}.\n#### ${v}`,
      value: v,
    };
  }
  if (kind === 1) {
    const x = 2 + rng.int(17);
    const y = 1 + rng.int(x - 1);
    const v = x - y;
    return {
      question: `${who} has ${x} ${item} and gives away ${y}. How many ${item} are left?`,
      answer: `${cap(he)} has ${x} - ${y} = ${v} ${item} left.\n#### ${v}`,
      value: v,
    };
  }
  const x = 2 + rng.int(4);
  const y = 1 + rng.int(5);
  const v = x * y;
  return {
    question: `${who} has ${x} bags with ${y} ${item} in each bag. How many ${item} are there?`,
    answer: `There are ${x} * ${y} = ${v} ${item}.\n#### ${v}`,
    value: v,
  };
}

/**
 * The `copy-add` domain task, chosen for what a frozen miniature base plus a few new blocks can learn
 * from domain-only data in a few hundred steps: one third copy problems (the answer is a number stated
 * in the question: needs the answer format and copying, which the base's attention already does for
 * names in stories), one third "gets 1 more" (copy plus a successor table of 9 facts) and one third
 * sums of two small numbers (25 facts). Exact match then separates variants by how much of the new
 * skill they learned instead of being 0 for all of them.
 */
export function generateCopyAddProblem(rng: Rng): MathProblem {
  const who = pick(rng, NAMES);
  const { he } = pronoun(who);
  const item = pick(rng, ITEMS);
  const kind = rng.int(3);
  // The numbers come last in the question, so each one sits at a fixed distance from where the answer
  // uses it (names and items vary in length before them): copying is a fixed relative offset.
  if (kind === 0) {
    const x = 1 + rng.int(9);
    return {
      question: `How many ${item} does ${who} have? ${cap(he)} has ${x}.`,
      answer: `${x}.\n#### ${x}`,
      value: x,
    };
  }
  const x = kind === 1 ? 1 + rng.int(9) : 1 + rng.int(5);
  const y = kind === 1 ? 1 : 1 + rng.int(5);
  const v = x + y;
  return {
    question: `How many ${item} does ${who} have? ${cap(he)} has ${x} and gets ${y} more.`,
    answer: `${x} + ${y} = ${v}.\n#### ${v}`,
    value: v,
  };
}

/** Domain tasks by name: `arithmetic` (sums, differences, products up to 18) and `copy-add` (above). */
export const DOMAIN_TASKS: Readonly<Record<string, (rng: Rng) => MathProblem>> = { arithmetic: generateProblem, 'copy-add': generateCopyAddProblem };

/** Training / validation text of a problem (the format the model learns and is prompted with). */
export function problemText(p: MathProblem): string {
  return `Question: ${p.question}\nAnswer: ${p.answer}`;
}

/** The prompt for a test question: the answer is generated after it. */
export function problemPrompt(p: MathProblem): string {
  return `Question: ${p.question}\nAnswer:`;
}

export interface CorpusSizes {
  generalTrain: number;
  /**
   * Share of the general training documents replaced by domain problems (drawn outside the test set),
   * like the little math a general pretraining corpus holds: the base then has some domain ability
   * (copying numbers into the answer format) for the variants to build on. Default 0.
   */
  domainInGeneral?: number;
  generalVal: number;
  domainTrain: number;
  domainVal: number;
  domainTest: number;
}

export interface StudyCorpora {
  readonly seed: number;
  readonly generalTrain: string[];
  readonly generalVal: string[];
  readonly domainTrain: string[];
  readonly domainVal: string[];
  readonly domainTest: MathProblem[];
}

/**
 * The study corpora for `seed`. Stories and problems come from independent streams; held-out problems
 * are drawn first and their questions are excluded from the training and validation text, so no test
 * question is ever seen in training.
 */
export function generateCorpora(seed: number, sizes: CorpusSizes, task: keyof typeof DOMAIN_TASKS = 'arithmetic'): StudyCorpora {
  const generateProblem = DOMAIN_TASKS[task];
  if (!generateProblem) throw new RangeError(`unknown domain task "${task}"; known: ${Object.keys(DOMAIN_TASKS).join(', ')}`);
  const general = new Rng(seed * 2 + 1);
  const domain = new Rng(seed * 2 + 2);
  const generalVal = Array.from({ length: sizes.generalVal }, () => generateStory(general));
  const generalTrain = Array.from({ length: sizes.generalTrain }, () => generateStory(general));
  const domainTest: MathProblem[] = [];
  const heldOut = new Set<string>();
  let guard = 0;
  while (domainTest.length < sizes.domainTest) {
    if (++guard > sizes.domainTest * 1000) throw new Error(`cannot draw ${sizes.domainTest} distinct test problems`);
    const p = generateProblem(domain);
    if (heldOut.has(p.question)) continue;
    heldOut.add(p.question);
    domainTest.push(p);
  }
  const draw = (n: number): string[] => {
    const out: string[] = [];
    let g = 0;
    while (out.length < n) {
      if (++g > n * 1000) throw new Error(`cannot draw ${n} problems outside the test set`);
      const p = generateProblem(domain);
      if (!heldOut.has(p.question)) out.push(problemText(p));
    }
    return out;
  };
  const domainVal = draw(sizes.domainVal);
  const domainTrain = draw(sizes.domainTrain);
  const mixed = Math.round((sizes.domainInGeneral ?? 0) * generalTrain.length);
  if (mixed > 0) {
    // A separate stream, so that the domain splits do not depend on the mixture; spread evenly.
    const extra = new Rng(seed * 2 + 3);
    const every = generalTrain.length / mixed;
    for (let i = 0; i < mixed; i++) {
      let p = generateProblem(extra);
      while (heldOut.has(p.question)) p = generateProblem(extra);
      generalTrain[Math.floor(i * every)] = problemText(p);
    }
  }
  return { seed, generalTrain, generalVal, domainTrain, domainVal, domainTest };
}
