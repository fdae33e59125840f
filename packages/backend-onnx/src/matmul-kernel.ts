/**
 * onnxruntime's float32 matrix product as a kernel for code that streams weights itself (expand's
 * streaming verifier): one tiny session, y [n, m] = Gemm(x [n, k], w [m, k], transB), any sizes, the
 * weight fed as an input per call (nothing is held between calls).
 */
import * as ort from 'onnxruntime-node';
import { OnnxBackend, type OnnxLoadOptions } from './backend';
import { DT, GraphBuilder, encodeModel, valueInfo } from './graph';

/** Structurally expand's `MatmulKernel` (backend-onnx does not depend on expand). */
export interface OnnxMatmulKernel {
  readonly name: string;
  /** y [n, m] = x [n, k] · wᵀ for w [m, k], row-major float32. */
  matmulT(x: Float32Array, w: Float32Array, n: number, k: number, m: number): Promise<Float32Array>;
  /** Releases the session. */
  dispose(): Promise<void>;
}

/**
 * Creates the kernel. Idle intra-op threads do not spin by default (`spinning: false`): the caller
 * decodes the next weight chunk on the main thread meanwhile.
 */
export async function createOnnxMatmulKernel(options: OnnxLoadOptions = {}): Promise<OnnxMatmulKernel> {
  const g = new GraphBuilder();
  g.inputs.push(valueInfo('x', DT.FLOAT, ['n', 'k']), valueInfo('w', DT.FLOAT, ['m', 'k']));
  g.op1('Gemm', ['x', 'w'], { transB: 1 }, 'y');
  g.outputs.push(valueInfo('y', DT.FLOAT, ['n', 'm']));
  const session = await ort.InferenceSession.create(encodeModel(g.model({ opset: 17, producerVersion: '1' })), new OnnxBackend().sessionOptions({ spinning: false, ...options }));
  return {
    name: 'onnxruntime',
    async matmulT(x, w, n, k, m) {
      if (x.length !== n * k || w.length !== m * k) throw new RangeError(`matmulT: x has ${x.length} values for [${n}, ${k}], w ${w.length} for [${m}, ${k}]`);
      const out = await session.run({ x: new ort.Tensor('float32', x, [n, k]), w: new ort.Tensor('float32', w, [m, k]) });
      return out['y']!.data as Float32Array;
    },
    dispose: () => session.release(),
  };
}
