/**
 * Block initializers: how an inserted copy differs from its source block. Registered under
 * `TOKENS.BlockInitializer`.
 */
import { CheckpointError, layerTensorEntry, type LlamaConfig, type Named } from '@llama-pro/core';

export interface BlockInitializer extends Named {
  readonly name: string;
  readonly description: string;
  /**
   * Given the per-layer tensor suffixes of the source block (e.g. `self_attn.o_proj.weight`), returns
   * those written as zeros in the new block; every other tensor is a byte copy of the source's.
   */
  zeroedSuffixes(config: LlamaConfig, suffixes: readonly string[]): string[];
}

/** The branch (attention or MLP) whose output a residual-output tensor writes, from the tensor table's role. */
function residualBranch(suffix: string): 'attn' | 'mlp' | null {
  const e = layerTensorEntry(suffix);
  if (!e?.residualOutput) return null;
  return e.role === 'attn_out' || e.role === 'attn_out_bias' ? 'attn' : 'mlp';
}

/**
 * The paper's identity initialization: the residual branches' output projections are zero, so the new
 * block adds exactly +0 to the residual stream. Zeroes `self_attn.o_proj` and `mlp.down_proj` (weights and
 * biases) and, in mixture-of-experts blocks, every expert's down projection `w2`.
 */
export const zeroOutputInitializer: BlockInitializer = {
  name: 'zero-output',
  description: 'copy the block, then zero self_attn.o_proj and mlp.down_proj (every expert w2 in MoE); the grown model computes the same function',
  zeroedSuffixes(config, suffixes) {
    const attn = suffixes.filter((s) => residualBranch(s) === 'attn');
    const mlp = suffixes.filter((s) => residualBranch(s) === 'mlp');
    if (!attn.some((s) => s.endsWith('.weight'))) throw new CheckpointError('zero-output: the block has no self_attn.o_proj.weight; the checkpoint is not a LLaMA-family decoder', 'CHECKPOINT_MISSING_TENSOR');
    if (config.numExperts > 0 ? mlp.filter((s) => s.endsWith('.weight')).length !== config.numExperts : !mlp.some((s) => s.endsWith('.weight'))) {
      throw new CheckpointError(
        `zero-output: the block lacks ${config.numExperts > 0 ? `a w2 weight for each of its ${config.numExperts} experts` : 'mlp.down_proj.weight'}; the checkpoint is not a LLaMA-family decoder`,
        'CHECKPOINT_MISSING_TENSOR',
      );
    }
    return [...attn, ...mlp];
  },
};

/** Plain copies (SOLAR-style depth up-scaling): the grown model does NOT compute the base function. */
export const copyInitializer: BlockInitializer = {
  name: 'copy',
  description: 'plain byte copies of the source block (depth up-scaling); the function changes',
  zeroedSuffixes() {
    return [];
  },
};

export const BUILTIN_INITIALIZERS: readonly BlockInitializer[] = [zeroOutputInitializer, copyInitializer];
