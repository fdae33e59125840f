/**
 * The one float64 JavaScript reference of these tests: a LLaMA-family decoder with Hugging Face
 * semantics (RMSNorm, rotate-half RoPE on the first `rotaryDim` channels of a head, grouped-query
 * attention by explicit head mapping, SwiGLU, biases, tied or untied head), optional padding (positions
 * count real tokens only), optional per-layer sliding windows (key j is visible from query t iff
 * 0 <= t - j < window; HF Mistral / Qwen2 `sliding_window`) and optional given rotary tables (so any RoPE
 * scaling, attention factor included, is data), and its mean next-token cross-entropy. Written
 * independently of the ONNX graphs (loops over positions and heads, no shared code), as the reference
 * the exported model and the training graph are compared with.
 */
import { EMBED, FINAL_NORM, IGNORE_INDEX, LM_HEAD, layerTensorName, type LlamaConfig } from '@llama-pro/core';

export type Weights = Map<string, { shape: number[]; values: Float32Array }>;

/** Rotary tables and attention windows of an architecture variant (default: plain RoPE from rope_theta, full attention). */
export interface ArchReference {
  /** cos and sin of position p's angle for frequency i: index p * (rotaryDim / 2) + i (attention factor included). */
  readonly cos: ArrayLike<number>;
  readonly sin: ArrayLike<number>;
  readonly rotaryDim: number;
  /** Window of layer l, or null for full causal attention. */
  readonly window: (layer: number) => number | null;
}

export interface ReferenceOptions {
  /** 0/1 per position [B, T]; padding positions get rows too, without meaning. */
  readonly mask?: Uint8Array;
  readonly arch?: ArchReference;
}

function w(weights: Weights, name: string): Float32Array {
  const t = weights.get(name);
  if (!t) throw new Error(`reference: missing ${name}`);
  return t.values;
}

/** y[o] = sum_i W[o, i] x[i] + b[o] for W [out, in]. */
function linear(x: Float64Array, W: Float32Array, out: number, b?: Float32Array): Float64Array {
  const n = x.length;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = b ? b[o]! : 0;
    for (let i = 0; i < n; i++) s += W[o * n + i]! * x[i]!;
    y[o] = s;
  }
  return y;
}

function rmsNorm(x: Float64Array, g: Float32Array, eps: number): Float64Array {
  let ms = 0;
  for (const v of x) ms += v * v;
  const r = 1 / Math.sqrt(ms / x.length + eps);
  return x.map((v, i) => v * r * g[i]!);
}

/** cos and sin of frequency i at position pos, over `half` frequencies. */
interface Rotary {
  readonly half: number;
  angle(pos: number, i: number): [number, number];
}

function rotaryOf(c: LlamaConfig, a: ArchReference | undefined): Rotary {
  if (a) return { half: a.rotaryDim / 2, angle: (p, i) => [a.cos[p * (a.rotaryDim / 2) + i]!, a.sin[p * (a.rotaryDim / 2) + i]!] };
  const hd = c.headDim;
  const invFreq = new Float64Array(hd / 2).map((_, i) => 1 / Math.pow(c.ropeTheta, (2 * i) / hd));
  return { half: hd / 2, angle: (p, i) => [Math.cos(p * invFreq[i]!), Math.sin(p * invFreq[i]!)] };
}

function rope(v: Float64Array, heads: number, hd: number, pos: number, r: Rotary): void {
  const half = r.half;
  for (let h = 0; h < heads; h++) {
    const o = h * hd;
    for (let i = 0; i < half; i++) {
      const [c, s] = r.angle(pos, i);
      const x1 = v[o + i]!;
      const x2 = v[o + half + i]!;
      v[o + i] = x1 * c - x2 * s;
      v[o + half + i] = x2 * c + x1 * s;
    }
  }
}

