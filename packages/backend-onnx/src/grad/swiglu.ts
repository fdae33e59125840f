/**
 * The SwiGLU activation a = silu(gate) * up and its VJP: d up = da * silu(gate);
 * d gate = da * up * silu'(gate), silu'(x) = s (1 + x (1 - s)) = s (1 + x - silu(x)) with s = sigmoid(x)
 * (the second form reuses the saved silu: three elementwise passes instead of four).
 */
import type { Tape, OpGrad } from './tape';

interface Saved {
  readonly gate: string;
  readonly up: string;
  readonly sg: string;
  readonly sl: string;
}

export const swigluGrad: OpGrad<Saved> = {
  kind: 'SwiGLU',
  gradFunc(g, [da], { gate, up, sg, sl }, [needGate, needUp]) {
    const dup = needUp ? g.op1('Mul', [da!, sl]) : undefined;
    if (!needGate) return [undefined, dup];
    const one = g.f32([1], true);
    const dsl = g.op1('Mul', [da!, up]);
    const dsilu = g.op1('Mul', [sg, g.op1('Add', [one, g.op1('Sub', [gate, sl])])]);
    return [g.op1('Mul', [dsl, dsilu]), dup];
  },
};

export function swiglu(tape: Tape, gate: string, up: string): string {
  const g = tape.g;
  const sg = g.op1('Sigmoid', [gate]);
  const sl = g.op1('Mul', [gate, sg]);
  const a = g.op1('Mul', [sl, up]);
  tape.record(swigluGrad, [gate, up], [a], { gate, up, sg, sl });
  return a;
}
