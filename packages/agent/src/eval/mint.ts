/**
 * MINT-style agent evaluation (Wang et al. 2023): each problem is a multi-turn episode with the Python
 * tool; the model proposes answers in <solution>, a wrong one gets feedback and the episode goes on, up
 * to k turns. Reports the success rate within t turns for t = 1..k. Tasks: `mint-gsm8k` (numeric answer)
 * and `mint-humaneval` (the solution must pass the problem's tests). Problems are the first `limit`
 * documents of the official test files (MINT uses curated subsets of 48 / 45 problems; that is the
 * default limit here).
 *
 * Registered under TOKENS.Evaluator; it satisfies @llama-pro/eval's Evaluator contract structurally
 * (this package does not import eval).
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { LlamaProError, type LanguageModel, type ProgressReporter } from '@llama-pro/core';
import { MINT_SYSTEM_PROMPT } from '../constants';
import { MintActionParser } from '../parsers/action-parser';
import type { ChatModel } from '../runtime/chat-model';
import { runAgent, type AgentFinishReason } from '../runtime/loop';
import { chatTemplateRegistry } from '../templates/chat-template';
import { PythonSandbox, type CheckJob } from '@llama-pro/sandbox';
import { createPythonTool } from '../tools/python';
import { LanguageModelChatModel } from './lm-chat-model';

/** The parts of eval's EvalContext this evaluator reads. */
export interface MintEvalContext {
  readonly lm?: LanguageModel;
  readonly dataDir: string;
  readonly limit?: number;
  readonly progress?: ProgressReporter;
  /** `turns` (k, default 5), `maxTokensPerTurn` (or eval's `maxGenTokens`; 512), `template` (plain), `temperature` (0). */
  readonly options?: Readonly<Record<string, unknown>>;
}

export interface MintTaskResult {
  readonly task: string;
  readonly metrics: Record<string, number>;
  readonly details?: Record<string, unknown>;
  readonly config: Record<string, unknown>;
  readonly dataset: { name: string; dir: string; files: { file: string; sha256: string; bytes: number }[]; sha256: string };
  readonly samples: Record<string, unknown>[];
}

interface Problem {
  id: string;
  task: string;
  gold: string;
  /** Whether a proposed answer is right. */
  check(answer: string): Promise<boolean>;
}

export class MintEvalError extends LlamaProError {
  constructor(message: string, code = 'MINT_EVAL') {
    super(code, message);
  }
}

const sha256 = (d: Uint8Array | string): string => createHash('sha256').update(d).digest('hex');

async function readFile(dir: string, file: string): Promise<{ data: Buffer; info: { file: string; sha256: string; bytes: number } }> {
  const p = path.join(dir, file);
  try {
    const data = await fsp.readFile(p);
    return { data, info: { file, sha256: sha256(data), bytes: data.length } };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new MintEvalError(`${p} not found; put the official dataset file there (or pass --data-dir)`, 'DATASET_MISSING');
    throw e;
  }
}

function jsonl<T>(data: Buffer, name: string): T[] {
  const text = (name.endsWith('.gz') ? gunzipSync(data) : data).toString('utf8');
  return text
    .split('\n')
    .filter((l) => l.trim())
    .map((l, i) => {
      try {
        return JSON.parse(l) as T;
      } catch (e) {
        throw new MintEvalError(`${name} line ${i + 1} is not valid JSON: ${(e as Error).message}`, 'DATASET_INVALID');
      }
    });
}

/** The last number in a text (commas and a trailing period dropped), or null. */
export function lastNumber(text: string): number | null {
  const m = text.replace(/,/g, '').match(/-?\d+(?:\.\d+)?/g);
  return m ? Number(m[m.length - 1]) : null;
}

/**
 * Judges a HumanEval solution in the shared code sandbox (@llama-pro/sandbox): the solution runs sandboxed, the
 * test and `check(entry_point)` in a checker outside it, so the solution cannot forge a pass.
 */
export async function passesTests(job: CheckJob, timeoutMs = 10_000): Promise<boolean> {
  const r = await new PythonSandbox().run(job, { timeoutS: timeoutMs / 1000 });
  return r.passed;
}

export class MintEvaluator {
  readonly name: string;
  readonly description: string;
  readonly needs = ['generate_until'] as const;
  readonly defaultFewshot = 0;

  constructor(readonly dataset: 'gsm8k' | 'humaneval') {
    this.name = `mint-${dataset}`;
    this.description = `MINT-style multi-turn agent evaluation on ${dataset === 'gsm8k' ? 'GSM8K' : 'HumanEval'} with the Python tool: success rate within 1..k turns`;
  }

