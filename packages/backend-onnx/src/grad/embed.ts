/** Token embedding, rows of W [V, D] gathered by flat ids [N], and its VJP: dW scatters dy back onto the rows (adding repeats). */
import type { Tape, OpGrad } from './tape';

interface Saved {
  readonly ids: string;
  readonly shape: readonly [number, number];
}

export const embedGrad: OpGrad<Saved> = {
  kind: 'Embed',
  gradFunc(g, [dy], { ids, shape }, [needW]) {
    if (!needW) return [undefined, undefined];
    const zeros = g.op1('ConstantOfShape', [g.i64([...shape])]);
    return [g.op1('ScatterND', [zeros, g.op1('Unsqueeze', [ids, g.i64([1])]), dy!], { reduction: 'add' }), undefined];
  },
};

/** x [N, D] = W[ids]; `shape` is W's [V, D]. */
export function embed(tape: Tape, w: string, ids: string, shape: readonly [number, number]): string {
  const y = tape.g.op1('Gather', [w, ids], { axis: 0 });
  tape.record(embedGrad, [w, ids], [y], { ids, shape });
  return y;
}
