/**
 * Reverse-mode differentiation of a symbolic ONNX graph, in the style of tfjs's registered gradients
 * (`GradConfig`): each op kind (grad/rmsnorm.ts, linear.ts, rope.ts, attention.ts, swiglu.ts, xent.ts,
 * embed.ts, add.ts) is a forward builder that emits its ONNX nodes and records itself on a `Tape`, plus
 * one small gradient function (a VJP). `Tape.backward` walks the records in reverse, accumulates the
 * incoming gradient of every tensor (one `Add`/`Sum` where a tensor has several consumers) and calls each
 * VJP with the gradients of its outputs.
 *
 * Pruning: a tensor requires a gradient only when it depends on a watched (trainable) tensor; a VJP is
 * asked only for the input gradients that are required (`needs`). So a frozen prefix of the network is
 * forward-only, activation gradients stop at the lowest trainable stage, and within a stage only the
 * branches that lead to a trainable tensor are differentiated (e.g. a trainable q projection alone
 * gets no dK or dV).
 */
import type { GraphBuilder } from '../graph';

/** One op kind's gradient: the tfjs `GradConfig.gradFunc` of a recorded op. */
export interface OpGrad<S> {
  /** The op kind (for error messages and tests). */
  readonly kind: string;
  /**
   * Input gradients of one recorded op. `dys[j]` is the gradient of output j, or undefined where no
   * gradient reaches that output (a zero). Only inputs with `needs[i]` must get a gradient; the others
   * may be undefined and are ignored.
   */
  gradFunc(g: GraphBuilder, dys: readonly (string | undefined)[], saved: S, needs: readonly boolean[]): readonly (string | undefined)[];
}

interface TapeRecord {
  readonly op: OpGrad<unknown>;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly saved: unknown;
}

/** Sums gradient contributions: one name as is, two with Add, more with Sum. */
function sum(g: GraphBuilder, parts: readonly string[]): string {
  return parts.length === 1 ? parts[0]! : g.op1(parts.length === 2 ? 'Add' : 'Sum', parts);
}

export class Tape {
  private readonly records: TapeRecord[] = [];
  private readonly requires = new Set<string>();
  private readonly watched = new Set<string>();

  constructor(readonly g: GraphBuilder) {}

  /** Marks a leaf (a trainable graph input) as needing a gradient. */
  watch(name: string): void {
    this.watched.add(name);
    this.requires.add(name);
  }

  requiresGrad(name: string): boolean {
    return this.requires.has(name);
  }

  /** Records an op (its nodes are already emitted): outputs require a gradient when any input does. */
  record<S>(op: OpGrad<S>, inputs: readonly string[], outputs: readonly string[], saved: S): void {
    if (!inputs.some((i) => this.requires.has(i))) return; // nothing below needs a gradient: forward-only
    for (const o of outputs) this.requires.add(o);
    this.records.push({ op: op as OpGrad<unknown>, inputs, outputs, saved });
  }

  /**
   * Emits the backward pass of `root` with incoming gradient `seed` (e.g. a constant 1 for a scalar
   * loss). Returns each watched tensor's gradient contributions (unsummed, so the caller can name the
   * sum); a watched tensor the root does not depend on is absent.
   */
  backward(root: string, seed: string): Map<string, string[]> {
    const g = this.g;
    const pending = new Map<string, string[]>([[root, [seed]]]);
    const take = (t: string): string | undefined => {
      const parts = pending.get(t);
      if (!parts) return undefined;
      pending.delete(t);
      return sum(g, parts);
    };
    for (let r = this.records.length - 1; r >= 0; r--) {
      const rec = this.records[r]!;
      const dys = rec.outputs.map(take);
      if (dys.every((d) => d === undefined)) continue;
      const needs = rec.inputs.map((i) => this.requires.has(i));
      const dxs = rec.op.gradFunc(g, dys, rec.saved, needs);
      rec.inputs.forEach((input, i) => {
        if (!needs[i]) return;
        const dx = dxs[i];
        if (dx === undefined) return;
        const list = pending.get(input);
        if (list) list.push(dx);
        else pending.set(input, [dx]);
      });
    }
    const out = new Map<string, string[]>();
    for (const name of this.watched) {
      const parts = pending.get(name);
      if (parts) out.set(name, parts);
    }
    return out;
  }
}
