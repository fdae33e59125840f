/**
 * A small deterministic TrainableLM with analytic gradients, for testing trainers without a tensor
 * backend. It uses LLaMA tensor names so freeze policies and exports treat it like a real model:
 *
 *   h₀ = E[x];  hᵢ₊₁ = hᵢ + Oᵢ·(gᵢ ⊙ hᵢ)  (Oᵢ = model.layers.i.self_attn.o_proj.weight [D, D],
 *   gᵢ = model.layers.i.input_layernorm.weight [D]);  logits = H·(g_f ⊙ h_L)  (g_f = model.norm.weight,
 *   H = lm_head.weight [V, D]).
 *
 * Each position predicts the next token from the current one only (a deep bigram model). Math runs in
 * float64; parameters are stored as float32. A zero `o_proj` makes a block the identity, like LLaMA Pro's
 * zero-initialized blocks.
 */
import {
  type CausalLM,
  type DecodeSession,
  EMBED,
  FINAL_NORM,
  type GradientResult,
  IGNORE_INDEX,
  LM_HEAD,
  type LlamaConfig,
  type Logits,
  type LossResult,
  type ModelBackend,
  type TokenBatch,
  type TrainableLM,
  type TrainingBatch,
  type WeightSource,
  UsageError,
  layerTensorName,
  normalizeConfig,
} from '@llama-pro/core';
import { tinyRawConfig } from '@llama-pro/core/testing';

export interface ToyShape {
  vocab: number;
  dim: number;
  layers: number;
}

export function toyTensorShapes(s: ToyShape): Map<string, number[]> {
  const m = new Map<string, number[]>();
  m.set(EMBED, [s.vocab, s.dim]);
  for (let i = 0; i < s.layers; i++) {
    m.set(layerTensorName(i, 'input_layernorm.weight'), [s.dim]);
    m.set(layerTensorName(i, 'self_attn.o_proj.weight'), [s.dim, s.dim]);
  }
  m.set(FINAL_NORM, [s.dim]);
  m.set(LM_HEAD, [s.vocab, s.dim]);
  return m;
}

/** The config.json object used for toy checkpoints (a valid LLaMA config of the same width and depth). */
export function toyRawConfig(s: ToyShape): Record<string, unknown> {
  return tinyRawConfig({ hiddenSize: s.dim, intermediateSize: s.dim, layers: s.layers, heads: 1, kvHeads: 1, vocab: s.vocab });
}

export class ToyLM implements TrainableLM {
  readonly device = 'toy:js';
  readonly config: LlamaConfig;
  private readonly params = new Map<string, Float32Array>();
  private readonly shapes: Map<string, number[]>;
  /** Names requested in every `lossAndGradients` call, for tests. */
  readonly gradientRequests: string[][] = [];

  constructor(
    readonly shape: ToyShape,
    values: ReadonlyMap<string, Float32Array>,
  ) {
    this.shapes = toyTensorShapes(shape);
    this.config = normalizeConfig(toyRawConfig(shape));
    for (const [name, sh] of this.shapes) {
      const v = values.get(name);
      const n = sh.reduce((a, b) => a * b, 1);
      if (!v || v.length !== n) throw new UsageError(`toy model: tensor ${name} missing or not ${n} values`);
      this.params.set(name, Float32Array.from(v));
    }
  }

  parameterNames(): string[] {
    return [...this.shapes.keys()];
  }

  parameterShape(name: string): readonly number[] {
    const s = this.shapes.get(name);
    if (!s) throw new UsageError(`toy model has no parameter "${name}"`);
    return s;
  }

  async getParameter(name: string): Promise<Float32Array> {
    this.parameterShape(name);
    return Float32Array.from(this.params.get(name)!);
  }

  async setParameter(name: string, values: Float32Array): Promise<void> {
    const n = this.parameterShape(name).reduce((a, b) => a * b, 1);
    if (values.length !== n) throw new UsageError(`toy model: ${name} needs ${n} values, got ${values.length}`);
    this.params.get(name)!.set(values);
  }

