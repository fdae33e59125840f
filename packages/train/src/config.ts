/**
 * The experiment file (YAML) and its zod schema. Every field has a default, so `{}` is a valid
 * experiment; CLI flags override the file. `experimentJsonSchema()` publishes the schema
 * (committed as schema/experiment.schema.json).
 */
import { promises as fsp } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { DEFAULT_TRAIN_BACKEND, PAPER_RECIPE } from './defaults';
import { ExperimentError } from './errors';

const OPT = PAPER_RECIPE.optimizer;
const SCHED = PAPER_RECIPE.schedule;

const layerSelection = z
  .object({
    every: z.number().int().positive().optional().describe('every k-th layer'),
    offset: z.number().int().nonnegative().optional().describe('first layer for `every` (default 0)'),
    top: z.number().int().positive().optional().describe('the N highest layers'),
    bottom: z.number().int().positive().optional().describe('the N lowest layers'),
    indices: z.array(z.number().int().nonnegative()).optional().describe('explicit layer indices'),
  })
  .strict();

export const experimentSchema = z
  .object({
    model: z.string().optional().describe('expanded (or any HF) model directory; --model overrides'),
    out: z.string().optional().describe('run directory; --out overrides'),
    backend: z.string().default(DEFAULT_TRAIN_BACKEND).describe(`model backend name (default ${DEFAULT_TRAIN_BACKEND}; tfjs is the reference engine)`),
    backendVariant: z.string().optional().describe('backend-specific variant, e.g. wasm or cpu for tfjs'),
    plugins: z.array(z.string()).default([]).describe('plugin modules (paths relative to this file, or package names)'),
    seed: z.number().int().nonnegative().default(0),
    steps: z.number().int().positive().default(100).describe('optimizer updates'),
    batchSize: z.number().int().positive().default(8).describe('sequences per micro-batch'),
    gradAccum: z.number().int().positive().default(1).describe('micro-batches per update'),
    seqLen: z.number().int().positive().default(256),
    policy: z
      .object({
        name: z.string().default('new-blocks').describe('freeze policy: new-blocks, full, layers, lora (or a plugin)'),
        layers: layerSelection.optional().describe('for policy "layers"'),
        lora: z
          .object({
            rank: z.number().int().positive().default(8),
            alpha: z.number().positive().default(16),
            targets: z.array(z.string()).default(['self_attn.q_proj', 'self_attn.v_proj']),
            layers: layerSelection.optional(),
          })
          .strict()
          .optional()
          .describe('for policy "lora"'),
      })
      .strict()
      .default({ name: 'new-blocks' }),
    optimizer: z
      .object({
        lr: z.number().positive().default(OPT.lr),
        beta1: z.number().min(0).max(0.999999).default(OPT.beta1),
        beta2: z.number().min(0).max(0.999999).default(OPT.beta2),
        eps: z.number().positive().default(OPT.eps),
        weightDecay: z.number().nonnegative().default(OPT.weightDecay).describe('applied to matrices only'),
        clip: z.number().nonnegative().default(OPT.clip).describe('global gradient-norm clip; 0 disables'),
      })
      .strict()
      .default({ ...OPT }),
    schedule: z
      .object({
        name: z.string().default(SCHED.name).describe('cosine, linear, constant (or a plugin)'),
        warmupRatio: z.number().min(0).max(1).default(SCHED.warmupRatio),
        warmupSteps: z.number().int().nonnegative().optional(),
        minLr: z.number().nonnegative().default(SCHED.minLr),
      })
      .strict()
      .default({ ...SCHED }),
    data: z
      .object({
        path: z.string().optional().describe('file or directory; --data overrides'),
        format: z.enum(['auto', 'text', 'jsonl', 'ids']).default('auto'),
        glob: z.string().default('**/*').describe('files taken from a directory'),
        textSplit: z.enum(['file', 'line', 'paragraph']).default('file').describe('documents of a text file'),
        field: z.string().default('text').describe('JSONL field (text or token ids)'),
        idsDtype: z.enum(['int32', 'uint16']).default('int32'),
        tokenizer: z.enum(['auto', 'bytes']).default('auto').describe('auto: tokenizer.json, else byte tokens'),
        valFraction: z.number().min(0).max(0.5).default(0.05),
        bos: z.boolean().default(true),
        shuffle: z.boolean().default(true),
      })
      .strict()
      .default({ format: 'auto', glob: '**/*', textSplit: 'file', field: 'text', idsDtype: 'int32', tokenizer: 'auto', valFraction: 0.05, bos: true, shuffle: true }),
    eval: z
      .object({
        interval: z.number().int().nonnegative().default(50).describe('validation every N steps; 0: only at start and end'),
        batches: z.number().int().positive().default(4),
        general: z.string().optional().describe('general-domain sample (any data format) whose loss is tracked next to the validation loss'),
        generalDocs: z.number().int().positive().default(64).describe('documents of the general sample evaluated, each from its start'),
      })
      .strict()
      .default({ interval: 50, batches: 4, generalDocs: 64 }),
    checkpoint: z
      .object({
        interval: z.number().int().nonnegative().default(50).describe('every N steps; 0: only at the end'),
        keep: z.number().int().positive().default(2),
      })
      .strict()
      .default({ interval: 50, keep: 2 }),
    export: z
      .object({
        enabled: z.boolean().default(true),
        dir: z.string().optional().describe('default <out>/final'),
      })
      .strict()
      .default({ enabled: true }),
  })
  .strict();

export type Experiment = z.output<typeof experimentSchema>;
export type ExperimentInput = z.input<typeof experimentSchema>;

/** Validates an experiment object; the error names the first bad field. */
export function parseExperiment(value: unknown, source = 'experiment'): Experiment {
  const r = experimentSchema.safeParse(value ?? {});
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new ExperimentError(`${source}: ${i.path.join('.') || '(root)'}: ${i.message}`);
  }
  return r.data;
}

export async function loadExperimentFile(file: string): Promise<Experiment> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    throw new ExperimentError(`cannot read experiment file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, 'EXPERIMENT_MISSING');
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (e) {
    throw new ExperimentError(`${file} is not valid YAML: ${(e as Error).message}`);
  }
  return parseExperiment(raw, file);
}

type Plain = Record<string, unknown>;
const isPlain = (v: unknown): v is Plain => typeof v === 'object' && v !== null && !Array.isArray(v);

function deepMerge(base: Plain, over: Plain): Plain {
  const out: Plain = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue;
    out[k] = isPlain(v) && isPlain(out[k]) ? deepMerge(out[k] as Plain, v) : v;
  }
  return out;
}

/** Applies overrides (e.g. from CLI flags; undefined leaves are ignored) and re-validates. */
export function overrideExperiment(base: Experiment, overrides: Record<string, unknown>): Experiment {
  return parseExperiment(deepMerge(base as unknown as Plain, overrides), 'command-line overrides');
}

/** The JSON schema of the experiment file (input side: every defaulted field is optional). */
export function experimentJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(experimentSchema, { io: 'input' }) as Record<string, unknown>;
  return { ...schema, $id: 'https://llama-pro.dev/schema/experiment.schema.json', title: 'llama-pro training experiment' };
}
