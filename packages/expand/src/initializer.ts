/**
 * Block initializers: how an inserted copy differs from its source block. Registered under
 * `TOKENS.BlockInitializer`.
 */
import { CheckpointError, type LlamaConfig, type Named } from '@llama-pro/core';

export interface BlockInitializer extends Named {
  readonly name: string;
  readonly description: string;
  /**
   * Given the per-layer tensor suffixes of the source block (e.g. `self_attn.o_proj.weight`), returns
   * those written as zeros in the new block; every other tensor is a byte copy of the source's.
   */
  zeroedSuffixes(config: LlamaConfig, suffixes: readonly string[]): string[];
}

const ATTN_OUT = /^self_attn\.o_proj\.(weight|bias)$/;
const MLP_OUT = /^mlp\.down_proj\.(weight|bias)$/;
const MOE_OUT = /^block_sparse_moe\.experts\.\d+\.w2\.(weight|bias)$/;

/**
 * The paper's identity initialization: the residual branches' output projections are zero, so the new
 * block adds exactly +0 to the residual stream. Zeroes `self_attn.o_proj` and `mlp.down_proj` (weights and
 * biases) and, in mixture-of-experts blocks, every expert's down projection `w2`.
 */
export const zeroOutputInitializer: BlockInitializer = {
  name: 'zero-output',
  description: 'copy the block, then zero self_attn.o_proj and mlp.down_proj (every expert w2 in MoE); the grown model computes the same function',
  zeroedSuffixes(config, suffixes) {
    const attn = suffixes.filter((s) => ATTN_OUT.test(s));
    const mlp = suffixes.filter((s) => (config.numExperts > 0 ? MOE_OUT : MLP_OUT).test(s));
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
