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
  /** Answer ending in `#### <n>` (worked, or the final line alone). */
  readonly answer: string;
  readonly value: number;
}

/** What every problem of a task shares: a person, their pronoun, an item. */
interface ProblemContext {
  readonly who: string;
  readonly he: string;
  readonly item: string;
}

/** One kind of problem of a task, given the shared context. */
type ProblemKind = (rng: Rng, c: ProblemContext) => MathProblem;

/**
 * The sampling both built-in generators share: a person, an item, then one of the task's kinds with
 * equal probability (in this order, so that a seed gives the same problems as before the refactor).
 */
function sampleProblem(rng: Rng, kinds: readonly ProblemKind[]): MathProblem {
  const who = pick(rng, NAMES);
  const { he } = pronoun(who);
  const item = pick(rng, ITEMS);
  return kinds[rng.int(kinds.length)]!(rng, { who, he, item });
}

const ARITHMETIC_KINDS: readonly ProblemKind[] = [
  (rng, { who, item }) => {
    const x = 1 + rng.int(9);
    const y = 1 + rng.int(9);
    const v = x + y;
    return {
      question: `${who} has ${x} ${item} and gets ${y} more. How many ${item} does ${who} have?`,
      answer: `${who} has ${x} + ${y} = ${v} ${item}.\n#### ${v}`,
      value: v,
    };
  },
  (rng, { who, he, item }) => {
    const x = 2 + rng.int(17);
    const y = 1 + rng.int(x - 1);
    const v = x - y;
    return {
      question: `${who} has ${x} ${item} and gives away ${y}. How many ${item} are left?`,
      answer: `${cap(he)} has ${x} - ${y} = ${v} ${item} left.\n#### ${v}`,
      value: v,
    };
  },
  (rng, { who, item }) => {
    const x = 2 + rng.int(4);
    const y = 1 + rng.int(5);
    const v = x * y;
    return {
      question: `${who} has ${x} bags with ${y} ${item} in each bag. How many ${item} are there?`,
      answer: `There are ${x} * ${y} = ${v} ${item}.\n#### ${v}`,
      value: v,
    };
  },
];

/**
 * One arithmetic word problem: addition, subtraction, or a product, with small numbers so that a
 * miniature model can learn them. The answer works it out and ends with `#### <n>`.
 */
export function generateProblem(rng: Rng): MathProblem {
  return sampleProblem(rng, ARITHMETIC_KINDS);
}

// The numbers come last in the question, so each one sits at a fixed distance from where the answer
// uses it (names and items vary in length before them): copying is a fixed relative offset.
const COPY_ADD_KINDS: readonly ProblemKind[] = [
  (rng, { who, he, item }) => {
    const x = 1 + rng.int(9);
    return { question: `How many ${item} does ${who} have? ${cap(he)} has ${x}.`, answer: `${x}.\n#### ${x}`, value: x };
  },
  (rng, c) => copyAddSum(c, 1 + rng.int(9), 1),
  (rng, c) => {
    const x = 1 + rng.int(5);
    return copyAddSum(c, x, 1 + rng.int(5));
  },
];

function copyAddSum({ who, he, item }: ProblemContext, x: number, y: number): MathProblem {
  const v = x + y;
  return { question: `How many ${item} does ${who} have? ${cap(he)} has ${x} and gets ${y} more.`, answer: `${x} + ${y} = ${v}.\n#### ${v}`, value: v };
}

/**
 * The `copy-add` domain task: one third copy problems (the answer is a number stated in the question),
 * one third "gets 1 more" (copy plus a successor table of 9 facts) and one third sums of two numbers up
 * to 5 (25 facts), with worked answers. Copying the numbers into the answer is a general skill the base
 * must bring (the mini base learns it from the problems mixed into its pretraining: after 500 steps with
 * 10 % it copies at chance, after 1500 steps with 30 % it copies the first operand 88 % of the time);
 * the facts are what domain training adds.
 */
export function generateCopyAddProblem(rng: Rng): MathProblem {
  return sampleProblem(rng, COPY_ADD_KINDS);
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

/** `n` problems from `rng` that `accept` takes (it may record them), in order; a bounded number of tries. */
function drawProblems(rng: Rng, generate: (rng: Rng) => MathProblem, n: number, accept: (p: MathProblem) => boolean, what: string): MathProblem[] {
  const out: MathProblem[] = [];
  for (let tries = 0; out.length < n; tries++) {
    if (tries >= n * 1000) throw new Error(`cannot draw ${n} ${what}`);
    const p = generate(rng);
    if (accept(p)) out.push(p);
  }
  return out;
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
  // Held-out problems first (distinct questions), then everything else is drawn outside them.
  const heldOut = new Set<string>();
  const distinct = (p: MathProblem) => {
    if (heldOut.has(p.question)) return false;
    heldOut.add(p.question);
    return true;
  };
  const domainTest = drawProblems(domain, generateProblem, sizes.domainTest, distinct, 'distinct test problems');
  const outside = (p: MathProblem) => !heldOut.has(p.question);
  const domainVal = drawProblems(domain, generateProblem, sizes.domainVal, outside, 'problems outside the test set').map(problemText);
  const domainTrain = drawProblems(domain, generateProblem, sizes.domainTrain, outside, 'problems outside the test set').map(problemText);
  const mixed = Math.round((sizes.domainInGeneral ?? 0) * generalTrain.length);
  if (mixed > 0) {
    // A separate stream, so that the domain splits do not depend on the mixture; spread evenly.
    const extra = drawProblems(new Rng(seed * 2 + 3), generateProblem, mixed, outside, 'problems outside the test set');
    const every = generalTrain.length / mixed;
    extra.forEach((p, i) => (generalTrain[Math.floor(i * every)] = problemText(p)));
  }
  return { seed, generalTrain, generalVal, domainTrain, domainVal, domainTest };
}