  /** Forward for one token: hidden states h₀..h_L and logits. */
  private forwardToken(tok: number): { hs: Float64Array[]; u: Float64Array; logits: Float64Array } {
    const { vocab: V, dim: D, layers: L } = this.shape;
    if (!(tok >= 0 && tok < V)) throw new UsageError(`token id ${tok} is outside the vocabulary of ${V}`);
    const E = this.params.get(EMBED)!;
    const hs: Float64Array[] = [];
    let h = new Float64Array(D);
    for (let d = 0; d < D; d++) h[d] = E[tok * D + d]!;
    hs.push(h);
    for (let i = 0; i < L; i++) {
      const g = this.params.get(layerTensorName(i, 'input_layernorm.weight'))!;
      const O = this.params.get(layerTensorName(i, 'self_attn.o_proj.weight'))!;
      const next = new Float64Array(D);
      for (let r = 0; r < D; r++) {
        let s = 0;
        for (let c = 0; c < D; c++) s += O[r * D + c]! * g[c]! * h[c]!;
        next[r] = h[r]! + s;
      }
      h = next;
      hs.push(h);
    }
    const gf = this.params.get(FINAL_NORM)!;
    const H = this.params.get(LM_HEAD)!;
    const u = new Float64Array(D);
    for (let d = 0; d < D; d++) u[d] = gf[d]! * h[d]!;
    const logits = new Float64Array(V);
    for (let v = 0; v < V; v++) {
      let s = 0;
      for (let d = 0; d < D; d++) s += H[v * D + d]! * u[d]!;
      logits[v] = s;
    }
    return { hs, u, logits };
  }

  async forward(batch: TokenBatch): Promise<Logits> {
    const V = this.shape.vocab;
    const n = batch.batchSize * batch.seqLen;
    const data = new Float32Array(n * V);
    for (let p = 0; p < n; p++) data.set(this.forwardToken(batch.ids[p]!).logits, p * V);
    return { data, batchSize: batch.batchSize, seqLen: batch.seqLen, vocabSize: V };
  }

  async tokenLogprobs(batch: TrainingBatch): Promise<Float32Array> {
    const n = batch.batchSize * batch.seqLen;
    const out = new Float32Array(n);
    for (let p = 0; p < n; p++) {
      const t = batch.targets[p]!;
      if (t === IGNORE_INDEX || (batch.attentionMask && batch.attentionMask[p] === 0)) continue;
      const { logits } = this.forwardToken(batch.ids[p]!);
      out[p] = logits[t]! - logSumExp(logits);
    }
    return out;
  }

  startSession(batchSize: number): DecodeSession {
    // The model conditions on the current token only, so a session needs no cache beyond the length.
    let length = 0;
    const V = this.shape.vocab;
    return {
      get length() {
        return length;
      },
      step: async (batch: TokenBatch) => {
        if (batch.batchSize !== batchSize) throw new UsageError(`session was started for batch size ${batchSize}, got ${batch.batchSize}`);
        const out = new Float32Array(batchSize * V);
        for (let b = 0; b < batchSize; b++) out.set(this.forwardToken(batch.ids[b * batch.seqLen + batch.seqLen - 1]!).logits, b * V);
        length += batch.seqLen;
        return out;
      },
      dispose() {},
    };
  }

  async dispose(): Promise<void> {}

  async loss(batch: TrainingBatch): Promise<LossResult> {
    const r = this.compute(batch, null);
    return { loss: r.loss, tokens: r.tokens };
  }

  async lossAndGradients(batch: TrainingBatch, trainable: readonly string[]): Promise<GradientResult> {
    for (const n of trainable) this.parameterShape(n);
    this.gradientRequests.push([...trainable]);
    const r = this.compute(batch, new Set(trainable));
    const gradients = new Map<string, Float32Array>();
    for (const n of trainable) gradients.set(n, Float32Array.from(r.grads.get(n)!));
    return { loss: r.loss, tokens: r.tokens, gradients };
  }

