/**
 * Learning-rate schedules (plugins under TOKENS.LrSchedule). All share linear warmup from lr/warmup to
 * the peak over the first `warmupSteps` (default: round(warmupRatio · total); the paper uses 6%),
 * then decay to `minLr` by their own shape.
 */
import type { Named } from '@llama-pro/core';
import { UsageError } from '@llama-pro/core';

export interface ScheduleParams {
  /** Peak learning rate. */
  readonly lr: number;
  readonly minLr: number;
  readonly warmupRatio: number;
  /** Overrides warmupRatio when set. */
  readonly warmupSteps?: number;
}

export interface LrSchedule extends Named {
  readonly description: string;
  /** Learning rate for the update with 0-based index `step` of `totalSteps`. */
  lr(step: number, totalSteps: number, p: ScheduleParams): number;
}

export function warmupSteps(totalSteps: number, p: ScheduleParams): number {
  const w = p.warmupSteps ?? Math.round(p.warmupRatio * totalSteps);
  if (!(w >= 0) || !Number.isInteger(w)) throw new UsageError(`warmup must be a non-negative whole number of steps, got ${w}`);
  return Math.min(w, totalSteps);
}

/** Shared warmup; returns null after warmup with the decay progress in [0, 1] passed to `decay`. */
function withWarmup(step: number, total: number, p: ScheduleParams, decay: (progress: number) => number): number {
  if (!(total > 0)) throw new UsageError(`total steps must be positive, got ${total}`);
  const w = warmupSteps(total, p);
  if (step < w) return (p.lr * (step + 1)) / w;
  const span = Math.max(1, total - w);
  const progress = Math.min(1, Math.max(0, (step - w) / span));
  return decay(progress);
}

export const cosineSchedule: LrSchedule = {
  name: 'cosine',
  description: 'linear warmup, then cosine decay from lr to minLr',
  lr: (step, total, p) => withWarmup(step, total, p, (x) => p.minLr + (p.lr - p.minLr) * 0.5 * (1 + Math.cos(Math.PI * x))),
};

export const linearSchedule: LrSchedule = {
  name: 'linear',
  description: 'linear warmup, then linear decay from lr to minLr',
  lr: (step, total, p) => withWarmup(step, total, p, (x) => p.minLr + (p.lr - p.minLr) * (1 - x)),
};

export const constantSchedule: LrSchedule = {
  name: 'constant',
  description: 'linear warmup, then constant lr',
  lr: (step, total, p) => withWarmup(step, total, p, () => p.lr),
};

export const BUILTIN_SCHEDULES: readonly LrSchedule[] = [cosineSchedule, linearSchedule, constantSchedule];
