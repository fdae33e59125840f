/**
 * ONNX Runtime's own fp32 matmul speed on this machine right now ([m, k] x [k, n], k x n constant), for
 * benchmarks that report a training step's efficiency independently of how busy the machine is.
 */
import * as ort from 'onnxruntime-node';
import { OnnxBackend, type OnnxLoadOptions } from '../backend';
import { DT, GraphBuilder, encodeModel, valueInfo } from '../graph';

export async function measureMatmulGflops(m: number, k: number, n: number, options: OnnxLoadOptions = {}, reps = 3): Promise<number> {
  const g = new GraphBuilder();
  g.inputs.push(valueInfo('a', DT.FLOAT, [m, k]));
  const w = new Float32Array(k * n).map((_, i) => ((i * 7919) % 1000) / 1e4);
  const wn = await g.weight('w', [k, n], w);
  g.op1('MatMul', ['a', wn], {}, 'y');
  g.outputs.push(valueInfo('y', DT.FLOAT, [m, n]));
  const session = await ort.InferenceSession.create(encodeModel(g.model({ opset: 17, producerVersion: '1' })), new OnnxBackend().sessionOptions(options));
  try {
    const a = new ort.Tensor('float32', new Float32Array(m * k).fill(0.01), [m, k]);
    await session.run({ a });
    await session.run({ a });
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) await session.run({ a });
    return (reps * 2 * m * k * n) / ((performance.now() - t0) / 1000) / 1e9;
  } finally {
    await session.release();
  }
}
