/**
 * Test helpers for code that runs ONNX Runtime under jest.
 *
 * onnxruntime-node returns output tensors backed by typed arrays of Node's main realm, and
 * onnxruntime-common checks them with `instanceof Float32Array`; jest runs each test file in its own
 * realm with its own typed-array constructors, so that check fails. Call
 * `useMainRealmTypedArrays()` at the top of a test file (before creating any typed array the test
 * feeds to ONNX Runtime), or use `@llama-pro/backend-onnx/jest-environment` as the jest environment.
 */
import * as vm from 'node:vm';

export const SHARED_TYPED_ARRAYS = [
  'ArrayBuffer',
  'Float32Array',
  'Float64Array',
  'Int8Array',
  'Uint8Array',
  'Uint8ClampedArray',
  'Int16Array',
  'Uint16Array',
  'Int32Array',
  'Uint32Array',
  'BigInt64Array',
  'BigUint64Array',
] as const;

/** Replaces this realm's typed-array constructors with the main realm's (a no-op outside jest). */
export function useMainRealmTypedArrays(): void {
  const g = globalThis as unknown as Record<string, unknown>;
  for (const name of SHARED_TYPED_ARRAYS) g[name] = vm.runInThisContext(name) as unknown;
}
