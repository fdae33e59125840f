/**
 * A plain-JS float64 forward pass with Hugging Face LLaMA semantics (RMSNorm, rotate-half RoPE,
 * grouped-query attention by explicit head mapping, SwiGLU, biases, tied or untied head). Written
 * independently of the ONNX graph, as the reference the exported model is compared with.
 */
import { EMBED, FINAL_NORM, LM_HEAD, layerTensorName, type LlamaConfig } from '@llama-pro/core';

export type Weights = Map<string, { shape: number[]; values: Float32Array }>;

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

function rope(v: Float64Array, heads: number, hd: number, pos: number, invFreq: Float64Array): void {
  const half = hd / 2;
  for (let h = 0; h < heads; h++) {
    const o = h * hd;
    for (let i = 0; i < half; i++) {
      const a = pos * invFreq[i]!;
      const c = Math.cos(a);
      const s = Math.sin(a);
      const x1 = v[o + i]!;
      const x2 = v[o + half + i]!;
      v[o + i] = x1 * c - x2 * s;
      v[o + half + i] = x2 * c + x1 * s;
    }
  }
}

/**
 * Logits [B, T, V] for ids [B, T] with an optional 0/1 mask; positions count real tokens only. Rows of
 * padding positions are computed too but carry no meaning.
 */
export function referenceForward(c: LlamaConfig, weights: Weights, ids: Int32Array, B: number, T: number, mask?: Uint8Array): Float64Array {
  const D = c.hiddenSize;
  const H = c.numAttentionHeads;
  const KV = c.numKeyValueHeads;
  const hd = c.headDim;
  const V = c.vocabSize;
  const I = c.intermediateSize;
  const invFreq = new Float64Array(hd / 2).map((_, i) => 1 / Math.pow(c.ropeTheta, (2 * i) / hd));
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
      const qs: Float64Array[] = [];
      const ks: Float64Array[] = [];
      const vs: Float64Array[] = [];
      for (let t = 0; t < T; t++) {
        const h = rmsNorm(xs[t]!, p('input_layernorm.weight'), c.rmsNormEps);
        const q = linear(h, p('self_attn.q_proj.weight'), H * hd, opt('self_attn.q_proj.bias'));
        const k = linear(h, p('self_attn.k_proj.weight'), KV * hd, opt('self_attn.k_proj.bias'));
        rope(q, H, hd, pos[t]!, invFreq);
        rope(k, KV, hd, pos[t]!, invFreq);
        qs.push(q);
        ks.push(k);
        vs.push(linear(h, p('self_attn.v_proj.weight'), KV * hd, opt('self_attn.v_proj.bias')));
      }
      const next: Float64Array[] = [];
      for (let t = 0; t < T; t++) {
        const att = new Float64Array(H * hd);
        for (let hh = 0; hh < H; hh++) {
          const kvh = Math.floor(hh / (H / KV));
          const keys = [...Array(t + 1).keys()].filter((j) => real(j));
          if (keys.length === 0) continue;
          const sc = keys.map((j) => {
            let s = 0;
            for (let d = 0; d < hd; d++) s += qs[t]![hh * hd + d]! * ks[j]![kvh * hd + d]!;
            return s / Math.sqrt(hd);
          });
          const m = Math.max(...sc);
          const e = sc.map((s) => Math.exp(s - m));
          const z = e.reduce((a, x) => a + x, 0);
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
