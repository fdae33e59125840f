/**
 * Expansion strategies: where the new blocks go and which original block each one copies. A strategy
 * is a plain object registered under `TOKENS.ExpansionStrategy`; third-party plugins add their own.
 */
import { UsageError, type LlamaConfig, type Named } from '@llama-pro/core';
import { type ExpansionPlan, planFromLayout } from './plan';

/** One parameter a strategy accepts (the CLI flag is `--<name>`). */
export interface StrategyParamSpec {
  readonly name: string;
  /** `int`: a non-negative integer; `int-list`: comma-separated non-negative integers. */
  readonly kind: 'int' | 'int-list';
  readonly description: string;
  readonly required?: boolean;
  readonly default?: number | readonly number[];
  /** Smallest allowed value (for `int`, and for each entry of `int-list`). */
  readonly min?: number;
}

export interface ExpansionStrategy extends Named {
  readonly name: string;
  readonly description: string;
  readonly params: readonly StrategyParamSpec[];
  /**
   * Plans the expansion of a model with this config. `params` may hold numbers, arrays or the raw
   * strings given on the command line; unknown or invalid parameters throw a UsageError.
   */
  plan(config: LlamaConfig, params: Readonly<Record<string, unknown>>): ExpansionPlan;
}

type ParamValue = number | number[];

function parseInt0(strategy: string, name: string, v: unknown, min: number): number {
  const n = typeof v === 'string' && /^\s*-?\d+\s*$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n)) throw new UsageError(`${strategy}: --${name} must be an integer, got ${JSON.stringify(v)}`);
  if (n < min) throw new UsageError(`${strategy}: --${name} must be at least ${min}, got ${n}`);
  return n;
}

/** Validates `raw` against `specs`: rejects unknown names, parses strings, fills defaults. */
export function readStrategyParams(strategy: string, specs: readonly StrategyParamSpec[], raw: Readonly<Record<string, unknown>>): Record<string, ParamValue> {
  const known = new Map(specs.map((s) => [s.name, s]));
  for (const k of Object.keys(raw)) {
    if (raw[k] === undefined) continue;
    if (!known.has(k)) {
      throw new UsageError(`strategy "${strategy}" has no parameter --${k}; its parameters: ${specs.map((s) => `--${s.name}`).join(', ') || '(none)'}`, 'USAGE');
    }
  }
  const out: Record<string, ParamValue> = {};
  for (const s of specs) {
    const v = raw[s.name];
    const min = s.min ?? 0;
    if (v === undefined || v === null) {
      if (s.required) throw new UsageError(`strategy "${strategy}" needs --${s.name} (${s.description})`);
      if (s.default !== undefined) out[s.name] = Array.isArray(s.default) ? [...(s.default as number[])] : (s.default as number);
      continue;
    }
    if (s.kind === 'int') out[s.name] = parseInt0(strategy, s.name, v, min);
    else {
      const items = typeof v === 'string' ? v.split(',').map((x) => x.trim()).filter((x) => x.length > 0) : Array.isArray(v) ? v : [v];
      if (items.length === 0) throw new UsageError(`${strategy}: --${s.name} needs at least one value, e.g. --${s.name} 4,9,14`);
      out[s.name] = items.map((x) => parseInt0(strategy, s.name, x, min));
    }
  }
  return out;
}

function divisors(n: number): number[] {
  const out: number[] = [];
  for (let d = 1; d <= n; d++) if (n % d === 0) out.push(d);
  return out;
}

/**
 * The paper's layout. The L original blocks are split into N groups of M = L / N consecutive blocks;
 * P copies of each group's top block are placed right above the group. Original block i moves to
 * i + P·⌊i/M⌋; group g's copies sit at g·(M+P) + M … g·(M+P) + M + P − 1. N must divide L: groups of
 * unequal size would make the layout depend on an arbitrary rounding rule, so other values are refused
 * with the list of valid N (use `positions` for irregular layouts).
 */
export const interleavedStrategy: ExpansionStrategy = {
  name: 'interleaved',
  description: 'LLaMA Pro: N equal groups of blocks, P copies of each group top block placed above the group (paper: N=8, P=1)',
  params: [
    { name: 'groups', kind: 'int', description: 'number of groups N; must divide the layer count', required: true, min: 1 },
    { name: 'copies', kind: 'int', description: 'copies P added on top of each group', default: 1, min: 1 },
  ],
  plan(config, raw) {
    const p = readStrategyParams(this.name, this.params, raw);
    const L = config.numHiddenLayers;
    const N = p['groups'] as number;
    const P = p['copies'] as number;
    if (N > L) throw new UsageError(`interleaved: --groups ${N} exceeds the ${L} layers of the model; valid --groups for ${L} layers: ${divisors(L).join(', ')}`);
    if (L % N !== 0) {
      throw new UsageError(
        `interleaved: --groups ${N} does not divide the ${L} layers into equal groups; valid --groups for ${L} layers: ${divisors(L).join(', ')} (or use --strategy positions for an irregular layout)`,
      );
    }
    const M = L / N;
    const layout: { source: number; isNew: boolean }[] = [];
    for (let g = 0; g < N; g++) {
      for (let j = 0; j < M; j++) layout.push({ source: g * M + j, isNew: false });
      for (let c = 0; c < P; c++) layout.push({ source: g * M + M - 1, isNew: true });
    }
    return planFromLayout(this.name, { groups: N, copies: P }, L, layout);
  },
};

