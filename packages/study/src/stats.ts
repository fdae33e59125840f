/**
 * Welch's unequal-variance t-test and the Student-t distribution it needs, written from the textbook
 * formulas (no statistics dependency for one test):
 * - t = (m₁ − m₂) / √(s₁²/n₁ + s₂²/n₂), Welch–Satterthwaite degrees of freedom;
 * - two-sided p = I_{ν/(ν+t²)}(ν/2, 1/2), the regularized incomplete beta function, evaluated by its
 *   continued fraction (modified Lentz) with ln Γ from the Lanczos approximation (g = 7, n = 9).
 */

/** ln Γ(x) for x > 0 (Lanczos, g = 7; relative error ~1e-15). */
export function logGamma(x: number): number {
  if (x < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - logGamma(1 - x);
  const c = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
  const z = x - 1;
  let a = c[0]!;
  const t = z + 7.5;
  for (let i = 1; i < 9; i++) a += c[i]! / (z + i);
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(a);
}

/** Continued fraction of the incomplete beta function (modified Lentz). */
function betaContinuedFraction(x: number, a: number, b: number): number {
  const tiny = 1e-300;
  let c = 1;
  let d = 1 - ((a + b) * x) / (a + 1);
  if (Math.abs(d) < tiny) d = tiny;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 500; m++) {
    const m2 = 2 * m;
    // Even step: d_{2m} = m (b − m) x / ((a + 2m − 1)(a + 2m)).
    let aa = (m * (b - m) * x) / ((a + m2 - 1) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    // Odd step: d_{2m+1} = −(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1)).
    aa = (-(a + m) * (a + b + m) * x) / ((a + m2) * (a + m2 + 1));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-15) break;
  }
  return h;
}

/** The regularized incomplete beta function I_x(a, b), 0 ≤ x ≤ 1, a, b > 0. */
export function regularizedBeta(x: number, a: number, b: number): number {
  if (!(x >= 0 && x <= 1) || !(a > 0) || !(b > 0)) return NaN;
  if (x === 0) return 0;
  if (x === 1) return 1;
  const lnFront = logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log(1 - x);
  // The continued fraction converges fast for x < (a + 1)/(a + b + 2); use the symmetry otherwise.
  if (x < (a + 1) / (a + b + 2)) return (Math.exp(lnFront) * betaContinuedFraction(x, a, b)) / a;
  return 1 - (Math.exp(lnFront) * betaContinuedFraction(1 - x, b, a)) / b;
}

/** Two-sided tail probability P(|T| ≥ |t|) of Student's t with `df` (> 0, not necessarily integer) degrees of freedom. */
export function studentTTwoSided(t: number, df: number): number {
  if (!(df > 0) || Number.isNaN(t)) return NaN;
  if (!Number.isFinite(t)) return 0;
  return regularizedBeta(df / (df + t * t), df / 2, 0.5);
}

export interface WelchResult {
  /** mean(a) − mean(b). */
  diff: number;
  t: number;
  df: number;
  /** Two-sided p-value. */
  p: number;
  na: number;
  nb: number;
}

function meanVar(xs: readonly number[]): { m: number; v: number } {
  const m = xs.reduce((s, x) => s + x, 0) / xs.length;
  const v = xs.length > 1 ? xs.reduce((s, x) => s + (x - m) ** 2, 0) / (xs.length - 1) : 0;
  return { m, v };
}

/**
 * Welch's two-sample t-test of mean(a) = mean(b) (scipy.stats.ttest_ind(a, b, equal_var=False)).
 * Needs ≥ 2 values per sample. When both samples have zero variance the test is degenerate: p = 1 for
 * equal means, p = 0 for different ones (the difference is exact, e.g. deterministic runs).
 */
export function welchTTest(a: readonly number[], b: readonly number[]): WelchResult {
  if (a.length < 2 || b.length < 2) throw new RangeError(`Welch's t-test needs at least 2 values per sample (got ${a.length} and ${b.length})`);
  const A = meanVar(a);
  const B = meanVar(b);
  const diff = A.m - B.m;
  const ea = A.v / a.length;
  const eb = B.v / b.length;
  const se2 = ea + eb;
  if (se2 === 0) return { diff, t: diff === 0 ? 0 : Math.sign(diff) * Infinity, df: a.length + b.length - 2, p: diff === 0 ? 1 : 0, na: a.length, nb: b.length };
  const t = diff / Math.sqrt(se2);
  const df = (se2 * se2) / ((ea * ea) / (a.length - 1) + (eb * eb) / (b.length - 1));
  return { diff, t, df, p: studentTTwoSided(t, df), na: a.length, nb: b.length };
}

/**
 * One-sample t-test of mean(xs) = mu (scipy.stats.ttest_1samp): t = (m − mu) / (s / √n), n − 1 degrees
 * of freedom, two-sided p. Zero variance: p = 1 when m = mu, else 0.
 */
export function oneSampleTTest(xs: readonly number[], mu: number): WelchResult {
  if (xs.length < 2) throw new RangeError(`a one-sample t-test needs at least 2 values (got ${xs.length})`);
  const { m, v } = meanVar(xs);
  const diff = m - mu;
  const df = xs.length - 1;
  if (v === 0) return { diff, t: diff === 0 ? 0 : Math.sign(diff) * Infinity, df, p: diff === 0 ? 1 : 0, na: xs.length, nb: 0 };
  const t = diff / Math.sqrt(v / xs.length);
  return { diff, t, df, p: studentTTwoSided(t, df), na: xs.length, nb: 0 };
}
