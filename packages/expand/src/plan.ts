/**
 * The expansion plan: the one description of a block expansion that every strategy produces, the
 * dry run prints, the expander executes and the manifest records.
 *
 * Indices: "original" indices are layer numbers in the base model (0..L-1); "new" indices are layer
 * numbers in the expanded model (0..L'-1).
 */
import { UsageError } from '@llama-pro/core';

export interface PlannedLayer {
  /** Index in the expanded model. */
  readonly index: number;
  /** The original layer whose tensors this layer is made from. */
  readonly source: number;
  /** True for an inserted copy (trainable), false for an original block moved to `index`. */
  readonly isNew: boolean;
}

export interface ExpansionPlan {
  /** Name of the strategy that made the plan. */
  readonly strategy: string;
  /** The strategy's normalized parameters (defaults filled in). */
  readonly params: Readonly<Record<string, unknown>>;
  readonly originalLayers: number;
  readonly newLayerCount: number;
  /** originalToNew[i] = index of original block i in the expanded model. */
  readonly originalToNew: readonly number[];
  /** One entry per layer of the expanded model, in order. */
  readonly layers: readonly PlannedLayer[];
  /** Indices (in the expanded model) of the inserted blocks, ascending. */
  readonly newLayers: readonly number[];
}

/** Source original layer of every layer of the expanded model (for per-layer config arrays). */
export function sourceOfEachLayer(plan: ExpansionPlan): number[] {
  return plan.layers.map((l) => l.source);
}

/**
 * Builds a plan from the expanded model's layout, given as the source of each new layer and whether it
 * is an inserted copy. Checks the invariants every plan must satisfy (each original block appears exactly
 * once, in order; sources exist).
 */
export function planFromLayout(
  strategy: string,
  params: Readonly<Record<string, unknown>>,
  originalLayers: number,
  layout: readonly { source: number; isNew: boolean }[],
): ExpansionPlan {
  const layers: PlannedLayer[] = layout.map((l, index) => ({ index, source: l.source, isNew: l.isNew }));
  const originalToNew: number[] = [];
  for (const l of layers) {
    if (!Number.isInteger(l.source) || l.source < 0 || l.source >= originalLayers) {
      throw new UsageError(`${strategy}: new layer ${l.index} would copy block ${l.source}, but the model has blocks 0..${originalLayers - 1}`);
    }
    if (!l.isNew) {
      if (l.source !== originalToNew.length) throw new Error(`internal: ${strategy} placed original block ${l.source} out of order`);
      originalToNew.push(l.index);
    }
  }
  if (originalToNew.length !== originalLayers) throw new Error(`internal: ${strategy} kept ${originalToNew.length} of ${originalLayers} original blocks`);
  return {
    strategy,
    params: { ...params },
    originalLayers,
    newLayerCount: layers.length,
    originalToNew,
    layers,
    newLayers: layers.filter((l) => l.isNew).map((l) => l.index),
  };
}

/** A fixed-width table of the plan, one row per layer of the expanded model. */
export function formatPlanTable(plan: ExpansionPlan): string {
  const head = `strategy ${plan.strategy} ${JSON.stringify(plan.params)}: ${plan.originalLayers} -> ${plan.newLayerCount} layers, new blocks at ${plan.newLayers.join(', ') || '(none)'}`;
  const rows = [['new', 'from', 'kind']];
  for (const l of plan.layers) rows.push([String(l.index), String(l.source), l.isNew ? 'NEW copy (trainable)' : 'original']);
  const w = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i]!.length)));
  return [head, ...rows.map((r) => r.map((c, i) => c.padEnd(w[i]!)).join('  ').trimEnd())].join('\n');
}