/** Suffix stacking: K new blocks after the last one, copies of the last K original blocks in order (K ≤ L). */
export const topStrategy: ExpansionStrategy = {
  name: 'top',
  description: 'K new blocks after the last block, copies of the top K original blocks (in order)',
  params: [{ name: 'blocks', kind: 'int', description: 'number K of new blocks (at most the layer count)', required: true, min: 1 }],
  plan(config, raw) {
    const p = readStrategyParams(this.name, this.params, raw);
    const L = config.numHiddenLayers;
    const K = p['blocks'] as number;
    if (K > L) throw new UsageError(`top: --blocks ${K} exceeds the ${L} layers that could be copied; use at most ${L}, or --strategy positions with --from`);
    const layout = Array.from({ length: L }, (_, i) => ({ source: i, isNew: false }));
    for (let k = 0; k < K; k++) layout.push({ source: L - K + k, isNew: true });
    return planFromLayout(this.name, { blocks: K }, L, layout);
  },
};

/** Prefix stacking (the paper's ablation): K new blocks before the first one, copies of the first K original blocks. */
export const bottomStrategy: ExpansionStrategy = {
  name: 'bottom',
  description: 'K new blocks before the first block, copies of the bottom K original blocks (in order)',
  params: [{ name: 'blocks', kind: 'int', description: 'number K of new blocks (at most the layer count)', required: true, min: 1 }],
  plan(config, raw) {
    const p = readStrategyParams(this.name, this.params, raw);
    const L = config.numHiddenLayers;
    const K = p['blocks'] as number;
    if (K > L) throw new UsageError(`bottom: --blocks ${K} exceeds the ${L} layers that could be copied; use at most ${L}, or --strategy positions with --from`);
    const layout = Array.from({ length: K }, (_, k) => ({ source: k, isNew: true }));
    for (let i = 0; i < L; i++) layout.push({ source: i, isNew: false });
    return planFromLayout(this.name, { blocks: K }, L, layout);
  },
};

/**
 * Explicit positions. `--at` lists the indices the new blocks get IN THE EXPANDED MODEL (so `--at 4,9,14`
 * on a 32-layer model gives 35 layers whose layers 4, 9 and 14 are new; the original blocks fill the other
 * indices in order). `--from` optionally lists, in the same order as `--at`, the ORIGINAL block each copy
 * is made from; by default a new block copies the nearest original block below it (block 0 when it is
 * at the very bottom).
 */
export const positionsStrategy: ExpansionStrategy = {
  name: 'positions',
  description: 'new blocks at explicit indices of the expanded model (--at), optionally copied from given original blocks (--from)',
  params: [
    { name: 'at', kind: 'int-list', description: 'indices of the new blocks in the expanded model, e.g. 4,9,14', required: true },
    { name: 'from', kind: 'int-list', description: 'original block copied into each new block, same order as --at (default: the block below)' },
  ],
  plan(config, raw) {
    const p = readStrategyParams(this.name, this.params, raw);
    const L = config.numHiddenLayers;
    const at = p['at'] as number[];
    const from = p['from'] as number[] | undefined;
    const total = L + at.length;
    const seen = new Set<number>();
    for (const a of at) {
      if (seen.has(a)) throw new UsageError(`positions: --at lists index ${a} twice; each new block needs its own index`);
      seen.add(a);
      if (a >= total) {
        throw new UsageError(
          `positions: --at ${a} is impossible: with ${at.length} new block(s) the expanded model has ${total} layers (indices 0..${total - 1}), and --at lists indices in the expanded model`,
        );
      }
    }
    if (from !== undefined) {
      if (from.length !== at.length) throw new UsageError(`positions: --from has ${from.length} entries but --at has ${at.length}; give one source block per new block`);
      for (const f of from) if (f >= L) throw new UsageError(`positions: --from ${f} does not exist; the model has blocks 0..${L - 1}`);
    }
    const sourceAt = new Map<number, number | undefined>(at.map((a, k) => [a, from?.[k]]));
    const layout: { source: number; isNew: boolean }[] = [];
    let next = 0;
    for (let idx = 0; idx < total; idx++) {
      if (sourceAt.has(idx)) layout.push({ source: sourceAt.get(idx) ?? Math.max(next - 1, 0), isNew: true });
      else layout.push({ source: next++, isNew: false });
    }
    const params: Record<string, unknown> = { at: [...at].sort((a, b) => a - b) };
    if (from) params['from'] = [...at].map((a, k) => [a, from[k]!] as const).sort((x, y) => x[0] - y[0]).map(([, f]) => f);
    return planFromLayout(this.name, params, L, layout);
  },
};

export const BUILTIN_STRATEGIES: readonly ExpansionStrategy[] = [interleavedStrategy, topStrategy, bottomStrategy, positionsStrategy];
