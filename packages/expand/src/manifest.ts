/**
 * The expansion manifest (`llama_pro.json` next to the expanded weights): what was grown from what,
 * and exactly which tensors are trainable. The trainer reads it through `readExpansionManifest`;
 * nobody needs to guess new layers from tensor names.
 */
import * as path from 'node:path';
import { z } from 'zod';
import { CheckpointError, MAX_INDEX_JSON_BYTES, fileMessage, readJsonFile } from '@llama-pro/core';

export const MANIFEST_FILE = 'llama_pro.json';
export const MANIFEST_FORMAT = 'llama-pro.expansion';
export const MANIFEST_VERSION = 1;

const intArr = z.array(z.number().int().nonnegative());

export const verificationSchema = z.object({
  backend: z.string(),
  device: z.string(),
  /** Token batch shape and the ids used. */
  batchSize: z.number().int().positive(),
  seqLen: z.number().int().positive(),
  tokens: z.array(z.number().int().nonnegative()),
  /** max |logit(expanded) - logit(base)| over the batch. */
  maxAbsDiff: z.number().nonnegative(),
  /** True when max |Δlogit| is exactly 0. */
  identical: z.boolean(),
  /** `identity`: publishing required identical logits; `report`: the difference was only measured (not an identity check). Absent in older manifests (identity). */
  mode: z.enum(['identity', 'report']).optional(),
  /**
   * How the streaming verifier established max |Δlogit|: `proof` (byte and config checks plus one pass of the
   * expanded model in which every inserted block is the identity), `comparison` (both models run and compared).
   * Absent for a backend's whole-model check and in older manifests.
   */
  method: z.enum(['proof', 'comparison']).optional(),
});

export const expansionManifestSchema = z.object({
  format: z.literal(MANIFEST_FORMAT),
  version: z.literal(MANIFEST_VERSION),
  tool: z.object({ name: z.string(), version: z.string() }),
  createdAt: z.string(),
  base: z.object({
    path: z.string(),
    architecture: z.string(),
    numHiddenLayers: z.number().int().positive(),
    /** sha256 of each base shard file; null when the expansion ran with `hashBase: false` (`--no-base-hash`). */
    shards: z.array(z.object({ file: z.string(), bytes: z.number().int().nonnegative(), sha256: z.string().regex(/^[0-9a-f]{64}$/).nullable() })),
  }),
  strategy: z.object({ name: z.string(), params: z.record(z.string(), z.unknown()) }),
  initializer: z.string(),
  plan: z.object({
    originalLayers: z.number().int().positive(),
    newLayerCount: z.number().int().positive(),
    originalToNew: intArr,
    layers: z.array(z.object({ index: z.number().int().nonnegative(), source: z.number().int().nonnegative(), isNew: z.boolean() })),
  }),
  /** Indices of the inserted blocks in the expanded model. */
  newLayers: intArr,
  /** Source (original index) of each inserted block. */
  copies: z.array(z.object({ layer: z.number().int().nonnegative(), source: z.number().int().nonnegative() })),
  zeroedTensors: z.array(z.string()),
  /** Exactly the tensors of the inserted blocks; everything else stays frozen. */
  trainableTensors: z.array(z.string()),
  output: z.object({
    /** `bytes`: tensor data bytes in the shard (the file adds its header). */
    shards: z.array(z.object({ file: z.string(), bytes: z.number().int().nonnegative(), tensors: z.number().int().nonnegative() })),
    totalBytes: z.number().int().nonnegative(),
  }),
  verification: verificationSchema.nullable(),
});

export type ExpansionManifest = z.infer<typeof expansionManifestSchema>;
export type IdentityReport = z.infer<typeof verificationSchema>;

/** Validates a parsed manifest object; throws CheckpointError naming the first problem. */
export function parseExpansionManifest(value: unknown, source = MANIFEST_FILE): ExpansionManifest {
  const r = expansionManifestSchema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new CheckpointError(`${source} is not a valid llama-pro expansion manifest: ${issue.path.join('.') || '(root)'}: ${issue.message}`, 'MANIFEST_INVALID');
  }
  const m = r.data;
  if (m.plan.layers.length !== m.plan.newLayerCount || m.plan.originalToNew.length !== m.plan.originalLayers) {
    throw new CheckpointError(`${source}: plan is inconsistent (layer counts do not match the layer lists)`, 'MANIFEST_INVALID');
  }
  return m;
}

/** Reads and validates `<dir>/llama_pro.json`. */
export async function readExpansionManifest(dir: string): Promise<ExpansionManifest> {
  const file = path.join(dir, MANIFEST_FILE);
  let json: unknown;
  try {
    json = await readJsonFile(file, (detail, code) => new CheckpointError(fileMessage(file, detail), code === 'INPUT_MISSING' ? 'MANIFEST_MISSING' : 'MANIFEST_INVALID'), { maxBytes: MAX_INDEX_JSON_BYTES });
  } catch (e) {
    if ((e as CheckpointError).code === 'MANIFEST_MISSING') {
      throw new CheckpointError(`${dir} has no ${MANIFEST_FILE}; it was not produced by llama-pro expand (run \`llama-pro expand\` first)`, 'MANIFEST_MISSING');
    }
    throw e;
  }
  return parseExpansionManifest(json, file);
}