  private compute(batch: TrainingBatch, want: Set<string> | null): { loss: number; tokens: number; grads: Map<string, Float64Array> } {
    const { vocab: V, dim: D, layers: L } = this.shape;
    const grads = new Map<string, Float64Array>();
    if (want) for (const n of want) grads.set(n, new Float64Array(this.params.get(n)!.length));
    const n = batch.batchSize * batch.seqLen;
    let tokens = 0;
    for (let p = 0; p < n; p++) if (batch.targets[p] !== IGNORE_INDEX && !(batch.attentionMask && batch.attentionMask[p] === 0)) tokens++;
    if (tokens === 0) throw new UsageError('batch has no target tokens');
    let total = 0;
    for (let p = 0; p < n; p++) {
      const t = batch.targets[p]!;
      if (t === IGNORE_INDEX || (batch.attentionMask && batch.attentionMask[p] === 0)) continue;
      const tok = batch.ids[p]!;
      const { hs, u, logits } = this.forwardToken(tok);
      const lse = logSumExp(logits);
      total += lse - logits[t]!;
      if (!want) continue;
      const dl = new Float64Array(V);
      for (let v = 0; v < V; v++) dl[v] = Math.exp(logits[v]! - lse) / tokens;
      dl[t]! -= 1 / tokens;
      const H = this.params.get(LM_HEAD)!;
      const gH = grads.get(LM_HEAD);
      if (gH) for (let v = 0; v < V; v++) for (let d = 0; d < D; d++) gH[v * D + d]! += dl[v]! * u[d]!;
      const du = new Float64Array(D);
      for (let v = 0; v < V; v++) for (let d = 0; d < D; d++) du[d]! += H[v * D + d]! * dl[v]!;
      const gf = this.params.get(FINAL_NORM)!;
      const hL = hs[L]!;
      const gGf = grads.get(FINAL_NORM);
      if (gGf) for (let d = 0; d < D; d++) gGf[d]! += du[d]! * hL[d]!;
      let dh = new Float64Array(D);
      for (let d = 0; d < D; d++) dh[d] = du[d]! * gf[d]!;
      for (let i = L - 1; i >= 0; i--) {
        const gName = layerTensorName(i, 'input_layernorm.weight');
        const oName = layerTensorName(i, 'self_attn.o_proj.weight');
        const g = this.params.get(gName)!;
        const O = this.params.get(oName)!;
        const h = hs[i]!;
        const gO = grads.get(oName);
        if (gO) for (let r = 0; r < D; r++) for (let c = 0; c < D; c++) gO[r * D + c]! += dh[r]! * g[c]! * h[c]!;
        const da = new Float64Array(D);
        for (let r = 0; r < D; r++) for (let c = 0; c < D; c++) da[c]! += O[r * D + c]! * dh[r]!;
        const gG = grads.get(gName);
        if (gG) for (let c = 0; c < D; c++) gG[c]! += da[c]! * h[c]!;
        const prev = new Float64Array(D);
        for (let c = 0; c < D; c++) prev[c] = dh[c]! + da[c]! * g[c]!;
        dh = prev;
      }
      const gE = grads.get(EMBED);
      if (gE) for (let d = 0; d < D; d++) gE[tok * D + d]! += dh[d]!;
    }
    return { loss: total / tokens, tokens, grads };
  }
}

function logSumExp(x: Float64Array): number {
  let m = -Infinity;
  for (const v of x) if (v > m) m = v;
  let s = 0;
  for (const v of x) s += Math.exp(v - m);
  return m + Math.log(s);
}

/** Builds a ToyLM from any weight source holding the toy tensor names (shape read from the tensors). */
export async function loadToyLM(source: WeightSource): Promise<ToyLM> {
  const names = source.tensorNames();
  const [vocab, dim] = source.info(EMBED).shape as [number, number];
  let layers = 0;
  while (names.includes(layerTensorName(layers, 'self_attn.o_proj.weight'))) layers++;
  const shape = { vocab, dim, layers };
  const values = new Map<string, Float32Array>();
  for (const name of toyTensorShapes(shape).keys()) values.set(name, await source.readFloat32(name));
  return new ToyLM(shape, values);
}

/** A ModelBackend named "toy" serving ToyLM, for tests of code that resolves backends by name. */
export const toyBackend: ModelBackend = {
  name: 'toy',
  description: 'deterministic deep-bigram test model with analytic gradients (testing only)',
  supportsTraining: true,
  load: (source: WeightSource): Promise<CausalLM> => loadToyLM(source),
  loadTrainable: (source: WeightSource): Promise<TrainableLM> => loadToyLM(source),
};
