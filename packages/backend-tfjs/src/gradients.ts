/**
 * Gradients of the kernels the LLaMA forward pass uses outside its custom-gradient ops.
 * `@tensorflow/tfjs-core` defines its kernel gradients only in an ES-module file that CommonJS code
 * cannot load (the umbrella `@tensorflow/tfjs` package bundles them), so this backend registers its
 * own, written from the textbook derivatives, for exactly the kernels it differentiates outside its
 * custom-gradient ops (see ops.ts). A gradient that is already registered (e.g. by an application that
 * loads `@tensorflow/tfjs`) is left alone.
 */
import * as tf from '@tensorflow/tfjs-core';

type Attrs = Record<string, unknown>;

/** Sums `g` down to `shape` (the inverse of broadcasting). */
function unbroadcast(g: tf.Tensor, shape: readonly number[]): tf.Tensor {
  const extra = g.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) {
    if (i < extra) axes.push(i);
    else if (shape[i - extra] === 1 && g.shape[i] !== 1) axes.push(i);
  }
  const s = axes.length ? tf.sum(g, axes) : g;
  return tf.reshape(s, [...shape]);
}

function normAxes(axis: unknown, rank: number): number[] {
  const list = axis === undefined || axis === null ? [...Array(rank).keys()] : Array.isArray(axis) ? (axis as number[]) : [axis as number];
  return list.map((a) => (a < 0 ? a + rank : a));
}

/**
 * a·b with optional transposes. Plain matrices get explicitly transposed operands: on wasm only an
 * untransposed 2-D product takes the fast path. Batched products take the general path either way,
 * where the transpose flags are cheaper than transposing.
 */
function mm(a: tf.Tensor, b: tf.Tensor, ta: boolean, tb: boolean): tf.Tensor {
  if (a.rank > 2) return tf.matMul(a, b, ta, tb);
  const swap = (t: tf.Tensor): tf.Tensor => {
    const perm = [...Array(t.rank).keys()];
    [perm[t.rank - 1], perm[t.rank - 2]] = [perm[t.rank - 2]!, perm[t.rank - 1]!];
    return tf.transpose(t, perm);
  };
  return tf.matMul(ta ? swap(a) : a, tb ? swap(b) : b);
}

const CONFIGS: tf.GradConfig[] = [
  {
    kernelName: 'Add',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, saved) => ({ a: () => unbroadcast(dy as tf.Tensor, saved[0]!.shape), b: () => unbroadcast(dy as tf.Tensor, saved[1]!.shape) }),
  },
  {
    kernelName: 'Multiply',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, saved) => {
      const [a, b] = saved as [tf.Tensor, tf.Tensor];
      return { a: () => unbroadcast(tf.mul(dy as tf.Tensor, b), a.shape), b: () => unbroadcast(tf.mul(dy as tf.Tensor, a), b.shape) };
    },
  },
  {
    kernelName: 'Sigmoid',
    outputsToSave: [true],
    gradFunc: (dy, saved) => ({ x: () => tf.mul(dy as tf.Tensor, tf.mul(saved[0]!, tf.sub(1, saved[0]!))) }),
  },
  {
    kernelName: 'Softmax',
    outputsToSave: [true],
    gradFunc: (dy, saved, attrs: Attrs) => {
      const y = saved[0]!;
      const dim = normAxes(attrs['dim'] ?? -1, y.rank);
      const g = dy as tf.Tensor;
      return { logits: () => tf.mul(y, tf.sub(g, tf.sum(tf.mul(g, y), dim, true))) };
    },
  },
  { kernelName: 'Reshape', inputsToSave: ['x'], gradFunc: (dy, saved) => ({ x: () => tf.reshape(dy as tf.Tensor, saved[0]!.shape) }) },
  {
    kernelName: 'Transpose',
    gradFunc: (dy, _saved, attrs: Attrs) => {
      const perm = attrs['perm'] as number[];
      const inv = new Array<number>(perm.length);
      perm.forEach((p, i) => (inv[p] = i));
      return { x: () => tf.transpose(dy as tf.Tensor, inv) };
    },
  },
  {
    kernelName: 'BatchMatMul',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, saved, attrs: Attrs) => {
      const [a, b] = saved as [tf.Tensor, tf.Tensor];
      const g = dy as tf.Tensor;
      const ta = attrs['transposeA'] === true;
      const tb = attrs['transposeB'] === true;
      // C = op(A) op(B):  dA = dC op(B)^T (transposed back if A was),  dB = op(A)^T dC (likewise).
      const da = (): tf.Tensor => (ta ? mm(b, g, tb, true) : mm(g, b, false, !tb));
      const db = (): tf.Tensor => (tb ? mm(g, a, true, ta) : mm(a, g, !ta, false));
      if (a.rank !== b.rank || a.shape.slice(0, -2).some((d, i) => d !== b.shape[i])) {
        throw new Error('tfjs backend: BatchMatMul gradient needs equal batch dimensions');
      }
      return { a: da, b: db };
    },
  },
];

let registered = false;

/** Registers the gradients above where none is registered yet (idempotent). */
export function registerGradients(): void {
  if (registered) return;
  registered = true;
  for (const c of CONFIGS) if (!tf.getGradient(c.kernelName)) tf.registerGradient(c);
}
