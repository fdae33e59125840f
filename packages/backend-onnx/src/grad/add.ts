/** The residual connection y = a + b (same shapes) and its VJP: the gradient passes to both inputs unchanged. */
import type { Tape, OpGrad } from './tape';

export const addGrad: OpGrad<null> = {
  kind: 'Add',
  gradFunc(_g, [dy]) {
    return [dy, dy];
  },
};

export function add(tape: Tape, a: string, b: string): string {
  const y = tape.g.op1('Add', [a, b]);
  tape.record(addGrad, [a, b], [y], null);
  return y;
}
