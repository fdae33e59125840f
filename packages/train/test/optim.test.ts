import { Rng, nativeAdamW } from '@llama-pro/core';
import { AdamW, clipGlobalNorm, clipScale, constantSchedule, cosineSchedule, decaysByShape, globalNorm, linearSchedule, warmupSteps } from '../src';

describe('AdamW', () => {
  it('first step matches the hand-derived update (decoupled decay, bias correction)', () => {
    // t=1: m = 0.1·g, v = 0.05·g², m̂ = g, v̂ = g², so p₁ = p₀(1 − lr·wd) − lr·g/(|g| + ε).
    const opt = new AdamW([{ name: 'w', size: 2, decay: true }], { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
    const p = new Map([['w', new Float32Array([0.5, -1.5])]]);
    opt.update(p, new Map([['w', new Float32Array([0.2, -0.4])]]), 0.1);
    expect(p.get('w')![0]).toBe(Math.fround(0.5 * 0.99 - (0.1 * 0.2) / (0.2 + 1e-8)));
    expect(p.get('w')![1]).toBe(Math.fround(-1.5 * 0.99 + (0.1 * 0.4) / (0.4 + 1e-8)));
  });

  it('follows the PyTorch AdamW recurrence over three steps (independent float64 reference)', () => {
    const [b1, b2, eps, wd, lr] = [0.9, 0.95, 1e-8, 0.1, 0.01];
    const gs = [0.3, -0.1, 0.05];
    let p = 1.0;
    let m = 0;
    let v = 0;
    const opt = new AdamW([{ name: 'w', size: 1, decay: true }], { beta1: b1, beta2: b2, eps, weightDecay: wd });
    const params = new Map([['w', new Float32Array([1.0])]]);
    gs.forEach((g, i) => {
      const t = i + 1;
      p = p * (1 - lr * wd);
      m = b1 * m + (1 - b1) * g;
      v = b2 * v + (1 - b2) * g * g;
      p -= (lr / (1 - b1 ** t)) * (m / (Math.sqrt(v / (1 - b2 ** t)) + eps));
      opt.update(params, new Map([['w', new Float32Array([g])]]), lr);
    });
    expect(params.get('w')![0]).toBeCloseTo(p, 6);
    expect(opt.step).toBe(3);
  });

  it('with the clip fused in (gradScale), matches a float64 transcription of torch.optim.AdamW after clip_grad_norm_, decaying matrices only', () => {
    // Reference: torch.nn.utils.clip_grad_norm_(max_norm=1.0) (scale max_norm / (norm + 1e-6) when the
    // norm exceeds it), then torch.optim.AdamW(lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1) with
    // the bias vector in a no-decay group; written out in float64 here.
    const w = Float32Array.from([0.5, -0.25, 1, 2]);
    const b = Float32Array.from([0.1, -0.2]);
    const params = new Map([['w', w], ['b', b]]);
    const opt = new AdamW([{ name: 'w', size: 4, decay: decaysByShape([2, 2]) }, { name: 'b', size: 2, decay: decaysByShape([2]) }], { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
    const ref = { w: [0.5, -0.25, 1, 2], b: [0.1, -0.2], mw: [0, 0, 0, 0], vw: [0, 0, 0, 0], mb: [0, 0], vb: [0, 0] };
    const lr = 0.01;
    for (let t = 1; t <= 3; t++) {
      const gw = [0.3 * t, -0.1, 0.5, 2.0 / t];
      const gb = [-0.4, 0.2 * t];
      const norm = Math.hypot(...gw, ...gb);
      const s = norm > 1 ? 1 / (norm + 1e-6) : 1;
      const step = (p: number[], m: number[], v: number[], g: number[], decay: boolean) => {
        for (let i = 0; i < p.length; i++) {
          const gi = g[i]! * s;
          if (decay) p[i] = p[i]! * (1 - lr * 0.1);
          m[i] = 0.9 * m[i]! + 0.1 * gi;
          v[i] = 0.95 * v[i]! + 0.05 * gi * gi;
          p[i] = p[i]! - (lr / (1 - 0.9 ** t)) * (m[i]! / (Math.sqrt(v[i]!) / Math.sqrt(1 - 0.95 ** t) + 1e-8));
        }
      };
      step(ref.w, ref.mw, ref.vw, gw, true);
      step(ref.b, ref.mb, ref.vb, gb, false);
      const grads = new Map([['w', Float32Array.from(gw)], ['b', Float32Array.from(gb)]]);
      const got = globalNorm(grads.values());
      expect(got).toBeCloseTo(norm, 5);
      opt.update(params, grads, lr, clipScale(got, 1));
      expect([...grads.get('w')!]).toEqual([...Float32Array.from(gw)]); // gradients are read, not written
      ref.w.forEach((x, i) => expect(w[i]).toBeCloseTo(x, 6));
      ref.b.forEach((x, i) => expect(b[i]).toBeCloseTo(x, 6));
    }
    expect(() => opt.update(params, new Map([['w', new Float32Array(4)]]), lr)).toThrow(/missing gradient/);
  });

  it('the fused clip factor gives bit-identical parameters to clipping the gradients in place first', () => {
    const mk = () => new AdamW([{ name: 'w', size: 5, decay: true }]);
    const g0 = Float32Array.from([3.1, -4.7, 0.25, 9.5, -0.003]);
    const [a, b] = [mk(), mk()];
    const pa = new Map([['w', Float32Array.from([0.1, 0.2, -0.3, 0.4, 0.5])]]);
    const pb = new Map([['w', Float32Array.from(pa.get('w')!)]]);
    for (let t = 0; t < 3; t++) {
      const inPlace = Float32Array.from(g0, (x) => x * (t + 1));
      const fused = Float32Array.from(inPlace);
      const norm = clipGlobalNorm([inPlace], 1);
      a.update(pa, new Map([['w', inPlace]]), 0.01);
      b.update(pb, new Map([['w', fused]]), 0.01, clipScale(norm, 1));
      expect(Buffer.from(pb.get('w')!.buffer).equals(Buffer.from(pa.get('w')!.buffer))).toBe(true);
    }
    expect(clipScale(0.5, 1)).toBe(1);
    expect(clipScale(5, 0)).toBe(1);
    expect(() => b.update(pb, new Map([['w', g0]]), Number.NaN)).toThrow(/learning rate/);
  });

  it('applies weight decay to matrices only', () => {
    expect(decaysByShape([4, 4])).toBe(true);
    expect(decaysByShape([4])).toBe(false);
    const opt = new AdamW(
      [
        { name: 'norm', size: 1, decay: false },
        { name: 'mat', size: 1, decay: true },
      ],
      { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.5 },
    );
    const p = new Map([
      ['norm', new Float32Array([2])],
      ['mat', new Float32Array([2])],
    ]);
    // Zero gradient: only decay moves a parameter (m = v = 0, so the Adam term is 0).
    opt.update(p, new Map([['norm', new Float32Array([0])], ['mat', new Float32Array([0])]]), 0.1);
    expect(p.get('norm')![0]).toBe(2);
    expect(p.get('mat')![0]).toBe(Math.fround(2 * (1 - 0.1 * 0.5)));
  });

  it('state round-trips and rejects mismatched state', () => {
    const a = new AdamW([{ name: 'w', size: 2, decay: true }]);
    const pa = new Map([['w', new Float32Array([1, 2])]]);
    a.update(pa, new Map([['w', new Float32Array([0.1, 0.2])]]), 0.01);
    const b = new AdamW([{ name: 'w', size: 2, decay: true }]);
    b.setState(a.getState());
    const pb = new Map([['w', Float32Array.from(pa.get('w')!)]]);
    a.update(pa, new Map([['w', new Float32Array([0.3, -0.2])]]), 0.01);
    b.update(pb, new Map([['w', new Float32Array([0.3, -0.2])]]), 0.01);
    expect([...pb.get('w')!]).toEqual([...pa.get('w')!]);
    const c = new AdamW([{ name: 'x', size: 2, decay: true }]);
    expect(() => c.setState(a.getState())).toThrow(/different policy/);
  });
});

describe('AdamW, native-io loop vs JavaScript loop', () => {
  // CI builds the addon (LLAMA_PRO_REQUIRE_NATIVE_IO=1); without it both optimizers run JavaScript's loop.
  const maybe = nativeAdamW() ? it : it.skip;
  maybe('give bit-identical parameters and moments over steps with and without the clip factor, decay on and off', () => {
    const rng = new Rng(7);
    // Sizes around the vector widths (1, 7, 16, 17) and one large; values from 1e-30 to 1e3, zeros, both signs.
    const sizes: [string, number, boolean][] = [['a', 1, true], ['b', 7, false], ['c', 16, true], ['d', 17, true], ['e', 100_003, false]];
    const value = () => (rng.next() < 0.05 ? 0 : (rng.next() < 0.5 ? -1 : 1) * 10 ** (rng.next() * 33 - 30));
    const slots = sizes.map(([name, size, decay]) => ({ name, size, decay }));
    const init = new Map(sizes.map(([n, size]) => [n, Float32Array.from({ length: size }, value)] as const));
    const copy = () => new Map([...init].map(([n, a]) => [n, Float32Array.from(a)] as const));
    const [pn, pj] = [copy(), copy()];
    const native = new AdamW(slots, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
    const js = new AdamW(slots, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 }, { native: false });
    expect([native.implementation, js.implementation]).toEqual(['native', 'javascript']);
    const bytes = (m: ReadonlyMap<string, Float32Array>) => Buffer.concat([...m.values()].map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength)));
    for (let t = 0; t < 6; t++) {
      const grads = new Map(sizes.map(([n, size]) => [n, Float32Array.from({ length: size }, value)] as const));
      const scale = t % 2 === 0 ? 1 : clipScale(globalNorm(grads.values()), 1e-3);
      expect(t % 2 === 0 || scale < 1).toBe(true);
      native.update(pn, grads, 3e-4 * (t + 1), scale);
      js.update(pj, grads, 3e-4 * (t + 1), scale);
      expect(bytes(pn).equals(bytes(pj))).toBe(true);
      const [sn, sj] = [native.getState(), js.getState()];
      expect(bytes(sn.expAvg).equals(bytes(sj.expAvg))).toBe(true);
      expect(bytes(sn.expAvgSq).equals(bytes(sj.expAvgSq))).toBe(true);
    }
    expect(bytes(pn).equals(bytes(init))).toBe(false); // it moved
  });
});

describe('schedules', () => {
  const p = { lr: 1e-3, minLr: 1e-4, warmupRatio: 0.06 };
  it('warms up linearly over round(6%) of the steps', () => {
    expect(warmupSteps(100, p)).toBe(6);
    expect(cosineSchedule.lr(0, 100, p)).toBeCloseTo(1e-3 / 6, 12);
    expect(cosineSchedule.lr(5, 100, p)).toBeCloseTo(1e-3, 12);
  });
  it('cosine decays from lr to minLr', () => {
    expect(cosineSchedule.lr(6, 100, p)).toBeCloseTo(1e-3, 12);
    // halfway through the decay (step 6 + 47): cos(π/2) = 0 → the midpoint
    expect(cosineSchedule.lr(53, 100, p)).toBeCloseTo((1e-3 + 1e-4) / 2, 12);
    expect(cosineSchedule.lr(100, 100, p)).toBeCloseTo(1e-4, 12);
  });
  it('linear and constant', () => {
    expect(linearSchedule.lr(53, 100, p)).toBeCloseTo((1e-3 + 1e-4) / 2, 12);
    expect(constantSchedule.lr(90, 100, p)).toBe(1e-3);
    expect(constantSchedule.lr(0, 10, { ...p, warmupSteps: 0 })).toBe(1e-3);
  });
});

describe('clipping', () => {
  it('scales to the max norm only when above it', () => {
    const g = [new Float32Array([3]), new Float32Array([4])];
    expect(globalNorm(g)).toBe(5);
    const norm = clipGlobalNorm(g, 1.0);
    expect(norm).toBe(5);
    expect(globalNorm(g)).toBeCloseTo(1, 5);
    const h = [new Float32Array([0.3, 0.4])];
    clipGlobalNorm(h, 1.0);
    expect([...h[0]!]).toEqual([Math.fround(0.3), Math.fround(0.4)]);
  });
});