/** Logits [B, T, V] for ids [B, T]. */
export function referenceForward(c: LlamaConfig, weights: Weights, ids: Int32Array, B: number, T: number, opts: ReferenceOptions | Uint8Array = {}): Float64Array {
  const { mask, arch } = opts instanceof Uint8Array ? { mask: opts, arch: undefined } : opts;
  const D = c.hiddenSize;
  const H = c.numAttentionHeads;
  const KV = c.numKeyValueHeads;
  const hd = c.headDim;
  const V = c.vocabSize;
  const I = c.intermediateSize;
  const rot = rotaryOf(c, arch);
  const emb = w(weights, EMBED);
  const head = c.tieWordEmbeddings ? emb : w(weights, LM_HEAD);
  const out = new Float64Array(B * T * V);
  for (let b = 0; b < B; b++) {
    const real = (t: number) => (mask ? mask[b * T + t] === 1 : true);
    const pos: number[] = [];
    let n = 0;
    for (let t = 0; t < T; t++) {
      pos.push(n);
      if (real(t)) n++;
    }
    let xs: Float64Array[] = [];
    for (let t = 0; t < T; t++) xs.push(Float64Array.from(emb.subarray(ids[b * T + t]! * D, (ids[b * T + t]! + 1) * D)));
    for (let l = 0; l < c.numHiddenLayers; l++) {
      const p = (s: string) => w(weights, layerTensorName(l, s));
      const opt = (s: string) => weights.get(layerTensorName(l, s))?.values;
      const win = arch ? arch.window(l) : null;
      const qs: Float64Array[] = [];
      const ks: Float64Array[] = [];
      const vs: Float64Array[] = [];
      for (let t = 0; t < T; t++) {
        const h = rmsNorm(xs[t]!, p('input_layernorm.weight'), c.rmsNormEps);
        const q = linear(h, p('self_attn.q_proj.weight'), H * hd, opt('self_attn.q_proj.bias'));
        const k = linear(h, p('self_attn.k_proj.weight'), KV * hd, opt('self_attn.k_proj.bias'));
        rope(q, H, hd, pos[t]!, rot);
        rope(k, KV, hd, pos[t]!, rot);
        qs.push(q);
        ks.push(k);
        vs.push(linear(h, p('self_attn.v_proj.weight'), KV * hd, opt('self_attn.v_proj.bias')));
      }
      const next: Float64Array[] = [];
      for (let t = 0; t < T; t++) {
        const att = new Float64Array(H * hd);
        const keys = [...Array(t + 1).keys()].filter((j) => real(j) && (win === null || pos[t]! - pos[j]! < win));
        for (let hh = 0; hh < H && keys.length > 0; hh++) {
          const kvh = Math.floor(hh / (H / KV));
          const sc = keys.map((j) => {
            let s = 0;
            for (let d = 0; d < hd; d++) s += qs[t]![hh * hd + d]! * ks[j]![kvh * hd + d]!;
            return s / Math.sqrt(hd);
          });
          const m = Math.max(...sc);
          const e = sc.map((s) => Math.exp(s - m));
          const z = e.reduce((acc, x) => acc + x, 0);
          keys.forEach((j, idx) => {
            for (let d = 0; d < hd; d++) att[hh * hd + d]! += (e[idx]! / z) * vs[j]![kvh * hd + d]!;
          });
        }
        const o = linear(att, p('self_attn.o_proj.weight'), D, opt('self_attn.o_proj.bias'));
        const x1 = xs[t]!.map((v, i) => v + o[i]!);
        const h2 = rmsNorm(x1, p('post_attention_layernorm.weight'), c.rmsNormEps);
        const gt = linear(h2, p('mlp.gate_proj.weight'), I, opt('mlp.gate_proj.bias'));
        const up = linear(h2, p('mlp.up_proj.weight'), I, opt('mlp.up_proj.bias'));
        const act = gt.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]!);
        const dn = linear(act, p('mlp.down_proj.weight'), D, opt('mlp.down_proj.bias'));
        next.push(x1.map((v, i) => v + dn[i]!));
      }
      xs = next;
    }
    for (let t = 0; t < T; t++) {
      const h = rmsNorm(xs[t]!, w(weights, FINAL_NORM), c.rmsNormEps);
      out.set(linear(h, head, V), (b * T + t) * V);
    }
  }
  return out;
}

/** Mean next-token cross-entropy over non-ignored targets [B, T] (every position real), float64. */
export function referenceLoss(c: LlamaConfig, weights: Weights, ids: Int32Array, targets: Int32Array, B: number, T: number, arch?: ArchReference): number {
  const logits = referenceForward(c, weights, ids, B, T, { arch });
  const V = c.vocabSize;
  let sum = 0;
  let n = 0;
  for (let i = 0; i < B * T; i++) {
    const t = targets[i]!;
    if (t === IGNORE_INDEX) continue;
    let m = -Infinity;
    for (let v = 0; v < V; v++) m = Math.max(m, logits[i * V + v]!);
    let z = 0;
    for (let v = 0; v < V; v++) z += Math.exp(logits[i * V + v]! - m);
    sum += m + Math.log(z) - logits[i * V + t]!;
    n++;
  }
  return sum / n;
}

/** ||a - b|| / ||b|| over the selected rows of width `width` (all rows when `rows` is omitted). */
export function relL2(a: ArrayLike<number>, b: ArrayLike<number>, width?: number, rows?: readonly number[]): number {
  let num = 0;
  let den = 0;
  const idx = rows && width ? rows.flatMap((r) => Array.from({ length: width }, (_, i) => r * width + i)) : Array.from({ length: b.length }, (_, i) => i);
  for (const i of idx) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

export function argmax(a: ArrayLike<number>, from = 0, len = a.length): number {
  let best = from;
  for (let i = from + 1; i < from + len; i++) if (a[i]! > a[best]!) best = i;
  return best - from;
}
