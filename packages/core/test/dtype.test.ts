import {
  bf16BitsToF32,
  decodeToFloat32,
  encodeFromFloat32,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
  convertFloatBytes,
  parseFloatDType,
} from '@llama-pro/core';

// Bit patterns computed by hand from the IEEE 754 binary16 / bfloat16 definitions.
const f32FromBits = (u: number) => new Float32Array(new Uint32Array([u]).buffer)[0]!;

describe('float16', () => {
  it.each([
    [1.0, 0x3c00],
    [-2.0, 0xc000],
    [0.5, 0x3800],
    [65504, 0x7bff], // max finite half
    [65520, 0x7c00], // halfway between max and 2^16 rounds (to even) to inf
    [1e6, 0x7c00], // overflow -> inf
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [0, 0x0000],
    [-0, 0x8000],
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // exactly half the smallest subnormal: ties to even (0)
    [3 * 2 ** -25, 0x0002], // 1.5 subnormal units: ties to even (2)
    [2 ** -26, 0x0000],
    [1 + 2 ** -11, 0x3c00], // tie between 1 and 1+2^-10: even mantissa wins
    [1 + 3 * 2 ** -11, 0x3c02], // tie between 1+2^-10 (odd) and 1+2^-9 (even)
    [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above the tie rounds up
    [0.1, 0x2e66],
  ])('f32 %p -> f16 0x%s', (value, bits) => {
    expect(f32ToF16Bits(value)).toBe(bits);
  });

  it('keeps NaN a NaN', () => {
    const h = f32ToF16Bits(NaN);
    expect(h & 0x7c00).toBe(0x7c00);
    expect(h & 0x3ff).not.toBe(0);
    expect(Number.isNaN(f16BitsToF32(h))).toBe(true);
  });

  it('widens every finite half exactly and round-trips it', () => {
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 0x7c00) === 0x7c00) continue;
      const v = f16BitsToF32(h);
      expect(f32ToF16Bits(v)).toBe(h);
    }
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24);
    expect(f16BitsToF32(0x03ff)).toBe(1023 * 2 ** -24);
    expect(f16BitsToF32(0x7bff)).toBe(65504);
    expect(Object.is(f16BitsToF32(0x8000), -0)).toBe(true);
  });
});

describe('bfloat16', () => {
  it.each([
    [0x3f800000, 0x3f80], // 1.0
    [0x3f808000, 0x3f80], // tie, even stays
    [0x3f818000, 0x3f82], // tie, odd rounds up
    [0x3f808001, 0x3f81], // above tie
    [0x7f7fffff, 0x7f80], // max float rounds to inf
    [0xff800000, 0xff80], // -inf
    [0x80000000, 0x8000], // -0
    [0x00000001, 0x0000], // tiny subnormal rounds to 0
  ])('f32 bits 0x%s -> bf16 0x%s', (f32bits, bits) => {
    expect(f32ToBf16Bits(f32FromBits(f32bits))).toBe(bits);
  });

  it('keeps NaN a quiet NaN', () => {
    const b = f32ToBf16Bits(f32FromBits(0x7f800001));
    expect(Number.isNaN(bf16BitsToF32(b))).toBe(true);
  });

  it('widens exactly', () => {
    expect(bf16BitsToF32(0x3f80)).toBe(1);
    expect(bf16BitsToF32(0xc040)).toBe(-3);
    expect(bf16BitsToF32(0x0001)).toBe(f32FromBits(0x00010000));
  });
});

describe('tensor byte conversion', () => {
  it('round-trips F32 -> F16 -> F32 and F32 -> BF16 -> F32 exactly for representable values', () => {
    const v = new Float32Array([0, -0, 1, -1.5, 0.25, 1024, 2 ** -24, -65504]);
    expect(decodeToFloat32(encodeFromFloat32(v, 'F16'), 'F16')).toEqual(v);
    const b = new Float32Array([0, 1, -1.5, 0.25, 1024, 2 ** -100, -3.5e38 - 0]);
    const back = decodeToFloat32(encodeFromFloat32(b, 'BF16'), 'BF16');
    expect(back[0]).toBe(0);
    expect(back.slice(1, 5)).toEqual(b.slice(1, 5));
    expect(back[5]).toBe(2 ** -100);
  });

  it('F16 <-> BF16 goes through exact float32', () => {
    const f16 = encodeFromFloat32(new Float32Array([1, 0.5, 3]), 'F16');
    const bf = convertFloatBytes(f16, 'F16', 'BF16');
    expect([...new Uint16Array(bf.buffer, bf.byteOffset, 3)]).toEqual([0x3f80, 0x3f00, 0x4040]);
    expect(convertFloatBytes(f16, 'F16', 'F16')).toBe(f16);
  });

  it('reads unaligned buffers', () => {
    const buf = Buffer.alloc(9);
    buf.writeFloatLE(1.5, 1);
    buf.writeFloatLE(-2, 5);
    expect([...decodeToFloat32(buf.subarray(1), 'F32')]).toEqual([1.5, -2]);
  });

  it('rejects ragged byte counts and unknown dtype names', () => {
    expect(() => decodeToFloat32(new Uint8Array(3), 'F16')).toThrow(/not a whole number of F16 elements/);
    expect(() => parseFloatDType('int4')).toThrow(/unknown dtype "int4"/);
    expect(parseFloatDType('bf16')).toBe('BF16');
  });
});
