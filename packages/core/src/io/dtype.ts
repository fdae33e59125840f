/**
 * Safetensors dtypes and exact float conversions.
 *
 * F32 <-> F16 and F32 <-> BF16: widening is exact; narrowing rounds to nearest, ties to even, keeps
 * infinities, turns overflow into infinity, keeps NaN a NaN (quiet) and keeps the sign of zero.
 */
import { UsageError } from '../errors';

export const DTYPE_SIZES = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
} as const;

export type DType = keyof typeof DTYPE_SIZES;
/** The float dtypes the toolkit converts between; others are carried as bytes. */
export type FloatDType = 'F32' | 'F16' | 'BF16';

export function isDType(x: unknown): x is DType {
  return typeof x === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_SIZES, x);
}

export function isFloatDType(x: unknown): x is FloatDType {
  return x === 'F32' || x === 'F16' || x === 'BF16';
}

export function dtypeSize(dtype: DType): number {
  return DTYPE_SIZES[dtype];
}

/** Maps HF `torch_dtype` strings to safetensors dtypes. */
export function dtypeFromTorch(torchDtype: string): FloatDType {
  switch (torchDtype.replace(/^torch\./, '')) {
    case 'float32':
    case 'float':
      return 'F32';
    case 'float16':
    case 'half':
      return 'F16';
    case 'bfloat16':
      return 'BF16';
    default:
      throw new UsageError(`unsupported torch_dtype "${torchDtype}"; use float32, float16 or bfloat16`);
  }
}

export function dtypeToTorch(dtype: FloatDType): string {
  return dtype === 'F32' ? 'float32' : dtype === 'F16' ? 'float16' : 'bfloat16';
}

/** Parses "float32" | "fp16" | "bf16" | "F16" ... into a float dtype. */
export function parseFloatDType(s: string): FloatDType {
  const k = s.trim().toLowerCase();
  if (['f32', 'fp32', 'float32'].includes(k)) return 'F32';
  if (['f16', 'fp16', 'float16', 'half'].includes(k)) return 'F16';
  if (['bf16', 'bfloat16'].includes(k)) return 'BF16';
  throw new UsageError(`unknown dtype "${s}"; use one of float32, float16, bfloat16`);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 bit pattern -> float16 bits, round to nearest even. */
export function f32BitsToF16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) {
    // Inf or NaN (keep NaN quiet and non-zero).
    return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0);
  }
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow -> inf
  if (e <= 0) {
    // Subnormal half (or zero). The value is mant_full * 2^(exp-150); half subnormal unit is 2^-24.
    if (e < -10) return sign; // below half of the smallest subnormal: rounds to zero
    mant |= 0x800000;
    const shift = 14 - e; // 14..24
    const half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    const rounded = rem > mid || (rem === mid && (half & 1) === 1) ? half + 1 : half;
    return sign | rounded;
  }
  const half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // Carry from the mantissa into the exponent is correct (it rounds up to the next binade or to inf).
  const rounded = rem > 0x1000 || (rem === 0x1000 && (half & 1) === 1) ? half + 1 : half;
  return sign | rounded;
}

/** float16 bits -> float32 bit pattern (exact). */
export function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp === 0) {
    if (mant === 0) return sign >>> 0;
    // Normalize the subnormal.
    let e = -1;
    do {
      mant <<= 1;
      e++;
    } while ((mant & 0x400) === 0);
    mant &= 0x3ff;
    return (sign | ((127 - 15 - e) << 23) | (mant << 13)) >>> 0;
  }
  return (sign | ((exp - 15 + 127) << 23) | (mant << 13)) >>> 0;
}

/** float32 bit pattern -> bfloat16 bits, round to nearest even; NaN stays a quiet NaN. */
export function f32BitsToBf16Bits(x: number): number {
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) {
    return ((x >>> 16) | 0x40) & 0xffff;
  }
  const lsb = (x >>> 16) & 1;
  return ((x + 0x7fff + lsb) >>> 16) & 0xffff;
}

export function bf16BitsToF32Bits(h: number): number {
  return (h << 16) >>> 0;
}

export function f32ToF16Bits(v: number): number {
  f32[0] = v;
  return f32BitsToF16Bits(u32[0]!);
}

export function f16BitsToF32(h: number): number {
  u32[0] = f16BitsToF32Bits(h);
  return f32[0]!;
}

export function f32ToBf16Bits(v: number): number {
  f32[0] = v;
  return f32BitsToBf16Bits(u32[0]!);
}

export function bf16BitsToF32(h: number): number {
  u32[0] = bf16BitsToF32Bits(h);
  return f32[0]!;
}

/** A copy into a fresh, aligned ArrayBuffer (Buffer#slice returns a view, so copy explicitly). */
function alignedCopy(bytes: Uint8Array): ArrayBuffer {
  const out = new Uint8Array(bytes.byteLength);
  out.set(bytes);
  return out.buffer;
}

function u16View(bytes: Uint8Array): Uint16Array {
  if (bytes.byteOffset % 2 === 0) return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  return new Uint16Array(alignedCopy(bytes));
}

/** Decodes little-endian tensor bytes of a float dtype into float32 (exact for F16/BF16). */
export function decodeToFloat32(bytes: Uint8Array, dtype: FloatDType): Float32Array {
  if (bytes.byteLength % dtypeSize(dtype) !== 0) {
    throw new UsageError(`${bytes.byteLength} bytes is not a whole number of ${dtype} elements`);
  }
  if (dtype === 'F32') {
    if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4).slice();
    return new Float32Array(alignedCopy(bytes));
  }
  const src = u16View(bytes);
  const out = new Float32Array(src.length);
  const outBits = new Uint32Array(out.buffer);
  if (dtype === 'F16') for (let i = 0; i < src.length; i++) outBits[i] = f16BitsToF32Bits(src[i]!);
  else for (let i = 0; i < src.length; i++) outBits[i] = src[i]! << 16;
  return out;
}

/** Encodes float32 values into little-endian bytes of `dtype` (round to nearest even when narrowing). */
export function encodeFromFloat32(values: Float32Array, dtype: FloatDType): Buffer {
  if (dtype === 'F32') return Buffer.from(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  if (dtype === 'F16') for (let i = 0; i < bits.length; i++) out[i] = f32BitsToF16Bits(bits[i]!);
  else for (let i = 0; i < bits.length; i++) out[i] = f32BitsToBf16Bits(bits[i]!);
  return Buffer.from(out.buffer);
}

/** Converts tensor bytes between float dtypes; same-dtype conversion returns the input unchanged. */
export function convertFloatBytes(bytes: Uint8Array, from: FloatDType, to: FloatDType): Uint8Array {
  if (from === to) return bytes;
  return encodeFromFloat32(decodeToFloat32(bytes, from), to);
}