  private async problems(dir: string, limit: number): Promise<{ problems: Problem[]; files: { file: string; sha256: string; bytes: number }[] }> {
    if (this.dataset === 'gsm8k') {
      const f = await readFile(dir, 'test.jsonl');
      const docs = jsonl<{ question: string; answer: string }>(f.data, 'test.jsonl').slice(0, limit);
      return {
        files: [f.info],
        problems: docs.map((d, i) => {
          const gold = d.answer.split('####').pop()!.trim().replace(/,/g, '');
          return {
            id: `gsm8k/test/${i}`,
            task: `${d.question}\nGive the final answer as a number inside <solution>...</solution>.`,
            gold,
            check: async (answer: string) => {
              const got = lastNumber(answer);
              return got !== null && Math.abs(got - Number(gold)) < 1e-6;
            },
          };
        }),
      };
    }
    const f = await readFile(dir, 'HumanEval.jsonl.gz');
    const docs = jsonl<{ task_id: string; prompt: string; test: string; entry_point: string }>(f.data, 'HumanEval.jsonl.gz').slice(0, limit);
    return {
      files: [f.info],
      problems: docs.map((d) => ({
        id: d.task_id,
        task: `Complete the following code:\n\n${d.prompt}\nYou may test your code with <execute>. Put the complete function (with its imports) inside <solution>...</solution>.`,
        gold: d.entry_point,
        check: async (answer: string) => {
          const code = answer.replace(/^```(?:python)?\n|```\s*$/g, '');
          const body = new RegExp(`def\\s+${d.entry_point}\\s*\\(`).test(code) ? code : `${d.prompt}${code}`;
          return passesTests({ code: body, setup: d.prompt, test: `${d.test}\n\ncheck(${d.entry_point})\n`, expose: [d.entry_point] });
        },
      })),
    };
  }

  async evaluate(ctx: MintEvalContext): Promise<MintTaskResult> {
    if (!ctx.lm) throw new MintEvalError(`task ${this.name} needs a model: pass --model <dir|http(s) endpoint>`, 'EVAL_NO_MODEL');
    const opt = <T>(k: string, d: T): T => (ctx.options?.[k] === undefined ? d : (ctx.options[k] as T));
    const k = Number(opt('turns', 5));
    if (!Number.isInteger(k) || k < 1) throw new MintEvalError(`option turns must be a positive integer, got ${String(opt('turns', 5))}`, 'USAGE');
    const maxTokensPerTurn = Number(opt('maxTokensPerTurn', opt('maxGenTokens', 512)));
    const temperature = Number(opt('temperature', 0));
    const templateName = String(opt('template', 'plain'));
    const limit = ctx.limit ?? (this.dataset === 'gsm8k' ? 48 : 45);
    if (!Number.isInteger(limit) || limit < 1) throw new MintEvalError(`--limit must be a positive integer (got ${limit})`, 'USAGE');
    const dir = path.join(ctx.dataDir, this.dataset);
    const { problems, files } = await this.problems(dir, limit);
    const base = new LanguageModelChatModel(ctx.lm, chatTemplateRegistry().get(templateName));
    // Generation stops at a closing tag and cuts it; put it back so the history reads as MINT's does.
    const model: ChatModel = {
      id: base.id,
      async complete(messages, o) {
        const r = await base.complete(messages, o);
        let text = r.text;
        for (const tag of ['execute', 'solution']) if (text.lastIndexOf(`<${tag}>`) > text.lastIndexOf(`</${tag}>`)) text += `</${tag}>`;
        return { ...r, text };
      },
    };
    const parser = new MintActionParser();
    const samples: Record<string, unknown>[] = [];
    const solvedAt: (number | null)[] = [];
    ctx.progress?.start(problems.length, this.name);
    try {
      for (const p of problems) {
        let solved: number | null = null;
        const r = await runAgent({
          model,
          parser,
          tools: [createPythonTool()],
          system: MINT_SYSTEM_PROMPT,
          task: p.task,
          maxTurns: k,
          maxTokensPerTurn,
          temperature,
          stop: ['</execute>', '</solution>'],
          checkAnswer: async (answer, turn) => {
            if (await p.check(answer)) {
              solved = turn;
              return null;
            }
            return `Your answer is wrong.${turn < k ? ` You have ${k - turn} turn(s) left.` : ''}`;
          },
        });
        solvedAt.push(solved);
        samples.push({ id: p.id, gold: p.gold, answer: r.answer, solvedAtTurn: solved, finishReason: r.finishReason as AgentFinishReason, turns: r.turns, messages: r.messages });
        ctx.progress?.update(samples.length, { solved: solvedAt.filter((s) => s !== null).length });
      }
    } finally {
      ctx.progress?.stop();
    }
    const metrics: Record<string, number> = {};
    for (let t = 1; t <= k; t++) metrics[`success_rate@${t}`] = solvedAt.filter((s) => s !== null && s <= t).length / Math.max(1, solvedAt.length);
    metrics['success_rate'] = metrics[`success_rate@${k}`]!;
    return {
      task: this.name,
      metrics,
      details: { problems: problems.length, solved: solvedAt.filter((s) => s !== null).length },
      config: { turns: k, limit, maxTokensPerTurn, temperature, template: templateName, parser: parser.name, system: MINT_SYSTEM_PROMPT },
      dataset: { name: this.dataset, dir: path.resolve(dir), files, sha256: sha256([...files].sort((a, b) => (a.file < b.file ? -1 : 1)).map((f) => `${f.sha256}  ${f.file}\n`).join('')) },
      samples,
    };
  }
}

export function mintEvaluators(): MintEvaluator[] {
  return [new MintEvaluator('gsm8k'), new MintEvaluator('humaneval')];
}
