/** DeepSpeed ZeRO configs with "auto" values, which the HF Trainer / Accelerate fill from their own arguments. */
export function deepspeedConfig(stage: 2 | 3, precision: 'bf16' | 'fp16' | 'fp32'): Record<string, unknown> {
  const zero: Record<string, unknown> =
    stage === 2
      ? { stage: 2, allgather_partitions: true, allgather_bucket_size: 5e8, overlap_comm: true, reduce_scatter: true, reduce_bucket_size: 5e8, contiguous_gradients: true, round_robin_gradients: true }
      : {
          stage: 3,
          overlap_comm: true,
          contiguous_gradients: true,
          sub_group_size: 1e9,
          reduce_bucket_size: 'auto',
          stage3_prefetch_bucket_size: 'auto',
          stage3_param_persistence_threshold: 'auto',
          stage3_max_live_parameters: 1e9,
          stage3_max_reuse_distance: 1e9,
          stage3_gather_16bit_weights_on_model_save: true,
        };
  return {
    train_batch_size: 'auto',
    train_micro_batch_size_per_gpu: 'auto',
    gradient_accumulation_steps: 'auto',
    gradient_clipping: 'auto',
    zero_allow_untested_optimizer: true,
    fp16: { enabled: precision === 'fp16' ? 'auto' : false, loss_scale: 0, loss_scale_window: 1000, initial_scale_power: 16, hysteresis: 2, min_loss_scale: 1 },
    bf16: { enabled: precision === 'bf16' ? 'auto' : false },
    zero_optimization: zero,
  };
}
