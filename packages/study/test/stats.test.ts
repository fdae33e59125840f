import { logGamma, oneSampleTTest, regularizedBeta, studentTTwoSided, welchTTest } from '../src/stats';

describe('Student t distribution', () => {
  it('matches closed forms for 1 and 2 degrees of freedom', () => {
    // df = 1 (Cauchy): P(|T| ≥ t) = 1 − (2/π)·atan(t).  df = 2: P(|T| ≥ t) = 1 − t / √(2 + t²).
    for (const t of [0.1, 0.5, 1, 2, 5, 30]) {
      expect(studentTTwoSided(t, 1)).toBeCloseTo(1 - (2 / Math.PI) * Math.atan(t), 12);
      expect(studentTTwoSided(-t, 2)).toBeCloseTo(1 - t / Math.sqrt(2 + t * t), 12);
    }
    expect(studentTTwoSided(0, 7)).toBe(1);
  });

  it('matches printed critical values and scipy.stats.t', () => {
    // Two-sided 5 % critical values from standard t tables: t(0.975; 5) = 2.571, t(0.975; 10) = 2.228.
    expect(studentTTwoSided(2.571, 5)).toBeCloseTo(0.05, 4);
    expect(studentTTwoSided(2.228, 10)).toBeCloseTo(0.05, 4);
    // 2 * scipy.stats.t.sf(t, df), scipy 1.17.1 (computed by hand, not in CI):
    expect(studentTTwoSided(0.5, 3.7)).toBeCloseTo(0.6453356333199318, 10);
    expect(studentTTwoSided(4.0, 2.3)).toBeCloseTo(0.045147990983981874, 10);
    expect(studentTTwoSided(1e-3, 7)).toBeCloseTo(0.9992300172449988, 10);
    expect(studentTTwoSided(10, 50) / 1.6077334688335447e-13).toBeCloseTo(1, 6);
  });

  it('ln Γ and the incomplete beta agree with identities', () => {
    expect(logGamma(1)).toBeCloseTo(0, 13);
    expect(logGamma(5)).toBeCloseTo(Math.log(24), 12);
    expect(logGamma(0.5)).toBeCloseTo(0.5 * Math.log(Math.PI), 12);
    // I_x(1, 1) = x; I_x(a, 1) = x^a; symmetry I_x(a, b) = 1 − I_{1−x}(b, a).
    expect(regularizedBeta(0.3, 1, 1)).toBeCloseTo(0.3, 13);
    expect(regularizedBeta(0.7, 3, 1)).toBeCloseTo(0.343, 13);
    expect(regularizedBeta(0.2, 2.5, 4) + regularizedBeta(0.8, 4, 2.5)).toBeCloseTo(1, 13);
  });
});

describe("Welch's t-test", () => {
  it("reproduces Wikipedia's Welch example 1 and scipy.stats.ttest_ind(equal_var=False)", () => {
    // https://en.wikipedia.org/wiki/Welch%27s_t-test, Examples (t = −2.46, ν = 24.99, p = 0.021); exact
    // values from scipy 1.17.1 ttest_ind(a1, a2, equal_var=False), computed by hand.
    const a1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4];
    const a2 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4];
    const r = welchTTest(a1, a2);
    expect(r.t).toBeCloseTo(-2.455356398286006, 10);
    expect(r.df).toBeCloseTo(24.988529290231416, 9);
    expect(r.p).toBeCloseTo(0.021378001462866992, 10);
  });

  it('matches scipy on three-seed samples (noisy and clearly separated)', () => {
    // scipy 1.17.1 ttest_ind(a, b, equal_var=False), computed by hand.
    const noisy = welchTTest([2.2469, 2.2401, 2.2537], [2.2562, 2.22, 2.2924]);
    expect(noisy.t).toBeCloseTo(-0.43732556363971403, 10);
    expect(noisy.df).toBeCloseTo(2.1409679147471423, 9);
    expect(noisy.p).toBeCloseTo(0.7020659088955131, 9);
    const clear = welchTTest([1.0, 1.1, 0.9], [2.0, 2.2, 1.9]);
    expect(clear.t).toBeCloseTo(-9.803060746521968, 9);
    expect(clear.df).toBeCloseTo(3.448275862068964, 9);
    expect(clear.p).toBeCloseTo(0.0012271513537295907, 10);
  });

  it('handles degenerate samples and refuses single values', () => {
    expect(welchTTest([1, 1, 1], [1, 1, 1]).p).toBe(1);
    expect(welchTTest([1, 1, 1], [2, 2, 2]).p).toBe(0);
    expect(() => welchTTest([1], [1, 2, 3])).toThrow(/at least 2 values/);
  });

  it('one-sample test matches the closed form for n = 2 (df = 1)', () => {
    // xs = [0, 2], mu = 0: t = 1 / (√2 / √2) = 1, df = 1, p = 1 − (2/π)·atan(1) = 0.5.
    const r = oneSampleTTest([0, 2], 0);
    expect(r.t).toBeCloseTo(1, 14);
    expect(r.p).toBeCloseTo(0.5, 12);
  });
});
