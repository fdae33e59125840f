import { type FloatDType } from '../io/dtype';
import { saveModelDir, type ShardPlan } from '../io/hf-dir';
import { llama2cConfig, llama2cTensors, readLlama2cLayout, type Llama2cHeader } from './import';

export interface ConvertOptions {
  dtype?: FloatDType;
  maxShardBytes?: number;
  force?: boolean;
  onProgress?: (done: number, total: number) => void;
}

/** Converts a llama2.c checkpoint into an HF directory (written atomically). */
export async function convertLlama2c(file: string, outDir: string, options: ConvertOptions = {}): Promise<{ header: Llama2cHeader; shards: ShardPlan[] }> {
  const layout = await readLlama2cLayout(file);
  const dtype = options.dtype ?? 'F32';
  const { shards } = await saveModelDir(
    outDir,
    {
      config: llama2cConfig(layout.header, dtype),
      tensors: llama2cTensors(file, layout, dtype),
      maxShardBytes: options.maxShardBytes,
      extraFiles: { 'generation_config.json': JSON.stringify({ bos_token_id: 1, eos_token_id: 2 }, null, 2) + '\n' },
      onProgress: options.onProgress,
    },
    { force: options.force, owner: 'convert', inputs: [file] },
  );
  return { header: layout.header, shards };
}
