/** Scoring primitives shared by the tasks, each a port of the reference harness's formula. */

/**
 * Unbiased pass@k for one problem (openai/human-eval `estimate_pass_at_k`): 1 − C(n−c, k)/C(n, k), computed as
 * 1 − Π_{i=n−c+1..n} (1 − k/i), with 1 when n − c < k.
 */
export function passAtK(n: number, c: number, k: number): number {
  if (!(Number.isInteger(n) && Number.isInteger(c) && Number.isInteger(k)) || n < 0 || c < 0 || c > n || k < 1) {
    throw new RangeError(`pass@k needs integers 0 <= c <= n and k >= 1 (got n=${n}, c=${c}, k=${k})`);
  }
  if (n - c < k) return 1.0;
  let prod = 1.0;
  for (let i = n - c + 1; i <= n; i++) prod *= 1.0 - k / i;
  return 1.0 - prod;
}

/**
 * pass@k averaged over problems; a k is reported only when every problem has at least k samples (as the
 * reference's `if (total >= k).all()`).
 */
export function passAtKTable(perProblem: readonly { n: number; c: number }[], ks: readonly number[]): Record<string, number> {
  const out: Record<string, number> = {};
  if (perProblem.length === 0) return out;
  for (const k of ks) {
    if (!perProblem.every((p) => p.n >= k)) continue;
    let sum = 0;
    for (const p of perProblem) sum += passAtK(p.n, p.c, k);
    out[`pass@${k}`] = sum / perProblem.length;
  }
  return out;
}

/**
 * Cuts generated text at the earliest occurrence of any stop string (stops are searched only in the
 * generated text, never in the prompt).
 */
export function truncateAtStops(generation: string, stops: readonly string[]): string {
  let cut = generation.length;
  for (const s of stops) {
    if (!s) continue;
    const i = generation.indexOf(s);
    if (i >= 0 && i < cut) cut = i;
  }
  return generation.slice(0, cut);
}

/** lm-eval `postprocess_generated_text`: `generation.split(term)[0]` for each stop in turn (same result). */
export function splitAtStops(generation: string, stops: readonly string[]): string {
  let g = generation;
  for (const s of stops) if (s) g = g.split(s)[0]!;
  return g;
}

/** If a model echoed the prompt, strips the exact prompt prefix so the completion never re-includes it. */
export function stripPromptEcho(prompt: string, generation: string): string {
  return prompt.length > 0 && generation.startsWith(prompt) ? generation.slice(prompt.length) : generation;
}

/** Mean with 0 for an empty list. */
export function mean(xs: readonly number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0;
}

/** Sample standard error of the mean (ddof = 1), as lm-eval's `mean_stderr`. */
export function stderrOfMean(xs: readonly number[]): number {
  const n = xs.length;
  if (n < 2) return 0;
  const m = mean(xs);
  let ss = 0;
  for (const x of xs) ss += (x - m) * (x - m);
  return Math.sqrt(ss / (n - 1)) / Math.sqrt(n);
}
