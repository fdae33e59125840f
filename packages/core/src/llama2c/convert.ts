import { type FloatDType } from '../io/dtype';
import { saveModelDir, type ShardPlan } from '../io/hf-dir';
import { llama2cConfig, llama2cTensors, readLlama2cLayout, type Llama2cHeader } from './import';
import { llama2cTokenizerJson, readLlama2cTokenizer } from './tokenizer';

export interface ConvertOptions {
  dtype?: FloatDType;
  maxShardBytes?: number;
  force?: boolean;
  /** A llama2.c tokenizer file (tokenizer.py export(), e.g. tok512.bin): written as tokenizer.json + tokenizer_config.json. */
  tokenizer?: string;
  onProgress?: (done: number, total: number) => void;
}

/** Converts a llama2.c checkpoint into an HF directory (written atomically). */
export async function convertLlama2c(file: string, outDir: string, options: ConvertOptions = {}): Promise<{ header: Llama2cHeader; shards: ShardPlan[] }> {
  const layout = await readLlama2cLayout(file);
  const dtype = options.dtype ?? 'F32';
  // Read and check the tokenizer against the model's vocabulary before anything is written.
  const tok = options.tokenizer ? llama2cTokenizerJson(await readLlama2cTokenizer(options.tokenizer, layout.header.vocabSize), { modelMaxLength: layout.header.seqLen }) : null;
  const { shards } = await saveModelDir(
    outDir,
    {
      config: llama2cConfig(layout.header, dtype),
      tensors: llama2cTensors(file, layout, dtype),
      maxShardBytes: options.maxShardBytes,
      extraFiles: {
        'generation_config.json': JSON.stringify({ bos_token_id: 1, eos_token_id: 2 }, null, 2) + '\n',
        ...(tok ? { 'tokenizer.json': JSON.stringify(tok.tokenizer) + '\n', 'tokenizer_config.json': JSON.stringify(tok.config, null, 2) + '\n' } : {}),
      },
      onProgress: options.onProgress,
    },
    { force: options.force, owner: 'convert', inputs: [file] },
  );
  return { header: layout.header, shards };
}
