import { AdamW, clipGlobalNorm, constantSchedule, cosineSchedule, decaysByShape, globalNorm, linearSchedule, warmupSteps } from '../src';

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
