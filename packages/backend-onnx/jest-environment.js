// onnxruntime-node creates output tensors from typed arrays of the main realm, and onnxruntime-common
// checks them with `instanceof Float32Array`; jest's sandbox has its own typed-array constructors, so
// tests that run ONNX Runtime share the main realm's typed arrays (and ArrayBuffer) with the sandbox.
const { TestEnvironment } = require('jest-environment-node');

const SHARED = ['ArrayBuffer', 'Float32Array', 'Float64Array', 'Int8Array', 'Uint8Array', 'Uint8ClampedArray', 'Int16Array', 'Uint16Array', 'Int32Array', 'Uint32Array', 'BigInt64Array', 'BigUint64Array'];

class OrtTestEnvironment extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    for (const name of SHARED) this.global[name] = globalThis[name];
  }
}

module.exports = OrtTestEnvironment;
