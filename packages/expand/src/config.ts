/**
 * The expansion config file (`llama-pro expand --config expand.yaml`): everything the flags hold, so an
 * expansion can be written down, reviewed and rerun like a train or study experiment. Flags given on the
 * command line override the file. The JSON schema is generated from this zod schema and committed as
 * schema/expand.schema.json (a test keeps them equal).
 *
 *   input: meta-llama/Llama-2-7b-hf      # directory or hub id
 *   output: runs/llama-pro-8b
 *   strategy: { name: interleaved, groups: 8 }
 *   init: zero-output
 *   verify: { mode: identity, backend: onnx }   # backend optional: without it the streaming verifier runs
 *   shardSize: 5GB
 *   plugins: [./my-strategy.js]          # relative to this file
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '@llama-pro/core';

const intOrString = z.union([z.number().int(), z.string()]);
const intList = z.union([z.array(z.number().int()), z.string()]);

export const expandConfigSchema = z
  .object({
    input: z.string().min(1).optional().describe('base model: Hugging Face directory or hub id org/name[@revision] (the first argument overrides it)'),
    output: z.string().min(1).optional().describe('output directory (the second argument overrides it); relative to the working directory'),
    strategy: z
      .object({
        name: z.string().min(1).default('interleaved').describe('interleaved | top | bottom | positions, or a plugin strategy'),
        groups: intOrString.optional().describe('interleaved: number of groups N (must divide the layer count)'),
        copies: intOrString.optional().describe('interleaved: copies on top of each group'),
        blocks: intOrString.optional().describe('top / bottom: number of new blocks'),
        at: intList.optional().describe('positions: indices of the new blocks in the expanded model'),
        from: intList.optional().describe('positions: original block copied into each new block'),
        params: z.record(z.string(), z.unknown()).optional().describe('extra strategy parameters (plugin strategies)'),
      })
      .strict()
      .default({ name: 'interleaved' }),
    init: z.string().min(1).default('zero-output').describe('block initializer: zero-output (identity, paper), copy, or a plugin initializer'),
    verify: z
      .union([
        z.boolean(),
        z
          .object({
            mode: z.enum(['identity', 'report']).default('identity'),
            backend: z.string().min(1).optional().describe('backend as name[:variant]: loads both models whole through it (without it, the streaming CPU verifier runs)'),
          })
          .strict(),
      ])
      .default(false)
      .describe('true or { mode, backend }: check the expanded model against the base before publishing'),
    shardSize: z.union([z.string(), z.number().int().positive()]).default('5GB').describe('maximum output shard size, e.g. 5GB, or bytes'),
    force: z.boolean().default(false).describe('replace an existing output directory'),
    baseHash: z.boolean().default(true).describe('sha256 the base shards into the manifest'),
    plugins: z.array(z.string().min(1)).default([]).describe('plugin modules, relative to this file'),
  })
  .strict();

export type ExpandConfig = z.output<typeof expandConfigSchema>;
export type ExpandConfigInput = z.input<typeof expandConfigSchema>;

/** Validates a config object; the error names the first bad field. */
export function parseExpandConfig(value: unknown, source = 'expand config'): ExpandConfig {
  const r = expandConfigSchema.safeParse(value ?? {});
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new ConfigError(`${source}: ${i.path.join('.') || '(root)'}: ${i.message}`, 'EXPAND_CONFIG_INVALID');
  }
  return r.data;
}

/** Reads a YAML (or JSON) expansion config; plugin paths are made absolute relative to the file. */
export async function loadExpandConfig(file: string): Promise<ExpandConfig> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read expand config ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, 'EXPAND_CONFIG_MISSING');
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (e) {
    throw new ConfigError(`${file} is not valid YAML: ${(e as Error).message}`, 'EXPAND_CONFIG_INVALID');
  }
  const c = parseExpandConfig(raw, file);
  const dir = path.dirname(path.resolve(file));
  return { ...c, plugins: c.plugins.map((p) => (p.startsWith('.') ? path.resolve(dir, p) : p)) };
}

/** The JSON schema of the config file (input side: every defaulted field is optional). */
export function expandConfigJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(expandConfigSchema, { io: 'input' }) as Record<string, unknown>;
  return { ...schema, $id: 'https://llama-pro.dev/schema/expand.schema.json', title: 'llama-pro expansion config' };
}
