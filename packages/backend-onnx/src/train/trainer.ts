/**
 * `OnnxTrainer`: loss and gradients from the generated training graph, then AdamW in JavaScript over the
 * resident parameter arrays that the graph's input tensors wrap: no per-step copies of parameters or
 * optimizer moments. Frozen tensors never change, so the training graph is built once.
 */
import { UsageError, type TrainingBatch } from '@llama-pro/core';
import { ResidentAdamW, type OnnxAdamWOptions } from './adamw';
import type { OnnxTrainableLM } from './model';

export interface OnnxTrainStep {
  readonly loss: number;
  readonly tokens: number;
  /** Global gradient norm before clipping. */
  readonly gradNorm: number;
  /** Milliseconds in the ORT graph and in the optimizer. */
  readonly graphMs: number;
  readonly optimizerMs: number;
}

export class OnnxTrainer {
  private optimizer: ResidentAdamW | null = null;

  constructor(
    readonly model: OnnxTrainableLM,
    readonly trainable: readonly string[],
    private readonly options: OnnxAdamWOptions = {},
  ) {
    if (trainable.length === 0) throw new UsageError('nothing to train: the trainable tensor list is empty');
  }

  get step(): number {
    return this.optimizer?.step ?? 0;
  }

  private async opt(): Promise<ResidentAdamW> {
    if (!this.optimizer) {
      const params = [];
      for (const name of this.trainable) params.push({ name, shape: this.model.parameterShape(name), values: await this.model.resident(name) });
      this.optimizer = new ResidentAdamW(params, this.options);
    }
    return this.optimizer;
  }

  /** One update with learning rate `lr` (from the caller's schedule). */
  async trainStep(batch: TrainingBatch, lr: number): Promise<OnnxTrainStep> {
    const opt = await this.opt();
    const t0 = performance.now();
    const r = await this.model.lossAndGradients(batch, this.trainable);
    const t1 = performance.now();
    const gradNorm = opt.update(r.gradients, lr);
    const t2 = performance.now();
    // The trainable tensors are graph inputs (not initializers): only the inference model goes stale.
    this.model.parametersChanged(this.trainable);
    return { loss: r.loss, tokens: r.tokens, gradNorm, graphMs: t1 - t0, optimizerMs: t2 - t1 };
  }
}
