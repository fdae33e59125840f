/**
 * Building blocks of the LLaMA forward pass on TensorFlow.js, with hand-written gradients where the
 * default ones are slow or missing on the wasm engine:
 * - Linear layers keep the weight in both layouts: `wT` [in, out] for the forward product and the
 *   Hugging Face `w` [out, in] for the input gradient, so no product needs a transposed operand (the
 *   wasm engine's transposed matmul path is ~10x slower).
 * - The embedding gather's gradient uses UnsortedSegmentSum where the engine has it, else a one-hot
 *   product (wasm has no UnsortedSegmentSum kernel).
 * - Cross-entropy uses the engine's fused softmax; logsumexp = max(z) - log(max(softmax(z))), which
 *   cannot underflow because the largest probability is at least 1/V.
 */
import * as tf from '@tensorflow/tfjs-core';
import { registerGradients } from './gradients';

registerGradients();

/** x [N, in] · wT [in, out]; gradient only for x (the weight is frozen). */
export function linearFrozen(x: tf.Tensor, wT: tf.Tensor, w: tf.Tensor): tf.Tensor {
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const xi = args[0] as tf.Tensor;
    return { value: tf.matMul(xi as tf.Tensor2D, wT as tf.Tensor2D), gradFunc: (dy: tf.Tensor) => [tf.matMul(dy as tf.Tensor2D, w as tf.Tensor2D)] };
  });
  return f(x);
}

/** x [N, in] · wT [in, out]; gradients for x and for `w` [out, in] (the differentiated parameter). */
export function linearTrainable(x: tf.Tensor, w: tf.Tensor, wT: tf.Tensor): tf.Tensor {
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const xi = args[0] as tf.Tensor2D;
    const save = args[2] as tf.GradSaveFunc;
    save([xi]);
    return {
      value: tf.matMul(xi, wT as tf.Tensor2D),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const dy2 = dy as tf.Tensor2D;
        return [tf.matMul(dy2, w as tf.Tensor2D), tf.matMul(tf.transpose(dy2), saved[0] as tf.Tensor2D)];
      },
    };
  });
  return f(x, w);
}

function hasKernel(name: string): boolean {
  return tf.getKernel(name, tf.getBackend()) !== undefined;
}

/** Rows `ids` of the embedding `e` [V, D]; differentiable in `e` on every engine. */
export function embedTrainable(e: tf.Tensor, ids: tf.Tensor1D): tf.Tensor {
  const V = e.shape[0]!;
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const ei = args[0] as tf.Tensor2D;
    const save = args[1] as tf.GradSaveFunc;
    save([ids]); // keeps the ids alive until the backward pass
    return {
      value: tf.gather(ei, ids),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const idx = saved[0] as tf.Tensor1D;
        if (hasKernel('UnsortedSegmentSum')) return [tf.unsortedSegmentSum(dy, idx, V)];
        const oneHotT = tf.transpose(tf.cast(tf.oneHot(idx, V), 'float32')) as tf.Tensor2D; // [V, N]
        return [tf.matMul(oneHotT, dy as tf.Tensor2D)];
      },
    };
  });
  return f(e);
}

/**
 * RMSNorm of x [N, D]: x * rsqrt(mean(x^2) + eps) * w, with a hand-written gradient (fewer, cheaper
 * kernels than the composed one): with r = rsqrt(mean(x^2) + eps), xr = x r and g = dy w,
 * dx = r (g - xr mean(g xr)) and dw = sum over rows of dy xr.
 */
export function rmsNorm(x: tf.Tensor, w: tf.Tensor, eps: number): tf.Tensor {
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const xi = args[0] as tf.Tensor2D;
    const wi = args[1] as tf.Tensor1D;
    const save = args[2] as tf.GradSaveFunc;
    const r = tf.rsqrt(tf.add(tf.mean(tf.square(xi), -1, true), eps));
    const xr = tf.mul(xi, r);
    save([xr, r, wi]);
    return {
      value: tf.mul(xr, wi),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sxr, sr, sw] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
        const g = tf.mul(dy, sw);
        const dx = tf.mul(sr, tf.sub(g, tf.mul(sxr, tf.mean(tf.mul(g, sxr), -1, true))));
        return [dx, tf.sum(tf.mul(dy, sxr), 0)];
      },
    };
  });
  return f(x, w);
}

/** The [hd, hd] matrix R with x R = rotate_half(x) = concat(-x2, x1) (a signed permutation: exact in float). */
export function rotateHalfMatrix(hd: number): tf.Tensor2D {
  const half = hd / 2;
  const r = new Float32Array(hd * hd);
  for (let i = 0; i < half; i++) {
    r[(i + half) * hd + i] = -1; // out[i] = -x[i + half]
    r[i * hd + i + half] = 1; // out[i + half] = x[i]
  }
  return tf.tensor2d(r, [hd, hd]);
}

/**
 * Rotate-half rotary embedding of x [B, H, T, hd] with cos/sin [B, 1, T, hd]. The rotation is one
 * matrix product with `rot` (rotateHalfMatrix): the wasm engine's Slice kernel is slow.
 */
export function rope(x: tf.Tensor4D, cos: tf.Tensor, sin: tf.Tensor, rot: tf.Tensor2D): tf.Tensor4D {
  const hd = x.shape[3];
  const rotated = tf.reshape(tf.matMul(tf.reshape(x, [-1, hd]) as tf.Tensor2D, rot), x.shape);
  return tf.add(tf.mul(x, cos), tf.mul(rotated, sin)) as tf.Tensor4D;
}

/**
 * Per-row cross-entropy pieces for logits z [N, V] and targets (clamped into range; callers weight
 * ignored rows by 0): returns logsumexp(z) - z[target] per row, i.e. the negative log-probability.
 */
export function nllRows(z: tf.Tensor2D, flatIdx: tf.Tensor1D): { nll: tf.Tensor1D; softmax: tf.Tensor2D } {
  const sm = tf.softmax(z);
  const lse = tf.sub(tf.max(z, -1), tf.log(tf.max(sm, -1)));
  const zt = tf.gather(tf.reshape(z, [-1]), flatIdx);
  return { nll: tf.sub(lse, zt) as tf.Tensor1D, softmax: sm };
}

/** sum_n weight[n] * nll[n] with the gradient (softmax - onehot) * weight; a scalar. */
export function weightedCrossEntropy(z: tf.Tensor2D, targets: tf.Tensor1D, flatIdx: tf.Tensor1D, weight: tf.Tensor1D): tf.Scalar {
  const V = z.shape[1];
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const zi = args[0] as tf.Tensor2D;
    const save = args[1] as tf.GradSaveFunc;
    const { nll, softmax } = nllRows(zi, flatIdx);
    save([softmax]);
    return {
      value: tf.sum(tf.mul(nll, weight)) as tf.Scalar,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const diff = tf.sub(saved[0]!, tf.cast(tf.oneHot(targets, V), 'float32'));
        return [tf.mul(diff, tf.mul(tf.reshape(weight, [-1, 1]), dy))];
        // (oneHot is cast rather than asked for float32: the wasm kernel writes int bits into float outputs)
      },
    };
  });
  return f(z);
}
